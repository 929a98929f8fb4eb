"""Recovery windows: a controller's own closed-loop states, each followed by the kinematic reference.

Start noise (``--start-noise``) teaches a kinematic-gait model to steer back to
the data from Gaussian perturbations of the data's states. The states a
controller actually reaches are different: slower than commanded, lower,
rolled (the pace), still standing in its first second. This module collects
them (a DAgger-style step, with the kinematic generator as the teacher):

1. run the controller closed loop from the env's resting start, per gait, under
   random commands of the kinematic data's ranges (``CommandRanges``);
2. at every ``stride``-th control step k, take the executed state x_k and the
   controller's gait clock phi_k (0 at the reset, ``envs.task.advance_phase`` per
   step: what the model was conditioned on there);
3. synthesise the kinematic reference of the same gait and command from gait
   phase phi_k, yaw and base x, y of x_k (``kinematic.synthesize_trajectory``),
   H + 1 states, and replace its row 0 by x_k.

Each window is stored as one trajectory of H + 1 states with its phase, so it
trains with the kinematic files as they are (``--dataset a.npz b.npz recovery.npz``):
the rollout starts from x_k and is scored against where the kinematic gait
would be over the next H steps (row 1 is the reference's, so a window asks for a correction that
one control step may not reach, as with start noise). Steps within ``drop_before_fall`` seconds of a
fall are left out: from there nothing reaches the reference. Neighbouring windows of one episode are
nearly alike, so each window stores its episode's id (``Dataset.episode``) and a run's held-out split
keeps whole episodes out of training. The reference uses the default ``KinematicGaitConfig``, the
shape of the kinematic files the recipes train on.

CLI::

    python -m dynaflow_policy.data.recovery --checkpoint checkpoints/dynaflow_go1_kinematic \\
        --out data/kinematic_recovery.npz
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from envs.physics import BASE_POS, BASE_QUAT, PHYSICS, STATE_DIM
from envs.task import GAIT_PERIODS, GAITS, CommandRanges, gait_index

from dynaflow_policy.data.kinematic import KinematicGaitConfig, synthesize_trajectory
from dynaflow_policy.data.schema import Dataset, DatasetMetadata
from dynaflow_policy.frames import yaw_of


def episode_phases(n_states: int, gait: str) -> np.ndarray:
    """(n_states,) the controller's gait clock at states 0..n_states-1 of an episode: k * ctrl_dt / period, wrapped."""
    return np.mod(np.arange(n_states) * PHYSICS.ctrl_dt / GAIT_PERIODS[gait_index(gait)], 1.0)


def recovery_windows(states: np.ndarray, gait: str, command: np.ndarray, horizon: int, steps: np.ndarray,
                     config: KinematicGaitConfig = KinematicGaitConfig()) -> dict[str, np.ndarray]:
    """The windows of one episode: executed state k, then the kinematic reference from its phase.

    Args:
      states: (T+1, 37) executed states of the episode (world frame).
      gait: the episode's gait (a name of ``envs.task.GAITS``).
      command: (3,) the episode's command (vx, vy, yaw rate).
      horizon: H.
      steps: (K,) indices into ``states`` of the windows' first states.
      config: the kinematic gait shape (that of the data the model trains on).

    Returns:
      ``states`` (K, H+1, 37), ``commands`` (K, H+1, 3), ``phase`` (K, H+1), all float32.
    """
    phases = episode_phases(len(states), gait)
    out_states = np.empty((len(steps), horizon + 1, STATE_DIM), np.float32)
    out_commands = np.empty((len(steps), horizon + 1, 3), np.float32)
    out_phase = np.empty((len(steps), horizon + 1), np.float32)
    cmd = np.asarray(command, np.float64).reshape(1, 3)
    for i, k in enumerate(steps):
        x0 = states[k]
        ref = synthesize_trajectory(gait, cmd, np.zeros(1), horizon + 1, config, phase0=float(phases[k]),
                                    yaw0=float(yaw_of(x0[BASE_QUAT])))
        window = ref["states"]
        window[:, BASE_POS.start:BASE_POS.start + 2] += x0[BASE_POS][:2]  # the reference starts at x_k's x, y
        window[0] = x0
        out_states[i] = window
        out_commands[i] = ref["commands"]
        out_phase[i] = ref["phase"]
    out_phase[out_phase >= 1.0] = 0.0  # float32 rounding of phases just below 1
    return {"states": out_states, "commands": out_commands, "phase": out_phase}


def kept_steps(n_states: int, fell: bool, stride: int, drop_before_fall: float) -> np.ndarray:
    """Indices of an episode's window starts: every ``stride``-th state, none within ``drop_before_fall`` s
    of a fall."""
    end = n_states - (int(round(drop_before_fall / PHYSICS.ctrl_dt)) if fell else 0)
    return np.arange(0, max(end, 0), stride)


@dataclasses.dataclass(frozen=True)
class Args:
    """Collect recovery windows of a kinematic-gait DynaFlow checkpoint."""

    checkpoint: str
    """The controller whose closed-loop states start the windows (a kinematic-gait DynaFlow checkpoint)."""
    out: str = "data/kinematic_recovery.npz"
    """Output .npz file (written atomically)."""
    commands_per_gait: int = 32
    """Random commands per gait, one episode each (from the env's resting start)."""
    seconds: float = 8.0
    """Episode length (s)."""
    stride: int = 1
    """Every stride-th executed state starts a window."""
    drop_before_fall: float = 1.0
    """Seconds before a fall whose states are left out."""
    gaits: tuple[str, ...] = GAITS
    """Gaits to run."""
    seed: int = 11
    """Seed of the commands, the env resets and the sampling noise (pick one the kinematic files did not use)."""
    command_ranges: CommandRanges = CommandRanges()
    """Uniform command ranges (the kinematic generator's default)."""

    def __post_init__(self):
        for name in ("commands_per_gait", "stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (np.isfinite(self.seconds) and self.seconds >= PHYSICS.ctrl_dt):
            raise ValueError(f"--seconds must be at least one control step ({PHYSICS.ctrl_dt} s), got {self.seconds}")
        if not (np.isfinite(self.drop_before_fall) and self.drop_before_fall >= 0):
            raise ValueError(f"--drop-before-fall must be a non-negative number of seconds, "
                             f"got {self.drop_before_fall}")
        if not self.gaits or any(g not in GAITS for g in self.gaits):
            raise ValueError(f"--gaits must name one or more of {GAITS}, got {self.gaits}")


def collect(args: Args) -> tuple[Dataset, dict[str, dict[str, float]]]:
    """Runs the episodes and builds the windows; returns the dataset and per-gait counts (episodes, falls, windows)."""
    import gymnasium

    import envs
    from dynaflow_policy import load_policy
    from dynaflow_policy.closed_loop import run_episode
    from dynaflow_policy.policy import DynaFlowPolicy

    policy = load_policy(args.checkpoint, seed=args.seed)
    if not isinstance(policy, DynaFlowPolicy) or not policy.flow.gait_clock:
        raise ValueError(f"--checkpoint {args.checkpoint}: recovery windows need a DynaFlow checkpoint conditioned "
                         f"on the gait clock (trained with --flow.gait-clock on kinematic gaits), got a "
                         f"{type(policy).__name__} without it")
    missing = [g for g in args.gaits if g not in policy.gaits]
    if missing:
        raise ValueError(f"--gaits {' '.join(missing)}: --checkpoint {args.checkpoint} was trained on "
                         f"{', '.join(policy.gaits)} only")
    horizon = policy.horizon
    rng = np.random.default_rng(args.seed)
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(args.seconds / PHYSICS.ctrl_dt)))
    parts, report = [], {}
    try:
        for gait in args.gaits:
            falls = windows = 0
            policy.gait = gait
            for j in range(args.commands_per_gait):
                command = rng.uniform(args.command_ranges.low, args.command_ranges.high)
                episode = run_episode(env, policy, command, args.seconds, seed=args.seed + j, gait=gait)
                steps = kept_steps(len(episode["states"]), bool(episode["fell"]), args.stride, args.drop_before_fall)
                part = recovery_windows(episode["states"], gait, command, horizon, steps)
                part["gait"] = np.full(len(steps), gait_index(gait), np.int64)
                part["episode"] = np.full(len(steps), len(parts), np.int64)
                parts.append(part)
                falls += int(episode["fell"])
                windows += len(steps)
            report[gait] = {"episodes": args.commands_per_gait, "falls": falls, "windows": windows}
    finally:
        env.close()
    if not sum(r["windows"] for r in report.values()):
        raise ValueError(f"no windows kept: every episode fell within --drop-before-fall {args.drop_before_fall} s "
                         f"of its start")
    joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    extra = {"generator": "dynaflow_policy.data.recovery", "checkpoint": os.fspath(args.checkpoint),
             "seed": args.seed, "seconds": args.seconds, "stride": args.stride,
             "commands_per_gait": args.commands_per_gait, "drop_before_fall": args.drop_before_fall,
             "command_ranges": dataclasses.asdict(args.command_ranges), "per_gait": report}
    dataset = Dataset(joined["states"], joined["commands"], joined["gait"],
                      DatasetMetadata.for_physics("kinematic", PHYSICS, extra), phase=joined["phase"],
                      episode=joined["episode"])
    return dataset, report


def main(args: Args) -> Dataset:
    from dynaflow_policy.data.schema import save_dataset

    t0 = time.perf_counter()
    dataset, report = collect(args)
    save_dataset(args.out, dataset)
    for gait, r in report.items():
        print(f"{gait}: {r['episodes']} episodes, {r['falls']} falls, {r['windows']} windows")
    print(f"wrote {args.out}: {dataset.n_trajectories} windows of {dataset.n_steps} states, "
          f"{os.path.getsize(args.out) / 2**20:.1f} MiB, in {time.perf_counter() - t0:.0f} s")
    return dataset


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Args))
