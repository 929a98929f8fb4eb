"""The run log: metrics.jsonl lines (one meaning of ``time``), a cut-short last line, truncation, the plot."""

import glob
import json
import os
import time

import pytest

from dynaflow_policy import run_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lines_hold_step_unix_time_and_values(tmp_path):
    log = run_log.MetricsLog(tmp_path / run_log.METRICS_FILE)
    before = time.time()
    log.write(1, {"train/loss": 0.5})
    log.write(2, {"eval/tre": 0.25})
    after = time.time()
    rows = run_log.read_metrics(tmp_path / run_log.METRICS_FILE)
    assert [(r["step"], r.get("train/loss"), r.get("eval/tre")) for r in rows] == [(1, 0.5, None), (2, None, 0.25)]
    assert all(before <= r["time"] <= after for r in rows)  # seconds since the Unix epoch
    run_log.MetricsLog(None).write(3, {"train/loss": 0.0})  # a process that does not log writes nothing
    assert len(run_log.read_metrics(tmp_path / run_log.METRICS_FILE)) == 2


def test_reader_skips_a_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / run_log.METRICS_FILE
    log = run_log.MetricsLog(path)
    for step in (1, 2, 3):
        log.write(step, {"train/loss": 1.0 / step})
    with open(path, "a") as f:
        f.write('{"step": 4, "train/lo')  # killed mid-write
    assert [r["step"] for r in run_log.read_metrics(path)] == [1, 2, 3]
    assert [r["step"] for r in run_log.read_metrics(path, up_to_step=2)] == [1, 2]
    assert run_log.read_metrics(tmp_path / "missing.jsonl") == []


def test_truncate_after_drops_later_and_cut_short_lines(tmp_path):
    path = tmp_path / run_log.METRICS_FILE
    log = run_log.MetricsLog(path)
    for step in (1, 2, 3):
        log.write(step, {"train/loss": 1.0})
    with open(path, "a") as f:
        f.write('{"step": 4, "tr')
    log.truncate_after(2)
    assert [json.loads(line)["step"] for line in open(path)] == [1, 2]  # every remaining line parses
    log.write(3, {"train/loss": 2.0})
    assert [r["step"] for r in run_log.read_metrics(path)] == [1, 2, 3]
    log.truncate_after(-1)
    assert run_log.read_metrics(path) == [] and os.path.exists(path)
    run_log.MetricsLog(tmp_path / "never_written.jsonl").truncate_after(0)
    assert not os.path.exists(tmp_path / "never_written.jsonl")


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "checkpoints", "**", run_log.METRICS_FILE),
                                                  recursive=True)))
def test_shipped_logs_read(path):
    """Every committed metrics.jsonl (older PPO logs hold seconds since the start as ``time``) reads whole."""
    with open(path) as f:
        n_lines = sum(1 for line in f if line.strip())
    rows = run_log.read_metrics(path)
    assert len(rows) == n_lines > 0
    assert all(isinstance(r["step"], int) and isinstance(r["time"], float) for r in rows)


def test_one_plotter_draws_both_layouts(tmp_path):
    rows = [{"step": s, "time": 0.0, "train/loss": 1.0 / s} for s in range(1, 30)]
    rows += [{"step": 10, "time": 0.0, "eval/tre": 0.5, "eval/sae": 1e-6}]
    out = run_log.plot_learning_curve(rows, tmp_path / "dynaflow.png", "DynaFlow")
    assert os.path.getsize(out) > 1000
    ppo = [{"step": s, "eval/episode_reward": -1.0 + s, "eval/episode_reward_std": 0.5, "reward/torques": 1e5,
            "reward/gait_sync": -3.0} for s in (0, 100, 200)]
    out = run_log.plot_learning_curve(ppo, tmp_path / "ppo.png", "PPO", left=("eval/episode_reward",),
                                      right_prefix="reward/", left_scale="linear", right_scale="symlog",
                                      x_label="env steps")
    assert os.path.getsize(out) > 1000
    assert sorted(os.listdir(tmp_path)) == ["dynaflow.png", "ppo.png"]  # no temporary files left
