"""Sections 1-3 of the benchmark: held-out windows, closed loop with act() latency, open-loop drift.

Metrics are those of :mod:`dynaflow_policy.metrics` and
:mod:`dynaflow_policy.closed_loop` (definitions in ``docs/design.md``).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from dynaflow_policy.benchmark.methods import HELD_COMMAND_ROW, Generator, held_command_generator
from dynaflow_policy.closed_loop import (EXPERT_COMMANDS, CommandResult, Controller, evaluate, time_controller,
                                         tracking_errors)
from dynaflow_policy.metrics import action_recovery_rmse, sae_native, state_distance, tre
from dynaflow_policy.normalizer import Normalizer
from envs.native import NativeGo1
from envs.physics import PHYSICS
from envs.task import advance_phase, is_fallen

Log = Callable[[str], None]
"""log(line): one line of progress."""


def generate_windows(generate: Generator, batch: dict[str, np.ndarray],
                     X_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X (B, H+1, 37), U (B, H, 12)): ``generate`` from each window's x0 (``X_ref`` (B, H+1, 37)), command, gait
    and gait phase (0 where the data stores none)."""
    phase = batch.get("phase", np.zeros(len(X_ref)))
    out = [generate(x[0], c, g, float(p)) for x, c, g, p in zip(X_ref, batch["command"], batch["gait"], phase)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def section_offline(generators: dict[str, Generator], batch: dict[str, np.ndarray], normalizer: Normalizer,
                    expert: Controller | None = None) -> list[dict]:
    """Section 1: SAE, TRE and action RMSE of the data and of each generator on held-out windows.

    Args:
      generators: name -> generator, one row each.
      batch: held-out windows (``dynaflow_policy.data.split.HeldOutWindows.batch``).
      normalizer: the scale of SAE and TRE.
      expert: the PPO expert; with it, a first row of the demonstrator told only the window's first command.

    Returns:
      Rows ``{"method", "sae", "tre", "action_rmse"}`` (action RMSE NaN without expert actions).
    """
    X_ref = batch["states"].astype(np.float64)  # (B, H+1, 37)
    horizon = X_ref.shape[1] - 1
    rows = []
    if "expert_actions" in batch:
        rows.append({"method": "demonstrations (expert actions)",
                     "sae": sae_native(X_ref, batch["expert_actions"], normalizer), "tre": 0.0,
                     "action_rmse": 0.0})
    if expert is not None:
        generators = {HELD_COMMAND_ROW: held_command_generator(expert, horizon), **generators}
    for name, generate in generators.items():
        X, U = generate_windows(generate, batch, X_ref)
        rows.append({"method": name, "sae": sae_native(X, U, normalizer), "tre": float(tre(X, X_ref, normalizer)),
                     "action_rmse": float(action_recovery_rmse(U, batch["expert_actions"]))
                     if "expert_actions" in batch else float("nan")})
    return rows


def section_closed_loop(controllers: dict[str, Controller], episodes: int, seconds: float, seed: int,
                        log: Log) -> dict[str, dict[str, CommandResult]]:
    """Section 2: :func:`dynaflow_policy.closed_loop.evaluate` of each controller on ``EXPERT_COMMANDS``."""
    results = {}
    for name, controller in controllers.items():
        t0 = time.perf_counter()
        results[name] = evaluate(controller, EXPERT_COMMANDS, episodes, seconds, seed)
        log(f"  closed loop {name}: {time.perf_counter() - t0:.0f} s")
    return results


def act_latency(controllers: dict[str, Controller], calls: int, warmup: int, seed: int) -> dict[str, dict[str, float]]:
    """name -> {"mean", "p99"}: seconds per ``act()`` call over ``calls`` timed calls in a closed loop."""
    latency = {}
    for name, controller in controllers.items():
        act_t, _ = time_controller(controller, calls, warmup, seed)
        latency[name] = {"mean": float(act_t.mean()), "p99": float(np.percentile(act_t, 99))}
    return latency


def section_open_loop(generators: dict[str, Generator], batch: dict[str, np.ndarray], normalizer: Normalizer,
                      seconds: float, starts: int) -> dict[str, dict[str, np.ndarray]]:
    """Section 3: chained plans with no feedback, executed in native MuJoCo.

    From each of the first ``starts`` held-out start states, every generator
    plans H steps, the next plan starts at the last planned state, until
    ``seconds`` of actions are planned; the chained actions are then executed.

    Returns:
      name -> ``{"t": (S+1,) s, "position": (S+1,) m, "state": (S+1,), "falls": (), "tracking_rmse": (3,)}``:
      time, distance between planned and executed base position, and normalised state distance,
      averaged over the starts; the fraction of starts whose executed motion fell
      (``envs.task.is_fallen``), and the executed motion's vx / vy / yaw-rate RMSE against the start's
      command (the paper's hardware setting: plans run blind), up to the fall.
    """
    steps = int(round(seconds / PHYSICS.ctrl_dt))
    sim = NativeGo1()
    scale = np.asarray(normalizer.std, np.float64)
    out = {}
    for name, generate in generators.items():
        pos, dist, falls, errors = [], [], [], []
        for i in range(min(starts, len(batch["states"]))):
            planned, actions = [batch["states"][i, 0].astype(np.float64)], []
            gait, phase0 = int(batch["gait"][i]), float(batch.get("phase", np.zeros(i + 1))[i])
            while len(actions) < steps:
                phase = float(advance_phase(phase0, gait, len(actions) * PHYSICS.ctrl_dt))
                X, U = generate(planned[-1], batch["command"][i], gait, phase)
                planned.extend(X[1:])
                actions.extend(U)
            planned, actions = np.stack(planned[:steps + 1]), np.stack(actions[:steps])
            executed = sim.rollout(planned[0], actions)
            pos.append(np.linalg.norm(executed[:, :3] - planned[:, :3], axis=1))
            dist.append(state_distance(planned, executed, scale))
            fallen = np.flatnonzero(is_fallen(executed[1:]))
            falls.append(fallen.size > 0)
            errors.append(tracking_errors(executed[1:fallen[0] + 1 if fallen.size else None],
                                          np.asarray(batch["command"][i], np.float64)))
        out[name] = {"t": np.arange(steps + 1) * PHYSICS.ctrl_dt, "position": np.mean(pos, axis=0),
                     "state": np.mean(dist, axis=0), "falls": np.mean(falls),
                     "tracking_rmse": np.sqrt(np.mean(np.concatenate(errors) ** 2, axis=0))}
    return out
