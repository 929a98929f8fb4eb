"""eval/execute_steps_sweep.py on a tiny checkpoint: one closed-loop row per value, the best is one of them."""

import json

from artifacts import load_eval_script, write_dynaflow_checkpoint


def test_sweep_reports_each_value_and_picks_the_fewest_falls(tmp_path):
    sweep = load_eval_script("execute_steps_sweep")
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
