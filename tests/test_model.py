"""DiT1d: AdaLN-Zero identity at init, shapes and bounds, preset sizes, dependence on t and c."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynaflow_policy.configs import COND_DIM, DiTConfig, FlowConfig
from dynaflow_policy.model import DiT1d, DiTBlock, count_params, init_params, sinusoidal_embedding

TINY = DiTConfig(d_model=32, depth=2, num_heads=2, mlp_ratio=2.0, horizon=4)
B = 3


def _inputs(config: DiTConfig, seed: int = 0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x_t = jax.random.normal(k1, (B, config.horizon + 1, config.state_dim))
    t = jax.random.uniform(k2, (B,))
    cond = jax.random.normal(k3, (B, config.cond_dim))
    return x_t, t, cond


@pytest.fixture(scope="module")
def fresh():
    """Fresh TINY variables (init jitted: eager flax init dispatches op by op)."""
    return jax.jit(init_params, static_argnums=0)(TINY, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def apply():
    return jax.jit(DiT1d(TINY).apply)


def _perturbed(params, scale: float = 0.1, seed: int = 1):
    """Params with every leaf moved by N(0, scale^2) noise, so no layer is still zero."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(p + scale * rng.standard_normal(p.shape), jnp.float32), params)


def test_fresh_block_is_identity():
    x = jax.random.normal(jax.random.PRNGKey(0), (B, 5, 32))
    c = jax.random.normal(jax.random.PRNGKey(1), (B, 32))
    block = DiTBlock(num_heads=2, mlp_dim=64)
    params = jax.jit(block.init)(jax.random.PRNGKey(2), x, c)
    block_apply = jax.jit(block.apply)
    np.testing.assert_array_equal(np.asarray(block_apply(params, x, c)), np.asarray(x))
    # and not because the block ignores its input: with non-zero modulation it changes x
    assert not np.allclose(block_apply(_perturbed(params), x, c), x)


def test_fresh_model_outputs_zero_actions(fresh, apply):
    U = apply(fresh, *_inputs(TINY))
    np.testing.assert_array_equal(np.asarray(U), 0.0)


def test_output_shape_and_bounds(fresh, apply):
    params = _perturbed(fresh, scale=1.0)
    x_t, t, cond = _inputs(TINY)
    U = apply(params, 10.0 * x_t, t, cond)
    assert U.shape == (B, TINY.horizon, 12)
    assert bool(jnp.all(jnp.abs(U) <= 1.0)) and bool(jnp.all(jnp.isfinite(U)))
    assert float(jnp.abs(U).max()) > 0.5  # large weights actually push towards the bounds


def test_depends_on_t_cond_and_state(fresh, apply):
    params = _perturbed(fresh)
    x_t, t, cond = _inputs(TINY)
    U = apply(params, x_t, t, cond)
    other_gait = cond.at[:, 3:].set(jnp.eye(4)[:B])
    for changed in [(x_t, t + 0.3, cond), (x_t, t, other_gait), (x_t.at[:, 2].add(1.0), t, cond)]:
        assert float(jnp.abs(apply(params, *changed) - U).max()) > 1e-3
    # each window's actions depend on its own inputs only
    U2 = apply(params, x_t.at[0].add(1.0), t, cond)
    np.testing.assert_allclose(U2[1:], U[1:], atol=1e-6)


def test_bad_input_shapes_raise(fresh, apply):
    x_t, t, cond = _inputs(TINY)
    with pytest.raises(ValueError, match=r"\(B, 5, 37\)"):
        apply(fresh, x_t[:, :4], t, cond)
    with pytest.raises(ValueError, match="cond"):
        apply(fresh, x_t, t, cond[:, :6])


def test_sinusoidal_embedding():
    e = sinusoidal_embedding(jnp.array([0.0, 1.0]), 8)
    assert e.shape == (2, 8)
    np.testing.assert_allclose(e[0], [1, 1, 1, 1, 0, 0, 0, 0], atol=1e-7)  # cos 0 = 1, sin 0 = 0
    np.testing.assert_allclose(e[1, 0], np.cos(1.0), rtol=1e-6)  # fastest frequency is 1


@pytest.mark.parametrize("preset, target", [("small", 1e6), ("medium", 5e6), ("large", 10e6)])
def test_preset_parameter_counts(preset, target):
    config = getattr(DiTConfig, preset)()
    n = count_params(jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0))))
    print(f"DiTConfig.{preset}(): d_model={config.d_model} depth={config.depth} heads={config.num_heads} "
          f"mlp_ratio={config.mlp_ratio} -> {n:,} parameters")
    assert 0.9 * target <= n <= 1.1 * target


def test_config_validation():
    assert DiTConfig().cond_dim == COND_DIM == 7 and DiTConfig().state_dim == 37
    with pytest.raises(ValueError, match="num_heads must divide d_model=128, got 3"):
        DiTConfig(num_heads=3)
    with pytest.raises(ValueError, match="depth must be a positive int, got 0"):
        DiTConfig(depth=0)
    with pytest.raises(ValueError, match="ode_steps"):
        FlowConfig(ode_steps=0)
    with pytest.raises(ValueError, match="t_clamp"):
        FlowConfig(t_clamp=0.0)
    with pytest.raises(ValueError, match="state_weights must have 37 entries, got 3"):
        FlowConfig(state_weights=(1.0, 1.0, 1.0))
    assert hash(FlowConfig(state_weights=[1.0] * 37)) == hash(FlowConfig(state_weights=(1.0,) * 37))


def test_states_mode_predicts_unbounded_normalised_states(fresh):
    """predict="states": same tree except the final projection's width; (B, H, 37) rows 1..H, no tanh."""
    states_params = jax.jit(init_params, static_argnums=(0, 2))(TINY, jax.random.PRNGKey(0), "states")
    leaves = jax.tree_util.tree_leaves_with_path(fresh)
    states_leaves = jax.tree_util.tree_leaves_with_path(states_params)
    assert [k for k, _ in leaves] == [k for k, _ in states_leaves]
    differ = {jax.tree_util.keystr(k): (a.shape, b.shape)
              for (k, a), (_, b) in zip(leaves, states_leaves) if a.shape != b.shape}
    assert differ == {"['params']['final']['projection']['bias']": ((12,), (37,)),
                      "['params']['final']['projection']['kernel']": ((32, 12), (32, 37))}
    apply_states = jax.jit(DiT1d(TINY, predict="states").apply)
    x_t, t, cond = _inputs(TINY)
    np.testing.assert_array_equal(np.asarray(apply_states(states_params, x_t, t, cond)), 0.0)
    X = apply_states(_perturbed(states_params, scale=1.0), 10.0 * x_t, t, cond)
    assert X.shape == (B, TINY.horizon, TINY.state_dim)
    assert float(jnp.abs(X).max()) > 2.0  # not squashed into [-1, 1]
    with pytest.raises(ValueError, match=r"predict must be one of \('actions', 'states'\), got 'state'"):
        DiT1d(TINY, predict="state")


def test_plan_head_is_zero_at_init_and_reads_only_x0_and_cond():
    """plan_head_width > 0: a fresh model still outputs U = 0; once trained, the head's share of U depends on
    x0 and c and on nothing else (not the noised tokens 1..H, not t)."""
    config = DiTConfig(d_model=32, depth=2, num_heads=2, mlp_ratio=2.0, horizon=4, plan_head_width=16)
    params = jax.jit(init_params, static_argnums=0)(config, jax.random.PRNGKey(0))
    assert set(params["params"]) - set(init_params(TINY, jax.random.PRNGKey(0))["params"]) == {"plan_head"}
    apply = jax.jit(DiT1d(config).apply)
    x_t, t, cond = _inputs(config)
    np.testing.assert_array_equal(np.asarray(apply(params, x_t, t, cond)), 0.0)
    head_only = {"params": {**jax.tree.map(jnp.zeros_like, params["params"]),
                            "plan_head": _perturbed(params["params"]["plan_head"])}}
    U = apply(head_only, x_t, t, cond)
    assert float(jnp.abs(U).max()) > 1e-3
    np.testing.assert_allclose(apply(head_only, x_t.at[:, 1:].add(1.0), t + 0.3, cond), U, atol=1e-6)
    for changed in [(x_t.at[:, 0].add(1.0), t, cond), (x_t, t, cond.at[:, 0].add(1.0))]:
        assert float(jnp.abs(apply(head_only, *changed) - U).max()) > 1e-3
    with pytest.raises(ValueError, match="plan_head_width must be an int >= 0, got -1"):
        DiTConfig(plan_head_width=-1)
