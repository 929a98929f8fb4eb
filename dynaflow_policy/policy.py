"""``DynaFlowPolicy``: a trained DynaFlow model as a closed-loop controller for the Gymnasium env.

Receding horizon. At a replanning step the policy reads the state, command and
gait from the observation, expresses the state in its heading frame, samples
an action plan U (H, 12) with the flow ODE from that state, executes its first
``execute_steps`` actions one per :meth:`DynaFlowPolicy.act` call, and then
replans from the state it has reached. A new command or gait (in the
observation or set on the policy) therefore takes effect at the next
replanning, at most ``execute_steps - 1`` control steps (20 ms each) later.

Sampling at inference. With one ODE step (the default) a plan is one network
evaluation and needs no physics: the network maps the noise window (row 0 the
current state) straight to U. With N > 1 steps, each of the first N - 1
evaluations needs the rollout Phi(x0, U) for the flow velocity; it has no
gradient here, so it runs in native MuJoCo (float64,
:meth:`envs.native.NativeGo1.rollout`, ~1 ms for H = 16) instead of MJX (the
differentiable float32 rollout used in training). ``tests/test_policy.py``
checks that this equals :func:`dynaflow_policy.flow.sample` on the same noise.
The network runs with the EMA weights.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dynaflow_policy.configs import DiTConfig, FlowConfig
from dynaflow_policy.flow import flow_velocity, noise_window
from dynaflow_policy.frames import from_heading_frame, to_heading_frame
from dynaflow_policy.model import DiT1d
from dynaflow_policy.normalizer import Normalizer
from dynaflow_policy.train import conditioning, load_checkpoint
from envs.native import NativeGo1
from envs.physics import BASE_QUAT, PHYSICS, STATE_DIM, PhysicsConfig
from envs.task import COMMAND_DIM, GAITS, OBS_DIM, gait_index

DEFAULT_EXECUTE_STEPS = 4
"""Actions executed from each plan before replanning (of H = 16).

Chosen by ``python eval/execute_steps_sweep.py --episodes 10`` on the shipped
``checkpoints/dynaflow_go1_expert`` (step 19,000): 1, 2, 4 and 8 gave no falls
in 120 episodes each, and mean vx RMSE 0.49, 0.51, 0.35 and 0.48 m/s; 4 tracks
best, and plans once per 80 ms (0.40 ms per ``act()`` on average). On step
30,000 the same sweep gave 27, 15, 0 and 0 falls in 40 episodes and vx RMSE 0.37,
0.15, 0.11 and 0.11 m/s (yaw-rate RMSE 0.14 with 4, 0.10 with 8): 8 now ranks first. The default stays 4 because the
kinematic checkpoint and the state-space baseline share it and were measured at 4."""


@functools.lru_cache(maxsize=8)
def _network(dit: DiTConfig):
    """Jitted ``DiT1d(dit).apply(params, X_t (1, H+1, 37), t (1,), c (1, 7)) -> U (1, H, 12)``."""
    return jax.jit(DiT1d(dit).apply)


@functools.lru_cache(maxsize=8)
def _noise(horizon: int, flow: FlowConfig):
    """Jitted ``noise_window(rng, x0_normalised (1, 37)) -> X_0 (1, H+1, 37)``."""
    return jax.jit(functools.partial(noise_window, horizon=horizon, config=flow))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class RecedingHorizonPolicy:
    """What every planning controller shares: argument checks, command / gait overrides, reading observations.

    Subclasses plan H steps from the current state and act on the first ``execute_steps``.

    Args:
      horizon: H, the plan length.
      flow: the flow config; ``self.flow`` is a copy with ``ode_steps`` applied.
      execute_steps: actions taken from each plan before replanning, 1..H.
      ode_steps: Euler steps per plan (default: ``flow.ode_steps``).
      seed: seed of the sampling noise.
      command: fixed (vx, vy, yaw rate) to follow instead of the observation's command.
      gait: fixed gait name to follow instead of the observation's gait.
    """

    def __init__(self, horizon: int, flow: FlowConfig, *, execute_steps: int, ode_steps: int | None, seed: int,
                 command: Sequence[float] | None, gait: str | None):
        if not _is_int(execute_steps) or not 1 <= execute_steps <= horizon:
            raise ValueError(f"execute_steps must be an int in [1, {horizon}] (the plan horizon), "
                             f"got {execute_steps!r}")
        ode_steps = flow.ode_steps if ode_steps is None else ode_steps
        if not _is_int(ode_steps) or ode_steps < 1:
            raise ValueError(f"ode_steps must be a positive int, got {ode_steps!r}")
        self.flow = dataclasses.replace(flow, ode_steps=int(ode_steps))
        self.execute_steps = int(execute_steps)
        self.ode_steps = int(ode_steps)
        self.seed = int(seed)
        self.command = command
        self.gait = gait

    @property
    def command(self) -> np.ndarray | None:
        return self._command

    @command.setter
    def command(self, value: Sequence[float] | None) -> None:
        if value is None:
            self._command = None
            return
        c = np.asarray(value, np.float32)
        if c.shape != (COMMAND_DIM,) or not np.all(np.isfinite(c)):
            raise ValueError(f"command must be 3 finite numbers (vx m/s, vy m/s, yaw rate rad/s), got {value!r}")
        self._command = c

    @property
    def gait(self) -> str | None:
        return self._gait

    @gait.setter
    def gait(self, value: str | None) -> None:
        if value is not None:
            gait_index(value)  # ValueError names the choices
        self._gait = value

    def read_observation(self, obs) -> tuple[np.ndarray, np.ndarray, int]:
        """(state (37,) float64, command (3,), gait index) of an observation, with the overrides applied.

        Raises:
          ValueError: obs of the wrong size, non-finite, or with an invalid gait one-hot.
        """
        o = check_observation(obs)
        command = o[STATE_DIM:STATE_DIM + COMMAND_DIM] if self._command is None else self._command
        gait = int(np.argmax(o[STATE_DIM + COMMAND_DIM:])) if self._gait is None else gait_index(self._gait)
        return o[:STATE_DIM].astype(np.float64), command, gait

    @staticmethod
    def check_plan_arguments(x: np.ndarray, gait: int) -> np.ndarray:
        """``x`` as a float64 (37,) state; ValueError on a bad state or gait index."""
        x = np.asarray(x, np.float64)
        if x.shape != (STATE_DIM,) or not np.all(np.isfinite(x)):
            raise ValueError(f"x must be a finite ({STATE_DIM},) state, got shape {x.shape}")
        if not _is_int(gait) or not 0 <= gait < len(GAITS):
            raise ValueError(f"gait must be an index into {GAITS}, got {gait!r}")
        return x


def check_observation(obs) -> np.ndarray:
    """A (44,) Gymnasium observation as float32; ValueError naming the problem otherwise."""
    o = np.asarray(obs)
    if o.shape != (OBS_DIM,):
        raise ValueError(f"obs must have shape ({OBS_DIM},) (state 37 ++ command 3 ++ gait one-hot "
                         f"{len(GAITS)}), got shape {o.shape}")
    if not np.issubdtype(o.dtype, np.floating) and not np.issubdtype(o.dtype, np.integer):
        raise ValueError(f"obs must be numeric, got dtype {o.dtype}")
    o = o.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(o))
    if bad.size:
        raise ValueError(f"obs must be finite; entries {bad.tolist()} are NaN or inf")
    onehot = o[STATE_DIM + COMMAND_DIM:]
    if not (np.all((onehot == 0) | (onehot == 1)) and onehot.sum() == 1):
        raise ValueError(f"obs[{STATE_DIM + COMMAND_DIM}:] must be a gait one-hot over {GAITS}, got {onehot}")
    return o


class DynaFlowPolicy(RecedingHorizonPolicy):
    """Closed-loop DynaFlow controller: ``act(obs (44,)) -> action (12,)``.

    Args:
      params: DiT variables (``{"params": ...}``), normally a checkpoint's EMA weights.
      dit: the network config.
      flow: the flow config (``ode_steps``, ``t_clamp``, ``noise_scale``).
      normalizer: the state normaliser the network was trained with.
      execute_steps: actions executed from each plan before replanning, 1..H.
      ode_steps: Euler steps per plan (default: ``flow.ode_steps``).
      seed: seed of the sampling noise; :meth:`reset` restarts the sequence.
      command: fixed (vx, vy, yaw rate) to follow instead of the observation's command.
      gait: fixed gait name to follow instead of the observation's gait.
      physics: physics of the inference rollouts (must be the training physics).

    Attributes:
      command, gait: settable overrides (None: read from each observation).
      last_actions: (H, 12) actions of the last plan (None before the first); :meth:`planned_states`
        gives the states they lead to.
    """

    def __init__(self, params, dit: DiTConfig, flow: FlowConfig, normalizer: Normalizer, *,
                 execute_steps: int = DEFAULT_EXECUTE_STEPS, ode_steps: int | None = None, seed: int = 0,
                 command: Sequence[float] | None = None, gait: str | None = None, physics: PhysicsConfig = PHYSICS):
        super().__init__(dit.horizon, flow, execute_steps=execute_steps, ode_steps=ode_steps, seed=seed,
                         command=command, gait=gait)
        self.params = jax.tree.map(jnp.asarray, params)
        self.dit = dit
        self.normalizer = normalizer
        self.physics = physics
        self._sim = NativeGo1(physics)
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> DynaFlowPolicy:
        """Loads a checkpoint of ``python -m dynaflow_policy.train`` (its EMA weights).

        Args:
          path: a step directory, a ``checkpoints`` directory or a work directory.
          **kwargs: the constructor's keyword arguments (``execute_steps``, ``ode_steps``, ``seed``, ...).

        Raises:
          CheckpointError: missing, truncated or corrupt checkpoint, or one made for another physics config.
        """
        ckpt = load_checkpoint(path)
        return cls(ckpt.ema_params, ckpt.config.dit_config, ckpt.config.flow, ckpt.normalizer, **kwargs)

    # ---------------------------------------------------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Forgets the current plan and restarts the noise sequence (from ``seed`` if given)."""
        if seed is not None:
            self.seed = int(seed)
        self._rng = jax.random.PRNGKey(self.seed)
        self._queue: list[np.ndarray] = []
        self.last_actions: np.ndarray | None = None
        self._last_x0: tuple[np.ndarray, np.ndarray] | None = None

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
        if not self._queue:
            U = self.plan(x, command, gait)
            self._queue = list(U[:self.execute_steps])
        return self._queue.pop(0).copy()

    __call__ = act

    def plan(self, x: np.ndarray, command: Sequence[float], gait: int) -> np.ndarray:
        """Samples an action plan from world-frame state ``x``.

        Args:
          x: (37,) state; command: (3,); gait: index into ``envs.task.GAITS``.

        Returns:
          (H, 12) float32 actions, also kept in ``last_actions``.
        """
        x = self.check_plan_arguments(x, gait)
        x0_h = to_heading_frame(x[None])[0] if self.flow.heading_frame else x  # (37,) the model's frame
        cond = conditioning(np.asarray(command, np.float32)[None], np.array([gait]), np)  # (1, 7)
        self._rng, key = jax.random.split(self._rng)
        x_t = np.asarray(_noise(self.dit.horizon, self.flow)(key, jnp.asarray(self.normalizer.normalize(x0_h)[None], jnp.float32)),
                         np.float64)  # (1, H+1, 37)
        net = _network(self.dit)
        dt = 1.0 / self.ode_steps
        for i in range(self.ode_steps):
            t = i * dt
            U = np.asarray(net(self.params, jnp.asarray(x_t, jnp.float32), jnp.full((1,), t, jnp.float32),
                               jnp.asarray(cond)))[0]  # (H, 12)
            if i < self.ode_steps - 1:
                x_hat = self.normalizer.normalize(self._sim.rollout(x0_h, U))[None]  # (1, H+1, 37)
                x_t = x_t + dt * np.asarray(flow_velocity(x_hat, x_t, np.full((1,), t), self.flow.t_clamp))
        self.last_actions = U.astype(np.float32)
        self._last_x0 = (x0_h, x)
        return self.last_actions

    def planned_states(self) -> np.ndarray | None:
        """(H+1, 37) world-frame states of the last plan (native rollout of ``last_actions``), or None."""
        if self._last_x0 is None:
            return None
        x0_h, x_world = self._last_x0
        X = self._sim.rollout(x0_h, self.last_actions)  # (H+1, 37)
        if not self.flow.heading_frame:
            return X
        X = from_heading_frame(X[None], x_world[None])[0]  # quaternions with w >= 0
        if x_world[BASE_QUAT.start] < 0:  # same rotations, with the sign of the given state
            X[:, BASE_QUAT] *= -1.0
        return X
