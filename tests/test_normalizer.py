"""Normaliser: statistics, the std floor, the shared quaternion scale, round trips, serialisation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynaflow_policy.normalizer import MIN_STD, MIN_VELOCITY_STD, STATE_MIN_STD, Normalizer
from envs.physics import BASE_ANGVEL, BASE_LINVEL, BASE_QUAT, JOINT_VEL, PHYSICS, STATE_DIM


def _windows(seed: int = 0, n: int = 50, rows: int = 5) -> np.ndarray:
    """(n, rows, 37) states around the home pose, small rotations with w ~ 1, row 0 at x = y = 0."""
    rng = np.random.default_rng(seed)
    X = np.tile(PHYSICS.home_state.astype(np.float64), (n, rows, 1))
    X[..., :2] = np.cumsum(rng.normal(0.0, 0.02, (n, rows, 2)), axis=1)
    X[:, 0, :2] = 0.0
    half = rng.normal(0.0, 0.05, (n, rows, 3))  # (x, y, z) of small-angle quaternions
    X[..., BASE_QUAT] = np.concatenate([np.sqrt(1 - (half**2).sum(-1, keepdims=True)), half], axis=-1)
    X[..., JOINT_VEL] = rng.normal(0.0, 2.0, (n, rows, 12))
    return X


def test_fit_statistics_and_floor():
    X = _windows()
    norm = Normalizer.fit(X)
    assert norm.mean.shape == norm.std.shape == (STATE_DIM,)
    assert norm.mean.dtype == norm.std.dtype == np.float32
    flat = X.reshape(-1, STATE_DIM)
    np.testing.assert_allclose(norm.mean, flat.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(norm.std[JOINT_VEL], flat[:, JOINT_VEL].std(0), rtol=1e-5)
    # constant dimensions (base height, joint angles) get the floor instead of 0
    np.testing.assert_allclose(norm.std[2], MIN_STD, rtol=1e-6)
    assert np.all(norm.std >= STATE_MIN_STD)
    z = norm.normalize(X.reshape(-1, STATE_DIM))
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(z[:, JOINT_VEL].std(0), 1.0, rtol=1e-4)


def test_constant_velocities_get_the_velocity_floor():
    """A kinematic-style set with zero vertical velocity and roll/pitch rates: velocity floor, not position floor."""
    X = _windows().copy()
    X[..., BASE_LINVEL.start + 2] = 0.0
    X[..., BASE_ANGVEL.start:BASE_ANGVEL.start + 2] = 0.0
    norm = Normalizer.fit(X)
    np.testing.assert_allclose(norm.std[[BASE_LINVEL.start + 2, BASE_ANGVEL.start, BASE_ANGVEL.start + 1]],
                               MIN_VELOCITY_STD, rtol=1e-6)
    assert MIN_VELOCITY_STD > MIN_STD
    np.testing.assert_allclose(Normalizer.fit(X, min_std=MIN_STD).std[BASE_ANGVEL.start], MIN_STD, rtol=1e-6)


def test_quaternion_dims_share_one_scale():
    """w is nearly constant (~1) but is not blown up: the four quaternion scales are the RMS of their stds."""
    X = _windows()
    norm = Normalizer.fit(X, min_std=1e-6)
    q_std = X[..., BASE_QUAT].reshape(-1, 4).std(0)
    assert q_std[0] < 0.1 * q_std[1:].min()  # the case that per-dimension scaling would blow up
    np.testing.assert_allclose(norm.std[BASE_QUAT], np.sqrt((q_std**2).mean()), rtol=1e-5)
    # so normalised distance between two orientations = chordal distance / shared scale
    q1, q2 = X[0, 1, BASE_QUAT], X[1, 2, BASE_QUAT]
    d = np.linalg.norm(norm.normalize(X[0, 1])[BASE_QUAT] - norm.normalize(X[1, 2])[BASE_QUAT])
    np.testing.assert_allclose(d, np.linalg.norm(q1 - q2) / norm.std[3], rtol=1e-5)


def test_round_trip_numpy_and_jax():
    X = _windows(1)
    norm = Normalizer.fit(X)
    np.testing.assert_allclose(norm.denormalize(norm.normalize(X)), X, atol=1e-6)
    Xj = jnp.asarray(X, jnp.float32)
    back = jax.jit(lambda n, x: n.denormalize(n.normalize(x)))(norm, Xj)  # the normaliser is a pytree argument
    np.testing.assert_allclose(np.asarray(back), X, atol=1e-5)


def test_denormalize_always_gives_unit_quaternions():
    norm = Normalizer.fit(_windows(2))
    z = np.random.default_rng(0).normal(0.0, 3.0, (100, STATE_DIM))  # arbitrary points of normalised space
    x = norm.denormalize(z)
    np.testing.assert_allclose(np.linalg.norm(x[:, BASE_QUAT], axis=-1), 1.0, atol=1e-6)
    other = np.r_[0:3, 7:STATE_DIM]
    np.testing.assert_allclose(x[:, other], (z * norm.std + norm.mean)[:, other], rtol=1e-6)


def test_dict_round_trip_and_validation():
    norm = Normalizer.fit(_windows(3))
    d = json.loads(json.dumps(norm.to_dict()))
    back = Normalizer.from_dict(d)
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_array_equal(back.std, norm.std)
    with pytest.raises(ValueError, match=r"\(37,\)"):
        Normalizer.from_dict({"mean": [0.0] * 36, "std": [1.0] * 36})
    with pytest.raises(ValueError, match="positive"):
        Normalizer.from_dict({"mean": [0.0] * 37, "std": [0.0] * 37})
    with pytest.raises(ValueError, match=r"\(\.\.\., 37\)"):
        Normalizer.fit(np.zeros((4, 5, 36)))
    with pytest.raises(ValueError, match="NaN"):
        Normalizer.fit(np.full((4, 5, 37), np.nan))
