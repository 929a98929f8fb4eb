"""The ablation table's inputs: variants on the command line, windows of constant command, training hours."""

import json
import os

import numpy as np
import pytest

from artifacts import load_eval_script, write_dynaflow_checkpoint
from dynaflow_policy.benchmark.ablation import IDLE_GAP_S, constant_command_windows, training_hours
from dynaflow_policy.data import load_dataset
from dynaflow_policy.loading import parse_variant
from dynaflow_policy.run_log import METRICS_FILE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD_OUT = os.path.join(REPO, "data", "go1_expert_heldout_small.npz")


def _script():
    return load_eval_script("ablation")


def test_the_script_writes_one_row_per_variant(tmp_path):
    cli = _script()
    ckpt = write_dynaflow_checkpoint(tmp_path / "run" / "checkpoints", horizon=8)
    cli.main(cli.Args(variant=(f"a={ckpt}", f"b={ckpt}:execute_steps=1,ensemble=2"), windows=3, episodes=1,
                      seconds=1.2, open_loop_seconds=0.2, open_loop_starts=1, out=str(tmp_path / "out")))
    with open(tmp_path / "out" / "ablation.json") as f:
        rows = json.load(f)
    assert list(rows) == ["a", "b"] and rows["b"]["overrides"] == {"execute_steps": 1, "ensemble": 2}
    assert rows["a"]["step"] == 0 and rows["a"]["training_hours"] is None  # the artifact has no log
    for r in rows.values():
        assert r["tre"] > 0 and r["sae"] < 1e-6 and 0 <= r["falls"] <= 1 and len(r["open_loop_rmse"]) == 3
    table = (tmp_path / "out" / "ablation.md").read_text()
    assert "| a |" in table and "| b |" in table
    with pytest.raises(FileNotFoundError, match="--variant c"):
        cli.main(cli.Args(variant=(f"c={tmp_path / 'nowhere'}",), out=str(tmp_path / "out")))


def test_variants_parse_with_typed_overrides_and_bad_ones_are_named():
    assert parse_variant("a=runs/x") == ("a", "runs/x", {})
    assert parse_variant("N=4=ck:ode_steps=4,ensemble=2,tag=b") == ("N", "4=ck", {"ode_steps": 4, "ensemble": 2,
                                                                                "tag": "b"})
    assert parse_variant("a=ck:replan_on_change=False,x=true") == ("a", "ck", {"replan_on_change": False, "x": True})
    with pytest.raises(ValueError, match="--variant must be NAME=PATH"):
        parse_variant("no-path")
    with pytest.raises(ValueError, match="--controller a: option 'ode_steps' is not key=value"):
        parse_variant("a=ck:ode_steps", "--controller")


def test_windows_hold_one_command_and_come_from_the_file():
    batch, normalizer = constant_command_windows(HELD_OUT, 16, 40, seed=1)
    ds = load_dataset(HELD_OUT)
    assert batch["states"].shape == (40, 17, 37) and normalizer.mean.shape == (37,)
    for traj, start, command, states in zip(batch["trajectory"], batch["start"], batch["command"], batch["states"]):
        np.testing.assert_array_equal(ds.commands[traj, start:start + 17], np.tile(command, (17, 1)))
        np.testing.assert_array_equal(ds.states[traj, start:start + 17], states)
    assert len(np.unique(batch["command"], axis=0)) > 5  # many commands, not one trajectory


def test_training_hours_leave_out_interruptions(tmp_path):
    assert training_hours(tmp_path) is None
    times = [0.0, 600.0, 1200.0, 1200.0 + IDLE_GAP_S + 1, 1200.0 + IDLE_GAP_S + 601]
    with open(tmp_path / METRICS_FILE, "w") as f:
        f.writelines(json.dumps({"step": i, "time": t}) + "\n" for i, t in enumerate(times))
    assert training_hours(tmp_path) == pytest.approx((1200 + 600) / 3600)  # the 15-min gap is a stop
    assert training_hours(tmp_path, up_to_step=2) == pytest.approx(1200 / 3600)
