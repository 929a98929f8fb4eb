"""How a DynaFlow controller answers a command step, offline.

A joystick moved mid-stride asks for motion the robot is not making yet: the
command is far from the current velocity. Held-command demonstrations have
few such states (the robot already walks at its command), so a model can
track held commands well and still answer a new one slowly. This module
measures that directly, from demonstrations whose command jumps
(``python -m dynaflow_policy.data.collect --preset expert`` writes
``data/expert/steps.npz``: a new command every 1.5 s, in one control step):

- **at a command step**: windows that start where the command has just jumped;
- **command held**: windows of the same trajectories ``hold_offset`` steps later,
  when the demonstrator has caught up.

For each, the RMSE of the controller's planned actions (one plan per window,
from its first state and command) against the demonstrator's actions (training
never reads them, but a run trained on the file fitted labels close to them:
use the trajectories it held out, :func:`untrained_trajectories`). A controller
that answers command steps as its demonstrator does scores the same on both.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

from dynaflow_policy.data.schema import Dataset
from dynaflow_policy.data.split import TrainingSplit
from dynaflow_policy.data.windows import command_changes, split_trajectories


@dataclasses.dataclass(frozen=True)
class StepWindows:
    """Paired window starts: at command steps, and ``hold_offset`` steps after each, with the command held.

    Attributes:
      at_step: (K, 2) int64 (trajectory, step): the command at ``step`` differs from the one before, and holds
        over the window's H + 1 states and on to the end of the paired held window.
      held: (K, 2) int64: row k is ``at_step[k]`` moved ``hold_offset`` steps on.
    """

    at_step: np.ndarray
    held: np.ndarray


def step_windows(dataset: Dataset, horizon: int, hold_offset: int = 40,
                 trajectories: np.ndarray | None = None) -> StepWindows:
    """The windows of :class:`StepWindows` in ``dataset``, in ``trajectories`` (default: all).

    Raises:
      ValueError: ``hold_offset`` < 1, or no command step that holds for ``hold_offset`` + H + 1 states (naming
        both numbers).
    """
    if hold_offset < 1:
        raise ValueError(f"hold_offset must be >= 1, got {hold_offset}")
    changes = command_changes(dataset.commands)  # (N, T)
    keep = np.zeros(dataset.n_trajectories, bool)
    keep[np.arange(dataset.n_trajectories) if trajectories is None else trajectories] = True
    n, s = np.nonzero(np.diff(changes, axis=1) > 0)  # the command at step s + 1 is new
    s = s + 1
    end = s + hold_offset + horizon  # the last state of the held window
    ok = keep[n] & (end < dataset.n_steps)
    n, s, end = n[ok], s[ok], end[ok]
    ok = changes[n, end] == changes[n, s]
    if not ok.any():
        raise ValueError(f"no command step in {keep.sum()} trajectories of {dataset.n_steps} states holds its "
                         f"command for hold_offset + H + 1 = {hold_offset + horizon + 1} states: use demonstrations "
                         "whose command jumps and then holds (the expert preset's steps.npz), or a smaller "
                         "hold_offset")
    at = np.stack([n[ok], s[ok]], axis=1).astype(np.int64)
    return StepWindows(at, at + np.array([0, hold_offset]))


def untrained_trajectories(dataset: Dataset, data_path: str | os.PathLike,
                           splits: Sequence[TrainingSplit]) -> tuple[np.ndarray, str]:
    """The trajectories of the file that none of the runs trained on, and that rule in words.

    A run that trained on a file of this name (``TrainingSplit.datasets``) leaves only its held-out
    trajectories (``split_trajectories`` with its fraction and seed); a run that did not leaves all.
    """
    name = os.path.basename(os.fspath(data_path))
    keep = np.ones(dataset.n_trajectories, bool)
    trained = [sp for sp in splits if name in sp.datasets]
    for sp in trained:
        held = np.zeros(dataset.n_trajectories, bool)
        held[split_trajectories(dataset.gait, sp.held_out_fraction, sp.seed, dataset.episode)[1]] = True
        keep &= held
    rule = (f"the trajectories that the {len(trained)} controllers trained on {name} held out" if trained
            else "every trajectory (no controller trained on the file)")
    return np.flatnonzero(keep), rule


def plan_rmse(policy, dataset: Dataset, starts: np.ndarray, seed: int = 0) -> np.ndarray:
    """(H,) RMSE over the windows and the 12 joints of each planned action against the demonstrator's.

    Args:
      policy: a controller with ``plan(x (K, 37), command (K, 3), gait (K,), phase (K,) or None) -> (K, H, 12)``
        actions and ``reset(seed=...)`` (:class:`dynaflow_policy.policy.DynaFlowPolicy`).
      dataset: demonstrations with expert actions (and the gait phase, for a model conditioned on it).
      starts: (K, 2) (trajectory, step) window starts, K >= 1.
      seed: the sampling noise.

    Raises:
      ValueError: no expert actions in the dataset, or no windows.
    """
    if dataset.expert_actions is None:
        raise ValueError("the demonstrations hold no expert actions to measure against (collected data keeps "
                         "them; kinematic and DAgger files have none)")
    if len(starts) == 0:
        raise ValueError("no windows to measure")
    n, s = starts[:, 0], starts[:, 1]
    policy.reset(seed=seed)
    phase = None if dataset.phase is None else dataset.phase[n, s]
    plans = policy.plan(dataset.states[n, s], dataset.commands[n, s], dataset.gait[n], phase)  # (K, H, 12)
    horizon = plans.shape[1]
    expert = dataset.expert_actions[n[:, None], s[:, None] + np.arange(horizon)]  # (K, H, 12)
    return np.sqrt(np.mean((plans - expert) ** 2, axis=(0, 2)))


def markdown(results: dict[str, dict[str, np.ndarray]], windows: dict[str, int], execute_steps: dict[str, int]) -> str:
    """Table: per controller and window kind, the first action's RMSE, the executed actions' and the plan's."""
    lines = ["| controller | windows | first action | executed actions | whole plan |", "|---|---|---|---|---|"]
    for name, by_kind in results.items():
        for kind, rmse in by_kind.items():
            k = execute_steps[name]
            lines.append(f"| {name} | {kind} ({windows[kind]}) | {rmse[0]:.3f} | {np.sqrt(np.mean(rmse[:k] ** 2)):.3f} "
                         f"({k}) | {np.sqrt(np.mean(rmse ** 2)):.3f} |")
    return "\n".join(lines)
