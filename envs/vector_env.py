"""Gymnasium vector env of ``dynaflow/Go1-v0``: N Go1s stepped together in one jitted MJX call.

``gymnasium.make_vec("dynaflow/Go1-v0", num_envs=N)`` returns
:class:`Go1VectorEnv` (``vectorization_mode="vector_entry_point"``, the default
for this id); ``vectorization_mode="sync"`` gives Gymnasium's
``SyncVectorEnv`` of N single envs instead. Both follow the same rules:

- Observations (N, 44) float32 in the single env's layout, actions (N, 12).
- Environment i of ``reset(seed=s)`` starts where ``Go1GymEnv.reset(seed=s + i)``
  does (:mod:`envs.episode_start`), and then steps the MJX physics of
  ``Go1GymEnv(backend="mjx")`` (float32): the control step of ``envs.dynamics.step``
  (the physics of ``envs.Go1Env`` and of the rollout), ``jax.vmap``-ed over N.
- Termination (fall or divergence), rewards and ``info`` keys are those of the
  single env; ``info`` is batched as ``SyncVectorEnv`` batches it: one (N, ...)
  array per key, and a (N,) bool mask ``info["_<key>"]`` saying which
  environments report the key in this call.
- Truncation: ``max_episode_steps`` (1000 = 20 s from ``make_vec``) steps after
  the last reset of an environment, as ``TimeLimit``.
- Autoreset: ``AutoresetMode.NEXT_STEP``. An environment that ended in step t
  is reset in step t+1 instead of stepped (its action is ignored): it returns
  its first observation, reward 0, not terminated, not truncated, and only
  ``command`` and ``gait`` in ``info``.

Unlike the single env, ``torque`` and ``power`` come from the MJX step itself
(the single MJX env reruns the step in native MuJoCo for them); on a diverged
step they are those of the blown-up step and may be non-finite.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from mujoco import mjx

from envs import task
from envs.dynamics import data_from_state, mjx_model, state_from_data
from envs.episode_start import RESET_OPTIONS, StartOptions, draw_start, parse_options
from envs.kinematics import foot_positions
from envs.native import MAX_QVEL
from envs.physics import (ACTION_DIM, FOOT_CONTACT_HEIGHT, FOOT_SITES, JOINT_VEL, NQ, PHYSICS, STATE_DIM,
                          PhysicsConfig, load_mj_model, motor_targets)
from envs.task import COMMAND_DIM, EPISODE_SECONDS, GAITS, OBS_DIM, OBSERVATION_STRUCTURE, CommandRanges, RewardWeights


class Batch(NamedTuple):
    """What each environment carries from one step to the next; leading axis N (one row per environment).

    Attributes:
      x: (N, 37) float32 state ``qpos ++ qvel``.
      command: (N, 3) float32 (vx m/s, vy m/s, yaw rate rad/s), body frame.
      gait: (N,) int32 index into ``envs.task.GAITS``.
      u_prev: (N, 12) float32 previous action (zeros after a reset).
      last_contact: (N, 4) bool raw foot contacts after the previous step.
      air_time: (N, 4) float32 time (s) each foot has been in the air.
      phase: (N,) float32 gait phase in [0, 1) (``envs.task.advance_phase``), 0 at a reset.
    """

    x: Any
    command: Any
    gait: Any
    u_prev: Any
    last_contact: Any
    air_time: Any
    phase: Any


@functools.partial(jax.jit, static_argnames="config")
def _substep(x: jax.Array, ctrl: jax.Array, config: PhysicsConfig) -> tuple[jax.Array, jax.Array]:
    """One 4 ms physics substep of ``envs.dynamics.step``: x (37,), ctrl (12,) -> (x (37,), actuator torque (12,)).

    Jitted on its own so that it is traced once and reused by every substep (tracing MJX dominates the compile).
    """
    d = mjx.step(mjx_model(config), data_from_state(x, config).replace(ctrl=ctrl))
    return state_from_data(d), d.actuator_force


def _step_with_effort(x: jax.Array, u: jax.Array, config: PhysicsConfig) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The control step of ``envs.dynamics.step`` with the effort ``envs.native.NativeGo1.step`` reports.

    Returns:
      (next x (37,), torque (12,) N m, power () W), torque and power averaged over the substeps.
    """
    ctrl = motor_targets(u, config, xp=jnp)
    torque = jnp.zeros(ACTION_DIM, x.dtype)
    power = jnp.zeros((), x.dtype)
    for _ in range(config.n_substeps):
        qvel = x[JOINT_VEL]  # the velocity the substep's forces act at
        x, force = _substep(x, ctrl, config)
        torque = torque + force
        power = power + jnp.sum(jnp.abs(force * qvel))
    return x, torque / config.n_substeps, power / config.n_substeps


def _transition(b: Batch, u: jax.Array, config: PhysicsConfig, weights: RewardWeights) -> tuple[Batch, dict]:
    """One environment's control step under the rules of ``Go1GymEnv.step`` (one row of a :class:`Batch`)."""
    x_new, torque, power = _step_with_effort(b.x, u, config)
    diverged = ~jnp.all(jnp.isfinite(x_new)) | (jnp.max(jnp.abs(x_new[NQ:])) > MAX_QVEL)
    x = jnp.where(diverged, b.x, x_new)  # keep the last finite state
    foot_ids = np.array([load_mj_model(config).site(name).id for name in FOOT_SITES])
    foot_z = mjx.kinematics(mjx_model(config), data_from_state(x, config)).site_xpos[foot_ids, 2]  # of the state kept
    contact, first_contact, landed_air_time, air_time = task.update_feet(foot_z, b.last_contact, b.air_time,
                                                                         config.ctrl_dt, jnp)
    contact = jnp.where(diverged, b.last_contact, contact)
    first_contact = jnp.where(diverged, 0.0, first_contact)
    landed_air_time = jnp.where(diverged, 0.0, landed_air_time)
    air_time = jnp.where(diverged, b.air_time, air_time)
    terminated = task.is_fallen(x, jnp) | diverged
    phase = task.advance_phase(b.phase, b.gait, config.ctrl_dt, jnp)
    terms = task.reward_terms(x, u, b.u_prev, b.command, b.gait, contact, landed_air_time, first_contact, terminated,
                              weights, config, xp=jnp, phase=phase, foot_z=foot_z)
    out = {"reward": task.total_reward(terms, weights, config), "terms": terms, "terminated": terminated,
           "diverged": diverged, "torque": torque, "power": power, "contact": contact, "phase": phase}
    return Batch(x, b.command, b.gait, u, contact, air_time, phase), out


def _where_rows(mask, a, b, xp=np):
    """Row i of ``a`` where ``mask[i]`` (N,), else row i of ``b``; ``a`` and ``b`` (N, ...)."""
    return xp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


@functools.lru_cache(maxsize=None)
def _batched_step(config: PhysicsConfig, weights: RewardWeights):
    """Jitted step of a whole batch, shared by every vector env of ``config`` and ``weights``.

    ``(batch, u (N, 12), fresh, restart (N,) bool) -> (batch', obs (N, 44), out)``: rows with ``restart`` take
    their state from ``fresh`` (a reset) and are not stepped; the others take one control step.
    """
    transition = jax.vmap(functools.partial(_transition, config=config, weights=weights))

    @jax.jit
    def step(batch: Batch, u: jax.Array, fresh: Batch, restart: jax.Array):
        stepped, out = transition(batch, u)
        new = jax.tree.map(lambda f, s: _where_rows(restart, f, s, jnp), fresh, stepped)
        obs = jax.vmap(task.observation, in_axes=(0, 0, 0, None))(new.x, new.command, new.gait, jnp)
        return new, obs, out

    return step


class Go1VectorEnv(gymnasium.vector.VectorEnv):
    """N Unitree Go1s of ``dynaflow/Go1-v0``, stepped in one jitted, vmapped MJX call (see the module docstring).

    Args:
      num_envs: N.
      max_episode_steps: steps after which an episode is truncated (None: never).
      command_ranges, reward_weights, reset_noise_scale, random_yaw, config: as for ``Go1GymEnv``.
      backend: must be ``"mjx"`` (for the native backend use ``vectorization_mode="sync"``).
      render_mode: must be None (rendering: ``vectorization_mode="sync"``).

    Reset options (validated for every environment before anything changes):
    ``command`` (3,) or (N, 3), ``gait`` a name or N names, ``state`` (37,) or
    (N, 37), each for every environment or one per environment; and
    ``reset_mask`` (N,) bool as in ``SyncVectorEnv``: reset only those.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int, max_episode_steps: int | None = round(EPISODE_SECONDS / PHYSICS.ctrl_dt),
                 command_ranges: CommandRanges = CommandRanges(), reward_weights: RewardWeights = RewardWeights(),
                 reset_noise_scale: float = task.INIT_JOINT_NOISE, random_yaw: bool = True,
                 config: PhysicsConfig = PHYSICS, backend: str = "mjx", render_mode: str | None = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        if backend != "mjx":
            raise ValueError(f"Go1VectorEnv steps MJX only, got backend={backend!r}; "
                             "use gymnasium.make_vec(..., vectorization_mode='sync') for the native backend")
        if render_mode is not None:
            raise ValueError(f"Go1VectorEnv does not render, got render_mode={render_mode!r}; "
                             "use gymnasium.make_vec(..., vectorization_mode='sync') to render")
        if reset_noise_scale < 0:
            raise ValueError(f"reset_noise_scale must be >= 0, got {reset_noise_scale}")
        self.num_envs = int(num_envs)
        self.max_episode_steps = max_episode_steps
        self.command_ranges = command_ranges
        self.reward_weights = reward_weights
        self.reset_noise_scale = reset_noise_scale
        self.random_yaw = random_yaw
        self.config = config
        self.render_mode = None
        self.observation_structure = dict(OBSERVATION_STRUCTURE)
        self.single_observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.single_action_space = gymnasium.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self._step = _batched_step(config, reward_weights)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._batch: Batch | None = None  # device arrays, set by the first reset
        self._no_restart = jax.device_put((self._fresh_rows({}), np.zeros(self.num_envs, bool)))
        self._obs = np.zeros((self.num_envs, OBS_DIM), np.float32)
        self._gaits = np.full(self.num_envs, GAITS[0], object)  # (N,) names
        self._elapsed = np.zeros(self.num_envs, np.int64)
        self._autoreset = np.zeros(self.num_envs, bool)

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> np.ndarray:
        """(N, 37) float64 copy of the physics states; ``gymnasium.error.ResetNeeded`` before the first reset."""
        return np.asarray(self._require_batch().x, np.float64)

    def _require_batch(self) -> Batch:
        if self._batch is None:
            raise gymnasium.error.ResetNeeded("call reset() before step() or state")
        return self._batch

    # ------------------------------------------------------------------ reset

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Starts new episodes in every environment, or in those of ``options["reset_mask"]``.

        Args:
          seed: None; an int s (environment i is seeded s + i); or N ints or Nones.
          options: see the class docstring.

        Returns:
          (obs (N, 44) float32, info) with ``command`` (N, 3) float32 and ``gait`` (N,) names, each with its
          ``_command`` / ``_gait`` mask (the reset environments).

        Raises:
          ValueError: bad seeds or options; the env is then unchanged.
          gymnasium.error.ResetNeeded: a ``reset_mask`` before the first reset of every environment.
        """
        options = dict(options or {})
        mask = self._reset_mask(options.pop("reset_mask", None))
        seeds = self._seeds(seed)
        starts = self._start_options(options)
        if self._batch is None and not mask.all():
            raise gymnasium.error.ResetNeeded("the first reset must reset every environment (no reset_mask)")

        super().reset(seed=seed if isinstance(seed, int) else None)
        for i in np.flatnonzero(mask):
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        fresh = self._fresh_rows({int(i): starts[i] for i in np.flatnonzero(mask)})
        if self._batch is None:
            self._batch = jax.device_put(fresh)
        else:
            self._batch = jax.device_put(jax.tree.map(lambda f, b: _where_rows(mask, f, np.asarray(b)),
                                                      fresh, self._batch))
        for i in np.flatnonzero(mask):
            self._obs[i] = task.observation(fresh.x[i], fresh.command[i], fresh.gait[i])
        self._elapsed[mask] = 0
        self._autoreset[mask] = False
        return self._obs.copy(), self._start_info(fresh.command, mask)

    def _reset_mask(self, reset_mask) -> np.ndarray:
        if reset_mask is None:
            return np.ones(self.num_envs, bool)
        if not (isinstance(reset_mask, np.ndarray) and reset_mask.dtype == np.bool_
                and reset_mask.shape == (self.num_envs,)):
            raise ValueError(f"options['reset_mask'] must be a numpy bool array of shape ({self.num_envs},), "
                             f"got {reset_mask!r}")
        if not reset_mask.any():
            raise ValueError("options['reset_mask'] must select at least one environment")
        return reset_mask

    def _seeds(self, seed) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            if seed < 0:
                raise ValueError(f"seed must be an int >= 0, got {seed}")
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"seed must be None, an int or {self.num_envs} seeds, got {len(seeds)} seeds")
        bad = [i for i, s in enumerate(seeds)
               if s is not None and (not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 0)]
        if bad:  # checked before any environment is reseeded
            raise ValueError(f"seed of environment {bad[0]} must be None or an int >= 0, got {seeds[bad[0]]!r}")
        return [None if s is None else int(s) for s in seeds]

    def _start_options(self, options: dict[str, Any]) -> list[StartOptions]:
        """Per-environment options, broadcast from one value for all or one value per environment."""
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'command', 'gait', 'state', "
                             "'reset_mask'")
        rows = [{} for _ in range(self.num_envs)]
        for name, single_ndim in (("command", 1), ("state", 1), ("gait", 0)):
            if name not in options:
                continue
            value = np.asarray(options[name], object if name == "gait" else np.float64)
            if value.ndim == single_ndim:
                value = [options[name]] * self.num_envs
            elif len(value) != self.num_envs:
                raise ValueError(f"options[{name!r}] must be one value for every environment or "
                                 f"{self.num_envs} values, got {len(value)}")
            for row, v in zip(rows, value):
                row[name] = v
        starts = []
        for i, row in enumerate(rows):
            try:
                starts.append(parse_options(row))
            except ValueError as e:
                raise ValueError(f"environment {i}: {e}") from None
        return starts

    def _fresh_rows(self, starts: dict[int, StartOptions]) -> Batch:
        """A host :class:`Batch` whose rows ``starts`` are drawn new episode starts (the others zeros)."""
        n = self.num_envs
        fresh = Batch(np.zeros((n, STATE_DIM), np.float32), np.zeros((n, COMMAND_DIM), np.float32),
                      np.zeros(n, np.int32), np.zeros((n, ACTION_DIM), np.float32), np.zeros((n, 4), bool),
                      np.zeros((n, 4), np.float32), np.zeros(n, np.float32))
        for i, start in starts.items():
            x, command = draw_start(self._rngs[i], start, self.command_ranges, self.reset_noise_scale,
                                    self.random_yaw, self.config)
            fresh.x[i], fresh.command[i] = x, command
            fresh.gait[i] = task.gait_index(start.gait)
            fresh.last_contact[i] = foot_positions(x, self.config)[:, 2] < FOOT_CONTACT_HEIGHT
            self._gaits[i] = start.gait
        return fresh

    def _start_info(self, command: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        gait = np.where(mask, self._gaits, None)
        return {"command": np.where(mask[:, None], command, 0.0).astype(np.float32), "_command": mask.copy(),
                "gait": gait, "_gait": mask.copy()}

    # ------------------------------------------------------------------- step

    def step(self, actions):
        """One control step (20 ms) of every environment (a reset of those that ended in the previous step).

        Args:
          actions: (N, 12) finite numbers (any float dtype, or nested lists).

        Returns:
          (obs (N, 44) float32, reward (N,) float64, terminated (N,) bool, truncated (N,) bool, info).

        Raises:
          ValueError: wrong shape or a non-finite action (naming the first bad environment); the env is then
            unchanged.
        """
        u = np.asarray(actions, np.float64)
        if u.shape != (self.num_envs, ACTION_DIM):
            raise ValueError(f"actions must have shape ({self.num_envs}, {ACTION_DIM}), got shape {u.shape}")
        bad = ~np.all(np.isfinite(u), axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"actions must be finite; environment {i} got {u[i].tolist()}")
        batch = self._require_batch()

        restart = self._autoreset.copy()
        if restart.any():
            fresh = self._fresh_rows({int(i): StartOptions() for i in np.flatnonzero(restart)})
        else:
            fresh, restart = self._no_restart
        self._batch, obs, out = self._step(batch, jnp.asarray(u, jnp.float32), fresh, restart)
        obs, out, restart = jax.device_get((obs, out, restart))

        stepped = ~restart
        self._elapsed = np.where(restart, 0, self._elapsed + 1)
        terminated = out["terminated"] & stepped
        truncated = stepped & (self._elapsed >= (self.max_episode_steps or np.inf))
        reward = np.where(stepped, out["reward"], 0.0).astype(np.float64)
        self._obs = np.array(obs)  # device_get's arrays are read-only
        self._autoreset = terminated | truncated

        info = self._start_info(obs[:, STATE_DIM:STATE_DIM + COMMAND_DIM], np.ones(self.num_envs, bool))
        if stepped.any():
            step_info = {**{f"reward/{k}": v for k, v in out["terms"].items()}, "diverged": out["diverged"],
                         "torque": out["torque"], "power": out["power"], "contact": out["contact"],
                         "phase": out["phase"]}
            for key, value in step_info.items():
                value = np.asarray(value)
                dtype = bool if value.dtype == np.bool_ else np.float64
                info[key] = _where_rows(stepped, value, np.zeros_like(value)).astype(dtype)
                info[f"_{key}"] = stepped.copy()
        return self._obs.copy(), reward, terminated, truncated, info
