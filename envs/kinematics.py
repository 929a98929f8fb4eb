"""Forward kinematics of the Go1's feet: native MuJoCo (float64), and an analytic version for NumPy or JAX.

The analytic one (:func:`leg_fk`, :func:`foot_heights`) reads the leg geometry
from the compiled MJCF (:func:`leg_geometry`) and is differentiable under JAX,
so a loss can score the feet of a rollout; tests/test_kinematic.py checks it
against :func:`foot_positions`.
"""

from __future__ import annotations

import dataclasses
import functools

import mujoco
import numpy as np

from envs.physics import BASE_POS, BASE_QUAT, FOOT_SITES, JOINT_POS, LEGS, PHYSICS, STATE_DIM, PhysicsConfig
from envs.physics import load_mj_model


def foot_positions(states: np.ndarray, physics: PhysicsConfig = PHYSICS) -> np.ndarray:
    """World foot-site positions by native MuJoCo forward kinematics.

    Args:
      states: (..., 37) states (only the 19 qpos numbers matter).
      physics: physics config (its MJCF).

    Returns:
      (..., 4, 3) foot-site (sphere centre) positions (m), order FR, FL, RR, RL.
    """
    m = load_mj_model(physics)
    d = mujoco.MjData(m)
    sites = [m.site(name).id for name in FOOT_SITES]
    flat = np.asarray(states, np.float64).reshape(-1, STATE_DIM)
    out = np.empty((flat.shape[0], 4, 3))
    for k, x in enumerate(flat):
        d.qpos[:] = x[: m.nq]
        mujoco.mj_kinematics(m, d)
        out[k] = d.site_xpos[sites]
    return out.reshape(*np.shape(states)[:-1], 4, 3)


@dataclasses.dataclass(frozen=True)
class LegGeometry:
    """Link geometry of the four legs, read from the compiled MJCF.

    Attributes:
      hip: (4, 3) abduction-joint positions in the trunk frame (m), order FR, FL, RR, RL.
      abduction_offset: (4,) signed y offset (m) of the thigh joint from the abduction
        joint (-0.08 right, +0.08 left).
      thigh: thigh length (m), thigh joint to knee.
      calf: calf length (m), knee to foot site (sphere centre).
    """

    hip: np.ndarray
    abduction_offset: np.ndarray
    thigh: float
    calf: float


@functools.lru_cache(maxsize=None)
def leg_geometry(physics: PhysicsConfig = PHYSICS) -> LegGeometry:
    """Reads the leg geometry from the MJCF and checks the structure the analytic kinematics assume."""
    m = load_mj_model(physics)
    hip, offset, thigh, calf = [], [], set(), set()
    for leg in LEGS:
        b_hip, b_thigh, b_calf = (m.body(f"{leg}_{p}") for p in ("hip", "thigh", "calf"))
        site = m.site(f"{leg}_foot")
        for b in (b_hip, b_thigh, b_calf):
            if not np.allclose(b.quat, (1, 0, 0, 0)):
                raise ValueError(f"leg IK assumes unrotated leg bodies; {b.name} has quat {b.quat}")
        axes = [m.jnt_axis[m.joint(f"{leg}_{j}_joint").id] for j in ("hip", "thigh", "calf")]
        if not (np.allclose(axes[0], (1, 0, 0)) and np.allclose(axes[1], (0, 1, 0))
                and np.allclose(axes[2], (0, 1, 0))):
            raise ValueError(f"leg IK assumes joint axes x, y, y; {leg} has {axes}")
        if not (np.allclose(b_thigh.pos[[0, 2]], 0) and np.allclose(b_calf.pos[:2], 0)
                and np.allclose(site.pos[:2], 0) and site.bodyid[0] == b_calf.id):
            raise ValueError(f"leg IK assumes planar thigh/calf links; {leg} does not match")
        hip.append(b_hip.pos.copy())
        offset.append(b_thigh.pos[1])
        thigh.add(round(-float(b_calf.pos[2]), 9))
        calf.add(round(-float(site.pos[2]), 9))
    if len(thigh) != 1 or len(calf) != 1:
        raise ValueError(f"legs differ in link lengths: thigh {thigh}, calf {calf}")
    return LegGeometry(np.array(hip), np.array(offset), thigh.pop(), calf.pop())


def leg_fk(q, geometry: LegGeometry | None = None, xp=np):
    """Foot positions in the trunk frame.

    Args:
      q: (..., 12) joint angles in action order (rad); NumPy input is computed in float64.
      geometry: leg geometry (default: the MJCF's).
      xp: ``numpy`` or ``jax.numpy``.

    Returns:
      (..., 4, 3) foot-site positions in the trunk frame (m), order FR, FL, RR, RL.
    """
    g = geometry or leg_geometry()
    q = np.asarray(q, dtype=np.float64) if xp is np else q
    q = q.reshape(*q.shape[:-1], 4, 3)  # (..., 4, 3)
    q1, q2, q3 = q[..., 0], q[..., 1], q[..., 2]
    x = -g.thigh * xp.sin(q2) - g.calf * xp.sin(q2 + q3)  # (..., 4) sagittal plane
    z = -g.thigh * xp.cos(q2) - g.calf * xp.cos(q2 + q3)
    d = xp.asarray(g.abduction_offset, q.dtype)  # (4,)
    y_rot = d * xp.cos(q1) - z * xp.sin(q1)  # rotation about x by q1
    z_rot = d * xp.sin(q1) + z * xp.cos(q1)
    return xp.asarray(g.hip, q.dtype) + xp.stack([x, y_rot, z_rot], axis=-1)


def foot_heights(states, xp=np, geometry: LegGeometry | None = None):
    """World heights of the four foot sites, analytically (differentiable under JAX).

    Args:
      states: (..., 37) states (base position, unit quaternion (w, x, y, z) and joint angles are used).
      xp: ``numpy`` or ``jax.numpy``.
      geometry: leg geometry (default: the MJCF's).

    Returns:
      (..., 4) foot-site (sphere centre) heights (m), order FR, FL, RR, RL; a foot touches the
      ground at ``envs.physics.FOOT_RADIUS``.
    """
    feet = leg_fk(states[..., JOINT_POS], geometry, xp)  # (..., 4, 3) trunk frame
    w, x, y, z = (states[..., BASE_QUAT.start + k] for k in range(4))
    row_z = xp.stack([2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)], axis=-1)  # (..., 3)
    return states[..., BASE_POS.stop - 1, None] + xp.sum(row_z[..., None, :] * feet, axis=-1)
