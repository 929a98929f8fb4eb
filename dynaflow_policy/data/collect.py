"""Feasible demonstrations from the PPO expert: ``python -m dynaflow_policy.data.collect``.

Each trajectory starts from a perturbed pose (home joint angles +- U(0.1) rad,
random heading, random base velocity and joint velocities) and follows a
velocity command that varies smoothly: knots drawn uniformly from
``CommandRanges`` every ``command_knot_seconds`` (with probability
``stand_probability`` the knot is zero, so the data also shows standing),
joined by cosine interpolation (C1, no jumps). The deterministic expert
(:func:`dynaflow_policy.experts.load_expert`) acts on the Gymnasium
observation of each state, in native MuJoCo (float64, the physics of
:class:`envs.native.NativeGo1`).

A trajectory in which the robot falls (:func:`envs.task.is_fallen`) or the
physics diverges is dropped and counted, not stored: the dataset holds
walking, not recoveries. With ``first_swing`` set, a trajectory whose first
swing (:func:`first_swing`) is the other diagonal pair is dropped and counted
too: from rest the expert starts with either pair, depending on small details
of the state, and a model that regresses the mean of the two stands still
(see the README's note on starts from rest). With ``settle_seconds`` the
default pose is held that long before the expert takes over, so the trajectory
starts standing still on four feet, the state a controller sits in when it has
not got going; the expert never stands still, so other data has no such state.

``expert_actions[n, k]`` is the expert's action at ``states[n, k]`` (for
evaluating action recovery only; DynaFlow never trains on it).

Work is spread over processes (one trajectory each task, a seed per
trajectory), so the output depends on ``seed`` only, not on ``workers``.

The report (printed, and in ``metadata.extra``) gives the size, the
generation time, the falls, and the SAE of the data under the project's
metric (:func:`dynaflow_policy.metrics.sae_native` and the float32 MJX
:func:`dynaflow_policy.metrics.sae`) on a sample of windows: near zero,
since the expert's actions replayed through the rollout reproduce the states.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import sys
import time

import numpy as np

from dynaflow_policy.configs import DiTConfig
from dynaflow_policy.data.schema import Dataset, DatasetMetadata, save_dataset
from envs.kinematics import foot_positions
from envs.physics import (ACTION_DIM, BASE_ANGVEL, BASE_LINVEL, BASE_QUAT, JOINT_POS, JOINT_VEL, PHYSICS, STATE_DIM,
                          PhysicsConfig)
from envs.task import (COMMAND_DIM, GAIT_COMMAND_RANGES, GAITS, INIT_JOINT_NOISE, CommandRanges, gait_index,
                       is_fallen, observation)

SOURCE = "ppo_expert"
"""``metadata.source`` of collected datasets."""
_CHECKPOINTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "checkpoints")
DEFAULT_EXPERT = os.path.join(_CHECKPOINTS, "ppo_go1_trot")
"""The trot expert shipped in ``checkpoints/``."""
GAITS_EXPERT = os.path.join(_CHECKPOINTS, "ppo_go1_gaits")
"""The four-gait expert shipped in ``checkpoints/``."""


SWING_PAIRS: dict[str, tuple[int, int]] = {"FR_RL": (0, 3), "FL_RR": (1, 2)}
"""The trot's diagonal foot pairs, as indices into the foot order FR, FL, RR, RL."""
SWING_LIFT = 0.02
"""Rise (m) of a foot site above its starting height that counts as a swing."""
EDGE_FRACTION = 0.3
"""Fraction of a command range's width, at each end, that ``CollectConfig.edge_probability`` draws from."""


def first_swing(states: np.ndarray, physics: PhysicsConfig = PHYSICS) -> str | None:
    """The diagonal pair (a key of :data:`SWING_PAIRS`) that swings first, or None if no foot swings.

    At the first state where some foot site has risen :data:`SWING_LIFT` above
    its height in ``states[0]``, the pair of the highest foot.

    Args:
      states: (T, 37) one trajectory.
    """
    z = foot_positions(states, physics)[:, :, 2]  # (T, 4)
    lift = z - z[0]
    swinging = np.flatnonzero((lift >= SWING_LIFT).any(axis=1))
    if swinging.size == 0:
        return None
    foot = int(np.argmax(lift[swinging[0]]))
    return next(name for name, pair in SWING_PAIRS.items() if foot in pair)


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """What to roll out. Defaults give 420 x 10 s = 203,700 windows of H + 1 = 17 states."""

    trajectories: int = 420
    """Trajectories kept (dropped falls are replaced by new seeds)."""
    seconds: float = 10.0
    """Duration of each trajectory (s); T = seconds / ctrl_dt + 1 states."""
    gait: str = "trot"
    """Gait label given to the expert and stored."""
    command_ranges: CommandRanges = CommandRanges()
    """Uniform ranges of the command knots."""
    command_knot_seconds: float = 2.0
    """Seconds between command knots."""
    command_transition_seconds: float | None = None
    """Seconds of the cosine ramp from one knot to the next; the command holds each knot for the rest
    of the interval. None ramps over the whole interval (commands that never hold still)."""
    single_axis_probability: float = 0.0
    """Probability that a knot keeps only one of its three components (chosen uniformly), so the
    data holds pure forward or backward walking, pure sideways walking and turning in place."""
    stand_probability: float = 0.1
    """Probability that a knot is the zero command."""
    edge_probability: float = 0.0
    """Probability that a knot is drawn from the ends of the ranges instead: each component uniform in
    the outer :data:`EDGE_FRACTION` of its range's width, at the low or the high end (the commands a
    uniform draw rarely reaches; drawn before ``stand_probability`` and ``single_axis_probability``)."""
    init_joint_noise: float = INIT_JOINT_NOISE
    """Initial joint angles: home +- U(this) rad, clipped to the joint ranges."""
    init_linvel_std: float = 0.2
    """Std (m/s) of the initial base linear velocity, per axis (z: a fifth of it)."""
    init_angvel_std: float = 0.3
    """Std (rad/s) of the initial base angular velocity, per axis."""
    init_joint_vel_std: float = 1.0
    """Std (rad/s) of the initial joint velocities."""
    settle_seconds: float = 0.0
    """Before the expert takes over, hold the default pose (action 0) this long from the initial
    state, so that the trajectory starts standing still on its feet (0: start at the initial state)."""
    seed: int = 0
    """Trajectory i uses seed (seed, i)."""
    max_fall_fraction: float = 0.5
    """Give up (RuntimeError) when more than this fraction of the attempts fall."""
    first_swing: str | None = None
    """Keep only trajectories whose first swing (:func:`first_swing`) is this pair of
    :data:`SWING_PAIRS` (trot only); None keeps all."""
    max_other_swing_fraction: float = 0.8
    """With ``first_swing``: give up (RuntimeError) when more than this fraction of the attempts swing another
    pair first, or none."""

    def __post_init__(self):
        if self.trajectories < 1:
            raise ValueError(f"trajectories must be >= 1, got {self.trajectories}")
        if not self.seconds >= 2 * PHYSICS.ctrl_dt:
            raise ValueError(f"seconds must be at least two control steps, got {self.seconds}")
        if not self.command_knot_seconds > 0:
            raise ValueError(f"command_knot_seconds must be positive, got {self.command_knot_seconds}")
        if self.command_transition_seconds is not None and not (
                0 < self.command_transition_seconds <= self.command_knot_seconds):
            raise ValueError(f"command_transition_seconds must be in (0, command_knot_seconds="
                             f"{self.command_knot_seconds}], got {self.command_transition_seconds}")
        if not 0.0 <= self.single_axis_probability <= 1.0:
            raise ValueError(f"single_axis_probability must be in [0, 1], got {self.single_axis_probability}")
        if not 0.0 <= self.edge_probability <= 1.0:
            raise ValueError(f"edge_probability must be in [0, 1], got {self.edge_probability}")
        if not 0.0 <= self.stand_probability <= 1.0:
            raise ValueError(f"stand_probability must be in [0, 1], got {self.stand_probability}")
        if not 0.0 < self.max_fall_fraction < 1.0:
            raise ValueError(f"max_fall_fraction must be in (0, 1), got {self.max_fall_fraction}")
        if not self.settle_seconds >= 0.0:
            raise ValueError(f"settle_seconds must be >= 0, got {self.settle_seconds}")
        if not 0.0 < self.max_other_swing_fraction < 1.0:
            raise ValueError(f"max_other_swing_fraction must be in (0, 1), got {self.max_other_swing_fraction}")
        gait_index(self.gait)
        if self.first_swing is not None and (self.first_swing not in SWING_PAIRS or self.gait != "trot"):
            raise ValueError(f"first_swing must be None or one of {sorted(SWING_PAIRS)} with gait 'trot', "
                             f"got {self.first_swing!r} with gait {self.gait!r}")

    def n_states(self, physics: PhysicsConfig = PHYSICS) -> int:
        """T, states per trajectory."""
        return int(round(self.seconds / physics.ctrl_dt)) + 1


def command_knots(rng: np.random.Generator, n_knots: int, config: CollectConfig) -> np.ndarray:
    """(K, 3) float64 random commands: uniform in ``config.command_ranges`` (near their ends with probability
    ``edge_probability``), zero with probability ``stand_probability``, reduced to one component with
    probability ``single_axis_probability``."""
    ranges = config.command_ranges
    knots = rng.uniform(ranges.low, ranges.high, (n_knots, COMMAND_DIM))
    if config.edge_probability > 0:  # drawn only when asked for: other datasets keep their random stream
        edge = rng.random(n_knots) < config.edge_probability  # (K,)
        depth = rng.uniform(0.0, EDGE_FRACTION, (n_knots, COMMAND_DIM)) * (ranges.high - ranges.low)
        at_high = rng.random((n_knots, COMMAND_DIM)) < 0.5
        knots[edge] = np.where(at_high, ranges.high - depth, ranges.low + depth)[edge]
    knots[rng.random(n_knots) < config.stand_probability] = 0.0
    if config.single_axis_probability > 0:  # drawn only when asked for: other datasets keep their random stream
        single = rng.random(n_knots) < config.single_axis_probability  # (K,)
        keep = np.eye(COMMAND_DIM, dtype=bool)[rng.integers(0, COMMAND_DIM, n_knots)]  # (K, 3)
        knots[single] = np.where(keep[single], knots[single], 0.0)
    return knots


def command_schedule(rng: np.random.Generator, n_steps: int, config: CollectConfig,
                     physics: PhysicsConfig = PHYSICS) -> np.ndarray:
    """Random commands that change smoothly (C1, no jumps).

    Knots (:func:`command_knots`) are drawn every ``config.command_knot_seconds``. The command holds
    knot i and then follows a cosine ramp to knot i + 1 over the last
    ``command_transition_seconds`` of the interval (over all of it when None).

    Args:
      rng: random generator.
      n_steps: T, commands to return (one per state).

    Returns:
      (T, 3) float32 commands (vx m/s, vy m/s, yaw rate rad/s).
    """
    knot_steps = config.command_knot_seconds / physics.ctrl_dt
    n_knots = int(math.ceil((n_steps - 1) / knot_steps)) + 1
    knots = command_knots(rng, n_knots, config)
    s = np.arange(n_steps) / knot_steps  # knot coordinate of each step
    i = np.minimum(np.floor(s).astype(int), n_knots - 2)
    ramp = 1.0 if config.command_transition_seconds is None else \
        config.command_transition_seconds / config.command_knot_seconds  # fraction of the interval spent ramping
    phase = np.clip((s - i - (1.0 - ramp)) / ramp, 0.0, 1.0)  # 0 while holding knot i, then up to 1 at knot i + 1
    w = 0.5 - 0.5 * np.cos(np.pi * phase)[:, None]  # (T, 1): zero slope at both ends of the ramp
    return ((1 - w) * knots[i] + w * knots[i + 1]).astype(np.float32)


def initial_state(rng: np.random.Generator, config: CollectConfig, physics: PhysicsConfig = PHYSICS) -> np.ndarray:
    """(37,) perturbed start: home pose with joint noise, a uniform heading and random velocities."""
    x = np.asarray(physics.home_state, np.float64).copy()
    noise = rng.uniform(-config.init_joint_noise, config.init_joint_noise, ACTION_DIM)
    x[JOINT_POS] = np.clip(x[JOINT_POS] + noise, physics.joint_lower, physics.joint_upper)
    yaw = rng.uniform(-np.pi, np.pi)
    x[BASE_QUAT] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
    x[BASE_LINVEL] = rng.normal(0.0, config.init_linvel_std, 3) * [1.0, 1.0, 0.2]
    x[BASE_ANGVEL] = rng.normal(0.0, config.init_angvel_std, 3)
    x[JOINT_VEL] = rng.normal(0.0, config.init_joint_vel_std, ACTION_DIM)
    return x


def settle(x0: np.ndarray, seconds: float, physics: PhysicsConfig = PHYSICS) -> np.ndarray:
    """(37,) the state after holding the default pose (action 0) for ``seconds`` from ``x0`` (37,), native MuJoCo."""
    from envs.native import NativeGo1

    sim = NativeGo1(physics)
    sim.set_state(x0)
    for _ in range(int(round(seconds / physics.ctrl_dt))):
        sim.step(np.zeros(ACTION_DIM))
    return sim.state()


def rollout_expert(expert, x0: np.ndarray, commands: np.ndarray, gait: int,
                   physics: PhysicsConfig = PHYSICS) -> tuple[np.ndarray, np.ndarray, bool]:
    """Closed-loop rollout of ``expert`` in native MuJoCo.

    Args:
      expert: object with ``act(obs (44,)) -> (12,)`` and ``reset()`` (called first: a clocked expert's gait
        phase starts at 0, as in the env).
      x0: (37,) initial state.
      commands: (T, 3) command at each state.
      gait: index into ``envs.task.GAITS``.

    Returns:
      states (T, 37) float64, actions (T, 12) float32 (action k taken at state k),
      ok: False if the robot fell or the physics diverged (the arrays then stop being meaningful there).
    """
    from envs.native import NativeGo1

    sim = NativeGo1(physics)
    sim.set_state(x0)
    T = commands.shape[0]
    states = np.empty((T, STATE_DIM))
    actions = np.empty((T, ACTION_DIM), np.float32)
    states[0] = sim.state()
    expert.reset()
    for k in range(T):
        actions[k] = expert.act(observation(states[k].astype(np.float32), commands[k], gait))
        if k == T - 1:
            break
        sim.step(actions[k])
        states[k + 1] = sim.state()
        if sim.diverged or is_fallen(states[k + 1]):
            return states, actions, False
    return states, actions, True


_WORKER: dict = {}


def _init_worker(expert_path: str, config: CollectConfig) -> None:
    from dynaflow_policy.experts import load_expert

    _WORKER["expert"] = load_expert(expert_path)
    _WORKER["config"] = config


def _trajectory(index: int):
    """(index, states, commands, actions, outcome) of trajectory ``index`` (seeded by (config.seed, index)).

    outcome: "kept", "fell", or "other_first_swing" (``config.first_swing`` not matched).
    """
    config: CollectConfig = _WORKER["config"]
    rng = np.random.default_rng((config.seed, index))
    commands = command_schedule(rng, config.n_states(), config)
    x0 = initial_state(rng, config)
    if config.settle_seconds > 0:
        x0 = settle(x0, config.settle_seconds)
    states, actions, ok = rollout_expert(_WORKER["expert"], x0, commands, gait_index(config.gait))
    if not ok:
        outcome = "fell"
    elif config.first_swing is not None and first_swing(states) != config.first_swing:
        outcome = "other_first_swing"
    else:
        outcome = "kept"
    return index, states, commands, actions, outcome


def collect(expert_path: str | os.PathLike, config: CollectConfig = CollectConfig(), workers: int | None = None,
            progress: bool = True) -> tuple[Dataset, dict]:
    """Rolls out the expert until ``config.trajectories`` trajectories are kept (no fall, the asked first swing).

    Args:
      expert_path: PPO expert checkpoint (``load_expert`` reads it).
      config: what to roll out.
      workers: processes (default: the CPU count); 1 runs in this process.
      progress: print a progress bar (tqdm) to stderr.

    Returns:
      (dataset, stats): the dataset (source ``"ppo_expert"``) and a dict with
      ``attempts``, ``falls``, ``other_first_swing`` (dropped by ``config.first_swing``)
      and ``seconds`` (wall time of the rollouts).

    Raises:
      CheckpointError: the expert cannot be loaded.
      RuntimeError: more than ``config.max_fall_fraction`` of the attempts fell, or more than
        ``config.max_other_swing_fraction`` swung another pair first.
    """
    from tqdm import tqdm

    expert_path = os.fspath(expert_path)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1 (or None for one per CPU), got {workers}")
    workers = workers or os.cpu_count() or 1
    _init_worker(expert_path, config)  # fails here, in the caller, on a bad checkpoint
    kept: dict[int, tuple] = {}
    falls = other_first_swing = 0
    attempts = 0
    next_index = 0
    t0 = time.perf_counter()
    pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (expert_path, config)) \
        if workers > 1 else None
    bar = tqdm(total=config.trajectories, desc="trajectories", disable=not progress, file=sys.stderr)
    try:
        while len(kept) < config.trajectories:
            batch = range(next_index, next_index + (config.trajectories - len(kept)))
            next_index = batch.stop
            results = pool.imap_unordered(_trajectory, batch) if pool else map(_trajectory, batch)
            for index, states, commands, actions, outcome in results:
                attempts += 1
                if outcome == "kept":
                    kept[index] = (states, commands, actions)
                    bar.update(1)
                elif outcome == "fell":
                    falls += 1
                else:
                    other_first_swing += 1
            if falls > config.max_fall_fraction * attempts:
                raise RuntimeError(f"{falls} of {attempts} expert rollouts fell: the expert at {expert_path} "
                                   f"cannot walk these commands; narrow command_ranges or retrain it")
            if other_first_swing > config.max_other_swing_fraction * attempts:
                raise RuntimeError(f"{other_first_swing} of {attempts} expert rollouts did not swing "
                                   f"{config.first_swing} first: the expert at {expert_path} rarely starts that way")
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    seconds = time.perf_counter() - t0
    order = sorted(kept)
    states = np.stack([kept[i][0] for i in order]).astype(np.float32)
    commands = np.stack([kept[i][1] for i in order])
    actions = np.stack([kept[i][2] for i in order])
    gait = np.full(len(order), gait_index(config.gait), np.int32)
    stats = {"attempts": attempts, "falls": falls, "other_first_swing": other_first_swing, "seconds": seconds}
    extra = {"expert": _portable_path(expert_path),
             "expert_step": _WORKER["expert"].meta.get("step"), "collect_config": dataclasses.asdict(config),
             "trajectory_indices": order, **stats}
    return Dataset(states, commands, gait, DatasetMetadata.for_physics(SOURCE, extra=extra), actions), stats


_HOLDING_COMMANDS = dict(command_knot_seconds=3.0, command_transition_seconds=0.5, single_axis_probability=0.3)
"""Commands held for 2.5 s (much longer than a 0.32 s window) with 0.5 s ramps between them: a model told
a window's first command is then told the command of the whole window in most windows."""
_STEPPING_COMMANDS = dict(command_knot_seconds=1.5, command_transition_seconds=0.02, single_axis_probability=0.3)
"""Commands that jump to a new value every 1.5 s (a ramp of one control step): the demonstrator's answer to a
command step, from the states a walking robot is in when a joystick moves. Held-command data has almost none
of these: after a 0.5 s ramp the robot already walks at the new command."""
_AT_REST = dict(seconds=0.5, init_linvel_std=0.0, init_angvel_std=0.0, init_joint_vel_std=0.0, **_HOLDING_COMMANDS)

def _four_gaits(seed: int, walk: int, rest: int, settled: int, edges: int) -> dict[str, CollectConfig]:
    """Per gait: walking under held commands over the gait's own ranges, starts from rest, settled starts, and
    walking under commands near the ends of the ranges (fast, backward, sideways, sharp turns)."""
    parts = {}
    for i, gait in enumerate(GAITS):
        ranges = dict(gait=gait, command_ranges=GAIT_COMMAND_RANGES[gait])
        parts[f"{gait}_walk"] = CollectConfig(trajectories=walk, seed=seed + 10 * i, **ranges, **_HOLDING_COMMANDS)
        if rest:
            parts[f"{gait}_rest_starts"] = CollectConfig(trajectories=rest, seed=seed + 10 * i + 1, **ranges,
                                                         **_AT_REST)
        if settled:
            parts[f"{gait}_settled"] = CollectConfig(trajectories=settled, seed=seed + 10 * i + 2,
                                                     settle_seconds=0.4, **ranges, **_AT_REST)
        if edges:
            parts[f"{gait}_edges"] = CollectConfig(trajectories=edges, seed=seed + 10 * i + 3, edge_probability=1.0,
                                                   **ranges, **_HOLDING_COMMANDS)
    return parts


PRESETS: dict[str, dict[str, CollectConfig]] = {
    "expert": {
        "walk": CollectConfig(trajectories=200, **_HOLDING_COMMANDS),
        "rest_starts": CollectConfig(trajectories=1200, seed=1, **_AT_REST),
        "settled_0.4": CollectConfig(trajectories=400, seed=2, settle_seconds=0.4, **_AT_REST),
        "settled_1.0": CollectConfig(trajectories=400, seed=3, settle_seconds=1.0, **_AT_REST),
        "steps": CollectConfig(trajectories=96, seed=41, **_STEPPING_COMMANDS),
    },
    "expert-heldout": {
        "walk": CollectConfig(trajectories=32, seed=77, **_HOLDING_COMMANDS),
    },
    "gaits": _four_gaits(seed=100, walk=100, rest=300, settled=100, edges=40),
    "gaits-heldout": _four_gaits(seed=177, walk=16, rest=0, settled=0, edges=0),
}
"""Named training sets, each a few files (``<out>/<part>.npz``) that together make one recipe's data.

``expert``: walking under held commands over the expert's whole command range (zero, backward,
sideways, turning and combinations), plus starts from rest and from the settled default pose (the
Gymnasium env resets the robot at rest; the expert never stands still, so walking data has no such
state), and walking under commands that jump every 1.5 s (``steps``: the demonstrator's answer to a
joystick moved mid-stride, which ``eval/step_response.py`` measures controllers against; the recipe's
training stages do not use it). ``expert-heldout``: walking made with another seed, for evaluation. ``gaits`` and
``gaits-heldout``: the same for each of the four gaits, from the four-gait expert, each gait over its own
command ranges (``envs.task.GAIT_COMMAND_RANGES``); ``gaits`` adds walking under commands near the
ends of each gait's ranges (``<gait>_edges``). ``--seed S`` adds S to every part's seed."""
PRESET_EXPERTS: dict[str, str] = {"gaits": GAITS_EXPERT, "gaits-heldout": GAITS_EXPERT}
"""The expert of each preset that is not made by :data:`DEFAULT_EXPERT`."""


def collect_preset(name: str, out_dir: str | os.PathLike, expert: str | os.PathLike | None = None,
                   seed: int = 0, workers: int | None = None, sae_windows: int = 256) -> list[str]:
    """Collects every part of preset ``name`` into ``<out_dir>/<part>.npz``; a part already there is kept.

    ``expert`` None: the preset's expert (:data:`PRESET_EXPERTS`, else :data:`DEFAULT_EXPERT`).

    Returns:
      The paths of the part files, in the preset's order.
    """
    if name not in PRESETS:
        raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {name!r}")
    expert = PRESET_EXPERTS.get(name, DEFAULT_EXPERT) if expert is None else expert
    out_dir = os.fspath(out_dir)
    if out_dir.endswith(".npz"):
        raise ValueError(f"--out must name a directory with --preset (it gets one .npz per part), got {out_dir!r}")
    paths = []
    for part, config in PRESETS[name].items():
        path = os.path.join(out_dir, f"{part}.npz")
        paths.append(path)
        if os.path.exists(path):  # finished parts of an interrupted preset are not redone
            print(f"{path}: exists, kept")
            continue
        print(f"{name}/{part}:")
        write_dataset(path, expert, dataclasses.replace(config, seed=config.seed + seed), workers, sae_windows)
    return paths


def _portable_path(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (metadata that means the same on every clone)."""
    repo = os.path.dirname(os.path.dirname(DEFAULT_EXPERT))
    absolute = os.path.abspath(path)
    return os.path.relpath(absolute, repo) if absolute.startswith(repo + os.sep) else absolute


def measure_sae(ds: Dataset, windows: int = 256, horizon: int | None = None, seed: int = 0) -> dict[str, float]:
    """SAE of the dataset's (state, expert action) transitions on a random sample of windows.

    The scale is the normaliser fitted to heading-frame windows of the dataset
    (as in training). Returns ``{"sae_native": ..., "sae_mjx": ..., "windows": n}``.
    """
    from dynaflow_policy.data.windows import WindowSet
    from dynaflow_policy.frames import to_heading_frame
    from dynaflow_policy.metrics import sae, sae_native
    from dynaflow_policy.normalizer import Normalizer

    ws = WindowSet(ds, DiTConfig().horizon if horizon is None else horizon)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ws), size=min(windows, len(ws)), replace=False)
    batch = ws.batch(np.sort(idx))
    X, U = batch["states"], batch["expert_actions"]  # (n, H+1, 37), (n, H, 12)
    normalizer = Normalizer.fit(to_heading_frame(X))
    return {"sae_native": float(sae_native(X, U, normalizer)), "sae_mjx": float(sae(X, U, normalizer)),
            "windows": int(len(idx))}


@dataclasses.dataclass(frozen=True)
class Args:
    """``python -m dynaflow_policy.data.collect [--out data/go1_expert.npz] [--trajectories N] ...``, or
    ``--preset expert --out data/expert`` for a whole training set."""

    out: str = "data/go1_expert.npz"
    """Output .npz file (written atomically); with --preset, a directory."""
    expert: str | None = None
    """PPO expert checkpoint directory (default: the preset's expert, else checkpoints/ppo_go1_trot)."""
    config: CollectConfig = CollectConfig()
    """What to roll out (flags without a prefix)."""
    preset: str | None = None
    """A named training set of :data:`PRESETS` (one file per part in --out); only --seed may be set with it."""
    workers: int = 0
    """Processes; 0 = one per CPU."""
    sae_windows: int = 256
    """Windows sampled for the SAE report."""


def write_dataset(out: str, expert: str | os.PathLike, config: CollectConfig, workers: int | None,
                  sae_windows: int) -> Dataset:
    """Collects, measures the SAE on ``sae_windows`` windows, saves to ``out`` and prints a report."""
    ds, stats = collect(expert, config, workers=workers)
    report = measure_sae(ds, windows=sae_windows) if sae_windows else {}
    extra = {**ds.metadata.extra, "sae": report}
    ds = dataclasses.replace(ds, metadata=dataclasses.replace(ds.metadata, extra=extra))
    save_dataset(out, ds)
    horizon = DiTConfig().horizon
    windows = ds.n_trajectories * max(ds.n_steps - horizon, 0)
    print(f"wrote {out}: N={ds.n_trajectories} trajectories x T={ds.n_steps} states = {windows:,d} windows "
          f"of {horizon + 1} states; {os.path.getsize(out) / 2**20:.1f} MiB on disk; {stats['attempts']} rollouts, "
          f"{stats['falls']} fell and {stats['other_first_swing']} swung the other pair first, all dropped; "
          f"rollouts took {stats['seconds']:.1f} s")
    if report:
        print(f"SAE on {report['windows']} windows: native {report['sae_native']:.3g}, MJX float32 "
              f"{report['sae_mjx']:.3g}")
    return ds


def main(args: Args) -> Dataset | list[str]:
    if args.workers < 0:
        raise SystemExit(f"error: --workers must be >= 0 (0 = one per CPU), got {args.workers}")
    if args.preset is None:
        return write_dataset(args.out, args.expert or DEFAULT_EXPERT, args.config, args.workers or None,
                             args.sae_windows)
    if dataclasses.replace(args.config, seed=0) != CollectConfig():
        raise SystemExit("error: with --preset only --seed may be set; the preset fixes every other collect option")
    try:
        return collect_preset(args.preset, args.out, args.expert, args.config.seed, args.workers or None,
                              args.sae_windows)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Args, config=(tyro.conf.OmitArgPrefixes,)))
