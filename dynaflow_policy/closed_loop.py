"""Closed-loop evaluation in the Gymnasium env: the same episodes, commands and metrics for every controller.

A controller is anything with ``act(obs (44,)) -> action (12,)`` and
``reset()`` (the PPO expert, :class:`dynaflow_policy.DynaFlowPolicy`, ...).
Each episode resets the env with a fixed command and a seed (the seed fixes
the initial joint noise and heading), runs ``seconds`` of control, and stops
early on a fall.

Two loops run the same episodes. :func:`run_episode` runs one in
``gymnasium.make``; :func:`run_episodes` runs N at a time in
``gymnasium.make_vec(..., vectorization_mode="sync")`` with a batched
controller (``act(obs (N, 44)) -> (N, 12)``, ``reset(mask=...)``, as
:func:`dynaflow_policy.load_policy` returns): when an environment's episode
ends, it is reset with the next episode's seed and only its controller row is
reset. Both give the same episodes (states, actions, torques) for the same
seeds when the controller's rows do not depend on the batch: bit for bit for
the PPO expert; a DynaFlow batch rounds differently from one row at a time
(see ``dynaflow_policy.policy``), so its episodes drift apart from the
single-env ones. :func:`evaluate_command` uses the single loop unless given
``num_envs > 1``.

Metrics of one command (:class:`CommandResult`), over all episodes:

- ``falls_per_episode``: fraction of episodes that ended in a fall (or a physics blow-up);
  ``falls_per_minute``: falls per minute of simulated time.
- ``vx_rmse``, ``vy_rmse`` (m/s), ``yaw_rate_rmse`` (rad/s): RMSE between the
  command and the body-frame base velocity (yaw rate: body z angular velocity)
  over every control step after the first ``settle_seconds`` of each episode
  (the robot starts from rest, so the first second measures acceleration, not tracking).
  The state in which the robot fell is left out.
- ``vx_stride_rmse`` (m/s): the same vx errors averaged over each whole gait period first
  (:func:`stride_means`), then the RMSE over those periods: how far the speed is from the command
  over a stride, without the surge within it (a bound or pronk speeds up in each flight phase,
  which ``vx_rmse`` counts against a constant command).
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
- ``contact_pattern``: mean over steps after ``settle_seconds`` of ``envs.task.gait_sync``, the
  fraction of foot pairs whose contacts follow the gait in force (1 for a clean trot);
  ``feet_in_air``: the mean fraction of feet off the ground over the same steps.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Protocol, Sequence

import gymnasium
import numpy as np

import envs
from envs.kinematics import foot_positions
from envs.physics import BASE_ANGVEL, BASE_POS, PHYSICS
from envs.task import GAIT_COMMAND_RANGES, GAIT_PERIODS, GAITS, body_linvel, gait_index, gait_sync

EXPERT_COMMANDS: dict[str, tuple[float, float, float]] = {
    "vx 0.3": (0.3, 0.0, 0.0),
    "vx 0.6": (0.6, 0.0, 0.0),
    "vx 1.0": (1.0, 0.0, 0.0),
    "turn 0.8": (0.0, 0.0, 0.8),
}
"""The commands of the expert evaluation (issue 4): three forward speeds and a turn in place."""


def gait_commands(gait: str) -> dict[str, tuple[float, float, float]]:
    """The commands a gait is evaluated on, from the ends of its ranges (``envs.task.GAIT_COMMAND_RANGES``):
    0.5 m/s forward, its fastest forward and backward speeds, its fastest sideways speed, and a turn in place."""
    r = GAIT_COMMAND_RANGES[gait]
    return {"vx 0.5": (0.5, 0.0, 0.0), f"vx {r.vx[1]:g}": (r.vx[1], 0.0, 0.0), f"vx {r.vx[0]:g}": (r.vx[0], 0.0, 0.0),
            f"vy {r.vy[1]:g}": (0.0, r.vy[1], 0.0), "turn 0.8": (0.0, 0.0, 0.8)}


class Controller(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class BatchedController(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self, mask: np.ndarray | None = None) -> None: ...


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A command and a gait that change during an episode, and shoves, for :func:`run_episode`.

    Attributes:
      commands: ((start s, (vx, vy, yaw rate)), ...) in increasing start time, the first at 0 s:
        each command holds from its start until the next one starts.
      pushes: ((time s, (vx, vy)), ...): at that time the base's world-frame velocity jumps by
        (vx, vy) m/s (``Go1Env.push``), just before the control step.
      gaits: ((start s, gait name), ...) in increasing start time, the first at 0 s (``Go1Env.set_gait``);
        empty: the gait given to :func:`run_episode` holds.
    """

    commands: tuple[tuple[float, tuple[float, float, float]], ...]
    pushes: tuple[tuple[float, tuple[float, float]], ...] = ()
    gaits: tuple[tuple[float, str], ...] = ()

    def __post_init__(self):
        starts = [t for t, _ in self.commands]
        if not starts or starts[0] != 0 or np.any(np.diff(starts) <= 0):
            raise ValueError(f"Scenario.commands must start at 0 s and increase in time, got starts {starts}")
        for _, c in self.commands:
            if np.shape(c) != (3,) or not np.all(np.isfinite(c)):
                raise ValueError(f"Scenario.commands: each command must be 3 finite numbers, got {c!r}")
        for t, v in self.pushes:
            if not t >= 0 or np.shape(v) != (2,) or not np.all(np.isfinite(v)):
                raise ValueError(f"Scenario.pushes: each push must be (time >= 0, 2 finite m/s), got {(t, v)!r}")
        gait_starts = [t for t, _ in self.gaits]
        if self.gaits and (gait_starts[0] != 0 or np.any(np.diff(gait_starts) <= 0)):
            raise ValueError(f"Scenario.gaits must start at 0 s and increase in time, got starts {gait_starts}")
        for _, g in self.gaits:
            gait_index(g)  # ValueError naming the four gaits

    @classmethod
    def constant(cls, command: Sequence[float]) -> Scenario:
        """One command held for the whole episode, no pushes."""
        return cls(((0.0, tuple(float(x) for x in command)),))

    def command_at(self, step: int) -> np.ndarray:
        """(3,) command in force during control step ``step`` (time ``step * ctrl_dt``)."""
        t = step * PHYSICS.ctrl_dt + 1e-9
        return np.asarray([c for start, c in self.commands if start <= t][-1], np.float64)

    def gait_at(self, step: int, default: str) -> str:
        """Name of the gait in force during control step ``step``; ``default`` without a gait schedule."""
        t = step * PHYSICS.ctrl_dt + 1e-9
        return [g for start, g in self.gaits if start <= t][-1] if self.gaits else default

    def pushes_at(self, step: int) -> list[tuple[float, float]]:
        """The pushes applied just before control step ``step``."""
        return [v for t, v in self.pushes if int(round(t / PHYSICS.ctrl_dt)) == step]


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
    vx_stride_rmse: float
    mean_torque: float
    mean_power: float
    energy_per_meter: float
    foot_slip: float
    survival_seconds: float
    reached_half_command: float
    contact_pattern: float
    feet_in_air: float
    gait: str = "trot"


def tracking_errors(states: np.ndarray, commands: np.ndarray) -> np.ndarray:
    """Body-frame (vx, vy, yaw rate) of each state minus its command.

    Args:
      states: (T, 37) states; commands: (T, 3) or (3,) commands.

    Returns:
      (T, 3) errors (m/s, m/s, rad/s).
    """
    tracked = np.concatenate([body_linvel(states)[:, :2], states[:, BASE_ANGVEL][:, 2:]], axis=1)  # (T, 3)
    return tracked - commands


def stride_means(errors: np.ndarray, gaits: np.ndarray) -> np.ndarray:
    """Errors averaged over consecutive whole gait periods.

    Args:
      errors: (T, ...) per-step errors; gaits: (T,) int index into ``envs.task.GAITS`` in force at each step.

    Returns:
      (K, ...) means over the K whole periods that fit: each starts where the one before ended and lasts
      ``GAIT_PERIODS`` of the gait in force at its first step; a last, partial period is dropped.
    """
    means, start = [], 0
    while start < len(errors):
        n = int(round(GAIT_PERIODS[int(gaits[start])] / PHYSICS.ctrl_dt))
        if start + n > len(errors):
            break
        means.append(errors[start:start + n].mean(axis=0))
        start += n
    return np.stack(means) if means else np.zeros((0,) + errors.shape[1:], errors.dtype)


def run_episode(env: gymnasium.Env, controller: Controller, command: Sequence[float] | Scenario, seconds: float,
                seed: int, gait: str = "trot") -> dict[str, np.ndarray | bool]:
    """One episode of ``command`` and ``gait`` (a name of ``envs.task.GAITS``) from the env's reset with ``seed``.

    Args:
      command: (vx, vy, yaw rate) held for the episode, or a :class:`Scenario` (commands changed with
        ``set_command`` and pushes applied as the episode runs).

    Returns:
      ``states`` (T+1, 37) including the start, ``actions`` (T, 12), ``commands`` (T, 3) and ``gaits``
      (T,) int index into ``envs.task.GAITS`` in force at each step, ``torques`` (T, 12) N m and
      ``power`` (T,) W (substep averages, ``info["torque"]``, ``info["power"]``), ``contacts`` (T, 4)
      bool, and ``fell``.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    scenario = command if isinstance(command, Scenario) else Scenario.constant(command)
    gait_now = scenario.gait_at(0, gait)
    obs, _ = env.reset(seed=seed, options={"command": tuple(scenario.command_at(0)), "gait": gait_now})
    controller.reset()
    unwrapped = env.unwrapped
    rec = _EpisodeRecord(unwrapped.state)
    fell = False
    command_now = scenario.command_at(0)
    for step in range(int(round(seconds / PHYSICS.ctrl_dt))):
        command_before, command_now = command_now, scenario.command_at(step)
        if np.any(command_now != command_before):
            unwrapped.set_command(command_now)
            obs = unwrapped.observation()
        gait_before, gait_now = gait_now, scenario.gait_at(step, gait)
        if gait_now != gait_before:
            unwrapped.set_gait(gait_now)
            obs = unwrapped.observation()
        for push in scenario.pushes_at(step):
            unwrapped.push(push)
            obs = unwrapped.observation()
        action = controller.act(obs)
        obs, _, terminated, _, info = env.step(action)
        rec.add(unwrapped.state, action, info["torque"], info["power"], info["contact"], command_now,
                gait_index(gait_now))
        if terminated:
            fell = True
            break
    return rec.result(fell)


def run_episodes(controller: BatchedController, command: Sequence[float], seconds: float, seeds: Sequence[int],
                 gait: str = "trot", num_envs: int = 8) -> list[dict[str, np.ndarray | bool]]:
    """The episodes of :func:`run_episode` for each seed, ``num_envs`` at a time in a sync vector env.

    Each environment runs an episode; when it falls or reaches ``seconds``, it is reset with the
    next seed (its controller row too: ``controller.reset(mask=...)``). Environments left without
    an episode keep running discarded ones until the last episode ends, so the batch keeps its size.

    Args:
      controller: a batched controller: ``act(obs (N, 44)) -> (N, 12)``, ``reset(mask=None)``.
      command: (vx, vy, yaw rate) held for every episode (not a Scenario); seconds, gait: as :func:`run_episode`.
      seeds: reset seed of each episode.
      num_envs: N, environments stepped together (at most ``len(seeds)`` are made).

    Returns:
      One dict of :func:`run_episode` per seed, in the order of ``seeds``.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if num_envs < 1 or not seeds:
        raise ValueError(f"need num_envs >= 1 and at least one seed, got {num_envs} and {len(seeds)} seeds")
    n, steps, total = min(num_envs, len(seeds)), int(round(seconds / PHYSICS.ctrl_dt)), len(seeds)
    options = {"command": tuple(command), "gait": gait}
    env = gymnasium.make_vec(envs.GYM_ID, num_envs=n, vectorization_mode="sync", max_episode_steps=steps)
    episode = np.arange(n)  # the episode each environment runs; >= total: a discarded one
    records: list[dict[str, np.ndarray | bool]] = [{}] * total
    try:
        obs, _ = env.reset(seed=[int(s) for s in seeds[:n]], options=dict(options))
        controller.reset()
        rec = [_EpisodeRecord(x) for x in env.get_attr("state")]
        while np.any(episode < total):
            actions = controller.act(obs)  # (N, 12)
            obs, _, terminated, _, info = env.step(actions)
            ended = np.zeros(n, bool)
            for j, x in enumerate(env.get_attr("state")):
                rec[j].add(x, actions[j], info["torque"][j], info["power"][j], info["contact"][j], command,
                           gait_index(gait))
                if terminated[j] or len(rec[j].actions) == steps:
                    if episode[j] < total:
                        records[episode[j]] = rec[j].result(bool(terminated[j]))
                    ended[j] = True
            if not ended.any():
                continue
            first = int(episode.max()) + 1
            episode[ended] = first + np.arange(ended.sum())
            if np.all(episode >= total):
                break
            restart = [int(seeds[e]) if e < total else int(e) for e in episode]  # discarded ones: any seed
            obs, _ = env.reset(seed=restart, options={**options, "reset_mask": ended})
            controller.reset(mask=ended)
            states = env.get_attr("state")
            for j in np.flatnonzero(ended):
                rec[j] = _EpisodeRecord(states[j])
    finally:
        env.close()
    return records


class _EpisodeRecord:
    """What :func:`run_episode` returns, collected step by step."""

    def __init__(self, x0: np.ndarray):
        self.states = [np.array(x0)]
        self.actions, self.torques, self.power, self.contacts, self.commands, self.gaits = [], [], [], [], [], []

    def add(self, x: np.ndarray, action: np.ndarray, torque: np.ndarray, power: float, contact: np.ndarray,
            command: np.ndarray, gait: int) -> None:
        self.states.append(np.array(x))
        self.actions.append(np.asarray(action, np.float64))
        self.torques.append(torque)
        self.power.append(power)
        self.contacts.append(contact)
        self.commands.append(np.asarray(command, np.float64))
        self.gaits.append(gait)

    def result(self, fell: bool) -> dict[str, np.ndarray | bool]:
        return {"states": np.stack(self.states), "actions": np.stack(self.actions), "torques": np.stack(self.torques),
                "power": np.array(self.power), "contacts": np.stack(self.contacts),
                "commands": np.stack(self.commands), "gaits": np.array(self.gaits, np.int64), "fell": fell}


def foot_slip(states: np.ndarray, contacts: np.ndarray) -> np.ndarray:
    """Horizontal speeds (m/s) of feet in contact at both ends of a step.

    Args:
      states: (T+1, 37) states; contacts: (T, 4) contacts after each step.

    Returns:
      (n,) speeds, one per (step, foot) pair in contact before and after the step.
    """
    feet = foot_positions(states[1:])[..., :2]  # (T, 4, 2)
    speed = np.linalg.norm(np.diff(feet, axis=0), axis=-1) / PHYSICS.ctrl_dt  # (T-1, 4)
    return speed[contacts[:-1] & contacts[1:]]


def evaluate_command(controller: Controller | BatchedController, command: Sequence[float], episodes: int = 20,
                     seconds: float = 10.0, seed: int = 0, settle_seconds: float = 1.0,
                     num_envs: int = 1, gait: str = "trot") -> CommandResult:
    """Runs ``episodes`` episodes (seeds ``seed .. seed + episodes - 1``) of one command and gait; see the module
    docstring.

    Args:
      num_envs: 1: one episode at a time (:func:`run_episode`); N > 1: N at a time in a vector env
        (:func:`run_episodes`; the controller must take batches).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not 0 <= settle_seconds < seconds:
        raise ValueError(f"settle_seconds must be in [0, seconds = {seconds}), got {settle_seconds}")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    seeds = list(range(seed, seed + episodes))
    if num_envs > 1:
        return command_result(run_episodes(controller, command, seconds, seeds, gait, num_envs=num_envs), command,
                              settle_seconds)
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(seconds / PHYSICS.ctrl_dt)))
    try:
        return command_result([run_episode(env, controller, command, seconds, s, gait) for s in seeds], command,
                              settle_seconds)
    finally:
        env.close()


def command_result(episodes: Sequence[dict[str, np.ndarray | bool]], command: Sequence[float],
                   settle_seconds: float = 1.0) -> CommandResult:
    """The metrics (module docstring) of episodes of :func:`run_episode` under one command or scenario.

    Errors are against the command in force at each step (``ep["commands"]``); the progress behind
    ``reached_half_command`` is ``sum_t v_t . c_t / sum_t |c_t|^2``, which is the module docstring's for a
    held command. ``command`` is the one reported (a scenario's first), and so is the gait (the first
    episode's first). The contact pattern (``envs.task.gait_sync`` against the gait in force) and the
    feet in the air are averaged over the steps after ``settle_seconds``.
    """
    settle = int(round(settle_seconds / PHYSICS.ctrl_dt))
    c = np.asarray(command, np.float64)
    errors, torque, power, slip, falls, steps, path, progress = [], [], [], [], 0, 0, 0.0, []
    pattern, airborne, strides = [], [], []
    moves = False
    for ep in episodes:
        X = ep["states"][1:]  # (T, 37)
        tracked = X[:-1] if ep["fell"] else X  # the fallen state measures the fall, not the tracking
        C = ep["commands"][:len(tracked)]  # (T', 3)
        errors.append(tracking_errors(tracked, C)[settle:])
        strides.append(stride_means(errors[-1][:, 0], ep["gaits"][settle:len(tracked)]))
        contacts = ep["contacts"][settle:len(tracked)]  # (T', 4)
        pattern.append(gait_sync(contacts, ep["gaits"][settle:len(tracked)]))
        airborne.append(1.0 - contacts.mean(axis=1))
        C = C[settle:]
        moves = moves or bool(np.any(np.linalg.norm(ep["commands"][:, :2], axis=1) > 0.05))
        if np.any(ep["commands"]):  # an episode that fell before settling made no progress
            norm = float(np.sum(C * C))
            progress.append(float(np.sum((errors[-1] + C) * C)) / norm if norm > 0 else 0.0)
        torque.append(np.abs(ep["torques"]).mean(axis=1))
        power.append(ep["power"])
        slip.append(foot_slip(ep["states"], ep["contacts"]))
        falls += int(ep["fell"])
        steps += len(X)
        path += float(np.linalg.norm(np.diff(ep["states"][:, BASE_POS][:, :2], axis=0), axis=1).sum())
    n = len(episodes)
    err = np.concatenate(errors)
    rmse = np.sqrt(np.mean(err**2, axis=0)) if len(err) else np.full(3, np.nan)
    sim_seconds = steps * PHYSICS.ctrl_dt
    power_all = np.concatenate(power)
    slip_all = np.concatenate(slip)
    return CommandResult(
        command=tuple(float(x) for x in c), episodes=n, falls_per_episode=falls / n,
        falls_per_minute=falls / (sim_seconds / 60.0), vx_rmse=float(rmse[0]), vy_rmse=float(rmse[1]),
        yaw_rate_rmse=float(rmse[2]), vx_stride_rmse=float(np.sqrt(_mean([d**2 for d in strides]))),
        mean_torque=float(np.concatenate(torque).mean()),
        mean_power=float(power_all.mean()),
        energy_per_meter=(float(power_all.sum() * PHYSICS.ctrl_dt / path)
                          if moves and path > 0.05 else float("nan")),
        foot_slip=float(slip_all.mean()) if len(slip_all) else float("nan"),
        survival_seconds=sim_seconds / n,
        reached_half_command=float(np.mean(np.array(progress) >= 0.5)) if progress else float("nan"),
        contact_pattern=_mean(pattern), feet_in_air=_mean(airborne), gait=GAITS[int(episodes[0]["gaits"][0])])


def _mean(parts: list[np.ndarray]) -> float:
    """Mean over the concatenated parts; nan if they are all empty."""
    values = np.concatenate(parts) if parts else np.zeros(0)
    return float(values.mean()) if len(values) else float("nan")


def evaluate(controller: Controller | BatchedController, commands: dict[str, Sequence[float]] = EXPERT_COMMANDS,
             episodes: int = 20, seconds: float = 10.0, seed: int = 0, num_envs: int = 1,
             gait: str = "trot") -> dict[str, CommandResult]:
    """:func:`evaluate_command` for each named command (same seeds for each), in ``gait``."""
    return {name: evaluate_command(controller, c, episodes, seconds, seed, num_envs=num_envs, gait=gait)
            for name, c in commands.items()}


def time_controller(controller: Controller, calls: int, warmup: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall time of ``act()`` in a closed loop in the Gymnasium env (reset on a fall), command (0.5, 0, 0).

    Args:
      controller: any controller (single observations).
      calls: timed ``act()`` calls; warmup: untimed calls first (compilation).
      seed: reset seed of the first episode.

    Returns:
      (act() seconds (calls,), env.step() seconds (calls,)), ``time.perf_counter`` differences.
    """
    env = gymnasium.make(envs.GYM_ID)
    obs, _ = env.reset(seed=seed, options={"command": (0.5, 0.0, 0.0)})
    controller.reset()
    act_t, step_t = [], []
    try:
        for i in range(warmup + calls):
            t0 = time.perf_counter()
            action = controller.act(obs)
            t1 = time.perf_counter()
            obs, _, terminated, truncated, _ = env.step(action)
            t2 = time.perf_counter()
            if i >= warmup:
                act_t.append(t1 - t0)
                step_t.append(t2 - t1)
            if terminated or truncated:
                obs, _ = env.reset(options={"command": (0.5, 0.0, 0.0)})
                controller.reset()
    finally:
        env.close()
    return np.array(act_t), np.array(step_t)


def markdown_table(results: dict[str, CommandResult]) -> str:
    """The results as a Markdown table, one row per command."""
    lines = ["| command (vx, vy, yaw rate) | gait | falls / episode | falls / min | survival (s) | vx RMSE (m/s) "
             "| vy RMSE (m/s) | yaw-rate RMSE (rad/s) | vx RMSE over strides (m/s) | contact pattern | feet in air "
             "| mean torque (N m) | mean power (W) | energy (J/m) | foot slip (m/s) | reached half the command |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} {r.command} | {r.gait} | {r.falls_per_episode:.2f} | {r.falls_per_minute:.2f} | "
                     f"{r.survival_seconds:.1f} | {r.vx_rmse:.3f} | {r.vy_rmse:.3f} | {r.yaw_rate_rmse:.3f} | "
                     f"{r.vx_stride_rmse:.3f} | {r.contact_pattern:.2f} | {r.feet_in_air:.2f} | "
                     f"{r.mean_torque:.2f} | {r.mean_power:.1f} | {r.energy_per_meter:.0f} | {r.foot_slip:.3f} | "
                     f"{r.reached_half_command:.2f} |")
    return "\n".join(lines)
