"""Section 4 of the benchmark: DynaFlow trained on kinematic gaits, offline and in closed loop.

Offline: the SAE of the kinematic data (actions fitted per transition, an
upper bound) against the SAE of DynaFlow's output on held-out windows.
Closed loop, per gait of those windows: the contact-pattern score
(:func:`envs.task.gait_sync`) of the reference windows and of the executed
steps, feet in the air, body speed, falls.
"""

from __future__ import annotations

import gymnasium
import numpy as np

import envs
from dynaflow_policy.benchmark.four_gaits import TIMELINE_SECONDS
from dynaflow_policy.benchmark.gait_check import distinct_commands, episode_scores
from dynaflow_policy.benchmark.methods import dynaflow_generator
from dynaflow_policy.benchmark.sections import generate_windows
from dynaflow_policy.closed_loop import Controller, run_episode
from dynaflow_policy.data.split import held_out_windows_for, training_split
from dynaflow_policy.loading import load_policy
from dynaflow_policy.metrics import sae_fitted_native, sae_native
from envs.kinematics import foot_positions
from envs.physics import FOOT_CONTACT_HEIGHT
from envs.task import GAITS, gait_sync


def gait_scores(policy: Controller, batch: dict[str, np.ndarray], X_ref: np.ndarray, episodes: int, seconds: float,
                seed: int) -> dict[str, dict]:
    """gait name -> scores of the reference windows of that gait and of ``policy``'s episodes under their command.

    Each gait present in ``batch`` runs ``episodes`` episodes (seeds ``seed ..``) of
    ``seconds`` from the env's resting start; episode i is commanded with the gait's i-th distinct
    command (:func:`distinct_commands`, cycling), so the episodes spread over the gait's held-out commands.

    Returns:
      gait -> ``{"reference", "executed"}`` (mean ``gait_sync``), ``"reference_feet_in_air"``,
      ``"feet_in_air"`` (mean fraction of feet off the ground), ``"speed"`` (m/s, mean horizontal),
      ``"commanded_speed"`` (m/s, mean of the episodes' commanded horizontal speeds),
      ``"commands"`` (the distinct commands run, (vx, vy, yaw rate) each), ``"episodes"``, ``"falls"``,
      ``"falls_per_minute"``, ``"survival_seconds"``, and
      ``"timeline"``: {"reference": the first window's foot contacts, "executed": the first episode's first
      ``TIMELINE_SECONDS``}, lists of (FR, FL, RR, RL) 0/1 per control step.
    """
    ctrl_dt = envs.PHYSICS.ctrl_dt
    timeline_steps = int(round(TIMELINE_SECONDS / ctrl_dt))
    gaits = {}
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(seconds / ctrl_dt)))
    for g, gait in enumerate(GAITS):
        sel = batch["gait"] == g
        if not np.any(sel):
            continue
        ref_contact = foot_positions(X_ref[sel])[..., 2] < FOOT_CONTACT_HEIGHT  # (n, H+1, 4)
        commands = distinct_commands(batch, gait, episodes)  # (n, 3), n <= episodes
        episode_commands = commands[np.arange(episodes) % len(commands)]  # (episodes, 3)
        runs = [run_episode(env, policy, c, seconds, seed + i, gait) for i, c in enumerate(episode_commands)]
        steps = sum(len(ep["contacts"]) for ep in runs)
        scores = episode_scores(runs, gait)
        gaits[gait] = {"reference": float(gait_sync(ref_contact, g).mean()),
                       "executed": scores["contact_pattern"],
                       "reference_feet_in_air": float(1.0 - ref_contact.mean()),
                       "feet_in_air": scores["feet_in_air"],
                       "speed": scores["speed"],
                       "commanded_speed": float(np.linalg.norm(episode_commands[:, :2], axis=1).mean()),
                       "commands": commands.tolist(), "episodes": episodes, "falls": scores["falls"],
                       "falls_per_minute": scores["falls"] / (steps * ctrl_dt / 60.0),
                       "survival_seconds": steps * ctrl_dt / episodes,
                       "timeline": {"reference": ref_contact[0].astype(int).tolist(),
                                    "executed": runs[0]["contacts"][:timeline_steps].astype(int).tolist()}}
    env.close()
    return gaits


def section_kinematic(checkpoint: str, data_path: str, windows: int, episodes: int, seconds: float,
                      seed: int, command_windows: int) -> dict:
    """Section 4 for a DynaFlow checkpoint trained on kinematic gaits and a kinematic data file.

    The SAEs use ``windows`` held-out windows (the data's needs a costly action fit); the closed loop
    draws its commands and reference contact patterns from ``command_windows`` held-out windows.

    Returns:
      ``{"data_sae", "dynaflow_sae", "gaits": gait_scores(...), "windows": number of held-out windows}``.
    """
    split = training_split(checkpoint)
    pool = held_out_windows_for([split], data_path, command_windows, seed).batch
    held = held_out_windows_for([split], data_path, windows, seed)
    X_ref = held.batch["states"].astype(np.float64)  # (B, H+1, 37)
    data_sae, _ = sae_fitted_native(X_ref, held.normalizer)
    policy = load_policy(checkpoint, seed=seed)
    X, U = generate_windows(dynaflow_generator(policy), held.batch, X_ref)
    return {"data_sae": data_sae, "dynaflow_sae": sae_native(X, U, held.normalizer),
            "gaits": gait_scores(policy, pool, pool["states"].astype(np.float64), episodes, seconds, seed),
            "windows": len(X_ref)}
