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
from its first state and command) against the demonstrator's actions, which
only this measurement reads (they are held out of training). A controller that
answers command steps as its demonstrator does scores the same on both.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dynaflow_policy.data.schema import Dataset


@dataclasses.dataclass(frozen=True)
class StepWindows:
    """Window starts (trajectory, step) at command steps and, ``hold_offset`` steps later, with the command held.

    Attributes:
      at_step: (K, 2) int64 (trajectory, step): the command at ``step`` differs from the one before, and holds
        over the window's H + 1 states.
      held: (K', 2) int64: ``hold_offset`` steps after each of those whose command still holds until the end of
        that window (K' <= K).
    """

    at_step: np.ndarray
    held: np.ndarray


def step_windows(dataset: Dataset, horizon: int, hold_offset: int = 40) -> StepWindows:
    """The windows of :class:`StepWindows` in ``dataset``.

    Raises:
      ValueError: ``hold_offset`` < 1, or no command step with H + 1 held states after it (naming the file's
        trajectories and steps).
    """
    if hold_offset < 1:
        raise ValueError(f"hold_offset must be >= 1, got {hold_offset}")
    c = dataset.commands  # (N, T, 3)
    changed = np.any(c[:, 1:] != c[:, :-1], axis=-1)  # (N, T-1): the command at step k+1 is new
    # changes[n, k] = number of changes among steps 1..k, so steps a..b hold one command iff changes equal
    changes = np.concatenate([np.zeros((len(c), 1), np.int64), np.cumsum(changed, axis=1)], axis=1)  # (N, T)
    at, held = [], []
    for n, k in zip(*np.nonzero(changed)):
        s = k + 1
        if s + horizon >= dataset.n_steps or changes[n, s + horizon] != changes[n, s]:
            continue
        at.append((n, s))
        end = s + hold_offset + horizon
        if end < dataset.n_steps and changes[n, end] == changes[n, s]:
            held.append((n, s + hold_offset))
    if not at:
        raise ValueError(f"no command step with {horizon + 1} held states after it in {dataset.n_trajectories} "
                         f"trajectories of {dataset.n_steps} states: use demonstrations whose command jumps "
                         "(the expert preset's steps.npz)")
    return StepWindows(np.asarray(at, np.int64).reshape(-1, 2), np.asarray(held, np.int64).reshape(-1, 2))


def plan_rmse(policy, dataset: Dataset, starts: np.ndarray, seed: int = 0) -> np.ndarray:
    """(H,) RMSE over the windows and the 12 joints of each planned action against the demonstrator's.

    Args:
      policy: a controller with ``plan(x (K, 37), command (K, 3), gait (K,)) -> (K, H, 12)`` actions and
        ``reset(seed=...)`` (:class:`dynaflow_policy.policy.DynaFlowPolicy`).
      dataset: demonstrations with expert actions.
      starts: (K, 2) (trajectory, step) window starts.
      seed: the sampling noise.
    """
    if dataset.expert_actions is None:
        raise ValueError("the demonstrations hold no expert actions to measure against (collected data keeps "
                         "them; kinematic and DAgger files have none)")
    n, s = starts[:, 0], starts[:, 1]
    policy.reset(seed=seed)
    plans = policy.plan(dataset.states[n, s], dataset.commands[n, s], dataset.gait[n])  # (K, H, 12)
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
