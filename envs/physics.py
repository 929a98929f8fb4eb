"""The Go1 physics contract: one frozen config, the state layout, and model loading.

Every module that simulates the Go1 (the differentiable rollout, the Brax env,
the Gymnasium env, data collection, tests) imports its numbers from here. The
MJCF in ``assets/go1.xml`` carries the same numbers so that plain MuJoCo can
replay our data with nothing but the XML; :func:`load_mj_model` checks the
compiled XML against :data:`PHYSICS` and refuses to load on any mismatch, so
the two cannot drift apart.

State layout, x in R^37 = MuJoCo ``qpos ++ qvel``:

======  ==========  ======================================================
index   name        meaning (units)
======  ==========  ======================================================
0:3     base_pos    trunk position in the world frame (m)
3:7     base_quat   trunk orientation, unit quaternion (w, x, y, z)
7:19    joint_pos   leg joint angles in ACTION order (rad)
19:22   base_linvel trunk linear velocity in the WORLD frame (m/s)
22:25   base_angvel trunk angular velocity in the BODY frame (rad/s)
25:37   joint_vel   leg joint velocities in ACTION order (rad/s)
======  ==========  ======================================================

(The frames of the two base velocities are MuJoCo's free-joint convention.)

Action u in [-1, 1]^12, order FR, FL, RR, RL x (hip, thigh, calf); the servo
target is ``clip(default_pose + action_scale * u, joint_lower, joint_upper)``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from typing import Any

import mujoco
import numpy as np

GO1_XML: str = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "go1.xml")

LEGS: tuple[str, ...] = ("FR", "FL", "RR", "RL")
LEG_JOINTS: tuple[str, ...] = ("hip", "thigh", "calf")
JOINT_NAMES: tuple[str, ...] = tuple(f"{leg}_{j}_joint" for leg in LEGS for j in LEG_JOINTS)
ACTUATOR_NAMES: tuple[str, ...] = tuple(f"{leg}_{j}" for leg in LEGS for j in LEG_JOINTS)
FOOT_SITES: tuple[str, ...] = tuple(f"{leg}_foot" for leg in LEGS)

NQ = 19
NV = 18
NU = 12
STATE_DIM = NQ + NV  # 37
ACTION_DIM = NU  # 12

BASE_POS = slice(0, 3)
BASE_QUAT = slice(3, 7)
JOINT_POS = slice(7, 19)
BASE_LINVEL = slice(19, 22)
BASE_ANGVEL = slice(22, 25)
JOINT_VEL = slice(25, 37)

FOOT_RADIUS = 0.023
"""Radius (m) of the foot spheres; a foot site sits at its sphere's centre."""
FOOT_CONTACT_HEIGHT = FOOT_RADIUS + 0.005
"""A foot counts as touching the floor while its site is below this height (m).

A loaded foot rests at about 0.0225 m (0.5 mm soft-contact penetration); the
5 mm margin absorbs that and solver jitter without calling a lifted foot a contact.
"""


def _per_leg(hip: float, thigh: float, calf: float, mirror_hip: bool = False) -> tuple[float, ...]:
    """Repeats one leg's (hip, thigh, calf) values over FR, FL, RR, RL.

    With ``mirror_hip`` the abduction value is negated on the right legs, so a
    positive ``hip`` means "outward" on every leg.
    """
    out: list[float] = []
    for leg in LEGS:
        sign = -1.0 if (mirror_hip and leg[1] == "R") else 1.0
        out += [sign * hip, thigh, calf]
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class PhysicsConfig:
    """Frozen Go1 physics. Values start from MuJoCo Playground's Go1 joystick task.

    Attributes:
      xml_path: MJCF file that carries the same numbers (checked on load).
      sim_dt: physics timestep (s).
      n_substeps: physics steps per control step.
      solver_iterations: constraint-solver iterations. Must be 1: MJX only
        differentiates (reverse mode) through a solver with a single
        iteration; more iterations run in a ``while_loop``, which JAX cannot
        differentiate in reverse mode.
      ls_iterations: line-search iterations of the solver.
      kp: servo stiffness (N m / rad).
      kd: joint damping (N m s / rad), MuJoCo joint ``damping``.
      armature: reflected rotor inertia per joint (kg m^2). Joint frictionloss is 0
        (Playground uses 0.2): it would add 12 non-smooth constraint rows per
        substep to the differentiated solver; its effect is not measured yet.
      action_scale: servo target offset per unit action (rad).
      default_pose: home joint angles in action order (rad). Abduction is
        0.1 rad outward (negative on the right legs, positive on the left).
      base_height: trunk height of the home pose (m), feet touching the floor.
      joint_lower, joint_upper: joint ranges in action order (rad).
      torque_limit: servo torque limits in action order (N m).
      total_mass: robot mass (kg).
    """

    xml_path: str = GO1_XML
    sim_dt: float = 0.004
    n_substeps: int = 5
    solver_iterations: int = 1
    ls_iterations: int = 5
    kp: float = 35.0
    kd: float = 0.5
    armature: float = 0.01
    action_scale: float = 0.5
    default_pose: tuple[float, ...] = _per_leg(0.1, 0.9, -1.8, mirror_hip=True)
    base_height: float = 0.278
    joint_lower: tuple[float, ...] = _per_leg(-0.863, -0.686, -2.818)
    joint_upper: tuple[float, ...] = _per_leg(0.863, 4.501, -0.888)
    torque_limit: tuple[float, ...] = _per_leg(23.7, 23.7, 35.55)
    total_mass: float = 12.74

    @property
    def ctrl_dt(self) -> float:
        """Control period (s): 0.02 s, i.e. 50 Hz."""
        return self.sim_dt * self.n_substeps

    @property
    def home_state(self) -> np.ndarray:
        """(37,) float32 state of the home pose at rest."""
        x = np.zeros(STATE_DIM, np.float32)
        x[BASE_POS] = (0.0, 0.0, self.base_height)
        x[BASE_QUAT] = (1.0, 0.0, 0.0, 0.0)
        x[JOINT_POS] = self.default_pose
        return x

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["xml_path"] = os.path.basename(self.xml_path)
        return d

    def hash(self) -> str:
        """Short SHA-256 of the config values and the MJCF bytes.

        Stored with datasets and checkpoints; loading data made under another
        physics is an error.
        """
        h = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode())
        with open(self.xml_path, "rb") as f:
            h.update(f.read())
        return h.hexdigest()[:16]


PHYSICS = PhysicsConfig()


def motor_targets(u, config: PhysicsConfig = PHYSICS, xp=np):
    """Servo targets from actions.

    Args:
      u: (..., 12) actions in [-1, 1], action order.
      config: physics config.
      xp: array namespace, ``numpy`` or ``jax.numpy``.

    Returns:
      (..., 12) joint position targets (rad), clipped to the joint ranges.
    """
    target = xp.asarray(config.default_pose, dtype=u.dtype) + config.action_scale * u
    return xp.clip(target, xp.asarray(config.joint_lower, u.dtype), xp.asarray(config.joint_upper, u.dtype))


def _check(name: str, expected, found, errors: list[str]) -> None:
    if not np.allclose(np.asarray(expected, float), np.asarray(found, float), rtol=0, atol=1e-6):
        errors.append(f"{name}: config {np.asarray(expected).tolist()} != XML {np.asarray(found).tolist()}")


def validate_mj_model(m: mujoco.MjModel, config: PhysicsConfig = PHYSICS) -> None:
    """Raises ValueError listing every way the compiled model disagrees with ``config``."""
    errors: list[str] = []
    if (m.nq, m.nv, m.nu) != (NQ, NV, NU):
        errors.append(f"(nq, nv, nu): expected {(NQ, NV, NU)}, found {(m.nq, m.nv, m.nu)}")
        raise ValueError("Go1 model does not match the physics config:\n  " + "\n  ".join(errors))
    _check("timestep", config.sim_dt, m.opt.timestep, errors)
    _check("iterations", config.solver_iterations, m.opt.iterations, errors)
    _check("ls_iterations", config.ls_iterations, m.opt.ls_iterations, errors)
    if m.opt.cone != mujoco.mjtCone.mjCONE_PYRAMIDAL:
        # An elliptic cone would make the dynamics invariant to any yaw, but MJX's
        # elliptic-cone solver takes sqrt(0) for every contact with zero tangential
        # force, so every derivative through it is NaN (measured with mujoco-mjx
        # 3.17). The pyramid's edges follow the world axes: the dynamics is exactly
        # invariant to shifts and to yaw turns by multiples of 90 degrees only,
        # which dynaflow_policy.frames uses.
        errors.append("cone: expected pyramidal (MJX gradients through the elliptic cone are NaN)")
    if m.opt.integrator != mujoco.mjtIntegrator.mjINT_EULER:
        errors.append(f"integrator: expected Euler, found {mujoco.mjtIntegrator(m.opt.integrator).name}")
    for flag, reason in ((mujoco.mjtDisableBit.mjDSBL_WARMSTART, "the solver warm start is hidden state"),
                         (mujoco.mjtDisableBit.mjDSBL_EULERDAMP, "the design's Euler integrator is explicit")):
        if not m.opt.disableflags & flag:
            errors.append(f"{flag.name} must be set: {reason}")
    joint_names = tuple(m.joint(i).name for i in range(1, m.njnt))
    if joint_names != JOINT_NAMES:
        errors.append(f"joint order: expected {JOINT_NAMES}, found {joint_names}")
    actuated = tuple(m.joint(int(j)).name for j in m.actuator_trnid[:, 0])
    if actuated != JOINT_NAMES:
        errors.append(f"actuator order: expected to drive {JOINT_NAMES}, found {actuated}")
    _check("actuator kp", [config.kp] * NU, m.actuator_gainprm[:, 0], errors)
    _check("actuator bias", [[0.0, -config.kp, 0.0]] * NU, m.actuator_biasprm[:, :3], errors)
    _check("actuator forcerange", np.stack([-np.array(config.torque_limit), config.torque_limit], 1),
           m.actuator_forcerange, errors)
    _check("joint damping", [config.kd] * NU, m.dof_damping[6:], errors)
    _check("joint armature", [config.armature] * NU, m.dof_armature[6:], errors)
    _check("joint frictionloss", [0.0] * NV, m.dof_frictionloss, errors)
    _check("joint range", np.stack([config.joint_lower, config.joint_upper], 1), m.jnt_range[1:], errors)
    if abs(m.body_subtreemass[1] - config.total_mass) > 0.01 * config.total_mass:
        errors.append(f"total mass: config {config.total_mass} kg, XML {m.body_subtreemass[1]:.3f} kg (>1% off)")
    _check("foot radius", [FOOT_RADIUS] * 4, [m.geom(site).size[0] for site in FOOT_SITES], errors)
    key = m.keyframe("home")
    _check("home qpos", config.home_state[:NQ], key.qpos, errors)
    _check("home ctrl", config.default_pose, key.ctrl, errors)
    if errors:
        raise ValueError("Go1 model does not match the physics config:\n  " + "\n  ".join(errors))


@functools.lru_cache(maxsize=None)
def load_mj_model(config: PhysicsConfig = PHYSICS) -> mujoco.MjModel:
    """Compiles ``config.xml_path`` and checks it against ``config``.

    The returned model is shared (cached): copy it before changing fields.
    """
    m = mujoco.MjModel.from_xml_path(config.xml_path)
    validate_mj_model(m, config)
    return m
