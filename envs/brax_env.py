"""Brax ``PipelineEnv`` of the Go1 joystick task, on the physics of :func:`envs.dynamics.step`.

One env step is exactly :func:`envs.dynamics.step_data` on the MJX data held
in ``State.pipeline_state``: servo targets from the action
(:func:`envs.physics.motor_targets`), then ``PHYSICS.n_substeps`` MJX steps.
The Brax PPO expert, the differentiable rollout and the Gymnasium env
therefore simulate the same robot, and the 37 numbers of the obs are the
whole Markov state (``envs.dynamics.step(obs[:37], u)`` is the next state).

Why Brax's own mjx pipeline does not step the physics: it would build a second
MJX model from the Brax ``System`` and run the substeps in a ``scan``, which
agrees with the rollout only to float error (measured 4e-6). The ``System``
from :func:`brax.io.mjcf.load_model` is still the env's ``sys`` (for
``pipeline_init``, ``dt``, ``action_size`` and rendering).

Observation, ``obs`` in R^44 (same layout as the Gymnasium env; with
``policy_inputs=True`` the 41 heading-free numbers of
:func:`envs.task.policy_input` instead, and with ``gait_clock=True`` those
followed by the 8 of :func:`envs.task.gait_clock`):

=======  =======  ===================================================
index    name     meaning (units)
=======  =======  ===================================================
0:37     state    x = qpos ++ qvel, layout in :mod:`envs.physics`
37:40    command  (vx m/s, vy m/s, yaw rate rad/s), body frame
40:44    gait     one-hot over :data:`envs.task.GAITS`
=======  =======  ===================================================

Action, ``action`` in [-1, 1]^12, order FR, FL, RR, RL x (hip, thigh, calf):
servo target = default pose + 0.5 rad * action, clipped to the joint ranges.

``State.info``: ``rng``, ``command`` (3,), ``gait`` () int32 index into
``GAITS``, ``last_act`` (12,), ``feet_air_time`` (4,) s, ``last_contact``
(4,) bool, ``step`` () int32 steps since the last command resample, ``phase`` ()
gait phase in [0, 1) (``envs.task.advance_phase``, 0 at the start of an episode), and with
domain randomisation ``physics`` (``friction``, ``mass_scale``, ``payload``).
``State.metrics``: ``reward/<name>`` for each unweighted term of
:func:`envs.task.reward_terms`; ``reward == envs.task.total_reward(terms)``.

Episodes: ``done`` is a fall (:func:`envs.task.is_fallen`) or a non-finite
state. Time limits and auto-reset are the Brax training wrappers' job
(``brax.envs.training.wrap(env, episode_length=...)``). Brax's
``AutoResetWrapper`` restores only ``pipeline_state`` and ``obs`` (those of
the first reset) after any end, a fall or the time limit, and sets
``info["steps"]`` to 0. So on a step that starts with ``info["steps"] == 0``
this env starts a new episode itself: the command and gait become the ones
the restored ``obs`` shows (the policy acts on them), and the last action,
air time, contacts, resample counter and the domain-randomisation draw are
renewed. Used without the wrappers it clears the same bookkeeping on ``done``.
"""

from __future__ import annotations

import copy
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from brax import base as brax_base
from mujoco import mjx
from brax.envs.base import PipelineEnv, State
from brax.io import mjcf

from envs import physics
from envs.physics import (ACTION_DIM, BASE_QUAT, FOOT_CONTACT_HEIGHT, FOOT_SITES, JOINT_POS, NQ, PHYSICS,
                          PhysicsConfig)
from envs.dynamics import mjx_model, state_from_data, step_data
from envs.randomization import DomainRandomization, randomized_model
from envs.task import (CLOCK_DIM, COMMAND_DIM, GAITS, INIT_JOINT_NOISE, OBSERVATION_STRUCTURE, POLICY_INPUT_STRUCTURE,
                       CommandRanges, RewardWeights, advance_phase, command_range_table, gait_clock, gait_index,
                       is_fallen, observation, policy_input, reward_terms, total_reward, update_feet)



class Go1Env(PipelineEnv):
    """Go1 velocity-command (joystick) task on MJX, for Brax training (PPO) and data collection.

    Args:
      command_ranges: ranges the velocity commands are drawn from uniformly (see ``single_axis_probability``):
        one for every gait, or a mapping from each gait name in ``gaits`` to its own (e.g.
        ``envs.task.GAIT_COMMAND_RANGES``).
      reward_weights: weights of the named reward terms.
      gaits: gait names (from ``envs.task.GAITS``) drawn uniformly at reset,
        after a fall and with a new command (see ``gait_redraw_probability``).
      resample_command_steps: a new command is drawn every this many steps
        (and after a fall).
      gait_redraw_probability: chance that the gait is drawn anew with a new
        command (1: with every one; below 1, commands change within a gait, as a
        joystick does). A fall always redraws it.
      single_axis_probability: chance that a drawn command keeps only one of its three components (chosen
        uniformly) and zeros the others: a straight walk, a sidestep or a turn in place, as evaluations command,
        which a uniform draw over all three almost never gives.
      randomize_init: at reset, add U(+-INIT_JOINT_NOISE) rad to the home
        joint angles and turn the robot to a uniform random yaw.
      config: physics config (the default is the project's frozen contract).
      domain_randomization: draw the floor friction, a body-mass scale and a
        trunk payload per env at reset and after a fall
        (:class:`envs.randomization.DomainRandomization`); None keeps the nominal physics.
      policy_inputs: emit ``envs.task.policy_input(obs)`` (41, no world
        position or heading) instead of the 44-number observation; the PPO
        expert trains on these.
      gait_clock: append ``envs.task.gait_clock`` (8) of the env's gait phase
        to the policy inputs (49 numbers); needs ``policy_inputs``.
      backend: must be "mjx"; accepted so Brax's ``envs.get_environment`` style
        kwargs work.
    """

    observation_structure: dict[str, int] = OBSERVATION_STRUCTURE
    """Size of each obs block, in order (as Gymnasium's MuJoCo envs expose it)."""

    def __init__(self, command_ranges: CommandRanges = CommandRanges(), reward_weights: RewardWeights = RewardWeights(),
                 gaits: tuple[str, ...] = ("trot",), resample_command_steps: int = 500,
                 gait_redraw_probability: float = 1.0, single_axis_probability: float = 0.0,
                 randomize_init: bool = True,
                 config: PhysicsConfig = PHYSICS, domain_randomization: DomainRandomization | None = None,
                 policy_inputs: bool = False, gait_clock: bool = False, backend: str = "mjx"):
        if backend != "mjx":
            raise ValueError(f"Go1Env only supports backend='mjx', got {backend!r}")
        if not gaits:
            raise ValueError("gaits must name at least one gait, got ()")
        if resample_command_steps < 1:
            raise ValueError(f"resample_command_steps must be >= 1, got {resample_command_steps}")
        if not 0.0 <= gait_redraw_probability <= 1.0:
            raise ValueError(f"gait_redraw_probability must be in [0, 1], got {gait_redraw_probability}")
        if not 0.0 <= single_axis_probability <= 1.0:
            raise ValueError(f"single_axis_probability must be in [0, 1], got {single_axis_probability}")
        gait_ids = np.array([gait_index(g) for g in gaits], np.int32)  # ValueError on an unknown name
        if gait_clock and not policy_inputs:
            raise ValueError("gait_clock=True appends the clock to the policy inputs: it needs policy_inputs=True")
        command_low, command_high = command_range_table(command_ranges, gaits)  # (len(GAITS), 3) each
        # brax's load_model writes into the model's range arrays: give it a copy of the shared cached model.
        mj_model = copy.copy(physics.load_mj_model(config))
        with warnings.catch_warnings():  # "Brax System ... not actively being maintained": we only use its fields
            warnings.filterwarnings("ignore", message="Brax System", category=UserWarning)
            system = mjcf.load_model(mj_model)
        super().__init__(system, backend="mjx", n_frames=config.n_substeps)

        self.command_ranges = command_ranges
        self.reward_weights = reward_weights
        self.gaits = tuple(gaits)
        self.resample_command_steps = int(resample_command_steps)
        self.gait_redraw_probability = float(gait_redraw_probability)
        self.single_axis_probability = float(single_axis_probability)
        self.randomize_init = bool(randomize_init)
        self.config = config
        self.domain_randomization = domain_randomization
        self.policy_inputs = bool(policy_inputs)
        self.gait_clock = bool(gait_clock)
        if self.policy_inputs:
            self.observation_structure = dict(POLICY_INPUT_STRUCTURE)
        if self.gait_clock:
            self.observation_structure["gait_clock"] = CLOCK_DIM
        self._command_low, self._command_high = command_low, command_high
        self._mjx_model = mjx_model(config)
        self._gait_ids = gait_ids
        self._foot_site_ids = np.array([mj_model.site(name).id for name in FOOT_SITES])
        self._body_rootid = np.asarray(mj_model.body_rootid[1:])

    # ---- Brax API -------------------------------------------------------------------------------------------

    @property
    def observation_size(self) -> int:
        return sum(self.observation_structure.values())

    @property
    def action_size(self) -> int:
        return ACTION_DIM

    def pipeline_step(self, pipeline_state, action: jax.Array, model: mjx.Model | None = None):
        """One control step: exactly ``envs.dynamics.step_data(pipeline_state, action)``.

        Unlike Brax's ``PipelineEnv.pipeline_step``, ``action`` is the raw
        action u (12,) in [-1, 1], not the actuator ctrl. Brax's derived
        fields (``q``, ``qd``, ``x``, ``xd``) are refreshed from the new data;
        its ``contact`` field is left as set at init (MJX keeps the contacts
        in ``data._impl.contact``). ``model`` replaces the nominal MJX model
        (domain randomisation).
        """
        d = step_data(pipeline_state, action, self.config, model)
        x = brax_base.Transform(pos=d.xpos[1:], rot=d.xquat[1:])
        cvel = brax_base.Motion(vel=d.cvel[1:, 3:], ang=d.cvel[1:, :3])
        offset = brax_base.Transform.create(pos=d.xpos[1:] - d.subtree_com[self._body_rootid])
        return d.replace(q=d.qpos, qd=d.qvel, x=x, xd=offset.vmap().do(cvel))

    def reset(self, rng: jax.Array) -> State:
        """New episode from the home pose (randomised if ``randomize_init``), command and gait drawn from rng."""
        rng, k_cmd, k_gait, k_joint, k_yaw, k_phys = jax.random.split(rng, 6)
        x0 = jnp.asarray(self.config.home_state)  # (37,)
        if self.randomize_init:
            lower = jnp.asarray(self.config.joint_lower)
            upper = jnp.asarray(self.config.joint_upper)
            noise = jax.random.uniform(k_joint, (ACTION_DIM,), minval=-INIT_JOINT_NOISE, maxval=INIT_JOINT_NOISE)
            yaw = jax.random.uniform(k_yaw, (), minval=-math.pi, maxval=math.pi)
            quat = jnp.array([jnp.cos(yaw / 2), 0.0, 0.0, jnp.sin(yaw / 2)])  # (w, x, y, z)
            x0 = x0.at[JOINT_POS].set(jnp.clip(x0[JOINT_POS] + noise, lower, upper)).at[BASE_QUAT].set(quat)
        pipeline_state = self.pipeline_init(x0[:NQ], x0[NQ:])

        gait = self._sample_gait(k_gait)
        command = self._sample_command(k_cmd, gait)
        info = {
            "rng": rng,
            "command": command,
            "gait": gait,
            "last_act": jnp.zeros(ACTION_DIM),
            "feet_air_time": jnp.zeros(len(FOOT_SITES)),
            "last_contact": self._foot_heights(pipeline_state) < FOOT_CONTACT_HEIGHT,
            "step": jnp.zeros((), jnp.int32),
            "phase": jnp.zeros(()),
        }
        if self.domain_randomization is not None:
            info["physics"] = self.domain_randomization.sample(k_phys)
        metrics = {f"reward/{k}": jnp.zeros(()) for k in self.reward_weights.as_dict()}
        obs = self._observation(state_from_data(pipeline_state), command, gait, info["phase"])
        return State(pipeline_state, obs, jnp.zeros(()), jnp.zeros(()), metrics, info)

    def step(self, state: State, action: jax.Array) -> State:
        """One control step (20 ms) under ``action`` (12,); reward, done and bookkeeping from the new state."""
        info = state.info
        if "steps" in info:  # under Brax's EpisodeWrapper: 0 on the first step of every episode
            info = self._start_episode(info, state.obs, state.pipeline_state)
        model = (randomized_model(self._mjx_model, info["physics"], self.config)
                 if self.domain_randomization is not None else None)
        pipeline_state = self.pipeline_step(state.pipeline_state, action, model)
        x = state_from_data(pipeline_state)  # (37,)
        finite = jnp.all(jnp.isfinite(x))
        x = jnp.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)  # the obs and reward stay finite after a blow-up
        done = is_fallen(x, jnp) | ~finite

        foot_z = self._foot_heights(pipeline_state)  # (4,) m
        contact, first_contact, air_time, next_air_time = update_feet(
            foot_z, info["last_contact"], info["feet_air_time"], self.config.ctrl_dt, jnp)
        phase = advance_phase(info["phase"], info["gait"], self.config.ctrl_dt, jnp)
        terms = reward_terms(x, action, info["last_act"], info["command"], info["gait"], contact, air_time,
                             first_contact, done, self.reward_weights, self.config, xp=jnp, phase=phase,
                             foot_z=jnp.where(finite, foot_z, 0.0))
        reward = total_reward(terms, self.reward_weights, self.config)

        rng, k_cmd, k_gait, k_phys = jax.random.split(info["rng"], 4)
        count = info["step"] + 1
        resample = (count >= self.resample_command_steps) | done
        coin = jax.random.uniform(jax.random.fold_in(k_gait, 1))
        redraw = done | (resample & (coin < self.gait_redraw_probability))
        gait = jnp.where(redraw, self._sample_gait(k_gait), info["gait"])
        command = jnp.where(resample, self._sample_command(k_cmd, gait), info["command"])
        new_info = {
            **info,
            "rng": rng,
            "command": command,
            "gait": gait,
            "last_act": jnp.where(done, jnp.zeros_like(action), action),
            "feet_air_time": jnp.where(done, 0.0, next_air_time),
            "last_contact": contact | done,  # after a reset the robot stands: no spurious touch-down
            "step": jnp.where(resample, 0, count).astype(jnp.int32),
            "phase": jnp.where(done, 0.0, phase),
        }
        if self.domain_randomization is not None:  # a new draw for the next episode
            new_info["physics"] = jax.tree.map(lambda new, old: jnp.where(done, new, old),
                                               self.domain_randomization.sample(k_phys), info["physics"])
        metrics = {**state.metrics, **{f"reward/{k}": v for k, v in terms.items()}}
        obs = self._observation(x, command, gait, new_info["phase"])
        return state.replace(pipeline_state=pipeline_state, obs=obs, reward=reward,
                             done=done.astype(reward.dtype), metrics=metrics, info=new_info)

    # ---- helpers --------------------------------------------------------------------------------------------

    def _start_episode(self, info: dict, obs: jax.Array, pipeline_state) -> dict:
        """``info`` for the first step of an episode where ``info["steps"] == 0``, else ``info`` unchanged.

        The command and gait are read from ``obs``, the obs the policy acts on
        (command (3) ++ gait one-hot (4) end both observation layouts, before the clock).
        """
        end = obs.shape[-1] - (CLOCK_DIM if self.gait_clock else 0)
        new = info["steps"] == 0
        rng, k_phys = jax.random.split(info["rng"])
        fresh = {
            "rng": rng,
            "command": obs[end - COMMAND_DIM - len(GAITS):end - len(GAITS)],
            "gait": jnp.argmax(obs[end - len(GAITS):end]).astype(info["gait"].dtype),
            "last_act": jnp.zeros_like(info["last_act"]),
            "feet_air_time": jnp.zeros_like(info["feet_air_time"]),
            "last_contact": self._foot_heights(pipeline_state) < FOOT_CONTACT_HEIGHT,
            "step": jnp.zeros_like(info["step"]),
            "phase": jnp.zeros_like(info["phase"]),
        }
        if self.domain_randomization is not None:
            fresh["physics"] = self.domain_randomization.sample(k_phys)
        return {**info, **jax.tree.map(lambda f, old: jnp.where(new, f, old), fresh,
                                       {k: info[k] for k in fresh})}

    def _observation(self, x: jax.Array, command: jax.Array, gait: jax.Array, phase: jax.Array) -> jax.Array:
        """(44,) observation; (41,) policy inputs when ``policy_inputs``, (49,) with the gait clock appended."""
        obs = observation(x, command, gait, jnp)
        if not self.policy_inputs:
            return obs
        inputs = policy_input(obs, self.config, jnp)
        return jnp.concatenate([inputs, gait_clock(phase, gait, jnp)]) if self.gait_clock else inputs

    def _sample_command(self, rng: jax.Array, gait: jax.Array) -> jax.Array:
        """(3,) command, uniform in the command ranges of ``gait``, reduced to one component with probability
        ``single_axis_probability``."""
        command = jax.random.uniform(rng, (COMMAND_DIM,), minval=jnp.asarray(self._command_low)[gait],
                                     maxval=jnp.asarray(self._command_high)[gait])
        if self.single_axis_probability == 0.0:  # no extra draws: runs without it keep their random streams
            return command
        # fold_in tags below COMMAND_DIM would reuse a counter of the uniform draw above
        k_single, k_axis = jax.random.split(jax.random.fold_in(rng, COMMAND_DIM))
        keep = jax.nn.one_hot(jax.random.randint(k_axis, (), 0, COMMAND_DIM), COMMAND_DIM) > 0
        single = jax.random.uniform(k_single) < self.single_axis_probability
        return jnp.where(single & ~keep, 0.0, command)

    def _sample_gait(self, rng: jax.Array) -> jax.Array:
        """() int32 index into GAITS, uniform over ``self.gaits``."""
        return jnp.asarray(self._gait_ids)[jax.random.randint(rng, (), 0, len(self._gait_ids))]

    def _foot_heights(self, d) -> jax.Array:
        """(4,) foot site heights (m) at the state of ``d``, order FR, FL, RR, RL.

        After ``mjx.step`` the data's site positions are those of the start of
        the last substep (MJX integrates after computing kinematics), so the
        kinematics is recomputed: the Gymnasium env reads heights at the same
        post-step state.
        """
        return mjx.kinematics(self._mjx_model, d).site_xpos[self._foot_site_ids, 2]

