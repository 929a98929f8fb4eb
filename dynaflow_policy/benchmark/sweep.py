"""Section 5 of the benchmark: the closed loop over the expert's whole command range.

The four commands of section 2 are forward walking and a turn in place. Users
also stand still, walk backward and sideways, combine the three velocities,
change the command while walking and get shoved. :data:`SWEEP` holds one
:class:`dynaflow_policy.closed_loop.Scenario` per case, inside the command
ranges the expert was trained on (``envs.task.CommandRanges``: vx -0.5..1.0
m/s, vy -0.5..0.5 m/s, yaw rate -1..1 rad/s). Every scenario starts from the
env's resting start; errors are against the command in force at each step,
after the first second of each episode (``closed_loop.command_result``).
"""

from __future__ import annotations

import time

import gymnasium

import envs
from dynaflow_policy.benchmark.sections import Log
from dynaflow_policy.closed_loop import CommandResult, Controller, Scenario, command_result, run_episode
from envs.physics import PHYSICS

SWEEP: dict[str, Scenario] = {
    "stand": Scenario.constant((0.0, 0.0, 0.0)),
    "backward 0.4": Scenario.constant((-0.4, 0.0, 0.0)),
    "sideways 0.3": Scenario.constant((0.0, 0.3, 0.0)),
    "sideways -0.4": Scenario.constant((0.0, -0.4, 0.0)),
    "walk and turn (0.5, 0, -0.8)": Scenario.constant((0.5, 0.0, -0.8)),
    "combined (0.8, -0.2, -0.4)": Scenario.constant((0.8, -0.2, -0.4)),
    "changes every 2.5 s": Scenario(((0.0, (0.5, 0.0, 0.0)), (2.5, (0.0, 0.3, 0.5)), (5.0, (-0.3, 0.0, 0.0)),
                                     (7.5, (0.8, -0.2, -0.4)))),
    "vx 0.5, shoved at 3 s and 6 s": Scenario(((0.0, (0.5, 0.0, 0.0)),),
                                              pushes=((3.0, (0.0, 0.6)), (6.0, (0.5, -0.3)))),
}
"""The sweep's scenarios. Shoves are world-frame velocity jumps (m/s); the reset's random heading
makes their direction relative to the body differ from episode to episode."""


def section_sweep(controllers: dict[str, Controller], episodes: int, seconds: float, seed: int,
                  log: Log, scenarios: dict[str, Scenario] = SWEEP) -> dict[str, dict[str, CommandResult]]:
    """controller name -> scenario name -> metrics of ``episodes`` episodes (seeds ``seed ..``) of ``seconds``.

    A scenario's reported ``command`` is its first; its RMSEs are against each step's command.
    """
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(seconds / PHYSICS.ctrl_dt)))
    results: dict[str, dict[str, CommandResult]] = {}
    try:
        for name, controller in controllers.items():
            t0 = time.perf_counter()
            results[name] = {
                label: command_result([run_episode(env, controller, s, seconds, seed + i) for i in range(episodes)],
                                      s.command_at(0))
                for label, s in scenarios.items()}
            log(f"  sweep {name}: {time.perf_counter() - t0:.0f} s")
    finally:
        env.close()
    return results
