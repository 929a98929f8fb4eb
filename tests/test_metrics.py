"""SAE (MJX and native), action fitting for state-only data, TRE and action recovery.

One MJX compile: the vmapped control step of :func:`sae` at B*H = 8 transitions.
"""

import numpy as np
import pytest

from dynaflow_policy import metrics
from dynaflow_policy.normalizer import MIN_STD, Normalizer
from envs.native import replay
from envs.physics import BASE_QUAT, PHYSICS, STATE_DIM

B, H = 2, 4


@pytest.fixture(scope="module")
def data():
    """(X (B, H+1, 37) float64, U (B, H, 12), normaliser): native replays of random actions from a standing Go1."""
    rng = np.random.default_rng(0)
    standing = replay(PHYSICS.home_state, np.zeros((25, 12)))[-1]
    U = 0.15 * rng.standard_normal((B, H, 12))
    X = np.stack([replay(standing, u) for u in U])
    # One 0.01 floor for every dimension: the base barely moves here, and the 0.1 velocity floor would hide
    # its velocities from the action fit, whose calibration (metrics docstrings) used these scales.
    return X, U, Normalizer.fit(X, min_std=MIN_STD)


@pytest.fixture(scope="module")
def perturbed(data):
    """X with rows 1..H moved by 0.05 std per dimension: no action sequence reproduces it."""
    X, _, norm = data
    Xp = X.copy()
    Xp[:, 1:] += 0.05 * norm.std * np.random.default_rng(1).standard_normal(Xp[:, 1:].shape)
    return Xp


def test_state_distance_by_hand():
    scale = np.full(STATE_DIM, 2.0)
    x, y = np.zeros(STATE_DIM), np.zeros(STATE_DIM)
    x[[3, 7]] = 1.0
    y[3], y[7], y[20] = 1.0, 1.0 + 6.0, 8.0  # 3 and 4 scales away
    assert metrics.state_distance(x, y, scale) == pytest.approx(5.0)
    y_flipped = y.copy()
    y_flipped[BASE_QUAT] *= -1  # the same rotation
    assert metrics.state_distance(x, y_flipped, scale) == pytest.approx(5.0)


def test_sae_native_of_a_replay_is_zero(data):
    X, U, norm = data
    errors = metrics.admissibility_errors_native(X, U, norm)
    assert errors.shape == (B, H)
    assert metrics.sae_native(X, U, norm) < 1e-12


def test_sae_mjx_of_a_replay_is_float32_level_and_positive_off_the_dynamics(data, perturbed):
    X, U, norm = data
    errors = np.asarray(metrics.admissibility_errors(X, U, norm))
    assert errors.shape == (B, H)
    clean = metrics.sae(X, U, norm.std)  # a scale array works as well as a normaliser
    bad = metrics.sae(perturbed, U, norm)
    print(f"SAE (MJX step, float32) of a native replay: {clean:.2e}; of perturbed states: {bad:.3f}")
    assert clean < 1e-3
    assert bad > 0.1 and bad > 100 * clean
    assert metrics.sae_native(perturbed, U, norm) == pytest.approx(bad, rel=0.05)


def test_fit_actions_native_recovers_replayed_actions(data):
    X, U, norm = data
    U_fit = metrics.fit_actions_native(X[:, :-1].reshape(-1, STATE_DIM), X[:, 1:].reshape(-1, STATE_DIM), norm)
    rmse = float(metrics.action_recovery_rmse(U_fit, U.reshape(-1, 12)))
    print(f"fitted-action RMSE on {B * H} replayed transitions: {rmse:.1e}")
    assert rmse < 1e-2


def test_sae_of_state_only_data(data, perturbed):
    X, U, norm = data
    errors, U_fit = metrics.admissibility_errors_fitted_native(X, norm)
    assert errors.shape == (B, H) and U_fit.shape == U.shape
    np.testing.assert_array_equal(errors, metrics.admissibility_errors_native(X, U_fit, norm))
    feasible = float(errors.mean())
    assert feasible < 1e-6
    infeasible, _ = metrics.sae_fitted_native(perturbed, norm)
    print(f"SAE with fitted actions: feasible {feasible:.1e}, perturbed {infeasible:.3f}")
    # the fit may do better than the true actions on perturbed data, but cannot make it feasible
    assert 0.05 < infeasible <= metrics.sae_native(perturbed, U, norm) + 1e-9


def test_tre_by_hand(data):
    X, _, norm = data
    assert float(metrics.tre(X, X, norm)) == 0.0
    shifted = X + 0.1 * norm.std  # 0.1 scales in every dimension of every row
    np.testing.assert_allclose(float(metrics.tre(shifted, X, norm)), 0.01, rtol=1e-5)
    moved_x0 = X.copy()
    moved_x0[:, 0] += 1.0  # row 0 is the shared x0 and is not scored
    assert float(metrics.tre(moved_x0, X, norm)) == 0.0


def test_action_recovery_rmse_by_hand():
    U = np.random.default_rng(2).uniform(-1, 1, (B, H, 12))
    assert float(metrics.action_recovery_rmse(U, U)) == 0.0
    np.testing.assert_allclose(float(metrics.action_recovery_rmse(U + 0.2, U)), 0.2, rtol=1e-12)


def test_bad_shapes_raise(data):
    X, U, norm = data
    with pytest.raises(ValueError, match=r"\(B, H\+1, 37\)"):
        metrics.sae_native(X, U[:, :-1], norm)
    with pytest.raises(ValueError, match=r"\(37,\)"):
        metrics.sae_native(X, U, np.ones(36))


def _shifted_home(offsets: np.ndarray) -> np.ndarray:
    """(T, 37) home states with base position home + offsets (T, 3): the whole robot moves rigidly."""
    X = np.repeat(PHYSICS.home_state[None].astype(np.float64), len(offsets), 0)
    X[:, :3] += offsets
    return X


def test_centroidal_violation_is_zero_on_a_native_rollout(data):
    X, _, _ = data
    v = metrics.centroidal_violation(X[0])
    assert v.shape == (H - 1,) and np.all(v < 0.01)


def test_centroidal_violation_by_hand():
    dt, g, mu = PHYSICS.ctrl_dt, 9.81, 0.8  # mu: the larger of floor (0.6) and foot (0.8) friction
    t = np.arange(5) * dt
    # Standing on the floor, the COM accelerating forward at 2 g: the force per unit mass (2g, 0, g)
    # lies outside the cone |f_xy| <= mu f_z, at distance (2 - mu) g / sqrt(1 + mu^2) from its surface.
    accelerating = _shifted_home(np.stack([g * t**2, 0 * t, 0 * t], axis=1))
    np.testing.assert_allclose(metrics.centroidal_violation(accelerating), (2 - mu) / np.sqrt(1 + mu**2), rtol=1e-6)
    # Standing still is inside the cone; floating 0.5 m up at rest needs a force (g) that no foot can give.
    np.testing.assert_allclose(metrics.centroidal_violation(_shifted_home(np.zeros((5, 3)))), 0.0, atol=1e-9)
    floating = _shifted_home(np.tile([0.0, 0.0, 0.5], (5, 1)))
    np.testing.assert_allclose(metrics.centroidal_violation(floating), 1.0, rtol=1e-6)
