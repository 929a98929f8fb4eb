"""Closed-loop evaluation in the Gymnasium env: the same episodes, commands and metrics for every controller.

A controller is anything with ``act(obs (44,)) -> action (12,)`` and
``reset()`` (the PPO expert, :class:`dynaflow_policy.DynaFlowPolicy`, ...).
Each episode resets the env with a fixed command and a seed (the seed fixes
the initial joint noise and heading), runs ``seconds`` of control, and stops
early on a fall.

Metrics of one command (:class:`CommandResult`), over all episodes:

- ``falls_per_episode``: fraction of episodes that ended in a fall (or a physics blow-up);
  ``falls_per_minute``: falls per minute of simulated time.
- ``vx_rmse``, ``vy_rmse`` (m/s), ``yaw_rate_rmse`` (rad/s): RMSE between the
  command and the body-frame base velocity (yaw rate: body z angular velocity)
  over every control step after the first ``settle_seconds`` of each episode
  (the robot starts from rest, so the first second measures acceleration, not tracking).
- ``mean_torque``: mean over steps and joints of |servo torque| (N m), ``info["torque"]``.
- ``mean_power``: mean over steps of sum_j |torque_j * joint velocity_j| (W);
  ``energy_per_meter``: its time integral over the distance walked (J/m; NaN for a command without
  translation, such as a turn in place).
- ``survival_seconds``: mean episode length (s).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

import gymnasium
import numpy as np

import envs
from envs.physics import BASE_ANGVEL, BASE_POS, JOINT_VEL, PHYSICS
from envs.task import body_linvel

EXPERT_COMMANDS: dict[str, tuple[float, float, float]] = {
    "vx 0.3": (0.3, 0.0, 0.0),
    "vx 0.6": (0.6, 0.0, 0.0),
    "vx 1.0": (1.0, 0.0, 0.0),
    "turn 0.8": (0.0, 0.0, 0.8),
}
"""The commands of the expert evaluation (issue 4): three forward speeds and a turn in place."""


class Controller(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """Metrics of one command over ``episodes`` episodes (see the module docstring)."""

    command: tuple[float, float, float]
    episodes: int
    falls_per_episode: float
    falls_per_minute: float
    vx_rmse: float
    vy_rmse: float
    yaw_rate_rmse: float
    mean_torque: float
    mean_power: float
    energy_per_meter: float
    survival_seconds: float


def tracking_errors(states: np.ndarray, commands: np.ndarray) -> np.ndarray:
    """Body-frame (vx, vy, yaw rate) of each state minus its command.

    Args:
      states: (T, 37) states; commands: (T, 3) or (3,) commands.

    Returns:
      (T, 3) errors (m/s, m/s, rad/s).
    """
    tracked = np.concatenate([body_linvel(states)[:, :2], states[:, BASE_ANGVEL][:, 2:]], axis=1)  # (T, 3)
    return tracked - commands


def run_episode(env: gymnasium.Env, controller: Controller, command: Sequence[float], seconds: float,
                seed: int) -> dict[str, np.ndarray | bool]:
    """One episode; returns ``states`` (T+1, 37), ``actions`` (T, 12), ``torques`` (T, 12) and ``fell``."""
    obs, _ = env.reset(seed=seed, options={"command": tuple(command)})
    controller.reset()
    unwrapped = env.unwrapped
    states, actions, torques = [unwrapped.state], [], []
    fell = False
    for _ in range(int(round(seconds / PHYSICS.ctrl_dt))):
        action = controller.act(obs)
        obs, _, terminated, _, info = env.step(action)
        states.append(unwrapped.state)
        actions.append(np.asarray(action, np.float64))
        torques.append(info["torque"])
        if terminated:
            fell = True
            break
    return {"states": np.stack(states), "actions": np.stack(actions), "torques": np.stack(torques), "fell": fell}


def evaluate_command(controller: Controller, command: Sequence[float], episodes: int = 20, seconds: float = 10.0,
                     seed: int = 0, settle_seconds: float = 1.0) -> CommandResult:
    """Runs ``episodes`` episodes (seeds ``seed .. seed + episodes - 1``) of one command; see the module docstring."""
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(seconds / PHYSICS.ctrl_dt)))
    settle = int(round(settle_seconds / PHYSICS.ctrl_dt))
    c = np.asarray(command, np.float64)
    errors, torque, power, falls, steps, distance = [], [], [], 0, 0, 0.0
    try:
        for i in range(episodes):
            ep = run_episode(env, controller, command, seconds, seed + i)
            X, tau = ep["states"][1:], ep["torques"]  # (T, 37), (T, 12)
            errors.append(tracking_errors(X, c)[settle:])
            torque.append(np.abs(tau).mean(axis=1))
            power.append(np.abs(tau * X[:, JOINT_VEL]).sum(axis=1))
            falls += int(ep["fell"])
            steps += len(X)
            distance += float(np.linalg.norm(ep["states"][-1, BASE_POS][:2] - ep["states"][0, BASE_POS][:2]))
    finally:
        env.close()
    err = np.concatenate(errors) if errors else np.zeros((0, 3))
    rmse = np.sqrt(np.mean(err**2, axis=0)) if len(err) else np.full(3, np.nan)
    sim_seconds = steps * PHYSICS.ctrl_dt
    power_all = np.concatenate(power)
    return CommandResult(
        command=tuple(float(x) for x in c), episodes=episodes, falls_per_episode=falls / episodes,
        falls_per_minute=falls / (sim_seconds / 60.0), vx_rmse=float(rmse[0]), vy_rmse=float(rmse[1]),
        yaw_rate_rmse=float(rmse[2]), mean_torque=float(np.concatenate(torque).mean()),
        mean_power=float(power_all.mean()),
        energy_per_meter=(float(power_all.sum() * PHYSICS.ctrl_dt / distance)
                          if np.linalg.norm(c[:2]) > 0.05 and distance > 0.05 else float("nan")),
        survival_seconds=sim_seconds / episodes)


def evaluate(controller: Controller, commands: dict[str, Sequence[float]] = EXPERT_COMMANDS, episodes: int = 20,
             seconds: float = 10.0, seed: int = 0) -> dict[str, CommandResult]:
    """:func:`evaluate_command` for each named command (same seeds for each)."""
    return {name: evaluate_command(controller, c, episodes, seconds, seed) for name, c in commands.items()}


def markdown_table(results: dict[str, CommandResult]) -> str:
    """The results as a Markdown table, one row per command."""
    lines = ["| command (vx, vy, yaw rate) | falls / episode | vx RMSE (m/s) | vy RMSE (m/s) | yaw-rate RMSE (rad/s) "
             "| mean torque (N m) | mean power (W) | energy (J/m) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} {r.command} | {r.falls_per_episode:.2f} | {r.vx_rmse:.3f} | {r.vy_rmse:.3f} | "
                     f"{r.yaw_rate_rmse:.3f} | {r.mean_torque:.2f} | {r.mean_power:.1f} | {r.energy_per_meter:.0f} |")
    return "\n".join(lines)
