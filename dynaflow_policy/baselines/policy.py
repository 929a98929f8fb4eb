"""``StateFlowIDPolicy``: the state-space baseline as a closed-loop controller, interface of ``DynaFlowPolicy``.

Receding horizon over planned STATES, with the inverse dynamics closing the loop::

    call            0          1          2     ...   E-1        E (replan)
    plan            X = sample_states(x_0) (H+1, 37), world frame (row 0 = x_0)
    action          ID(x_0, X[1])  ID(x_1, X[2])  ...  ID(x_{E-1}, X[E])   ID(x_E, X'[1]) ...

where x_j is the state read from the observation at call j, E = ``execute_steps``
and ID is the inverse dynamics. Each action asks for the planned state one
control step ahead of the current position in the plan, from the state the
robot is actually in, so drift away from the plan is corrected at every step.

Frames: the flow samples in the heading frame of the planning state (like
``DynaFlowPolicy.plan``); the plan is mapped back to the world frame of that
state (``frames.from_heading_frame``) before it is compared with observed
states. (The inverse dynamics' features are invariant to world x, y and yaw
anyway, so either frame gives the same action as long as both states are in
the same one.)
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dynaflow_policy.baselines.inverse_dynamics import InverseDynamics, predict
from dynaflow_policy.baselines.state_flow import sample_states
from dynaflow_policy.baselines.train import load_checkpoint
from dynaflow_policy.configs import DiTConfig, FlowConfig
from dynaflow_policy.frames import from_heading_frame, to_heading_frame
from dynaflow_policy.model import DiT1d
from dynaflow_policy.normalizer import Normalizer
from dynaflow_policy.policy import DEFAULT_EXECUTE_STEPS, RecedingHorizonPolicy
from dynaflow_policy.train import conditioning


@functools.lru_cache(maxsize=8)
def _sampler(dit: DiTConfig, flow: FlowConfig):
    """Jitted ``sample_states(params, x0=(1, 37), cond=(1, 7), rng=key, normalizer=n) -> (1, H+1, 37)``."""
    return jax.jit(functools.partial(sample_states, apply_fn=DiT1d(dit, predict="states").apply, config=flow,
                                     horizon=dit.horizon))


class StateFlowIDPolicy(RecedingHorizonPolicy):
    """Closed-loop state-flow + inverse-dynamics controller: ``act(obs (44,)) -> action (12,)``.

    Args:
      params: variables of ``DiT1d(dit, predict="states")``, normally a checkpoint's EMA weights.
      dit: the network config.
      flow: the flow config (``ode_steps``, ``t_clamp``, ``noise_scale``, ``heading_frame``).
      normalizer: the state normaliser the network was trained with.
      inverse_dynamics: the inverse dynamics.
      execute_steps: actions taken from each plan before replanning, 1..H.
      ode_steps: Euler steps per plan (default: ``flow.ode_steps``).
      seed: seed of the sampling noise; :meth:`reset` restarts the sequence.
      command: fixed (vx, vy, yaw rate) to follow instead of the observation's command.
      gait: fixed gait name to follow instead of the observation's gait.

    Attributes:
      command, gait: settable overrides (None: read from each observation), as for ``DynaFlowPolicy``.
      last_states: (H+1, 37) world-frame states of the last plan (None before the first).
    """

    def __init__(self, params: Any, dit: DiTConfig, flow: FlowConfig, normalizer: Normalizer,
                 inverse_dynamics: InverseDynamics, *, execute_steps: int = DEFAULT_EXECUTE_STEPS,
                 ode_steps: int | None = None, seed: int = 0, command: Sequence[float] | None = None,
                 gait: str | None = None):
        super().__init__(dit.horizon, flow, execute_steps=execute_steps, ode_steps=ode_steps, seed=seed,
                         command=command, gait=gait)
        self.params = jax.tree.map(jnp.asarray, params)
        self.dit = dit
        self.normalizer = normalizer
        self.inverse_dynamics = inverse_dynamics
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> StateFlowIDPolicy:
        """Loads a checkpoint of ``python -m dynaflow_policy.baselines.train`` (the flow model's EMA weights).

        Args:
          path: a step directory, a ``checkpoints`` directory or a work directory.
          **kwargs: the constructor's keyword arguments (``execute_steps``, ``ode_steps``, ``seed``, ...).

        Raises:
          CheckpointError: missing, truncated or corrupt checkpoint, one made for another physics config,
            or not a baseline checkpoint.
        """
        ckpt = load_checkpoint(path)
        return cls(ckpt.ema_params, ckpt.dit, ckpt.flow, ckpt.normalizer, ckpt.inverse_dynamics, **kwargs)

    def reset(self, seed: int | None = None) -> None:
        """Forgets the current plan and restarts the noise sequence (from ``seed`` if given)."""
        if seed is not None:
            self.seed = int(seed)
        self._rng = jax.random.PRNGKey(self.seed)
        self._next = 0
        self.last_states: np.ndarray | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The next action.

        Args:
          obs: (44,) Gymnasium observation of ``dynaflow/Go1-v0`` (state 37, command 3, gait one-hot 4).

        Returns:
          (12,) float32 action in [-1, 1].

        Raises:
          ValueError: obs of the wrong size, non-finite, or with an invalid gait one-hot.
        """
        x, command, gait = self.read_observation(obs)
        if self.last_states is None or self._next == self.execute_steps:
            self.plan(x, command, gait)
        self._next += 1
        return predict(self.inverse_dynamics, x, self.last_states[self._next])

    __call__ = act

    def plan(self, x: np.ndarray, command: Sequence[float], gait: int) -> np.ndarray:
        """Samples a state plan from world-frame state ``x`` and restarts the walk along it.

        Args:
          x: (37,) state; command: (3,); gait: index into ``envs.task.GAITS``.

        Returns:
          (H+1, 37) float64 world-frame planned states (row 0 = ``x``), also kept in ``last_states``.
        """
        x = self.check_plan_arguments(x, gait)
        x0 = to_heading_frame(x[None])[0] if self.flow.heading_frame else x  # (37,)
        cond = conditioning(np.asarray(command, np.float32)[None], np.array([gait]), np)  # (1, 7)
        self._rng, key = jax.random.split(self._rng)
        X = _sampler(self.dit, self.flow)(self.params, x0=jnp.asarray(x0[None], jnp.float32), cond=jnp.asarray(cond),
                                          rng=key, normalizer=self.normalizer)  # (1, H+1, 37)
        X = np.asarray(X, np.float64)[0]  # (H+1, 37)
        self.last_states = from_heading_frame(X[None], x)[0] if self.flow.heading_frame else X  # (H+1, 37)
        self._next = 0
        return self.last_states
