"""The benchmarked methods: controllers for the closed loop, generators for the offline sections.

A generator maps (x0 world (37,), command (3,), gait int) to a planned window
(X world (H+1, 37), U (H, 12)): DynaFlow's plan and its rollout, the state
flow's planned states and the inverse dynamics' actions, or the PPO expert run
in native MuJoCo with the window's first command held.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np

from dynaflow_policy.baselines.inverse_dynamics import predict
from dynaflow_policy.baselines.policy import StateFlowIDPolicy
from dynaflow_policy.benchmark.config import BenchmarkConfig
from dynaflow_policy.closed_loop import Controller
from dynaflow_policy.data.collect import rollout_expert
from dynaflow_policy.loading import load_policy
from dynaflow_policy.policy import DynaFlowPolicy

Generator = Callable[[np.ndarray, np.ndarray, int, float], tuple[np.ndarray, np.ndarray]]
"""generate(x0 world (37,), command (3,), gait int, gait phase at x0) -> (X world (H+1, 37), U (H, 12)).
Only a model conditioned on the gait clock reads the phase."""

HELD_COMMAND_ROW = "PPO expert told only the first command (held for H steps)"
"""Name of the reference row of section 1: the demonstrator given what a conditional model is given."""


def dynaflow_generator(policy: DynaFlowPolicy) -> Generator:
    """A DynaFlow policy's plan U and its rollout from x0."""
    def generate(x0, command, gait, phase):
        U = policy.plan(x0, command, gait, phase)
        return policy.planned_states(), U

    return generate


def state_flow_generator(policy: StateFlowIDPolicy) -> Generator:
    """Planned states, and the inverse dynamics' action for each planned transition."""
    def generate(x0, command, gait, phase):
        X = policy.plan(x0, command, gait, phase)  # (H+1, 37) world frame
        return X, predict(policy.inverse_dynamics, X[:-1], X[1:])

    return generate


def held_command_generator(expert: Controller, horizon: int) -> Generator:
    """The demonstrator told only (x0, c): the expert in native MuJoCo with the command held at c for H steps.

    The demonstrations' commands change within a window, so this is the TRE of
    the demonstrator itself when it knows what a conditional model is given.
    """
    def generate(x0, command, gait, phase):
        states, actions, ok = rollout_expert(expert, np.asarray(x0, np.float64),
                                             np.repeat(np.asarray(command, np.float32)[None], horizon + 1, 0), gait)
        if not ok:
            raise RuntimeError("the expert fell in a held-out window with its command held")
        return states, actions[:horizon]

    return generate


@dataclasses.dataclass(frozen=True)
class Methods:
    """The methods that could be loaded.

    Attributes:
      controllers: name -> controller, in report order.
      generators: name -> :data:`Generator`, for the methods that plan windows.
      missing: one note per method whose checkpoint is missing ("<method>: <path> missing").
    """

    controllers: dict[str, Controller]
    generators: dict[str, Generator]
    missing: list[str]


def dynaflow_name(ode_steps: int) -> str:
    """Row name of DynaFlow sampled with ``ode_steps`` Euler steps."""
    return f"DynaFlow ({ode_steps} ODE step{'s' if ode_steps > 1 else ''})"


def load_methods(config: BenchmarkConfig, relative_to: str = os.curdir) -> Methods:
    """DynaFlow with 1 and ``config.ode_steps`` ODE steps (None: the checkpoint's default), the PPO expert and
    the state flow + ID baseline.

    Paths in the notes on missing checkpoints are relative to ``relative_to``.
    """
    controllers, generators, missing = {}, {}, []
    if os.path.isdir(config.dynaflow):
        default = load_policy(config.dynaflow, seed=config.seed)
        for n in sorted({1, config.ode_steps or default.ode_steps}):
            policy = default if n == default.ode_steps else load_policy(config.dynaflow, ode_steps=n, seed=config.seed)
            controllers[dynaflow_name(n)] = policy
            generators[dynaflow_name(n)] = dynaflow_generator(policy)
    else:
        missing.append(f"DynaFlow: {os.path.relpath(config.dynaflow, relative_to)} missing")
    if os.path.isdir(config.ppo):
        controllers["PPO expert"] = load_policy(config.ppo)
    else:
        missing.append(f"PPO expert: {os.path.relpath(config.ppo, relative_to)} missing")
    if os.path.isdir(config.state_flow):
        policy = load_policy(config.state_flow, seed=config.seed)
        controllers["State flow + ID"] = policy
        generators["State flow + ID"] = state_flow_generator(policy)
    else:
        missing.append(f"State flow + ID: {os.path.relpath(config.state_flow, relative_to)} missing")
    return Methods(controllers, generators, missing)
