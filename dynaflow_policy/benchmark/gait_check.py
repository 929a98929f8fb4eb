"""The wide closed-loop check of a gait controller, used to choose between checkpoints.

The benchmark's kinematic section runs a few episodes per gait; between
neighbouring checkpoints of one run the falls move by several in 32, so a
choice needs more. Two parts, both from the env's resting start:

- :func:`held_out_spread`: per gait, ``commands`` distinct held-out commands of that gait
  x ``episodes`` episodes each, stepped together in a vector env
  (:func:`dynaflow_policy.closed_loop.run_episodes`): falls, contact-pattern score
  (:func:`envs.task.gait_sync`), feet in the air, speed against the commanded speed.
- :func:`sweep_falls`: per gait, every scenario of :data:`dynaflow_policy.benchmark.sweep.SWEEP`
  (stand, backward, sideways, turns, a changing command, shoves) x ``episodes`` seeds: falls.

``eval/gait_check.py`` is the command line.
"""

from __future__ import annotations

import gymnasium
import numpy as np

import envs
from dynaflow_policy.benchmark.sweep import SWEEP
from dynaflow_policy.closed_loop import BatchedController, Controller, Scenario, run_episode, run_episodes
from envs.physics import PHYSICS
from envs.task import body_linvel, gait_index, gait_sync


def episode_scores(runs: list[dict], gait: str) -> dict:
    """Scores of episodes of one gait (dicts of :func:`dynaflow_policy.closed_loop.run_episode`), over every
    step from the resting start (unlike ``closed_loop.command_result``, which skips the first second).

    Returns:
      ``{"episodes", "falls", "contact_pattern"`` (mean ``gait_sync`` over all steps), ``"feet_in_air"``
      (mean fraction of feet off the ground), ``"speed"`` (m/s, mean horizontal body speed)``}``.
    """
    contacts = np.concatenate([ep["contacts"] for ep in runs])  # (steps, 4)
    velocity = np.concatenate([body_linvel(ep["states"][1:])[:, :2] for ep in runs])  # (steps, 2)
    return {"episodes": len(runs), "falls": int(sum(bool(ep["fell"]) for ep in runs)),
            "contact_pattern": float(gait_sync(contacts, gait_index(gait)).mean()),
            "feet_in_air": float(1.0 - contacts.mean()),
            "speed": float(np.linalg.norm(velocity, axis=1).mean())}


def distinct_commands(batch: dict[str, np.ndarray], gait: str, commands: int) -> np.ndarray:
    """(n, 3) the first ``commands`` distinct commands of ``gait``'s windows in ``batch``, in window order
    (neighbouring windows often share one command segment); n < ``commands`` when the gait has fewer."""
    gait_commands = batch["command"][batch["gait"] == gait_index(gait)]  # (m, 3)
    _, first = np.unique(gait_commands, axis=0, return_index=True)
    return gait_commands[np.sort(first)][:commands]


def held_out_spread(policy: BatchedController, batch: dict[str, np.ndarray], gaits: tuple[str, ...], commands: int,
                    episodes: int, seconds: float, seed: int, num_envs: int = 4) -> dict[str, dict]:
    """gait -> :func:`episode_scores` over the gait's :func:`distinct_commands` x ``episodes`` seeds.

    Args:
      policy: a batched controller (``load_policy(...)`` of a DynaFlow checkpoint).
      batch: held-out windows, ``"gait"`` (B,) int and ``"command"`` (B, 3) (vx, vy, yaw rate).
      gaits: the gaits to run (those the policy knows).
      commands: distinct held-out commands per gait; episodes: seeds ``seed ..`` per command.

    Returns:
      gait -> scores plus ``"commands"`` (the commands run), ``"commanded_speed"`` (m/s, mean horizontal
      speed of the commands) and ``"falls_per_command"``; gaits without windows in ``batch`` are left out.
    """
    out = {}
    for gait in gaits:
        gait_commands = distinct_commands(batch, gait, commands)  # (n, 3)
        if not len(gait_commands):
            continue
        per_command = [run_episodes(policy, c, seconds, range(seed, seed + episodes), gait, num_envs=num_envs)
                       for c in gait_commands]
        out[gait] = episode_scores([ep for runs in per_command for ep in runs], gait)
        out[gait]["commands"] = gait_commands.tolist()
        out[gait]["commanded_speed"] = float(np.linalg.norm(gait_commands[:, :2], axis=1).mean())
        out[gait]["falls_per_command"] = [int(sum(bool(ep["fell"]) for ep in runs)) for runs in per_command]
    return out


def sweep_falls(policy: Controller, gaits: tuple[str, ...], episodes: int, seconds: float, seed: int,
                scenarios: dict[str, Scenario] = SWEEP) -> dict[str, dict[str, int]]:
    """gait -> scenario name -> falls in ``episodes`` episodes (seeds ``seed ..``) of ``seconds``."""
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(seconds / PHYSICS.ctrl_dt)))
    try:
        return {gait: {name: int(sum(bool(run_episode(env, policy, sc, seconds, seed + i, gait)["fell"])
                                     for i in range(episodes)))
                       for name, sc in scenarios.items()}
                for gait in gaits}
    finally:
        env.close()
