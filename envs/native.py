"""Native MuJoCo (float64, CPU) simulation of the Go1 with the physics of ``envs.dynamics.step``.

The MJX rollout and this class compile the same MJCF (:func:`envs.physics.load_mj_model`)
and run the same control step: ``ctrl = motor_targets(u)`` followed by
``PHYSICS.n_substeps`` calls of ``mj_step``. Because the MJCF disables the solver
warm start, a step depends on the 37 state numbers and the action only, so
:func:`replay` reproduces demonstrations recorded with the MJX rollout, up to
the float32-versus-float64 difference.

Divergence: MuJoCo does not raise on a physics blow-up. When it meets a NaN or
a huge value in qpos, qvel or qacc it prints a warning, bumps a warning counter
and *resets the data to the model's qpos0*, so the state after the blow-up is
finite but meaningless. :attr:`NativeGo1.diverged` therefore watches the
``mjWARN_BAD*`` counters across each control step as well as the state itself.
"""

from __future__ import annotations

import copy

import mujoco
import numpy as np

from envs import physics
from envs.physics import ACTION_DIM, FOOT_SITES, JOINT_VEL, NQ, PHYSICS, STATE_DIM, PhysicsConfig

MAX_QVEL = 1e3
"""|qvel| above this (m/s or rad/s) counts as a physics blow-up."""

_JOINT_QVEL = slice(JOINT_VEL.start - NQ, JOINT_VEL.stop - NQ)
"""Joint velocities inside ``MjData.qvel`` (action order)."""

_BAD_WARNINGS: tuple[mujoco.mjtWarning, ...] = (
    mujoco.mjtWarning.mjWARN_BADQPOS,
    mujoco.mjtWarning.mjWARN_BADQVEL,
    mujoco.mjtWarning.mjWARN_BADQACC,
    mujoco.mjtWarning.mjWARN_BADCTRL,
)


class NativeGo1:
    """One Go1 in native MuJoCo, stepped at the control rate (50 Hz).

    Holds its own copy of the cached model and its own ``MjData``, so several
    instances (and the MJX model) never share mutable state.

    Attributes:
      config: the physics config.
      model: this instance's copy of the compiled ``MjModel``.
      data: this instance's ``MjData``.
      last_torque: (12,) actuator torques (N m) of the last :meth:`step`, averaged over its substeps.
      last_power: mechanical power (W) of the last step, sum_j |torque_j * joint velocity_j|
        averaged over its substeps (the effort the servos spend, both driving and braking).
    """

    def __init__(self, config: PhysicsConfig = PHYSICS):
        self.config = config
        self.model = copy.copy(physics.load_mj_model(config))
        self.data = mujoco.MjData(self.model)
        self._foot_site_ids = np.array([self.model.site(name).id for name in FOOT_SITES])
        self._warned = False
        self.last_torque = np.zeros(ACTION_DIM)
        self.last_power = 0.0
        self.set_state(config.home_state)

    def set_state(self, x: np.ndarray) -> None:
        """Sets the state and recomputes every derived quantity (``mj_forward``).

        The data is reset first (time, warnings, controls), so afterwards the
        simulator is a function of ``x`` alone.

        Args:
          x: (37,) state ``qpos ++ qvel`` (layout in ``envs.physics``).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (STATE_DIM,):
            raise ValueError(f"state must have shape ({STATE_DIM},), got {x.shape}")
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = x[:NQ]
        self.data.qvel[:] = x[NQ:]
        mujoco.mj_forward(self.model, self.data)
        self._warned = False

    def state(self) -> np.ndarray:
        """(37,) float64 copy of the state ``qpos ++ qvel``."""
        return np.concatenate([self.data.qpos, self.data.qvel])

    def step(self, u: np.ndarray) -> None:
        """One control step (``PHYSICS.ctrl_dt`` = 20 ms), exactly as ``envs.dynamics.step``.

        Args:
          u: (12,) action in action order; servo targets are
            ``motor_targets(u)`` (rad), clipped to the joint ranges.
        """
        u = np.asarray(u, dtype=np.float64)
        if u.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {u.shape}")
        # MuJoCo resets the data (warning counters included) when it meets a
        # bad value, so "counter increased" can miss a repeated blow-up.
        # Count this step's warnings from zero, then add the old counts back.
        before = [self.data.warning[w].number for w in _BAD_WARNINGS]
        for w in _BAD_WARNINGS:
            self.data.warning[w].number = 0
        self.data.ctrl[:] = physics.motor_targets(u, self.config)
        torque = np.zeros(ACTION_DIM)
        power = 0.0
        for _ in range(self.config.n_substeps):
            qvel = self.data.qvel[_JOINT_QVEL].copy()  # the velocity the substep's forces act at
            mujoco.mj_step(self.model, self.data)
            torque += self.data.actuator_force
            power += float(np.abs(self.data.actuator_force * qvel).sum())
        self.last_torque = torque / self.config.n_substeps
        self.last_power = power / self.config.n_substeps
        new = [self.data.warning[w].number for w in _BAD_WARNINGS]
        for w, b, n in zip(_BAD_WARNINGS, before, new):
            self.data.warning[w].number = b + n
        self._warned = self._warned or any(n > 0 for n in new)

    def rollout(self, x0: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Open-loop rollout from ``x0``: the native counterpart of one trajectory of ``envs.dynamics.rollout``.

        Args:
          x0: (37,) initial state.
          U: (H, 12) actions.

        Returns:
          X: (H+1, 37) float64 states, ``X[0] == x0``. Steps are not stopped on a
          blow-up; check the result with ``np.isfinite`` or :attr:`diverged` if that matters.
        """
        U = np.asarray(U, dtype=np.float64)
        if U.ndim != 2 or U.shape[1] != ACTION_DIM:
            raise ValueError(f"U must have shape (H, {ACTION_DIM}), got {U.shape}")
        self.set_state(x0)
        X = np.empty((U.shape[0] + 1, STATE_DIM))  # (H+1, 37)
        X[0] = self.state()
        for k, u in enumerate(U):
            self.step(u)
            X[k + 1] = self.state()
        return X

    @property
    def diverged(self) -> bool:
        """True if the physics blew up since the last :meth:`set_state`.

        That is: the state has a NaN/inf, some |qvel| > 1e3, or MuJoCo raised a
        bad-qpos/qvel/qacc/ctrl warning (after which it resets the data, so the
        state looks finite but is not the continuation of the trajectory).
        """
        x = self.state()
        return bool(self._warned or not np.all(np.isfinite(x)) or np.max(np.abs(x[NQ:])) > MAX_QVEL)

    def foot_heights(self) -> np.ndarray:
        """(4,) height (m) of the foot-sphere centres, order FR, FL, RR, RL.

        Recomputes the kinematics of the current qpos first (``mj_step`` leaves
        the positions of the last substep's start in ``site_xpos``). A foot
        rests on the floor at about its radius, 0.023 m.
        """
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._foot_site_ids, 2].copy()


def replay(x0: np.ndarray, U: np.ndarray, config: PhysicsConfig = PHYSICS) -> np.ndarray:
    """Native float64 counterpart of one trajectory of ``envs.dynamics.rollout`` (a fresh simulator).

    Args:
      x0: (37,) initial state.
      U: (H, 12) actions.
      config: physics config.

    Returns:
      X: (H+1, 37) float64 states, ``X[0] == x0``; see :meth:`NativeGo1.rollout`.
    """
    return NativeGo1(config).rollout(x0, U)
