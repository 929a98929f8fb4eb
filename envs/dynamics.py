"""Differentiable batched rollout Phi(x0, U) -> X on MJX.

One control step sets the MJX data from the 37 state numbers, sets the servo
targets from the action, and runs ``n_substeps`` physics steps. Because the
MJCF disables the solver warm start, nothing else carries over between control
steps: the next state is a function of (x, u) alone, which is what makes
state-only demonstrations replayable and SAE exactly zero for our rollouts.

Memory and speed: every physics substep is a function of 37 numbers and the
servo targets, rematerialised in the backward pass (``jax.checkpoint``). The
backward pass therefore stores one (B, 37) state per substep and recomputes
one substep's internals at a time: peak memory grows with B * H * substeps * 37
floats, not with the solver's internals. Measured on a 2-core CPU at B=64,
H=16 (gradient windows/s, gradient/forward time): no remat 70/s, 11.5x;
remat per control step 142/s, 6.0x; remat per substep from the 37 numbers
148/s, 4.9x (``eval/bench_physics.py`` measures the current code).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from mujoco import mjx

from envs import physics
from envs.physics import NQ, PHYSICS, STATE_DIM, ACTION_DIM, PhysicsConfig


@functools.lru_cache(maxsize=None)
def mjx_model(config: PhysicsConfig = PHYSICS) -> mjx.Model:
    """The MJX model of ``config`` (JAX implementation), built once.

    Built eagerly even when first requested inside a trace, so the cache never
    holds tracers.
    """
    with jax.ensure_compile_time_eval():
        return mjx.put_model(physics.load_mj_model(config), impl="jax")


@functools.lru_cache(maxsize=None)
def _data_template(config: PhysicsConfig) -> mjx.Data:
    with jax.ensure_compile_time_eval():
        return mjx.make_data(mjx_model(config))


def data_from_state(x: jax.Array, config: PhysicsConfig = PHYSICS) -> mjx.Data:
    """MJX data holding state x (37,); every other field is the template's."""
    return _data_template(config).replace(qpos=x[:NQ], qvel=x[NQ:])


def state_from_data(d: mjx.Data) -> jax.Array:
    """(37,) state ``qpos ++ qvel`` of MJX data."""
    return jnp.concatenate([d.qpos, d.qvel])


def step_data(d: mjx.Data, u: jax.Array, config: PhysicsConfig = PHYSICS, model: mjx.Model | None = None) -> mjx.Data:
    """One control step on MJX data: servo targets from u (12,), then the substeps.

    The substeps are unrolled in Python: XLA fuses across them, which is
    faster than a scan of length ``n_substeps`` in both passes. ``model``
    replaces the model of ``config`` (domain randomisation: same structure,
    other parameter values).
    """
    m = mjx_model(config) if model is None else model
    d = d.replace(ctrl=physics.motor_targets(u, config, xp=jnp))
    for _ in range(config.n_substeps):
        d = mjx.step(m, d)
    return d


def _physics_step(x: jax.Array, ctrl: jax.Array, config: PhysicsConfig) -> jax.Array:
    """One physics substep (4 ms) from a state rebuilt from its 37 numbers: x (37,), ctrl (12,) -> x (37,)."""
    d = data_from_state(x, config).replace(ctrl=ctrl)
    return state_from_data(mjx.step(mjx_model(config), d))


def step(x: jax.Array, u: jax.Array, config: PhysicsConfig = PHYSICS) -> jax.Array:
    """One control step of one robot: x (37,), u (12,) -> next x (37,).

    The same computation as :func:`step_data` (a test holds them equal), with
    each substep rematerialised under differentiation. ``prevent_cse=False``
    is correct anywhere; inside the rollout's scan the recomputation stays
    apart from the forward pass, and XLA may fuse across substeps.
    """
    substep = jax.checkpoint(functools.partial(_physics_step, config=config), prevent_cse=False)
    ctrl = physics.motor_targets(u, config, xp=jnp)
    for _ in range(config.n_substeps):
        x = substep(x, ctrl)
    return x


def _rollout_one(x0: jax.Array, U: jax.Array, config: PhysicsConfig) -> jax.Array:
    """x0 (37,), U (H, 12) -> X (H+1, 37)."""
    def body(x, u):
        x_next = step(x, u, config)
        return x_next, x_next

    _, xs = jax.lax.scan(body, x0, U)  # (H, 37)
    return jnp.concatenate([x0[None], xs], axis=0)  # (H+1, 37)


@functools.partial(jax.jit, static_argnames="config")
def rollout(x0: jax.Array, U: jax.Array, config: PhysicsConfig = PHYSICS) -> jax.Array:
    """Phi(x0, U): batched, jitted, reverse-mode differentiable; vmappable over extra leading axes.

    Args:
      x0: (B, 37) initial states (layout in ``envs.physics``).
      U: (B, H, 12) actions in [-1, 1] (targets are clipped to joint ranges).
      config: physics config (static).

    Returns:
      X: (B, H+1, 37) states with ``X[:, 0] == x0`` and ``X[:, k+1]`` the
      state after applying ``U[:, k]`` for one control period (20 ms).
    """
    if x0.ndim != 2 or x0.shape[-1] != STATE_DIM:
        raise ValueError(f"x0 must have shape (B, {STATE_DIM}), got {x0.shape}")
    if U.ndim != 3 or U.shape[-1] != ACTION_DIM or U.shape[0] != x0.shape[0]:
        raise ValueError(f"U must have shape ({x0.shape[0]}, H, {ACTION_DIM}), got {U.shape}")
    return jax.vmap(functools.partial(_rollout_one, config=config))(x0, U)
