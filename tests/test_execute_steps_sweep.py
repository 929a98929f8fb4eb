"""eval/execute_steps_sweep.py on a tiny checkpoint: one closed-loop row per value, the best is one of them."""

import importlib.util
import json
import os
import sys

from artifacts import write_dynaflow_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sweep_reports_each_value_and_picks_the_fewest_falls(tmp_path):
    spec = importlib.util.spec_from_file_location("execute_steps_sweep",
                                                  os.path.join(REPO, "eval", "execute_steps_sweep.py"))
    sweep = importlib.util.module_from_spec(spec)
    sys.modules["execute_steps_sweep"] = sweep  # dataclasses look their module up
    spec.loader.exec_module(sweep)
    ckpt = write_dynaflow_checkpoint(tmp_path / "dynaflow" / "checkpoints", horizon=8)
    best = sweep.main(sweep.Args(checkpoint=ckpt, values=(1, 3), episodes=1, seconds=1.2, out=str(tmp_path / "out")))
    report = json.load(open(tmp_path / "out" / "sweep.json"))
    assert report["best"] == best and set(report["values"]) == {"1", "3"}
    rows = report["values"]
    assert min(rows, key=lambda k: (rows[k]["falls_per_minute"], rows[k]["vx_rmse"])) == str(best)
    for row in rows.values():
        assert row["act_ms"] > 0 and 0 < row["survival_seconds"] <= 1.2 + 1e-9
    text = open(tmp_path / "out" / "sweep.md").read()
    assert "| 1" in text and "| 3" in text and "(best)" in text
