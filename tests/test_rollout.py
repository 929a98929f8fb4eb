"""The differentiable rollout Phi(x0, U): shapes, Markov state, physics facts, gradients.

Compiling MJX is slow on CPU (forward ~25 s, gradient ~2 min), so every test
here reuses two compiled functions of one shape, (B, H) = (2, 16): the forward
rollout and the gradient of a weighted loss whose weights are an argument.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import task
from envs.dynamics import step
from envs.native import NativeGo1, replay
from envs.physics import BASE_POS, FOOT_CONTACT_HEIGHT, JOINT_POS, PHYSICS

B, H = 2, 16


@pytest.fixture(scope="module")
def x0():
    """(B, 37): the home pose and a perturbed home pose, each after 0.32 s of settling,
    so the feet are loaded (no contact is just being made, where the dynamics has a kink)."""
    x = np.tile(PHYSICS.home_state, (B, 1))
    x[1, JOINT_POS] += np.random.default_rng(0).uniform(-0.1, 0.1, 12)
    return envs.rollout(jnp.asarray(x), jnp.zeros((B, H, 12)))[:, -1]


@pytest.fixture(scope="module")
def U():
    return 0.3 * jax.random.normal(jax.random.PRNGKey(0), (B, H, 12))


def _weighted_loss(U, x0, w, c):
    """sum_k w_k <X[:, k], c>: a scalar that depends on every state dimension."""
    X = envs.rollout(x0, U)  # (B, H+1, 37)
    return jnp.einsum("bkd,d,k->", X, c, w)


@pytest.fixture(scope="module")
def loss_and_grad():
    return jax.jit(jax.value_and_grad(_weighted_loss))


def test_shapes_and_first_state(x0, U):
    X = envs.rollout(x0, U)
    assert X.shape == (B, H + 1, 37)
    np.testing.assert_array_equal(X[:, 0], x0)
    assert bool(jnp.isfinite(X).all())


def test_bad_shapes_raise(x0, U):
    with pytest.raises(ValueError, match=r"\(B, 37\)"):
        envs.rollout(x0[:, :36], U)
    with pytest.raises(ValueError, match="12"):
        envs.rollout(x0, U[..., :11])


def test_state_is_markov(x0, U):
    """A control step from a state rebuilt from its 37 numbers equals the rollout's next state."""
    X = np.asarray(envs.rollout(x0, U))
    k = 7
    x_rebuilt = jnp.asarray(X[:, k].copy())  # (B, 37): just numbers, no MJX data
    x_next = jax.jit(jax.vmap(step))(x_rebuilt, U[:, k])
    np.testing.assert_array_equal(np.asarray(x_next), X[:, k + 1])
    # and a new rollout started there continues the old one exactly
    U_shift = jnp.concatenate([U[:, k:], U[:, :k]], axis=1)
    X2 = np.asarray(envs.rollout(x_rebuilt, U_shift))
    np.testing.assert_array_equal(X2[:, : H + 1 - k], X[:, k:])


def test_standing_five_seconds_mjx(x0):
    """Zero action from the default pose: base height within 0.20-0.32 m and upright for 5 s."""
    x = jnp.tile(jnp.asarray(PHYSICS.home_state), (B, 1))
    zeros = jnp.zeros((B, H, 12))
    heights, gravity_z = [], []
    for _ in range(round(5.0 / (H * PHYSICS.ctrl_dt)) + 1):  # 16 windows of 0.32 s
        X = envs.rollout(x, zeros)
        heights.append(np.asarray(X[..., BASE_POS][..., 2]))
        gravity_z.append(np.asarray(task.projected_gravity(np.asarray(X))[..., 2]))
        x = X[:, -1]
    heights, gravity_z = np.concatenate(heights, 1), np.concatenate(gravity_z, 1)
    assert heights.min() > 0.20 and heights.max() < 0.32, (heights.min(), heights.max())
    assert gravity_z.max() < -0.99  # tilt below ~8 degrees


def test_native_replay_agrees(x0, U):
    """Native MuJoCo (float64) replaying the same actions from the same x0 reproduces the MJX
    (float32) states. Measured on this CPU over 16 steps of u ~ 0.3 N(0, 1): position error
    ~1e-6 m, joint angles ~1e-5 rad, velocities ~1e-4 (the stiff servo and contact forces
    amplify float32 rounding). Tolerances give ~10x headroom; a physics mismatch (other
    timestep, gains, damping, substeps or contact) is orders of magnitude larger."""
    X = np.asarray(envs.rollout(x0, U))
    for b in range(B):
        Xn = replay(np.asarray(x0[b], np.float64), np.asarray(U[b], np.float64))
        err = np.abs(Xn - X[b])
        print(f"b={b} max err: pos {err[:, 0:7].max():.2e} joints {err[:, JOINT_POS].max():.2e} "
              f"vel {err[:, 19:].max():.2e}")
        np.testing.assert_allclose(X[b, :, 0:7], Xn[:, 0:7], atol=2e-5)
        np.testing.assert_allclose(X[b, :, JOINT_POS], Xn[:, JOINT_POS], atol=2e-4)
        np.testing.assert_allclose(X[b, :, 19:], Xn[:, 19:], atol=5e-3)


def test_gradient_finite_with_feet_in_contact(x0, U, loss_and_grad):
    sim = NativeGo1()
    feet_down = []
    for x in np.asarray(envs.rollout(x0, U)).reshape(-1, 37):
        sim.set_state(x)
        feet_down.append((sim.foot_heights() < FOOT_CONTACT_HEIGHT).sum())
    assert min(feet_down) >= 2  # the gradient goes through foot contacts at every step
    c = jax.random.normal(jax.random.PRNGKey(1), (37,))
    _, g = loss_and_grad(U, x0, jnp.ones(H + 1), c)
    assert g.shape == U.shape
    assert bool(jnp.isfinite(g).all())
    assert float(jnp.abs(g).max()) > 0.0
    # every step's action influences the loss
    assert (np.abs(np.asarray(g)).sum(axis=(0, 2)) > 0).all()


def test_directional_derivative_matches_finite_difference(x0, U, loss_and_grad):
    """grad . v against a central difference over a short horizon (3 control steps).

    In float64 the two agree to 1e-7 (relative) for eps from 1e-2 to 1e-4. In float32
    rounding dominates below eps ~ 1e-3; eps = 1e-2 measured 1e-4 relative error."""
    k = 3
    w = jnp.zeros(H + 1).at[1: k + 1].set(1.0)
    c = jax.random.normal(jax.random.PRNGKey(2), (37,))
    v = jnp.zeros_like(U).at[:, :k].set(jax.random.normal(jax.random.PRNGKey(3), (B, k, 12)))
    v = v / jnp.linalg.norm(v)
    _, g = loss_and_grad(U, x0, w, c)
    analytic = float(jnp.vdot(g, v))
    eps = 1e-2
    fd = (float(_weighted_loss(U + eps * v, x0, w, c)) - float(_weighted_loss(U - eps * v, x0, w, c))) / (2 * eps)
    print(f"directional derivative: reverse mode {analytic:.5f}, central difference {fd:.5f}")
    assert abs(analytic - fd) <= 0.1 * abs(fd)
