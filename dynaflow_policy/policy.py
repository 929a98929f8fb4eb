"""``DynaFlowPolicy``: a trained DynaFlow model as a closed-loop controller for the Gymnasium env.

Receding horizon. At a replanning step the policy reads the state, command and
gait from the observation, expresses the state in its heading frame, samples
an action plan U (H, 12) with the flow ODE from that state, executes its first
``execute_steps`` actions one per :meth:`RecedingHorizonPolicy.act` call, and
then replans from the state it has reached. A plan answers one command and
gait: when the observation's (or the override's) change, the environment
replans in that same ``act`` call (``replan_on_change``, default on; off, the
change waits for the next replanning, up to ``execute_steps - 1`` control
steps of 20 ms), and with ``ensemble`` > 1 its older plans, made for the old
command, are no longer averaged in.

Batches. ``act`` takes one observation (44,) or a batch (N, 44) from a
Gymnasium vector env, with one plan, action count and noise stream per
environment (row). The environments that need a new plan are planned in one
network call; ``reset(mask)`` restarts only the finished ones. Every
environment's noise stream starts at ``jax.random.PRNGKey(seed)`` with its own
seed (the policy's seed unless ``reset(seed=...)`` gives one per row) and
advances only when that environment replans, so environment i of a batch acts
like a single-environment policy with environment i's seed, whatever the other
rows do. A batched network call rounds differently from a call with one row
(XLA picks other matmul kernels), so the actions agree to float32 rounding
(~1e-6), and exactly when an environment is the only one replanning.

``execute_steps`` and ``ode_steps`` default to the checkpoint's
(``Checkpoint.policy_defaults``: those stored by ``python -m dynaflow_policy.export
--execute-steps N --ode-steps M``, else 4 and the flow's ``ode_steps``). Every shipped
DynaFlow checkpoint stores its own, chosen by closed-loop measurement
(``eval/execute_steps_sweep.py``, ``eval/ablation.py``, ``eval/gait_check.py``;
the numbers are in docs/training.md).

Sampling at inference. With one ODE step (the default) a plan is one network
evaluation and needs no physics: the network maps the noise window (row 0 the
current state) straight to U. With N > 1 steps, each of the first N - 1
evaluations needs the rollout Phi(x0, U) for the flow velocity; it has no
gradient here, so it runs in native MuJoCo (float64,
:meth:`envs.native.NativeGo1.rollout`, ~1 ms for H = 16) instead of MJX (the
differentiable float32 rollout used in training). ``tests/test_policy.py``
checks that this equals :func:`dynaflow_policy.flow.sample` on the same noise.
The network runs with the EMA weights.

Gait clock. Every environment has a gait phase that starts at 0 at its reset
and advances by one control step per ``act``; a model trained with
``FlowConfig.gait_clock`` (on data that stores the phase, the kinematic gaits)
is conditioned on it, so it knows which feet to lift next even from rest.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dynaflow_policy.configs import DiTConfig, FlowConfig, conditioning
from dynaflow_policy.flow import flow_velocity, noise_window
from dynaflow_policy.frames import from_heading_frame, to_heading_frame
from dynaflow_policy.model import DiT1d
from dynaflow_policy.normalizer import Normalizer
from dynaflow_policy.observations import GAIT_SLICE, check_observation, check_trained_gaits
from dynaflow_policy.train_state import load_checkpoint
from envs.native import NativeGo1
from envs.physics import ACTION_DIM, BASE_QUAT, PHYSICS, STATE_DIM, PhysicsConfig
from envs.task import COMMAND_DIM, GAITS, advance_phase, gait_index


@functools.lru_cache(maxsize=8)
def _network(dit: DiTConfig):
    """Jitted ``DiT1d(dit).apply(params, X_t (B, H+1, 37), t (B,), c (B, 7)) -> U (B, H, 12)``."""
    return jax.jit(DiT1d(dit).apply)


@functools.lru_cache(maxsize=8)
def _noise(horizon: int, flow: FlowConfig):
    """Jitted ``(keys (B, 2), x0_normalised (B, 37)) -> X_0 (B, H+1, 37)``, row b from key b alone."""
    one = functools.partial(noise_window, horizon=horizon, config=flow)
    return jax.jit(jax.vmap(lambda key, x0: one(key, x0[None])[0]))


_split = jax.jit(jax.vmap(jax.random.split))
"""``keys (B, 2) -> (B, 2, 2)``: ``jax.random.split`` of each key (the same bits as one key at a time)."""


def padded_size(b: int) -> int:
    """The batch size a plan of ``b`` rows is computed at: the next power of two, so a vector env
    of N environments compiles at most log2(N) + 1 network shapes."""
    return 1 << (b - 1).bit_length()


def pad_rows(a: np.ndarray, size: int) -> np.ndarray:
    """``a`` (B, ...) with row 0 repeated up to ``size`` rows."""
    return np.concatenate([a, np.repeat(a[:1], size - len(a), axis=0)]) if size > len(a) else a


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class RecedingHorizonPolicy:
    """Receding-horizon control of one environment or a batch of them: per-environment plans, action
    counts and noise streams, the command / gait overrides, ``act`` and ``reset``.

    A subclass supplies :meth:`sample` (plans for a batch of states, one network call) and
    :meth:`actions` (the action of each environment from its plan and current state).

    Args:
      horizon: H, the plan length.
      flow: the flow config; ``self.flow`` is a copy with ``ode_steps`` applied.
      execute_steps: actions taken from each plan before replanning, 1..H.
      ode_steps: Euler steps per plan (default: ``flow.ode_steps``).
      seed: seed of every environment's noise stream (``reset`` can give each its own).
      command: fixed (vx, vy, yaw rate) to follow instead of the observation's command.
      gait: fixed gait name to follow instead of the observation's gait.
      gaits: the gaits of the training data; the others are refused (ValueError naming these).
      replan_on_change: an environment whose command or gait differs from the one its plan was made for
        replans at once, before its plan is used up (a plan answers one command; without this, a new
        command waits up to ``execute_steps`` - 1 control steps). A command that changes every step then
        replans every step.
    """

    def __init__(self, horizon: int, flow: FlowConfig, *, execute_steps: int, ode_steps: int | None = None,
                 seed: int = 0, command: Sequence[float] | None = None, gait: str | None = None,
                 gaits: Sequence[str] = GAITS, replan_on_change: bool = True):
        if not _is_int(execute_steps) or not 1 <= execute_steps <= horizon:
            raise ValueError(f"execute_steps must be an int in [1, {horizon}] (the plan horizon), "
                             f"got {execute_steps!r}")
        ode_steps = flow.ode_steps if ode_steps is None else ode_steps
        if not _is_int(ode_steps) or ode_steps < 1:
            raise ValueError(f"ode_steps must be a positive int, got {ode_steps!r}")
        if not _is_int(seed):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.horizon = int(horizon)
        self.flow = dataclasses.replace(flow, ode_steps=int(ode_steps))
        self.execute_steps = int(execute_steps)
        self.ode_steps = int(ode_steps)
        self.seed = int(seed)
        if not isinstance(replan_on_change, (bool, np.bool_)):
            raise ValueError(f"replan_on_change must be a bool, got {replan_on_change!r}")
        self.replan_on_change = bool(replan_on_change)
        for g in gaits:
            gait_index(g)  # ValueError names the choices
        if not gaits:
            raise ValueError(f"gaits must name at least one of {GAITS}")
        self.gaits = tuple(gaits)
        self.command = command
        self.gait = gait
        self.reset()

    # ------------------------------------------------------------------------------------------ overrides

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
            check_trained_gaits([value], self.gaits, "controller")
        self._gait = value

    # ------------------------------------------------------------------------------- per-environment state

    @property
    def phase(self) -> float | np.ndarray | None:
        """The gait clock of each environment (cycles in [0, 1)): 0 at a reset, advanced one control step
        (``envs.task.advance_phase`` of the gait in force) per :meth:`act`; a float after single
        observations, (N,) after batches, None before the first. A model trained with
        ``FlowConfig.gait_clock`` is conditioned on it."""
        if self._phase is None:
            return None
        return float(self._phase[0]) if self._single else self._phase.copy()

    @property
    def num_envs(self) -> int | None:
        """N, the environments this policy controls since its last full :meth:`reset` (None before any)."""
        return None if self._keys is None else len(self._keys)

    def reset(self, mask: np.ndarray | None = None, seed: int | Sequence[int] | None = None) -> None:
        """Forgets plans and restarts noise streams, of every environment or of the finished ones.

        Args:
          mask: None: every environment, and the next :meth:`act` may start a batch of another size.
            (N,) bool: only the environments where True (the others keep their plans and streams),
            e.g. those a Gymnasium vector env has just reset.
          seed: None: with a mask, each reset environment keeps its seed; without one, every
            environment returns to ``self.seed``. An int: the seed of every reset
            environment (and, with ``mask=None``, the new default ``self.seed``). (N,) ints: environment
            i's seed is ``seed[i]``. An environment's stream restarts at ``jax.random.PRNGKey(its seed)``.

        Raises:
          ValueError: a mask that is not (N,) bool for the current N, or bad seeds; nothing is changed.
        """
        if mask is None:
            seeds = None
            if seed is not None and not _is_int(seed):
                seeds = self._check_seeds(seed, len(np.asarray(seed).reshape(-1)))
            elif seed is not None:
                self.seed = int(seed)
            self._seeds = seeds
            self._keys = self._plans = self._origins = self._taken = self._phase = None
            self._single = False
            if seeds is not None:
                self._start(len(seeds))
            return
        m = np.asarray(mask)
        n = self.num_envs if self.num_envs is not None else len(m.reshape(-1))
        if m.dtype != np.bool_ or m.shape != (n,):
            raise ValueError(f"mask must be a ({n},) bool array (one entry per environment), got "
                             f"{m.dtype} {m.shape}")
        seeds = None if seed is None else self._check_seeds(seed, n)
        if self.num_envs is None:
            self._start(n)
        rows = np.flatnonzero(m)
        if seeds is not None:
            self._seeds[rows] = seeds[rows]
        self._restart(rows)

    def _check_seeds(self, seed: int | Sequence[int], n: int) -> np.ndarray:
        """(n,) int64 seeds from an int or a sequence of n ints; ValueError otherwise."""
        s = np.asarray(seed)
        if s.ndim == 0:
            s = np.full(n, s)
        if s.shape != (n,) or not np.issubdtype(s.dtype, np.integer):
            raise ValueError(f"seed must be an int or {n} ints (one per environment), got {seed!r}")
        return s.astype(np.int64)

    def _start(self, n: int) -> None:
        """Per-environment state for a batch of n environments, all needing a plan."""
        if self._seeds is None or len(self._seeds) != n:
            self._seeds = np.full(n, self.seed, np.int64)
        self._keys = np.zeros((n, 2), np.uint32)
        self._phase = np.zeros(n)
        self._origins = np.zeros((n, STATE_DIM))
        self._plan_commands = np.zeros((n, COMMAND_DIM), np.float32)  # what each plan was made for
        self._plan_gaits = np.zeros(n, np.int64)
        self._taken = np.zeros(n, np.int64)
        self._plans = None
        self._restart(np.arange(n))

    def _restart(self, rows: np.ndarray) -> None:
        """Rows need a new plan; their noise streams and gait clocks start again."""
        self._taken[rows] = self.execute_steps
        self._phase[rows] = 0.0
        for i in rows:
            self._keys[i] = np.asarray(jax.random.PRNGKey(int(self._seeds[i])))

    def _batch(self, n: int, single: bool) -> None:
        """Starts a batch of n environments after a full reset, or checks that n is the current N."""
        if self._keys is None:
            self._start(n)
        elif n != self.num_envs:
            raise ValueError(f"got {'one observation' if single else f'{n} observations'}, but this policy "
                             f"controls {self.num_envs} environments since its last reset(); call reset() to "
                             "start another batch")
        self._single = single

    # ------------------------------------------------------------------------------------------ acting

    def read_observation(self, obs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(states (N, 37) float64, commands (N, 3) float32, gait indices (N,)) of checked observations
        (44,) or (N, 44) (a single one is a batch of one), with the overrides applied.

        Raises:
          ValueError: obs of the wrong shape, non-finite, or with an invalid gait one-hot (naming the row), or
            with a gait the controller was not trained on (naming its gaits).
        """
        o = check_observation(obs).reshape(-1, STATE_DIM + COMMAND_DIM + len(GAITS))  # (N, 44)
        n = len(o)
        command = o[:, STATE_DIM:STATE_DIM + COMMAND_DIM] if self._command is None else np.tile(self._command, (n, 1))
        gait = (np.argmax(o[:, GAIT_SLICE], axis=1) if self._gait is None
                else np.full(n, gait_index(self._gait)))
        check_trained_gaits([GAITS[g] for g in np.unique(gait)], self.gaits, "controller")
        return o[:, :STATE_DIM].astype(np.float64), command, gait

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The next action of each environment.

        Args:
          obs: (44,) observation of ``dynaflow/Go1-v0`` (state 37, command 3, gait one-hot 4), or
            (N, 44) observations of N environments (row i: environment i, the same N until :meth:`reset`).

        Returns:
          (12,) or (N, 12) float32 actions in [-1, 1]. The environments whose plan is used up, that have
          none, or (with ``replan_on_change``) whose command or gait changed are planned together, in one
          call of :meth:`sample`.

        Raises:
          ValueError: obs of the wrong shape, non-finite, or with an invalid gait one-hot (naming the
            row), or a batch of another size than the current one; no plan or stream is changed.
        """
        single = np.ndim(obs) == 1
        x, command, gait = self.read_observation(obs)  # (N, 37), (N, 3), (N,)
        self._batch(len(x), single)
        replan = self._taken >= self.execute_steps  # (N,)
        if self.replan_on_change:
            replan |= np.any(command != self._plan_commands, axis=1) | (gait != self._plan_gaits)
        rows = np.flatnonzero(replan)
        if rows.size:
            self._replan(rows, x[rows], command[rows], gait[rows])
        actions = self.actions(x, self._plans, self._taken)  # (N, 12)
        self._taken += 1
        self._phase = advance_phase(self._phase, gait, PHYSICS.ctrl_dt)
        return actions[0] if single else actions

    __call__ = act

    def plan(self, x: np.ndarray, command: Sequence[float] | np.ndarray, gait: int | np.ndarray,
             phase: float | np.ndarray | None = None) -> np.ndarray:
        """Samples new plans for every environment from world-frame states; :meth:`act` executes them next
        (unless, with ``replan_on_change``, it reads another command or gait than those given here).

        Args:
          x: (37,) state, or (N, 37) states of the N environments; command: (3,) or (N, 3);
            gait: an index into ``envs.task.GAITS``, or (N,) of them. The overrides do not apply.
          phase: the gait phase in [0, 1) of each state (a float or (N,)), which sets the controllers'
            gait clocks (:attr:`phase`); None keeps them. Only a model conditioned on the clock reads it.

        Returns:
          the plan (a copy): (L, D) for one state, (N, L, D) for N (subclasses say what L, D are).

        Raises:
          ValueError: bad states, commands or gait indices, a gait the controller was not trained on, or a
            batch of another size than the current one; nothing is changed.
        """
        x, command, gait, single = self.check_plan_arguments(x, command, gait)
        check_trained_gaits([GAITS[g] for g in np.unique(gait)], self.gaits, "controller")
        if phase is not None:
            p = np.asarray(phase, np.float64)
            if p.shape not in ((), (len(x),)) or not np.all((p >= 0) & (p < 1)):
                raise ValueError(f"phase must be a gait phase in [0, 1), or {len(x)} of them, got {phase!r}")
        self._batch(len(x), single)
        if phase is not None:
            self._phase[:] = p
        self._replan(np.arange(len(x)), x, command, gait)
        return (self._plans[0] if single else self._plans).copy()

    @staticmethod
    def check_plan_arguments(x, command, gait) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """(x (N, 37) float64, command (N, 3) float32, gait (N,) int, single) of :meth:`plan`'s arguments.

        Raises:
          ValueError: a non-finite or wrongly shaped state or command, or a gait that is not an index.
        """
        x = np.asarray(x, np.float64)
        single = x.ndim == 1
        x = x.reshape(-1, x.shape[-1]) if x.ndim else x
        if x.ndim != 2 or x.shape[1] != STATE_DIM or not np.all(np.isfinite(x)):
            raise ValueError(f"x must be a finite ({STATE_DIM},) state or (N, {STATE_DIM}) states, got shape "
                             f"{np.shape(x)}")
        n = len(x)
        c = np.asarray(command, np.float32)
        if c.shape not in ((COMMAND_DIM,), (n, COMMAND_DIM)) or not np.all(np.isfinite(c)):
            raise ValueError(f"command must be finite ({COMMAND_DIM},) or ({n}, {COMMAND_DIM}), got shape {c.shape}")
        g = np.asarray(gait)
        if not (np.issubdtype(g.dtype, np.integer) and g.shape in ((), (n,)) and np.all((g >= 0) & (g < len(GAITS)))):
            raise ValueError(f"gait must be an index into {GAITS}, or {n} of them, got {gait!r}")
        return x, np.broadcast_to(c, (n, COMMAND_DIM)), np.broadcast_to(g, (n,)).astype(np.int64), single

    def _replan(self, rows: np.ndarray, x: np.ndarray, command: np.ndarray, gait: np.ndarray) -> None:
        """New plans for ``rows`` from their states (B, 37), commands (B, 3), gaits (B,), one :meth:`sample`."""
        keys = np.asarray(_split(self._keys[rows]))  # (B, 2, 2): (next key of the stream, key of this plan)
        plans = self.sample(x, command, gait, self._phase[rows], keys[:, 1])
        if self._plans is None:
            self._plans = np.zeros((self.num_envs, *plans.shape[1:]), plans.dtype)
        self._plans[rows] = plans
        self._origins[rows] = x
        self._plan_commands[rows] = command
        self._plan_gaits[rows] = gait
        self._keys[rows] = keys[:, 0]
        self._taken[rows] = 0

    def _current(self, plans: np.ndarray | None) -> np.ndarray | None:
        """``plans`` (N, ...) as the caller sees them: row 0 after single observations, all rows after batches."""
        if plans is None:
            return None
        return plans[0] if self._single else plans

    def sample(self, x: np.ndarray, command: np.ndarray, gait: np.ndarray, phase: np.ndarray,
               keys: np.ndarray) -> np.ndarray:
        """Plans from B world-frame states (subclasses: one batched network call).

        Args:
          x: (B, 37) float64 states; command: (B, 3) float32; gait: (B,) indices; phase: (B,) gait phases
            (read by a model with ``flow.gait_clock``); keys: (B, 2) PRNG keys.

        Returns:
          (B, L, D) plans.
        """
        raise NotImplementedError

    def actions(self, x: np.ndarray, plans: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """The actions (N, 12) float32 of N environments in states x (N, 37) that have taken ``taken``
        (N,) actions from their plans (N, L, D)."""
        raise NotImplementedError


class DynaFlowPolicy(RecedingHorizonPolicy):
    """Closed-loop DynaFlow controller: ``act(obs (44,) or (N, 44)) -> action (12,) or (N, 12)``.

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
      ensemble: temporal ensembling: each action is the mean of what the last ``ensemble`` plans of
        the environment planned for this control step (those whose horizon still covers it), 1 (no
        ensembling) to ceil(H / execute_steps). Replanning every step executes only first actions,
        the least certain part of a plan; averaging overlapping plans smooths them.
      physics: physics of the inference rollouts (must be the training physics).
      gaits: the gaits of the training data (a checkpoint's ``gaits``); the others are refused.
      replan_on_change: replan at once when the command or gait changes (:class:`RecedingHorizonPolicy`).

    Attributes:
      command, gait: settable overrides (None: read from each observation).
      last_actions: the newest plans, (H, 12) float32 after single observations, (N, H, 12) after
        batches (None before the first); :meth:`planned_states` gives the states they lead to. With
        ``ensemble`` > 1 the executed actions are averages of these and older plans.
    """

    def __init__(self, params, dit: DiTConfig, flow: FlowConfig, normalizer: Normalizer, *, execute_steps: int,
                 ode_steps: int | None = None, seed: int = 0, command: Sequence[float] | None = None,
                 gait: str | None = None, ensemble: int = 1, physics: PhysicsConfig = PHYSICS,
                 gaits: Sequence[str] = GAITS, replan_on_change: bool = True):
        most = -(-dit.horizon // execute_steps) if _is_int(execute_steps) and execute_steps > 0 else 1
        if not _is_int(ensemble) or not 1 <= ensemble <= most:
            raise ValueError(f"ensemble must be an int in [1, {most}] (plans that overlap a step with "
                             f"execute_steps={execute_steps!r}, H={dit.horizon}), got {ensemble!r}")
        self.ensemble = int(ensemble)
        self._history = self._age = None
        super().__init__(dit.horizon, flow, execute_steps=execute_steps, ode_steps=ode_steps, seed=seed,
                         command=command, gait=gait, gaits=gaits, replan_on_change=replan_on_change)
        self.params = jax.tree.map(jnp.asarray, params)
        self.dit = dit
        self.normalizer = normalizer
        self.physics = physics
        self._sim = NativeGo1(physics)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **overrides) -> DynaFlowPolicy:
        """Loads a checkpoint of ``python -m dynaflow_policy.train`` (its EMA weights).

        Args:
          path: a step directory, a ``checkpoints`` directory or a work directory.
          **overrides: the constructor's keyword arguments (``execute_steps``, ``ode_steps``, ``seed``, ...);
            ``execute_steps`` and ``ode_steps`` default to the checkpoint's ``policy_defaults``, ``gaits`` to
            the gaits of its training data (all four for a checkpoint that does not record them).

        Raises:
          CheckpointError: missing, truncated or corrupt checkpoint, or one made for another physics config.
        """
        ckpt = load_checkpoint(path)
        return cls(ckpt.ema_params, ckpt.config.dit_config, ckpt.config.flow, ckpt.normalizer,
                   **{**ckpt.policy_defaults, "gaits": ckpt.gaits or GAITS, **overrides})

    @property
    def last_actions(self) -> np.ndarray | None:
        return self._current(self._plans)

    def _start(self, n: int) -> None:
        self._history = np.zeros((n, self.ensemble, self.horizon, ACTION_DIM), np.float32)  # (N, E, H, 12)
        self._age = np.full((n, self.ensemble), self.horizon, np.int64)  # steps since each plan; >= H: none
        super()._start(n)

    def _restart(self, rows: np.ndarray) -> None:
        super()._restart(rows)
        self._age[rows] = self.horizon

    def _replan(self, rows: np.ndarray, x: np.ndarray, command: np.ndarray, gait: np.ndarray) -> None:
        changed = rows[np.any(command != self._plan_commands[rows], axis=1) | (gait != self._plan_gaits[rows])]
        super()._replan(rows, x, command, gait)
        self._history[rows] = np.roll(self._history[rows], 1, axis=1)
        self._age[rows] = np.roll(self._age[rows], 1, axis=1)
        self._age[changed, 1:] = self.horizon  # plans made for another command or gait are not averaged in
        self._history[rows, 0] = self._plans[rows]
        self._age[rows, 0] = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions = super().act(obs)
        self._age += 1
        return actions

    __call__ = act

    def sample(self, x: np.ndarray, command: np.ndarray, gait: np.ndarray, phase: np.ndarray,
               keys: np.ndarray) -> np.ndarray:
        """Action plans (B, H, 12) float32 from world-frame states x (B, 37), one network call per ODE step."""
        b, size = len(x), padded_size(len(x))
        x0_h = to_heading_frame(x[:, None])[:, 0] if self.flow.heading_frame else x  # (B, 37) the model's frame
        cond = jnp.asarray(pad_rows(conditioning(command, gait, np, phase if self.flow.gait_clock else None),
                                    size))  # (P, 7), or (P, 15) with the gait clock
        x_t = np.asarray(_noise(self.dit.horizon, self.flow)(
            jnp.asarray(pad_rows(keys, size)), jnp.asarray(pad_rows(self.normalizer.normalize(x0_h), size),
                                                           jnp.float32)), np.float64)  # (P, H+1, 37)
        net = _network(self.dit)
        dt = 1.0 / self.ode_steps
        for i in range(self.ode_steps):
            t = i * dt
            U = np.asarray(net(self.params, jnp.asarray(x_t, jnp.float32), jnp.full((size,), t, jnp.float32),
                               cond))  # (P, H, 12)
            if i < self.ode_steps - 1:
                X = np.stack([self._sim.rollout(x0_h[j], U[j]) for j in range(b)])  # (B, H+1, 37)
                x_hat = pad_rows(self.normalizer.normalize(X), size)  # (P, H+1, 37)
                x_t = x_t + dt * np.asarray(flow_velocity(x_hat, x_t, np.full((size,), t), self.flow.t_clamp))
        return U[:b].astype(np.float32)

    def actions(self, x: np.ndarray, plans: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """The planned actions in order, ``plans[i, taken[i]]`` (N, 12); with ``ensemble`` > 1 the mean over
        the environment's plans that cover this step of each one's action for it."""
        if self.ensemble == 1:
            return plans[np.arange(len(plans)), taken]
        covers = self._age < self.horizon  # (N, E); the newest plan always covers the step
        n, e = np.indices(self._age.shape)
        planned = self._history[n, e, np.minimum(self._age, self.horizon - 1)]  # (N, E, 12)
        return (np.sum(planned * covers[..., None], axis=1) / covers.sum(axis=1, keepdims=True)).astype(np.float32)

    def planned_states(self) -> np.ndarray | None:
        """World-frame states (H+1, 37) the current plan leads to (native rollout of ``last_actions``), or
        (N, H+1, 37) after batches; None before the first plan."""
        if self._plans is None:
            return None
        X = np.stack([self._planned_states(x, U) for x, U in zip(self._origins, self._plans)])  # (N, H+1, 37)
        return self._current(X)

    def _planned_states(self, x_world: np.ndarray, U: np.ndarray) -> np.ndarray:
        """(H+1, 37) world-frame states of plan U (H, 12) from x_world (37,)."""
        if not self.flow.heading_frame:
            return self._sim.rollout(x_world, U)
        X = self._sim.rollout(to_heading_frame(x_world[None])[0], U)  # (H+1, 37) heading frame
        X = from_heading_frame(X[None], x_world[None])[0]  # quaternions with w >= 0
        if x_world[BASE_QUAT.start] < 0:  # same rotations, with the sign of the given state
            X[:, BASE_QUAT] *= -1.0
        return X
