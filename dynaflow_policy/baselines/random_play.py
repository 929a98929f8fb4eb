"""Random play: the robot's own open-loop transitions under smooth random actions, for the inverse dynamics.

Each segment starts from a given state (in the baseline: states of the
demonstrations, which hold no actions, so that play covers the states the
planner visits) and applies ``steps`` actions of an AR(1) process in native
MuJoCo (:meth:`envs.native.NativeGo1.rollout`)::

    u_0     = clip(e_0, -1, 1)                                     e_0 ~ N(0, action_std^2)
    u_k     = clip(a u_{k-1} + sqrt(1 - a^2) e_k, -1, 1)           e_k ~ N(0, action_std^2), a = smoothing

(before clipping the process is stationary with standard deviation
``action_std``). A segment in which the robot falls (:func:`envs.task.is_fallen`
at any state) or the physics diverges (:attr:`envs.native.NativeGo1.diverged`)
is marked not ok; its states are whatever the simulator produced and must not
be used. Segment n draws its noise from ``np.random.default_rng((seed, n))``,
so the result depends on the seed and the start states only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from envs.native import NativeGo1
from envs.physics import ACTION_DIM, PHYSICS, STATE_DIM, PhysicsConfig
from envs.task import is_fallen


@dataclasses.dataclass(frozen=True)
class RandomPlayConfig:
    """How much random play the baseline collects, and how wild it is."""

    segments: int = 2048
    """Segments (start states drawn uniformly from the training windows' first states)."""
    steps: int = 50
    """Control steps per segment (50 = 1 s)."""
    action_std: float = 0.4
    """Standard deviation of the AR(1) actions before clipping to [-1, 1] (1 = 0.5 rad of servo target)."""
    smoothing: float = 0.8
    """AR(1) coefficient in [0, 1): correlation of consecutive actions (0 = white noise)."""
    held_out_fraction: float = 0.1
    """Fraction of the ok segments held out to measure the inverse dynamics' action RMSE."""

    def __post_init__(self) -> None:
        for name in ("segments", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RandomPlayConfig.{name} must be a positive int, got {value!r}")
        if not self.action_std > 0:
            raise ValueError(f"RandomPlayConfig.action_std must be positive, got {self.action_std}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"RandomPlayConfig.smoothing must be in [0, 1), got {self.smoothing}")
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ValueError(f"RandomPlayConfig.held_out_fraction must be in (0, 1), got {self.held_out_fraction}")


def smooth_random_actions(rng: np.random.Generator, steps: int, action_std: float, smoothing: float) -> np.ndarray:
    """(steps, 12) float32 AR(1) actions clipped to [-1, 1] (see the module docstring)."""
    e = action_std * rng.standard_normal((steps, ACTION_DIM))  # (T, 12)
    u = np.empty((steps, ACTION_DIM))
    u[0] = e[0]
    innovation = np.sqrt(1.0 - smoothing**2)
    for k in range(1, steps):
        u[k] = smoothing * u[k - 1] + innovation * e[k]
    return np.clip(u, -1.0, 1.0).astype(np.float32)


def random_play(start_states: np.ndarray, steps: int, action_std: float, smoothing: float, seed: int,
                physics: PhysicsConfig = PHYSICS) -> dict[str, np.ndarray]:
    """Open-loop segments of smooth random actions from the given start states, in native MuJoCo.

    The start states are rounded to float32 first, so that replaying
    ``actions[n]`` from ``states[n, 0]`` with :meth:`NativeGo1.rollout` reproduces
    ``states[n]`` exactly (after rounding to float32).

    Args:
      start_states: (N, 37) world-frame states (units of ``envs.physics``).
      steps: T, actions per segment.
      action_std: standard deviation of the actions before clipping.
      smoothing: AR(1) coefficient in [0, 1).
      seed: seed of the actions.
      physics: the physics to play in.

    Returns:
      ``states`` (N, T+1, 37) float32, ``states[:, 0]`` the start states; ``actions``
      (N, T, 12) float32 in [-1, 1], ``actions[:, k]`` applied at ``states[:, k]``;
      ``ok`` (N,) bool, False where the robot fell or the physics diverged.
    """
    x0 = np.asarray(start_states, np.float32)
    if x0.ndim != 2 or x0.shape[1] != STATE_DIM:
        raise ValueError(f"start_states must have shape (N, {STATE_DIM}), got {x0.shape}")
    if not np.all(np.isfinite(x0)):
        raise ValueError("start_states must be finite")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    n = x0.shape[0]
    sim = NativeGo1(physics)
    states = np.empty((n, steps + 1, STATE_DIM), np.float32)
    actions = np.empty((n, steps, ACTION_DIM), np.float32)
    ok = np.empty(n, bool)
    for i in range(n):
        actions[i] = smooth_random_actions(np.random.default_rng((seed, i)), steps, action_std, smoothing)
        X = sim.rollout(x0[i], actions[i])  # (T+1, 37) float64
        ok[i] = not sim.diverged and np.all(np.isfinite(X)) and not np.any(is_fallen(X))
        states[i] = X
    return {"states": states, "actions": actions, "ok": ok}
