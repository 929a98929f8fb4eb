"""Random held commands and shoves: falls and tracking beyond any fixed list of scenarios.

The sweep (:mod:`dynaflow_policy.benchmark.sweep`) runs eight named scenarios. A
controller can pass all of them and still fall under a combination nobody named.
Here every episode draws its own scenario, as the DAgger collector does
(:func:`dynaflow_policy.data.dagger.random_scenario`: a random command from the
given ranges every ``hold_seconds``, changed in one step, and random shoves),
from the env's resting start. Give the ranges the controller's demonstrator was
trained on (``PPOExpert.command_ranges``): outside them neither has data. Use a seed no training file was collected
with (the shipped DAgger file used 21).

Each fall is reported with when it happened and how long after the last shove
and the last command change, so a fall can be told from a shove it could not
absorb or a command step it could not follow.
"""

from __future__ import annotations

import dataclasses
import time

import gymnasium
import numpy as np

import envs
from dynaflow_policy.closed_loop import CommandResult, Controller, Scenario, command_result, run_episode
from dynaflow_policy.data.dagger import random_scenario
from envs.physics import PHYSICS
from envs.task import CommandRanges


@dataclasses.dataclass(frozen=True)
class Fall:
    """One fall: its episode, time (s), the command in force, and seconds since the last shove and the last
    command change (nan: none happened before the fall)."""

    episode: int
    time: float
    command: tuple[float, float, float]
    since_shove: float
    since_command_change: float


def stress_scenarios(ranges: CommandRanges, episodes: int, seconds: float, seed: int, hold_seconds: float = 2.5,
                     pushes: int = 1, push_speed: tuple[float, float] = (0.3, 0.8)) -> list[Scenario]:
    """``episodes`` random scenarios with commands in ``ranges``, drawn from ``numpy.random.default_rng(seed)`` in
    order (the same arguments give the same scenarios)."""
    rng = np.random.default_rng(seed)
    return [random_scenario(rng, seconds, hold_seconds, ranges, pushes, push_speed) for _ in range(episodes)]


def fall_of(episode: int, run: dict, scenario: Scenario) -> Fall:
    """The :class:`Fall` of a fallen :func:`closed_loop.run_episode` result under ``scenario``."""
    t = len(run["actions"]) * PHYSICS.ctrl_dt
    shoves = [s for s, _ in scenario.pushes if s < t]
    changes = [s for s, _ in scenario.commands[1:] if s < t]
    return Fall(episode, t, tuple(float(x) for x in run["commands"][-1]),
                t - shoves[-1] if shoves else float("nan"), t - changes[-1] if changes else float("nan"))


def section_stress(controllers: dict[str, Controller], ranges: dict[str, CommandRanges], episodes: int,
                   seconds: float, seed: int, hold_seconds: float = 2.5, pushes: int = 1,
                   push_speed: tuple[float, float] = (0.3, 0.8),
                   log=print) -> dict[str, dict[str, tuple[CommandResult, list[Fall]]]]:
    """controller name -> gait -> (metrics over its ``episodes`` random scenarios, the falls).

    Args:
      ranges: gait name -> the command ranges of its scenarios; every gait in it runs.

    Every controller runs the same scenarios and env seeds (``seed + i`` for episode i). The RMSEs are against
    the command in force at each step after the first second (``closed_loop.command_result``).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(seconds / PHYSICS.ctrl_dt)))
    results: dict[str, dict[str, tuple[CommandResult, list[Fall]]]] = {}
    try:
        for name, controller in controllers.items():
            results[name] = {}
            for gait, gait_ranges in ranges.items():
                t0 = time.perf_counter()
                scenarios = stress_scenarios(gait_ranges, episodes, seconds, seed, hold_seconds, pushes, push_speed)
                runs = [run_episode(env, controller, s, seconds, seed + i, gait) for i, s in enumerate(scenarios)]
                falls = [fall_of(i, r, s) for i, (r, s) in enumerate(zip(runs, scenarios)) if r["fell"]]
                results[name][gait] = (command_result(runs, scenarios[0].command_at(0)), falls)
                log(f"  stress {name} {gait}: {len(falls)} of {episodes} fell, {time.perf_counter() - t0:.0f} s")
    finally:
        env.close()
    return results


def markdown(results: dict[str, dict[str, tuple[CommandResult, list[Fall]]]]) -> str:
    """One row per controller and gait, then one line per fall."""
    lines = ["| controller | gait | falls | vx / vy / yaw-rate RMSE | contact pattern | feet in the air |",
             "|---|---|---|---|---|---|"]
    details = []
    for name, per_gait in results.items():
        for gait, (r, falls) in per_gait.items():
            lines.append(f"| {name} | {gait} | {len(falls)} of {r.episodes} | {r.vx_rmse:.3f} / {r.vy_rmse:.3f} / "
                         f"{r.yaw_rate_rmse:.3f} | {r.contact_pattern:.2f} | {r.feet_in_air:.2f} |")
            for f in falls:
                details.append(f"- {name}, {gait}, episode {f.episode}: fell at {f.time:.2f} s under "
                               f"({f.command[0]:.2f}, {f.command[1]:.2f}, {f.command[2]:.2f}), "
                               f"{f.since_shove:.2f} s after the last shove, "
                               f"{f.since_command_change:.2f} s after the last command change")
    return "\n".join(lines + ([""] + details if details else []))
