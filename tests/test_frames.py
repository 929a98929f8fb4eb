"""Heading frame: round trips, the origin of the frame, and invariance of the physics under it."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from dynaflow_policy.frames import _turn, from_heading_frame, heading_turn, to_heading_frame, yaw_of
from envs.native import NativeGo1
from envs.physics import BASE_ANGVEL, BASE_QUAT, JOINT_POS, JOINT_VEL, NQ, PHYSICS, STATE_DIM


def _quat_from_euler(roll, pitch, yaw):
    """(..., 4) q = q_z(yaw) q_y(pitch) q_x(roll), (w, x, y, z)."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return np.stack([cy * cp * cr + sy * sp * sr,
                     cy * cp * sr - sy * sp * cr,
                     cy * sp * cr + sy * cp * sr,
                     sy * cp * cr - cy * sp * sr], axis=-1)


def _random_states(rng, shape):
    """(*shape, 37) float64 world states: random base pose (|roll|, |pitch| < 0.3), joints and velocities."""
    X = np.tile(PHYSICS.home_state.astype(np.float64), shape + (1,))
    X[..., :2] = rng.uniform(-5, 5, shape + (2,))
    X[..., 2] += rng.uniform(-0.05, 0.05, shape)
    X[..., BASE_QUAT] = _quat_from_euler(*rng.uniform(-0.3, 0.3, (2,) + shape), rng.uniform(-np.pi, np.pi, shape))
    X[..., JOINT_POS] += rng.uniform(-0.2, 0.2, shape + (12,))
    X[..., NQ:] = rng.normal(0.0, 0.5, shape + (STATE_DIM - NQ,))
    return X


def test_first_state_is_the_origin():
    X = _random_states(np.random.default_rng(0), (3, 5))
    Xh = to_heading_frame(X)
    assert Xh.shape == X.shape
    np.testing.assert_allclose(Xh[:, 0, :2], 0.0, atol=1e-12)
    residual = yaw_of(Xh[:, 0, BASE_QUAT])
    np.testing.assert_allclose(residual, yaw_of(X[:, 0, BASE_QUAT]) - heading_turn(yaw_of(X[:, 0, BASE_QUAT])),
                               atol=1e-9)
    assert np.all(np.abs(residual) <= np.pi / 4 + 1e-9)
    assert np.all(Xh[..., BASE_QUAT.start] >= 0)
    np.testing.assert_allclose(np.linalg.norm(Xh[..., BASE_QUAT], axis=-1), 1.0, atol=1e-12)
    # height, joints, body-frame angular velocity untouched; horizontal speed preserved
    np.testing.assert_array_equal(Xh[..., 2], X[..., 2])
    np.testing.assert_array_equal(Xh[..., JOINT_POS], X[..., JOINT_POS])
    np.testing.assert_array_equal(Xh[..., BASE_ANGVEL], X[..., BASE_ANGVEL])
    np.testing.assert_allclose(np.linalg.norm(Xh[..., 19:21], axis=-1), np.linalg.norm(X[..., 19:21], axis=-1))


def test_round_trips():
    rng = np.random.default_rng(1)
    X = _random_states(rng, (4, 6))
    X[..., BASE_QUAT] *= np.where(X[..., 3:4] < 0, -1.0, 1.0)  # canonical sign, as both directions return
    np.testing.assert_allclose(from_heading_frame(to_heading_frame(X), X[:, 0]), X, atol=1e-12)
    # a heading-frame window placed anywhere comes back unchanged
    Xh = to_heading_frame(X)
    origin = _random_states(rng, (4,))
    np.testing.assert_allclose(to_heading_frame(from_heading_frame(Xh, origin)), Xh, atol=1e-12)


def test_jax_matches_numpy_under_jit():
    X = _random_states(np.random.default_rng(2), (2, 5)).astype(np.float32)
    Xh = jax.jit(lambda x: to_heading_frame(x, xp=jnp))(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(Xh), to_heading_frame(X), atol=1e-5)
    back = jax.jit(lambda x, o: from_heading_frame(x, o, xp=jnp))(Xh, jnp.asarray(X[:, 0]))
    np.testing.assert_allclose(np.asarray(back), from_heading_frame(to_heading_frame(X), X[:, 0]), atol=1e-5)


def _replay(x0, U, cone=None):
    """(H+1, 37) native replay, optionally with the friction cone of this instance's model changed."""
    sim = NativeGo1()
    if cone is not None:
        sim.model.opt.cone = cone
    sim.set_state(x0)
    X = [sim.state()]
    for u in U:
        sim.step(u)
        X.append(sim.state())
    return np.array(X)


def _invariance_case(yaws):
    """A moving start state x, actions U (20, 12), and x placed at two world origins with the given yaws."""
    rng = np.random.default_rng(3)
    x = PHYSICS.home_state.astype(np.float64)
    x[JOINT_POS] += rng.uniform(-0.1, 0.1, 12)
    x[NQ:] = rng.normal(0.0, 0.3, STATE_DIM - NQ)
    U = 0.3 * rng.standard_normal((20, 12))
    origins = np.tile(PHYSICS.home_state.astype(np.float64), (2, 1))
    origins[:, :2] = rng.uniform(-5, 5, (2, 2))
    origins[:, BASE_QUAT] = _quat_from_euler(0.0, 0.0, np.asarray(yaws))
    xa, xb = (from_heading_frame(x[None], o)[0] for o in origins)
    return x, U, xa, xb


def _assert_invariant(x, U, xa, xb, cone=None):
    Xa, Xb = _replay(xa, U, cone), _replay(xb, U, cone)
    assert np.abs(Xa[:, :2] - Xb[:, :2]).min() > 0.1  # the two runs are really somewhere else
    assert np.abs(Xa[-1, JOINT_POS] - Xa[0, JOINT_POS]).max() > 0.05  # and the robot moved
    np.testing.assert_allclose(to_heading_frame(Xa), to_heading_frame(Xb), atol=1e-6)
    np.testing.assert_allclose(to_heading_frame(Xa), to_heading_frame(_replay(x, U, cone)), atol=1e-6)


def test_native_physics_is_invariant_to_shifts_and_quarter_turns():
    """Shipped physics (pyramidal friction cones): shifts and yaws of k * 90 degrees leave the motion unchanged."""
    _assert_invariant(*_invariance_case([np.pi / 2, -np.pi]))


def test_native_physics_with_elliptic_cones_is_invariant_to_any_yaw():
    """With isotropic (elliptic) friction cones, any shift and yaw leaves the motion unchanged (~1e-13)."""
    _assert_invariant(*_invariance_case([0.3, 2.0]), cone=mujoco.mjtCone.mjCONE_ELLIPTIC)


def test_heading_frame_commutes_with_the_physics_at_any_yaw():
    """to_heading_frame(Phi(x0, U)) == Phi(to_heading_frame(x0), U) for any world position and yaw:
    the snapped turn keeps the pyramidal cones' axes where they were."""
    x, U, xa, xb = _invariance_case([0.3, 2.0])
    for xw in (xa, xb):
        X_world = _replay(xw, U)
        x0_h = to_heading_frame(xw[None])[0]
        np.testing.assert_allclose(to_heading_frame(X_world), _replay(x0_h, U), atol=1e-6)


def test_pyramidal_physics_is_not_invariant_to_other_yaws():
    """Why the heading turn is snapped: with the shipped pyramidal cones, the same start state turned
    by 0.3 rad moves its joints differently; turned by 90 degrees it moves them identically."""
    x, U, _, _ = _invariance_case([0.0, 0.0])
    joint_vel = {}
    for yaw in (0.0, 0.3, np.pi / 2):
        xw = _turn(x[None], np.asarray(yaw), np)[0]
        joint_vel[yaw] = _replay(xw, U)[:, JOINT_VEL]
    np.testing.assert_allclose(joint_vel[np.pi / 2], joint_vel[0.0], atol=1e-6)
    assert np.abs(joint_vel[0.3] - joint_vel[0.0]).max() > 1e-2
