"""Teacher rollouts from a controller's own states: the PPO expert queried where DynaFlow goes.

The expert demonstrations start from the expert's own states. A controller trained
on them drifts to states the expert never visits (slower than commanded, lagging
after a command change, after a shove), and from there it has no data showing the
way back. This module collects that data (DAgger, with the demonstrator as the
teacher; it assumes the demonstrator can be run, as the PPO experts here can):

1. run the controller closed loop from the env's resting start under a random
   command schedule (``hold_seconds`` per command, drawn like the demonstrations'
   knots within the ranges the teacher was trained on, step changes between them)
   and ``pushes_per_episode`` random shoves;
2. every ``start_every`` seconds take the executed state x_k and roll the expert out
   from it for ``rollout_seconds`` under the commands the episode had from step k
   on, in native MuJoCo (``collect.rollout_expert``);
3. keep each rollout in which the expert does not fall as one trajectory, with its
   episode id (``Dataset.episode``: a run's split keeps an episode's rollouts together).

The stored data is state-only like the demonstrations: ``expert_actions`` are held
out for measuring action recovery, and training uses actions fitted to the states
(``python -m dynaflow_policy.data.labels``). A clocked expert (the four-gait one)
restarts its gait clock at x_k, as it does at an env reset.

CLI::

    python -m dynaflow_policy.data.dagger --checkpoint checkpoints/dynaflow_go1_expert \\
        --out data/expert/dagger.npz
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from envs.physics import PHYSICS
from envs.task import GAITS, CommandRanges, gait_index

from dynaflow_policy.closed_loop import Scenario
from dynaflow_policy.data.collect import DEFAULT_EXPERT, SOURCE, CollectConfig, command_knots, rollout_expert
from dynaflow_policy.data.schema import Dataset, DatasetMetadata


def random_scenario(rng: np.random.Generator, seconds: float, hold_seconds: float, ranges: CommandRanges,
                    pushes: int, push_speed: tuple[float, float]) -> Scenario:
    """Random held commands and shoves over ``seconds``.

    Commands: one :func:`collect.command_knots` knot (uniform in ``ranges``, zero with probability 0.1, one
    component with probability 0.3) every ``hold_seconds``, held until the next. Shoves: ``pushes``
    world-frame velocity jumps at uniform times in [1 s, ``seconds`` - 1 s) (at 1 s where shorter), each of a
    uniform speed in ``push_speed`` (m/s) and a uniform direction.
    """
    n_knots = int(np.ceil(seconds / hold_seconds))
    knots = command_knots(rng, n_knots, CollectConfig(command_ranges=ranges, single_axis_probability=0.3))
    times = np.sort(rng.uniform(1.0, max(seconds - 1.0, 1.0), pushes))
    speed = rng.uniform(*push_speed, pushes)
    angle = rng.uniform(-np.pi, np.pi, pushes)
    return Scenario(tuple((i * hold_seconds, tuple(float(v) for v in knot)) for i, knot in enumerate(knots)),
                    pushes=tuple((float(t), (float(s * np.cos(a)), float(s * np.sin(a))))
                                 for t, s, a in zip(times, speed, angle)))


def check_seconds(value: float, option: str) -> None:
    """ValueError naming ``option`` unless ``value`` (s) is finite and at least one control step."""
    if not (np.isfinite(value) and value >= PHYSICS.ctrl_dt):
        raise ValueError(f"{option} must be at least one control step ({PHYSICS.ctrl_dt} s), got {value}")


def check_scenario_options(seconds: float, hold_seconds: float, pushes: int, push_speed: tuple[float, float],
                           pushes_option: str) -> None:
    """The options of :func:`random_scenario` as a CLI takes them; a ValueError names the option (``--seconds``,
    ``--hold-seconds``, ``pushes_option``, ``--push-speed``)."""
    check_seconds(seconds, "--seconds")
    check_seconds(hold_seconds, "--hold-seconds")
    if not isinstance(pushes, int) or pushes < 0:
        raise ValueError(f"{pushes_option} must be an int >= 0, got {pushes!r}")
    low, high = push_speed
    if not (np.isfinite(low) and np.isfinite(high) and 0 <= low <= high):
        raise ValueError(f"--push-speed must be two finite speeds 0 <= low <= high (m/s), got {push_speed}")


@dataclasses.dataclass(frozen=True)
class Args:
    """``python -m dynaflow_policy.data.dagger --checkpoint CKPT [--expert EXPERT] --out data/expert/dagger.npz``"""

    checkpoint: str
    """The DynaFlow controller whose closed-loop states start the teacher's rollouts."""
    out: str = "data/expert/dagger.npz"
    """Output .npz file (written atomically)."""
    expert: str = DEFAULT_EXPERT
    """The teacher: a PPO expert checkpoint trained on every gait in --gaits."""
    gaits: tuple[str, ...] = ("trot",)
    """Gaits to run; each over the command ranges the teacher was trained on for it
    (``PPOExpert.command_ranges``) unless --command-ranges.* is given."""
    command_ranges: CommandRanges | None = None
    """Command ranges for every gait (None: the teacher's for each gait)."""
    episodes_per_gait: int = 32
    """Closed-loop episodes per gait, each from the env's resting start."""
    seconds: float = 10.0
    """Episode length (s)."""
    hold_seconds: float = 2.5
    """Seconds each random command holds."""
    pushes_per_episode: int = 1
    """Shoves per episode."""
    push_speed: tuple[float, float] = (0.3, 0.8)
    """Range of a shove's velocity jump (m/s)."""
    start_every: float = 0.5
    """Seconds between the teacher's rollouts within an episode."""
    rollout_seconds: float = 1.0
    """Length of each teacher rollout (s); at least one window (H + 1 states) of the controller."""
    seed: int = 21
    """Seed of the scenarios, the env resets and the sampling noise (pick one no other file used)."""

    def __post_init__(self):
        if not isinstance(self.episodes_per_gait, int) or self.episodes_per_gait < 1:
            raise ValueError(f"--episodes-per-gait must be an int >= 1, got {self.episodes_per_gait!r}")
        check_scenario_options(self.seconds, self.hold_seconds, self.pushes_per_episode, self.push_speed,
                               "--pushes-per-episode")
        for name in ("start_every", "rollout_seconds"):
            check_seconds(getattr(self, name), "--" + name.replace("_", "-"))
        if not self.gaits or any(g not in GAITS for g in self.gaits):
            raise ValueError(f"--gaits must name one or more of {GAITS}, got {self.gaits}")


def collect(args: Args) -> tuple[Dataset, dict[str, dict[str, int]]]:
    """Runs the episodes and the teacher's rollouts; returns the dataset and per-gait counts (episodes, falls of
    the controller, rollouts kept, rollouts dropped because the teacher fell)."""
    import gymnasium

    import envs
    from dynaflow_policy import load_policy
    from dynaflow_policy.checkpoint import checkpoint_kind
    from dynaflow_policy.closed_loop import run_episode
    from dynaflow_policy.experts import load_expert

    kind = checkpoint_kind(args.checkpoint)
    if kind != "dynaflow":
        raise ValueError(f"--checkpoint {args.checkpoint}: teacher rollouts need a DynaFlow checkpoint, got a "
                         f"{kind!r} one")
    policy = load_policy(args.checkpoint, seed=args.seed)
    missing = [g for g in args.gaits if policy.gaits and g not in policy.gaits]
    if missing:
        raise ValueError(f"--gaits {' '.join(missing)}: --checkpoint {args.checkpoint} was trained on "
                         f"{', '.join(policy.gaits)} only")
    teacher = load_expert(args.expert)
    untaught = [g for g in args.gaits if g not in teacher.gaits]
    if untaught:
        raise ValueError(f"--gaits {' '.join(untaught)}: --expert {args.expert} was trained on "
                         f"{', '.join(teacher.gaits)} only")
    rollout_states = int(round(args.rollout_seconds / PHYSICS.ctrl_dt)) + 1
    if rollout_states < policy.horizon + 1:
        raise ValueError(f"--rollout-seconds {args.rollout_seconds} gives {rollout_states} states, fewer than one "
                         f"window of the controller ({policy.horizon + 1})")
    start_every = max(int(round(args.start_every / PHYSICS.ctrl_dt)), 1)
    rng = np.random.default_rng(args.seed)
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(args.seconds / PHYSICS.ctrl_dt)))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]] = []
    report: dict[str, dict[str, int]] = {}
    episode = 0
    try:
        for gait in args.gaits:
            g = gait_index(gait)
            counts = {"episodes": args.episodes_per_gait, "falls": 0, "rollouts": 0, "teacher_falls": 0}
            ranges = args.command_ranges or teacher.command_ranges(gait)
            for j in range(args.episodes_per_gait):
                scenario = random_scenario(rng, args.seconds, args.hold_seconds, ranges, args.pushes_per_episode,
                                           args.push_speed)
                run = run_episode(env, policy, scenario, args.seconds, seed=args.seed + episode, gait=gait)
                counts["falls"] += int(run["fell"])
                for k in range(0, len(run["states"]), start_every):
                    commands = np.stack([scenario.command_at(k + i) for i in range(rollout_states)])
                    states, actions, ok = rollout_expert(teacher, run["states"][k], commands, g)
                    if not ok:
                        counts["teacher_falls"] += 1
                        continue
                    parts.append((states, commands, actions, g, episode))
                    counts["rollouts"] += 1
                episode += 1
            report[gait] = counts
    finally:
        env.close()
    if not parts:
        raise ValueError("no rollouts kept: the teacher fell from every start")
    states, commands, actions, gait_ids, episodes = (np.stack([p[i] for p in parts]) for i in range(5))
    extra = {"generator": "dynaflow_policy.data.dagger", "checkpoint": os.fspath(args.checkpoint),
             "expert": os.fspath(args.expert), "seed": args.seed, "seconds": args.seconds,
             "hold_seconds": args.hold_seconds, "pushes_per_episode": args.pushes_per_episode,
             "push_speed": list(args.push_speed), "start_every": args.start_every,
             "rollout_seconds": args.rollout_seconds, "per_gait": report}
    dataset = Dataset(states.astype(np.float32), commands.astype(np.float32), gait_ids,
                      DatasetMetadata.for_physics(SOURCE, PHYSICS, extra), actions, episode=episodes)
    return dataset, report


def main(args: Args) -> Dataset:
    from dynaflow_policy.data.schema import save_dataset

    t0 = time.perf_counter()
    dataset, report = collect(args)
    save_dataset(args.out, dataset)
    for gait, r in report.items():
        print(f"{gait}: {r['episodes']} episodes ({r['falls']} fell), {r['rollouts']} teacher rollouts kept, "
              f"{r['teacher_falls']} dropped (the teacher fell)")
    print(f"wrote {args.out}: {dataset.n_trajectories} rollouts of {dataset.n_steps} states, "
          f"{os.path.getsize(args.out) / 2**20:.1f} MiB, in {time.perf_counter() - t0:.0f} s")
    return dataset


if __name__ == "__main__":
    import tyro

    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    main(tyro.cli(Args))
