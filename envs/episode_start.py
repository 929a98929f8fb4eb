"""How an episode of the Gymnasium envs starts: the reset options and the randomised start state.

Shared by :class:`envs.gym_env.Go1GymEnv` and :class:`envs.vector_env.Go1VectorEnv`:
environment i of a vector env reset with seed s starts exactly where a
``Go1GymEnv`` reset with seed s + i starts (same draws, in the same order).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from envs import task
from envs.physics import ACTION_DIM, BASE_QUAT, JOINT_POS, PHYSICS, STATE_DIM, PhysicsConfig
from envs.task import COMMAND_DIM, CommandRanges

RESET_OPTIONS: tuple[str, ...] = ("command", "gait", "state")


def check_command(command, name: str) -> np.ndarray:
    """(3,) float32 command (vx m/s, vy m/s, yaw rate rad/s), or ValueError naming ``name``."""
    c = np.asarray(command, np.float64)
    if c.shape != (COMMAND_DIM,) or not np.all(np.isfinite(c)):
        raise ValueError(f"{name} must be {COMMAND_DIM} finite numbers (vx, vy, yaw rate), got {command!r}")
    return c.astype(np.float32)


def check_state(state, name: str) -> np.ndarray:
    """(37,) float64 state representable in float32, or ValueError naming ``name``."""
    x = np.asarray(state, np.float64)
    if x.shape != (STATE_DIM,):
        raise ValueError(f"{name} must have shape ({STATE_DIM},), got {x.shape}")
    if not np.all(np.abs(x) < np.finfo(np.float32).max):  # also rejects NaN
        raise ValueError(f"{name} must be finite (and representable in float32)")
    return x


@dataclasses.dataclass(frozen=True)
class StartOptions:
    """Validated reset options of one environment.

    Attributes:
      command: (3,) float32 fixed command, or None to draw one.
      gait: name in ``envs.task.GAITS``.
      state: (37,) float64 exact start state, or None to draw one.
    """

    command: np.ndarray | None = None
    gait: str = "trot"
    state: np.ndarray | None = None


def parse_options(options: Mapping[str, Any] | None) -> StartOptions:
    """Validates the reset options of one environment (``command``, ``gait``, ``state``).

    Raises:
      ValueError: an unknown option or a bad value, naming it.
    """
    options = dict(options or {})
    unknown = set(options) - set(RESET_OPTIONS)
    if unknown:
        raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'command', 'gait', 'state'")
    command = check_command(options["command"], "options['command']") if "command" in options else None
    gait = options.get("gait", "trot")
    task.gait_index(gait)
    state = check_state(options["state"], "options['state']") if "state" in options else None
    return StartOptions(command, gait, state)


def draw_start(rng: np.random.Generator, options: StartOptions, command_ranges: CommandRanges = CommandRanges(),
               reset_noise_scale: float = task.INIT_JOINT_NOISE, random_yaw: bool = True,
               config: PhysicsConfig = PHYSICS) -> tuple[np.ndarray, np.ndarray]:
    """Start state and command of one episode.

    Draws, in this order and only where ``options`` leaves them open: the
    command, uniform in ``command_ranges``; joint noise U(+-reset_noise_scale)
    rad on the home pose, clipped to the joint ranges; a heading uniform in
    [-pi, pi) if ``random_yaw``.

    Returns:
      (x (37,) float64, command (3,) float32).
    """
    command = options.command
    if command is None:
        command = rng.uniform(command_ranges.low, command_ranges.high)
    x = options.state
    if x is None:
        x = np.asarray(config.home_state, np.float64)
        x[JOINT_POS] = np.clip(x[JOINT_POS] + rng.uniform(-reset_noise_scale, reset_noise_scale, ACTION_DIM),
                               config.joint_lower, config.joint_upper)
        if random_yaw:
            yaw = rng.uniform(-np.pi, np.pi)
            x[BASE_QUAT] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
    return np.array(x, np.float64), np.asarray(command, np.float32)
