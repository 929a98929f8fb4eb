"""Heading frame of a window: the world frame moved to the first state's base and turned by its heading.

On flat ground the Go1's dynamics do not change when the robot is shifted in
x, y, so windows are expressed in the frame of their first state: base x, y of
row 0 become 0. The turn is by the first state's yaw SNAPPED TO A MULTIPLE OF
90 DEGREES (``heading_turn``), so row 0 keeps a residual yaw in [-45, 45]
degrees: the MJCF's pyramidal friction cones are aligned with the world axes
(MJX cannot differentiate the isotropic elliptic cone, see
``envs.physics.validate_mj_model``), so the dynamics is exactly invariant to
quarter turns but not to other yaws (0.12 rad/s of joint velocity after one
step at 0.3 rad, measured in native MuJoCo). With the snapped turn,
``to_heading_frame(Phi(x0, U)) == Phi(to_heading_frame(x0), U)`` holds to
float precision for every x0 (tested), which is what training and the policy
rely on. Per block of the state (layout in ``envs.physics``), with
yaw0 = ``heading_turn`` of the first state and p0 its base x, y:

===========  ==========================================================
block        transform (yaw0, p0 = yaw and base x, y of the first state)
===========  ==========================================================
base_pos     (x, y) -> R(-yaw0) ((x, y) - p0); z unchanged
base_quat    q -> q_z(-yaw0) * q (left product), then sign with w >= 0
joint_pos    unchanged
base_linvel  world frame: (vx, vy) -> R(-yaw0) (vx, vy); vz unchanged
base_angvel  body frame (MuJoCo free joint): unchanged
joint_vel    unchanged
===========  ==========================================================

Quaternion sign: q and -q are the same rotation; both directions return the
representative with w >= 0, so a window's quaternions are continuous in the
heading frame unless the trunk turns more than 180 degrees away from it.

Every function takes an array namespace ``xp`` (``numpy`` or ``jax.numpy``),
as ``envs.task`` does.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import jax

from envs.physics import BASE_ANGVEL, BASE_LINVEL, BASE_POS, BASE_QUAT, JOINT_POS, JOINT_VEL

Array = Union[np.ndarray, "jax.Array"]
"""A numpy or JAX array (the namespace ``xp`` says which)."""


def yaw_of(q: Array, xp: ModuleType = np) -> Array:
    """Yaw (rad, in (-pi, pi]) of unit quaternions q (..., 4) (w, x, y, z), body-to-world."""
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return xp.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def heading_turn(yaw: Array, xp: ModuleType = np) -> Array:
    """The heading frame's yaw (rad): ``yaw`` (...,) snapped to the nearest multiple of pi/2."""
    quarter = 0.5 * np.pi
    return quarter * xp.round(yaw / quarter)


def _canonical_quat(q: Array, xp: ModuleType) -> Array:
    """(..., 4) quaternions with the sign that makes w >= 0."""
    return xp.where(q[..., :1] < 0, -q, q)


def _turn(X: Array, yaw: Array, xp: ModuleType) -> Array:
    """Turns states X (..., T, 37) by ``yaw`` (...,) rad about the world z axis through the origin."""
    c, s = xp.cos(yaw)[..., None], xp.sin(yaw)[..., None]  # (..., 1)
    ch, sh = xp.cos(0.5 * yaw)[..., None], xp.sin(0.5 * yaw)[..., None]  # (..., 1)
    px, py, pz = (X[..., BASE_POS.start + i] for i in range(3))
    qw, qx, qy, qz = (X[..., BASE_QUAT.start + i] for i in range(4))
    vx, vy, vz = (X[..., BASE_LINVEL.start + i] for i in range(3))
    quat = xp.stack([ch * qw - sh * qz,  # q_z(yaw) * q, with q_z(yaw) = (ch, 0, 0, sh)
                     ch * qx - sh * qy,
                     ch * qy + sh * qx,
                     ch * qz + sh * qw], axis=-1)
    return xp.concatenate([
        xp.stack([c * px - s * py, s * px + c * py, pz], axis=-1),  # 3 base_pos
        _canonical_quat(quat, xp),  # 4 base_quat
        X[..., JOINT_POS],  # 12 joint_pos
        xp.stack([c * vx - s * vy, s * vx + c * vy, vz], axis=-1),  # 3 base_linvel (world)
        X[..., BASE_ANGVEL],  # 3 base_angvel (body)
        X[..., JOINT_VEL],  # 12 joint_vel
    ], axis=-1)


def _shift_xy(X: Array, offset: Array, xp: ModuleType) -> Array:
    """Adds ``offset`` (..., 2) to the base x, y of every state of X (..., T, 37)."""
    pad = xp.zeros(X.shape[:-1] + (X.shape[-1] - 2,), X.dtype)  # (..., T, 35): base_pos starts at 0
    return X + xp.concatenate([xp.broadcast_to(offset[..., None, :], X.shape[:-1] + (2,)), pad], axis=-1)


def to_heading_frame(X: Array, xp: ModuleType = np) -> Array:
    """Expresses windows in the heading frame of their first state.

    Args:
      X: (..., T, 37) world-frame states, e.g. (B, H+1, 37) windows.
      xp: ``numpy`` or ``jax.numpy``.

    Returns:
      (..., T, 37) states in the frame of ``X[..., 0, :]``: row 0 has base
      x = y = 0 m and yaw in [-pi/4, pi/4]; quaternions have w >= 0.
    """
    origin = X[..., 0, :]  # (..., 37)
    shifted = _shift_xy(X, -origin[..., :2], xp)
    return _turn(shifted, -heading_turn(yaw_of(origin[..., BASE_QUAT], xp), xp), xp)


def from_heading_frame(X_h: Array, x0_world: Array, xp: ModuleType = np) -> Array:
    """Inverse of :func:`to_heading_frame`: back to the world frame of ``x0_world``.

    Args:
      X_h: (..., T, 37) states in a heading frame, e.g. (B, H+1, 37) sampled windows.
      x0_world: (..., 37) world-frame state that defines the frame (only its base
        x, y and snapped yaw are used), normally the world state whose heading-frame
        image is ``X_h[..., 0, :]``.
      xp: ``numpy`` or ``jax.numpy``.

    Returns:
      (..., T, 37) world-frame states; quaternions have w >= 0.
    """
    turned = _turn(X_h, heading_turn(yaw_of(x0_world[..., BASE_QUAT], xp), xp), xp)
    return _shift_xy(turned, x0_world[..., :2], xp)
