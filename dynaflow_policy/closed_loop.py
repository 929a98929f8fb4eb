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
  The state in which the robot fell is left out.
- ``mean_torque``: mean over steps and joints of |actuator torque| (N m),
  averaged over each step's substeps (``info["torque"]``).
- ``mean_power``: mean over steps of sum_j |torque_j * joint velocity_j| (W), substep
  averages (``info["power"]``); ``energy_per_meter``: its time integral over the
  length of the path the base walked (J/m; NaN for a command without translation,
  such as a turn in place).
- ``foot_slip``: mean horizontal speed (m/s) of feet in contact at both ends of a step.
- ``survival_seconds``: mean episode length (s).
- ``reached_half_command``: fraction of episodes whose mean velocity after the first
  ``settle_seconds``, projected on the command, ``mean(v . c) / |c|^2`` with v =
  (vx, vy, yaw rate) as in the RMSEs, is at least one half (NaN for the zero
  command). It tells a controller that tracks slowly from one that, in some
  episodes, never gets going from the resting start.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

import gymnasium
import numpy as np

import envs
from envs.physics import BASE_ANGVEL, BASE_POS, PHYSICS
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
    foot_slip: float
    survival_seconds: float
    reached_half_command: float


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
                seed: int, gait: str = "trot") -> dict[str, np.ndarray | bool]:
    """One episode of ``command`` and ``gait`` (a name of ``envs.task.GAITS``) from the env's reset with ``seed``.

    Returns:
      ``states`` (T+1, 37) including the start, ``actions`` (T, 12), ``torques`` (T, 12) N m and
      ``power`` (T,) W (substep averages, ``info["torque"]``, ``info["power"]``), ``contacts``
      (T, 4) bool, and ``fell``.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    obs, _ = env.reset(seed=seed, options={"command": tuple(command), "gait": gait})
    controller.reset()
    unwrapped = env.unwrapped
    states, actions, torques, power, contacts = [unwrapped.state], [], [], [], []
    fell = False
    for _ in range(int(round(seconds / PHYSICS.ctrl_dt))):
        action = controller.act(obs)
        obs, _, terminated, _, info = env.step(action)
        states.append(unwrapped.state)
        actions.append(np.asarray(action, np.float64))
        torques.append(info["torque"])
        power.append(info["power"])
        contacts.append(info["contact"])
        if terminated:
            fell = True
            break
    return {"states": np.stack(states), "actions": np.stack(actions), "torques": np.stack(torques),
            "power": np.array(power), "contacts": np.stack(contacts), "fell": fell}


def foot_slip(states: np.ndarray, contacts: np.ndarray) -> np.ndarray:
    """Horizontal speeds (m/s) of feet in contact at both ends of a step.

    Args:
      states: (T+1, 37) states; contacts: (T, 4) contacts after each step.

    Returns:
      (n,) speeds, one per (step, foot) pair in contact before and after the step.
    """
    from dynaflow_policy.data.kinematic import foot_positions

    feet = foot_positions(states[1:])[..., :2]  # (T, 4, 2)
    speed = np.linalg.norm(np.diff(feet, axis=0), axis=-1) / PHYSICS.ctrl_dt  # (T-1, 4)
    return speed[contacts[:-1] & contacts[1:]]


def evaluate_command(controller: Controller, command: Sequence[float], episodes: int = 20, seconds: float = 10.0,
                     seed: int = 0, settle_seconds: float = 1.0) -> CommandResult:
    """Runs ``episodes`` episodes (seeds ``seed .. seed + episodes - 1``) of one command; see the module docstring."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not 0 <= settle_seconds < seconds:
        raise ValueError(f"settle_seconds must be in [0, seconds = {seconds}), got {settle_seconds}")
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(seconds / PHYSICS.ctrl_dt)))
    settle = int(round(settle_seconds / PHYSICS.ctrl_dt))
    c = np.asarray(command, np.float64)
    errors, torque, power, slip, falls, steps, path, progress = [], [], [], [], 0, 0, 0.0, []
    try:
        for i in range(episodes):
            ep = run_episode(env, controller, command, seconds, seed + i)
            X = ep["states"][1:]  # (T, 37)
            tracked = X[:-1] if ep["fell"] else X  # the fallen state measures the fall, not the tracking
            errors.append(tracking_errors(tracked, c)[settle:])
            if np.any(c):  # an episode that fell before settling made no progress
                progress.append(float(np.mean((errors[-1] + c) @ c)) / float(c @ c) if len(errors[-1]) else 0.0)
            torque.append(np.abs(ep["torques"]).mean(axis=1))
            power.append(ep["power"])
            slip.append(foot_slip(ep["states"], ep["contacts"]))
            falls += int(ep["fell"])
            steps += len(X)
            path += float(np.linalg.norm(np.diff(ep["states"][:, BASE_POS][:, :2], axis=0), axis=1).sum())
    finally:
        env.close()
    err = np.concatenate(errors)
    rmse = np.sqrt(np.mean(err**2, axis=0)) if len(err) else np.full(3, np.nan)
    sim_seconds = steps * PHYSICS.ctrl_dt
    power_all = np.concatenate(power)
    slip_all = np.concatenate(slip)
    return CommandResult(
        command=tuple(float(x) for x in c), episodes=episodes, falls_per_episode=falls / episodes,
        falls_per_minute=falls / (sim_seconds / 60.0), vx_rmse=float(rmse[0]), vy_rmse=float(rmse[1]),
        yaw_rate_rmse=float(rmse[2]), mean_torque=float(np.concatenate(torque).mean()),
        mean_power=float(power_all.mean()),
        energy_per_meter=(float(power_all.sum() * PHYSICS.ctrl_dt / path)
                          if np.linalg.norm(c[:2]) > 0.05 and path > 0.05 else float("nan")),
        foot_slip=float(slip_all.mean()) if len(slip_all) else float("nan"),
        survival_seconds=sim_seconds / episodes,
        reached_half_command=float(np.mean(np.array(progress) >= 0.5)) if progress else float("nan"))


def evaluate(controller: Controller, commands: dict[str, Sequence[float]] = EXPERT_COMMANDS, episodes: int = 20,
             seconds: float = 10.0, seed: int = 0) -> dict[str, CommandResult]:
    """:func:`evaluate_command` for each named command (same seeds for each)."""
    return {name: evaluate_command(controller, c, episodes, seconds, seed) for name, c in commands.items()}


def markdown_table(results: dict[str, CommandResult]) -> str:
    """The results as a Markdown table, one row per command."""
    lines = ["| command (vx, vy, yaw rate) | falls / episode | falls / min | survival (s) | vx RMSE (m/s) "
             "| vy RMSE (m/s) | yaw-rate RMSE (rad/s) | mean torque (N m) | mean power (W) | energy (J/m) "
             "| foot slip (m/s) | reached half the command |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} {r.command} | {r.falls_per_episode:.2f} | {r.falls_per_minute:.2f} | "
                     f"{r.survival_seconds:.1f} | {r.vx_rmse:.3f} | {r.vy_rmse:.3f} | {r.yaw_rate_rmse:.3f} | "
                     f"{r.mean_torque:.2f} | {r.mean_power:.1f} | {r.energy_per_meter:.0f} | {r.foot_slip:.3f} | "
                     f"{r.reached_half_command:.2f} |")
    return "\n".join(lines)
