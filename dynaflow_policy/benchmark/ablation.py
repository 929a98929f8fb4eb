"""One row of the ablation table per controller: every lever measured on the same held-out data and episodes.

Columns (``docs/training.md`` shows the table):

- ``tre``, ``action_rmse``, ``sae``: on held-out windows whose command is constant over the
  window (:func:`constant_command_windows`), so that a model told (x0, c) can reproduce them. One
  normaliser for every row: the one fitted to the held-out file.
- ``falls``: falls per episode over the closed-loop episodes of ``closed_loop.EXPERT_COMMANDS`` and
  of the command sweep (``sweep.SWEEP``); ``vx_rmse``, ``vy_rmse``, ``yaw_rate_rmse``: the mean over
  those commands and scenarios of each one's RMSE.
- ``open_loop_falls``, ``open_loop_rmse``: chained plans executed without feedback
  (``sections.section_open_loop``) from held-out starts.
- ``training_hours``: the run's training wall time from its ``metrics.jsonl`` (gaps longer than
  ``IDLE_GAP_S`` between logged lines, interruptions, are left out), None for a shipped checkpoint
  without a log.
"""

from __future__ import annotations

import os

import numpy as np

from dynaflow_policy import run_log
from dynaflow_policy.benchmark.methods import Generator
from dynaflow_policy.benchmark.sections import generate_windows, section_open_loop
from dynaflow_policy.benchmark.sweep import SWEEP, section_sweep
from dynaflow_policy.closed_loop import EXPERT_COMMANDS, Controller, Scenario
from dynaflow_policy.data.split import held_out_windows_for
from dynaflow_policy.metrics import action_recovery_rmse, sae_native, tre
from dynaflow_policy.normalizer import Normalizer

IDLE_GAP_S = 900.0
"""Seconds between two logged lines of a run beyond which the run is taken to have been stopped."""


def constant_command_windows(path: str | os.PathLike, horizon: int, count: int,
                             seed: int = 0) -> tuple[dict[str, np.ndarray], Normalizer]:
    """Up to ``count`` windows of ``path`` whose command does not change over their H+1 states.

    Returns:
      (batch of ``WindowSet.batch``, the normaliser fitted to the file's windows in the heading frame):
      :func:`dynaflow_policy.data.split.held_out_windows_for` of a file no checkpoint trained on.
    """
    held = held_out_windows_for([], path, count, seed, horizon, constant_command_only=True)
    return held.batch, held.normalizer


def training_hours(run_dir: str | os.PathLike, up_to_step: int | None = None) -> float | None:
    """Training wall time (h) of a work directory's ``metrics.jsonl`` (module docstring) up to a step (None:
    all of it), None without a log."""
    path = os.path.join(run_dir, run_log.METRICS_FILE)
    if not os.path.isfile(path):
        return None
    times = np.array([r["time"] for r in run_log.read_metrics(path, up_to_step) if "time" in r])
    gaps = np.diff(times)
    return float(gaps[gaps < IDLE_GAP_S].sum() / 3600.0) if len(times) > 1 else 0.0


def ablation_row(controller: Controller, generate: Generator, batch: dict[str, np.ndarray], normalizer: Normalizer,
                 episodes: int, seconds: float, open_loop_seconds: float, open_loop_starts: int,
                 seed: int = 0) -> dict[str, float]:
    """The columns of the module docstring (without ``training_hours``) for one controller."""
    X_ref = batch["states"].astype(np.float64)
    X, U = generate_windows(generate, batch, X_ref)
    scenarios = {**{name: Scenario.constant(c) for name, c in EXPERT_COMMANDS.items()}, **SWEEP}
    closed = section_sweep({"c": controller}, episodes, seconds, seed, lambda line: None, scenarios)["c"]
    results = list(closed.values())
    blind = section_open_loop({"c": generate}, batch, normalizer, open_loop_seconds, open_loop_starts)["c"]
    return {"tre": float(tre(X, X_ref, normalizer)), "sae": float(sae_native(X, U, normalizer)),
            "action_rmse": float(action_recovery_rmse(U, batch["expert_actions"])),
            "falls": float(np.mean([r.falls_per_episode for r in results])),
            "vx_rmse": float(np.mean([r.vx_rmse for r in results])),
            "vy_rmse": float(np.mean([r.vy_rmse for r in results])),
            "yaw_rate_rmse": float(np.mean([r.yaw_rate_rmse for r in results])),
            "open_loop_falls": float(blind["falls"]),
            "open_loop_rmse": [float(e) for e in blind["tracking_rmse"]],
            "by_scenario": {k: [r.falls_per_episode, r.vx_rmse, r.vy_rmse, r.yaw_rate_rmse] for k, r in closed.items()}}


def markdown_rows(rows: dict[str, dict]) -> str:
    """The ablation table in Markdown, one row per named result of :func:`ablation_row` (+ ``training_hours``)."""
    lines = ["| variant | TRE | action RMSE | falls / episode | vx / vy / yaw-rate RMSE | open loop: falls, "
             "vx / vy / yaw-rate RMSE | training (h) |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        hours = "–" if r.get("training_hours") is None else f"{r['training_hours']:.2f}"
        blind = " / ".join(f"{e:.3f}" for e in r["open_loop_rmse"])
        lines.append(f"| {name} | {r['tre']:.3f} | {r['action_rmse']:.3f} | {r['falls']:.2f} | {r['vx_rmse']:.3f} / "
                     f"{r['vy_rmse']:.3f} / {r['yaw_rate_rmse']:.3f} | {r['open_loop_falls']:.2f}, {blind} | {hours} |")
    return "\n".join(lines)
