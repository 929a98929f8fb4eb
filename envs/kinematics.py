"""Forward kinematics of the Go1's feet, by native MuJoCo (float64)."""

from __future__ import annotations

import mujoco
import numpy as np

from envs.physics import FOOT_SITES, PHYSICS, STATE_DIM, PhysicsConfig, load_mj_model


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
