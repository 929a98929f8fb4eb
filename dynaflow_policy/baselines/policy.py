"""``StateFlowIDPolicy``: the state-space baseline as a closed-loop controller, interface of ``DynaFlowPolicy``.

One environment or a batch, as :class:`dynaflow_policy.policy.RecedingHorizonPolicy`
(which keeps the per-environment plans, counts and noise streams).

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
from dynaflow_policy.configs import DiTConfig, FlowConfig, conditioning
from dynaflow_policy.frames import from_heading_frame, to_heading_frame
from dynaflow_policy.model import DiT1d
from dynaflow_policy.normalizer import Normalizer
from dynaflow_policy.policy import RecedingHorizonPolicy, pad_rows, padded_size
from envs.task import GAITS


@functools.lru_cache(maxsize=8)
def _sampler(dit: DiTConfig, flow: FlowConfig):
    """Jitted ``(params, x0 (B, 37), cond (B, 7), keys (B, 2), normalizer) -> (B, H+1, 37)``: row b is
    ``sample_states`` of row b alone with key b."""
    one = functools.partial(sample_states, apply_fn=DiT1d(dit, predict="states").apply, config=flow,
                            horizon=dit.horizon)

    def batch(params, x0, cond, keys, normalizer):
        return jax.vmap(lambda x, c, k: one(params, x0=x[None], cond=c[None], rng=k, normalizer=normalizer)[0])(
            x0, cond, keys)

    return jax.jit(batch)


class StateFlowIDPolicy(RecedingHorizonPolicy):
    """Closed-loop state-flow + inverse-dynamics controller: ``act(obs (44,) or (N, 44)) -> (12,) or (N, 12)``.

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
      gaits: the gaits of the training data; the others are refused (ValueError naming these).
      replan_on_change: replan at once when the command or gait changes (``RecedingHorizonPolicy``).

    Attributes:
      command, gait: settable overrides (None: read from each observation), as for ``DynaFlowPolicy``.
      last_states: the plans being walked, (H+1, 37) world-frame states after single observations,
        (N, H+1, 37) after batches (None before the first).
    """

    def __init__(self, params: Any, dit: DiTConfig, flow: FlowConfig, normalizer: Normalizer,
                 inverse_dynamics: InverseDynamics, *, execute_steps: int, ode_steps: int | None = None,
                 seed: int = 0, command: Sequence[float] | None = None, gait: str | None = None,
                 gaits: Sequence[str] = GAITS, replan_on_change: bool = True):
        super().__init__(dit.horizon, flow, execute_steps=execute_steps, ode_steps=ode_steps, seed=seed,
                         command=command, gait=gait, gaits=gaits, replan_on_change=replan_on_change)
        self.params = jax.tree.map(jnp.asarray, params)
        self.dit = dit
        self.normalizer = normalizer
        self.inverse_dynamics = inverse_dynamics

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **overrides) -> StateFlowIDPolicy:
        """Loads a checkpoint of ``python -m dynaflow_policy.baselines.train`` (the flow model's EMA weights).

        Args:
          path: a step directory, a ``checkpoints`` directory or a work directory.
          **overrides: the constructor's keyword arguments (``execute_steps``, ``ode_steps``, ``seed``, ...);
            ``execute_steps`` and ``ode_steps`` default to the checkpoint's ``policy_defaults``, ``gaits`` to
            the gaits it records (all four when it records none).

        Raises:
          CheckpointError: missing, truncated or corrupt checkpoint, one made for another physics config,
            or not a baseline checkpoint.
        """
        ckpt = load_checkpoint(path)
        return cls(ckpt.ema_params, ckpt.dit, ckpt.flow, ckpt.normalizer, ckpt.inverse_dynamics,
                   **{**ckpt.policy_defaults, "gaits": ckpt.gaits or GAITS, **overrides})

    @property
    def last_states(self) -> np.ndarray | None:
        return self._current(self._plans)

    def sample(self, x: np.ndarray, command: np.ndarray, gait: np.ndarray, phase: np.ndarray,
               keys: np.ndarray) -> np.ndarray:
        """World-frame state plans (B, H+1, 37) float64 (row 0 of each = its x) from states x (B, 37)."""
        b, size = len(x), padded_size(len(x))
        x0 = to_heading_frame(x[:, None])[:, 0] if self.flow.heading_frame else x  # (B, 37)
        X = _sampler(self.dit, self.flow)(self.params, jnp.asarray(pad_rows(x0, size), jnp.float32),
                                          jnp.asarray(pad_rows(conditioning(
                                              command, gait, np, phase if self.flow.gait_clock else None), size)),
                                          jnp.asarray(pad_rows(keys, size)), self.normalizer)  # (P, H+1, 37)
        X = np.asarray(X, np.float64)[:b]  # (B, H+1, 37)
        return from_heading_frame(X, x) if self.flow.heading_frame else X

    def actions(self, x: np.ndarray, plans: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """The inverse dynamics from each state to the planned state one step ahead of it: (N, 12).

        One environment goes through the (37,) form of ``predict``: XLA rounds it differently from a
        (1, 37) batch, and this keeps single-environment actions those of the unbatched controller."""
        targets = plans[np.arange(len(plans)), taken + 1]  # (N, 37)
        if len(x) == 1:
            return predict(self.inverse_dynamics, x[0], targets[0])[None]
        return predict(self.inverse_dynamics, x, targets)
