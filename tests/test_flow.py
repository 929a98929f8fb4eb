"""Flow matching through the rollout: interpolant, weights, Euler integrator, sampler and loss gradient.

MJX compiles are slow on CPU, so this file compiles three MJX functions, all at
(B, H) = (2, 4): the sampler (one rollout inside the Euler scan), the bare
``envs.rollout`` (also reused by the eager :func:`denoise` call), and the
gradient of the loss.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from dynaflow_policy.configs import DiTConfig, FlowConfig
from dynaflow_policy.flow import (FOOT_CONTACT_MARGIN, FOOT_HEIGHT_SCALE, START_PERTURBATION_STD, denoise,
                                  euler_integrate, flow_velocity, foot_contact_violation, interpolate, loss_weights,
                                  matching_loss, network_input, noise_window, perturb_start, sample,
                                  start_noise_scales)
from dynaflow_policy.frames import to_heading_frame
from dynaflow_policy.model import DiT1d, init_params
from dynaflow_policy.train import batch_loss
from dynaflow_policy.normalizer import Normalizer
from envs.native import replay
from envs.physics import BASE_POS, BASE_QUAT, FOOT_CONTACT_HEIGHT, PHYSICS, STATE_DIM

B, H = 2, 4
DIT = DiTConfig(d_model=32, depth=1, num_heads=2, mlp_ratio=2.0, horizon=H)
FLOW = FlowConfig()


@pytest.fixture(scope="module")
def windows():
    """(B, H+1, 37) float32 heading-frame windows: native replays of random actions from a standing Go1."""
    rng = np.random.default_rng(0)
    standing = replay(PHYSICS.home_state, np.zeros((25, 12)))[-1]
    X = np.stack([replay(standing, 0.3 * rng.standard_normal((H, 12))) for _ in range(B)])
    return jnp.asarray(to_heading_frame(X), jnp.float32)


@pytest.fixture(scope="module")
def normalizer(windows):
    return Normalizer.fit(np.asarray(windows))


@pytest.fixture(scope="module")
def cond():
    """(B, 7): commands and gait one-hots."""
    return jnp.asarray([[0.5, 0.0, 0.2, 1, 0, 0, 0], [-0.3, 0.1, 0.0, 0, 0, 1, 0]], jnp.float32)


@pytest.fixture(scope="module")
def params():
    """Fresh variables of the tiny DiT."""
    return jax.jit(init_params, static_argnums=0)(DIT, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def moved_params(params):
    """Params with every leaf moved off its initial value, so no zero-initialised layer stays zero."""
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda p: jnp.asarray(p + 0.1 * rng.standard_normal(p.shape), jnp.float32), params)


def test_interpolant_endpoints_by_hand():
    noise = jnp.zeros((1, 3, 2)).at[:, 0].set(9.0)  # row 0 of the noise is overwritten anyway
    data = jnp.full((1, 3, 2), 2.0).at[:, 0].set(5.0)
    np.testing.assert_array_equal(interpolate(noise, data, jnp.array([0.0]))[0], [[5, 5], [0, 0], [0, 0]])
    np.testing.assert_array_equal(interpolate(noise, data, jnp.array([1.0]))[0], [[5, 5], [2, 2], [2, 2]])
    np.testing.assert_allclose(interpolate(noise, data, jnp.array([0.25]))[0], [[5, 5], [0.5, 0.5], [0.5, 0.5]])


def test_own_plan_rows_interpolate_towards_the_own_plan_and_the_others_towards_the_data():
    b, rows = 4096, 5
    x1 = jnp.ones((b, rows, STATE_DIM))
    plan = jnp.full((b, rows, STATE_DIM), -3.0)
    config = FlowConfig()
    rng = jax.random.PRNGKey(3)
    x_t, t = network_input(rng, x1, config)
    x_t_half, t_half = network_input(rng, x1, config, lambda noise: plan, own_plan_fraction=0.5)
    np.testing.assert_array_equal(t, t_half)  # same times and noise: only the end point moves
    x_noise = (x_t - t[:, None, None] * x1) / (1 - t[:, None, None])
    toward_plan = (1 - t[:, None, None]) * x_noise + t[:, None, None] * plan
    mine = np.all(np.isclose(x_t_half[:, 1:], toward_plan[:, 1:], atol=1e-4), axis=(1, 2))
    data = np.all(x_t_half[:, 1:] == x_t[:, 1:], axis=(1, 2))
    assert np.all(mine | data) and abs(mine.mean() - 0.5) < 0.03
    np.testing.assert_array_equal(x_t_half[:, 0], x1[:, 0])  # row 0 stays the given x0
    with pytest.raises(ValueError, match="own_plan"):
        network_input(rng, x1, config, own_plan_fraction=0.5)


def test_noise_window_keeps_x0():
    x0n = jnp.arange(2 * STATE_DIM, dtype=jnp.float32).reshape(2, STATE_DIM)
    x = noise_window(jax.random.PRNGKey(0), x0n, H, FlowConfig(noise_scale=0.5))
    assert x.shape == (2, H + 1, STATE_DIM)
    np.testing.assert_array_equal(x[:, 0], x0n)
    assert 0.3 < float(jnp.std(x[:, 1:])) < 0.7


def test_loss_weights_mask_row_zero():
    w = loss_weights(H, FLOW)
    assert w.shape == (H + 1, STATE_DIM)
    np.testing.assert_array_equal(w[0], 0.0)
    np.testing.assert_array_equal(w[1:], 1.0)
    dims = tuple(float(i) for i in range(STATE_DIM))
    w = loss_weights(H, FlowConfig(state_weights=dims))
    np.testing.assert_array_equal(w[0], 0.0)
    np.testing.assert_array_equal(w[1:], np.tile(dims, (H, 1)))


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_euler_is_exact_for_a_constant_field(steps):
    x0 = jnp.array([[1.0, -2.0, 0.5]])
    c = jnp.array([[0.25, 4.0, -1.0]])
    x1, t_last = euler_integrate(lambda x, t: (jnp.broadcast_to(c, x.shape), t), x0, steps)
    np.testing.assert_allclose(x1, x0 + c, rtol=1e-6)
    np.testing.assert_allclose(t_last, (steps - 1) / steps, rtol=1e-6)


@pytest.mark.parametrize("steps", [1, 4])
def test_euler_with_the_straight_line_field_lands_on_its_target(steps):
    """u = (x_hat - x) / (1 - t) with a fixed x_hat reaches x_hat for any number of steps (no clamp hit)."""
    x0, target = jnp.zeros((2, H + 1, STATE_DIM)), jnp.ones((2, H + 1, STATE_DIM))
    field = lambda x, t: (flow_velocity(target, x, jnp.full((2,), t), 0.05), None)  # noqa: E731
    x1, _ = euler_integrate(field, x0, steps)
    np.testing.assert_allclose(x1, target, rtol=1e-5)


def test_flow_velocity_is_clamped_near_t_one():
    x_hat, x_t = jnp.ones((1, 2, 3)), jnp.zeros((1, 2, 3))
    v = flow_velocity(x_hat, x_t, jnp.array([0.999]), 0.05)
    np.testing.assert_allclose(v, 1.0 / 0.05, rtol=1e-6)
    assert bool(jnp.all(jnp.isfinite(flow_velocity(x_hat, x_t, jnp.array([1.0]), 0.05))))


@pytest.fixture(scope="module")
def sampled(moved_params, windows, cond, normalizer):
    """(X, U) from the jitted sampler with two Euler steps."""
    fn = jax.jit(functools.partial(sample, apply_fn=DiT1d(DIT).apply, config=FlowConfig(ode_steps=2), horizon=H))
    return fn(moved_params, x0=windows[:, 0], cond=cond, rng=jax.random.PRNGKey(3), normalizer=normalizer)


def test_sample_shapes_and_bounds(sampled, windows):
    X, U = sampled
    assert X.shape == (B, H + 1, STATE_DIM) and U.shape == (B, H, 12)
    assert bool(jnp.all(jnp.isfinite(X))) and bool(jnp.all(jnp.abs(U) <= 1.0))
    assert float(jnp.abs(U).max()) > 0.05  # the moved params give non-trivial actions
    np.testing.assert_array_equal(X[:, 0], windows[:, 0])


def test_sampled_states_are_the_rollout_of_the_sampled_actions(sampled, windows):
    X, U = sampled
    np.testing.assert_allclose(np.asarray(envs.rollout(windows[:, 0], U)), np.asarray(X), rtol=0, atol=1e-6)


def test_denoise_has_no_nan_near_t_one(moved_params, windows, cond, normalizer):
    x_t = noise_window(jax.random.PRNGKey(4), normalizer.normalize(windows[:, 0]), H, FLOW)
    t = jnp.full((B,), 0.999)
    v, (X, U) = denoise(moved_params, DiT1d(DIT).apply, x_t, t, windows[:, 0], cond, normalizer, FLOW)
    assert bool(jnp.all(jnp.isfinite(v))) and bool(jnp.all(jnp.isfinite(X)))
    np.testing.assert_allclose(v, (normalizer.normalize(X) - x_t) / FLOW.t_clamp, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(v[:, 0], 0.0)  # x0 never moves


@pytest.fixture(scope="module")
def loss_and_grad(windows, cond, normalizer):
    def loss(params, rng):
        return matching_loss(params, DiT1d(DIT).apply, windows, cond, rng, normalizer, FLOW)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))


def _leaf_norms(tree) -> dict[str, float]:
    return {jax.tree_util.keystr(path): float(jnp.linalg.norm(leaf))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_gradient_at_init_reaches_the_final_projection_only(loss_and_grad, params):
    """AdaLN-Zero: a fresh model outputs U = 0 and only the zero-initialised projection gets a gradient."""
    (loss, aux), grads = loss_and_grad(params, jax.random.PRNGKey(5))
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert set(aux) == {"train/loss", "train/last_state_mse", "train/action_rms", "train/foot_height_rmse"}
    assert float(aux["train/action_rms"]) == 0.0
    norms = _leaf_norms(grads)
    assert all(np.isfinite(v) for v in norms.values())
    assert {k for k, v in norms.items() if v > 0} == {"['params']['final']['projection']['kernel']",
                                                      "['params']['final']['projection']['bias']"}


def test_gradient_reaches_every_parameter(loss_and_grad, moved_params):
    """Once the zero-initialised layers have moved (as after a few optimiser steps), every leaf gets a gradient."""
    (loss, aux), grads = loss_and_grad(moved_params, jax.random.PRNGKey(5))
    assert np.isfinite(float(loss)) and float(aux["train/loss"]) == float(loss)
    norms = _leaf_norms(grads)
    assert len(norms) == len(jax.tree.leaves(moved_params))
    assert all(np.isfinite(v) and v > 0 for v in norms.values()), norms


def test_start_perturbation_has_the_stated_spread_and_keeps_the_heading_frame(windows):
    x0 = jnp.tile(windows[:1, 0].at[:, BASE_QUAT].set(jnp.array([1.0, 0.0, 0.0, 0.0])), (20_000, 1))  # upright
    x = perturb_start(jax.random.PRNGKey(0), x0, 2.0)
    d = np.asarray(x - x0, np.float64)
    free = np.ones(STATE_DIM, bool)
    free[BASE_QUAT] = False
    np.testing.assert_allclose(d[:, free].std(axis=0), 2.0 * START_PERTURBATION_STD[free], rtol=0.03)
    np.testing.assert_array_equal(d[:, BASE_POS][:, :2], 0.0)  # the heading frame's origin stays
    q = np.asarray(x[:, BASE_QUAT], np.float64)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
    tilt = 2 * np.arcsin(np.linalg.norm(q[:, 1:3], axis=1))  # rad from upright; 2 * |(q_x, q_y)|, small angles
    rayleigh_median = np.sqrt(2 * np.log(2)) * 2 * 2.0 * START_PERTURBATION_STD[BASE_QUAT][1]
    assert np.median(tilt) == pytest.approx(rayleigh_median, rel=0.05)
    np.testing.assert_array_equal(q[:, 3], 0.0)  # no yaw component
    np.testing.assert_array_equal(perturb_start(jax.random.PRNGKey(0), x0[:4], 0.0), x0[:4])
    # one scale per state (a per-gait start noise): a row with 0 stays, the others move with their own scale
    per_row = np.asarray(perturb_start(jax.random.PRNGKey(0), x0, jnp.tile(jnp.asarray([0.0, 2.0]), len(x0) // 2)))
    np.testing.assert_array_equal(per_row[0::2], np.asarray(x0[0::2]))
    np.testing.assert_allclose(per_row[1::2, free], np.asarray(x)[1::2, free], rtol=1e-6)


def test_start_noise_moves_the_rollout_start_and_only_it(params, cond, normalizer):
    """A fresh model outputs U = 0. On standing windows, which U = 0 reproduces, the loss from the exact start
    is tiny; from a perturbed start the same actions miss the demonstration."""
    standing = replay(PHYSICS.home_state, np.zeros((25, 12)))[-1]
    still = jnp.asarray(to_heading_frame(np.stack([replay(standing, np.zeros((H, 12)))] * B)), jnp.float32)
    losses = [float(matching_loss(params, DiT1d(DIT).apply, still, cond, jax.random.PRNGKey(3), normalizer, FLOW,
                                  start_noise=s)[0]) for s in (0.0, 1.0)]
    assert losses[0] < 1e-3 and losses[1] > 10 * losses[0], losses
    # per-window scales (a per-gait start noise): all 1 is the scalar 1, all 0 is no perturbation
    per_window = [float(matching_loss(params, DiT1d(DIT).apply, still, cond, jax.random.PRNGKey(3), normalizer, FLOW,
                                      start_noise=jnp.full(B, s))[0]) for s in (0.0, 1.0)]
    assert per_window[0] < 1e-3 and per_window[1] == pytest.approx(losses[1], rel=1e-5), (per_window, losses)
    uniform = float(matching_loss(params, DiT1d(DIT).apply, still, cond, jax.random.PRNGKey(3), normalizer, FLOW,
                                  start_noise=1.0, start_noise_uniform=True)[0])
    assert uniform > 10 * losses[0] and uniform != pytest.approx(losses[1], rel=1e-3), (uniform, losses)


def test_foot_height_term_scores_the_feet_of_the_rollout(params, moved_params, windows, cond, normalizer):
    """U = 0 on standing windows puts every foot where the data has it; moved params lift feet off the data's,
    and the term adds ``weight * mean(dz^2) / FOOT_HEIGHT_SCALE^2`` to the loss."""
    standing = replay(PHYSICS.home_state, np.zeros((25, 12)))[-1]
    still = jnp.asarray(to_heading_frame(np.stack([replay(standing, np.zeros((H, 12)))] * B)), jnp.float32)
    _, aux = matching_loss(params, DiT1d(DIT).apply, still, cond, jax.random.PRNGKey(3), normalizer, FLOW,
                           foot_height_weight=1.0)
    assert float(aux["train/foot_height_rmse"]) < 1e-5
    plain, aux = matching_loss(moved_params, DiT1d(DIT).apply, windows, cond, jax.random.PRNGKey(3), normalizer, FLOW)
    with_feet, _ = matching_loss(moved_params, DiT1d(DIT).apply, windows, cond, jax.random.PRNGKey(3), normalizer,
                                 FLOW, foot_height_weight=2.0)
    rmse = float(aux["train/foot_height_rmse"])
    assert 1e-3 < rmse < 0.2  # metres
    assert float(with_feet) == pytest.approx(float(plain) + 2.0 * rmse**2 / FOOT_HEIGHT_SCALE**2, rel=1e-4)


def test_per_gait_foot_height_weight_weighs_each_window_by_its_gait(moved_params, windows, normalizer):
    """``train.batch_loss`` on pace windows with one foot-height weight per gait: pace weighted 2 scores the plain
    loss plus twice the term, pace weighted 0 (the other gaits 2) the plain loss."""
    batch = {"states": jnp.asarray(windows), "command": jnp.zeros((B, 3)), "gait": jnp.full(B, 1, jnp.int32)}
    loss = {}
    for weight in (0.0, (0.0, 2.0, 0.0, 0.0), (2.0, 0.0, 2.0, 2.0)):
        loss[weight], aux = batch_loss(moved_params, batch, normalizer, jax.random.PRNGKey(3), dit=DIT, flow=FLOW,
                                       foot_height_weight=weight)
    term = 2.0 * float(aux["train/foot_height_rmse"]) ** 2 / FOOT_HEIGHT_SCALE**2
    plain = float(loss[0.0])
    assert term > 1e-3 * plain
    assert float(loss[0.0, 2.0, 0.0, 0.0]) == pytest.approx(plain + term, rel=1e-4)
    assert float(loss[2.0, 0.0, 2.0, 2.0]) == pytest.approx(plain, rel=1e-6)


def test_foot_contact_violation_asks_for_the_datas_side_of_the_threshold_at_any_height():
    h, m = FOOT_CONTACT_HEIGHT, FOOT_CONTACT_MARGIN
    z_ref = jnp.asarray([h - 0.004, h - 0.004, h + 0.001, h + 0.05])  # down, down, just up, high up
    z = jnp.asarray([h - 0.010, h + 0.010, h + 0.0005, h + 0.005])
    np.testing.assert_allclose(foot_contact_violation(z, z_ref), [0.0, 0.010 + m, 0.0005, 0.0], atol=1e-7)
    assert float(jnp.sum(foot_contact_violation(z_ref + 0.1, z_ref + 0.1))) == 0.0  # all up: no height asked
    near = h + jnp.linspace(-2 * m, 2 * m, 41)  # reference feet inside the margin ask only for their own height
    assert float(jnp.max(foot_contact_violation(near, near))) == 0.0
    down_in_margin = (near < h) & (near > h - m + 1e-5)
    np.testing.assert_allclose(foot_contact_violation(near + 0.001, near)[down_in_margin], 0.001, atol=1e-6)


def test_foot_contact_term_is_zero_on_the_data_and_weighs_each_window_by_its_gait(params, moved_params, windows,
                                                                                normalizer):
    """U = 0 on standing windows keeps every foot down where the data's is: no term, full agreement. On pace
    windows, a pace weight of 2 scores as a single weight of 2 and more than the plain loss; the other gaits'
    weights do not count."""
    standing = replay(PHYSICS.home_state, np.zeros((25, 12)))[-1]
    still = jnp.asarray(to_heading_frame(np.stack([replay(standing, np.zeros((H, 12)))] * B)), jnp.float32)
    cond = jnp.zeros((B, FLOW.cond_dim))
    plain, _ = matching_loss(params, DiT1d(DIT).apply, still, cond, jax.random.PRNGKey(3), normalizer, FLOW)
    with_term, aux = matching_loss(params, DiT1d(DIT).apply, still, cond, jax.random.PRNGKey(3), normalizer, FLOW,
                                   foot_contact_weight=5.0)
    assert float(with_term) == pytest.approx(float(plain), rel=1e-6)
    assert float(aux["train/foot_contact_agreement"]) == 1.0
    lifted = windows.at[:, 1:, BASE_POS.start + 2].add(0.05)  # the data's trunk, so its feet, 5 cm higher
    batch = {"states": lifted, "command": jnp.zeros((B, 3)), "gait": jnp.full(B, 1, jnp.int32)}
    loss = {w: float(batch_loss(moved_params, batch, normalizer, jax.random.PRNGKey(3), dit=DIT, flow=FLOW,
                                foot_contact_weight=w)[0])
            for w in (0.0, 2.0, (0.0, 2.0, 0.0, 0.0), (2.0, 0.0, 2.0, 2.0))}
    assert loss[2.0] - loss[0.0] > 1e-3 * loss[0.0]  # feet down where the data's are in the air
    assert loss[0.0, 2.0, 0.0, 0.0] == pytest.approx(loss[2.0], rel=1e-6)
    assert loss[2.0, 0.0, 2.0, 2.0] == pytest.approx(loss[0.0], rel=1e-6)


def test_uniform_start_noise_draws_each_window_a_scale_below_its_own():
    scale = jnp.tile(jnp.asarray([0.0, 1.0, 0.5, 2.0]), 2500)  # (10000,): per-gait scales of four gaits
    drawn = np.asarray(start_noise_scales(jax.random.PRNGKey(0), scale, 10000, uniform=True))
    np.testing.assert_array_equal(drawn[0::4], 0.0)
    for k, top in ((1, 1.0), (2, 0.5), (3, 2.0)):
        assert drawn[k::4].min() >= 0 and drawn[k::4].max() < top
        assert drawn[k::4].mean() == pytest.approx(top / 2, rel=0.05)
    assert start_noise_scales(jax.random.PRNGKey(0), 0.7, 4, uniform=False) == 0.7
    assert np.asarray(start_noise_scales(jax.random.PRNGKey(0), 0.7, 4, uniform=True)).shape == (4,)


def test_per_gait_start_noise_perturbs_each_window_by_its_gait(params, normalizer):
    """``train.batch_loss`` with one start noise per gait: standing windows labelled pace (scale 0) keep their
    tiny loss, the same windows labelled trot (scale 1) are perturbed."""
    standing = replay(PHYSICS.home_state, np.zeros((25, 12)))[-1]
    windows = np.stack([replay(standing, np.zeros((H, 12)))] * B).astype(np.float32)  # world frame
    losses = {}
    for gait in (0, 1):  # trot, pace
        batch = {"states": jnp.asarray(windows), "command": jnp.zeros((B, 3)), "gait": jnp.full(B, gait, jnp.int32)}
        losses[gait] = float(batch_loss(params, batch, normalizer, jax.random.PRNGKey(3), dit=DIT, flow=FLOW,
                                        start_noise=(1.0, 0.0, 0.0, 0.0))[0])
    assert losses[1] < 1e-3 and losses[0] > 10 * losses[1], losses
