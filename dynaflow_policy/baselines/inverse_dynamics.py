"""Inverse dynamics u_k = f(x_k, x_{k+1}): an MLP trained on random-play transitions.

Features of a transition (:func:`transition_features`), 2 x 34 numbers::

    s(x)  = envs.task.policy_input(x)'s state blocks: base height, gravity in the body frame,
            body-frame linear and angular velocity, joint angles minus the default pose,
            joint velocities                                                        (34,)
    phi   = s(x_k) ++ (s(x_{k+1}) - s(x_k))                                         (68,)

None of them depends on the world x, y or yaw, so f is invariant to shifting
the pair of states and turning it about the world z axis by any angle. (The
MJCF's friction pyramid makes the physics itself exactly invariant to quarter
turns only, see ``dynaflow_policy.frames``; f ignores that small effect.) The
features are standardised with statistics of the training transitions, which
ship with the parameters.
Network: Dense - SiLU per hidden layer, Dense(12), tanh, so u is in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynaflow_policy.normalizer import MIN_STD
from envs.physics import ACTION_DIM, STATE_DIM
from envs.task import OBS_DIM, POLICY_INPUT_DIM, POLICY_INPUT_STRUCTURE, policy_input

STATE_FEATURE_DIM = POLICY_INPUT_DIM - POLICY_INPUT_STRUCTURE["command"] - POLICY_INPUT_STRUCTURE["gait"]  # 34
"""Width of s(x): the blocks of ``envs.task.policy_input`` that come from the state."""
FEATURE_DIM = 2 * STATE_FEATURE_DIM  # 68


@dataclasses.dataclass(frozen=True)
class InverseDynamicsConfig:
    """The MLP and its training."""

    hidden: tuple[int, ...] = (256, 256)
    """Widths of the hidden layers."""
    steps: int = 20_000
    """AdamW steps."""
    batch_size: int = 512
    """Transitions per step (drawn with replacement)."""
    lr: float = 1e-3
    """AdamW learning rate, cosine-decayed to 0 over ``steps``."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"InverseDynamicsConfig.hidden must be positive widths, got {self.hidden}")
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"InverseDynamicsConfig.{name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"InverseDynamicsConfig.lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"InverseDynamicsConfig.weight_decay must be >= 0, got {self.weight_decay}")


def state_features(x: Any, xp=np) -> Any:
    """s(x) (..., 34): the state blocks of ``envs.task.policy_input`` (no world x, y or yaw).

    Args:
      x: (..., 37) states (units of ``envs.physics``), any frame related to the world by a shift and a turn about z.
      xp: ``numpy`` or ``jax.numpy``.
    """
    pad = xp.zeros(x.shape[:-1] + (OBS_DIM - STATE_DIM,), x.dtype)  # command and gait: not used
    return policy_input(xp.concatenate([x, pad], axis=-1), xp=xp)[..., :STATE_FEATURE_DIM]


def transition_features(x_k: Any, x_next: Any, xp=np) -> Any:
    """phi (..., 68) = s(x_k) ++ (s(x_{k+1}) - s(x_k)) of states (..., 37) x_k and x_{k+1}."""
    s_k = state_features(x_k, xp)
    return xp.concatenate([s_k, state_features(x_next, xp) - s_k], axis=-1)


class InverseDynamicsMLP(nn.Module):
    """Standardised features (B, 68) -> actions (B, 12) in [-1, 1].

    Attributes:
      hidden: widths of the hidden layers.
    """

    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        h = features
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h))
        return jnp.tanh(nn.Dense(ACTION_DIM)(h))  # (B, 12)


@flax.struct.dataclass
class InverseDynamics:
    """A trained inverse-dynamics model; a pytree (``hidden`` is static).

    Attributes:
      params: MLP variables ``{"params": ...}``.
      feature_mean: (68,) mean of the training features.
      feature_std: (68,) their standard deviation, floored at ``normalizer.MIN_STD``.
      hidden: the MLP's hidden widths.
    """

    params: Any
    feature_mean: Any
    feature_std: Any
    hidden: tuple[int, ...] = flax.struct.field(pytree_node=False)

    def __call__(self, x_k: jax.Array, x_next: jax.Array) -> jax.Array:
        """Actions (..., 12) in [-1, 1] taking states x_k (..., 37) to x_next (..., 37); traceable."""
        phi = (transition_features(x_k, x_next, jnp) - self.feature_mean) / self.feature_std  # (..., 68)
        return InverseDynamicsMLP(self.hidden).apply(self.params, phi)

    @classmethod
    def abstract(cls, hidden: tuple[int, ...]) -> InverseDynamics:
        """Shape-only model with ``hidden`` layers: the target a checkpoint is restored into."""
        def build() -> InverseDynamics:
            params = InverseDynamicsMLP(tuple(hidden)).init(jax.random.PRNGKey(0), jnp.zeros((1, FEATURE_DIM)))
            return cls(params=params, feature_mean=jnp.zeros(FEATURE_DIM), feature_std=jnp.ones(FEATURE_DIM),
                       hidden=tuple(hidden))
        return jax.eval_shape(build)


def transitions(states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattens segments into transitions.

    Args:
      states: (N, T+1, 37); actions: (N, T, 12), ``actions[:, k]`` leads from ``states[:, k]`` to ``k + 1``.

    Returns:
      x_k (N*T, 37), x_next (N*T, 37), u (N*T, 12).
    """
    if states.ndim != 3 or actions.shape != states.shape[:1] + (states.shape[1] - 1, ACTION_DIM):
        raise ValueError(f"need states (N, T+1, {STATE_DIM}) and actions (N, T, {ACTION_DIM}), got "
                         f"{states.shape} and {actions.shape}")
    return (states[:, :-1].reshape(-1, STATE_DIM), states[:, 1:].reshape(-1, STATE_DIM),
            actions.reshape(-1, ACTION_DIM))


@functools.partial(jax.jit, static_argnames=("config",))
def _fit(phi: jax.Array, u: jax.Array, rng: jax.Array, config: InverseDynamicsConfig) -> tuple[Any, jax.Array]:
    """AdamW on the mean squared action error; returns the variables and the loss of every step (steps,)."""
    net = InverseDynamicsMLP(config.hidden)
    init_key, data_key = jax.random.split(rng)
    params = net.init(init_key, phi[:1])
    tx = optax.adamw(optax.cosine_decay_schedule(config.lr, config.steps), weight_decay=config.weight_decay)

    def step(carry, i):
        params, opt_state = carry
        idx = jax.random.randint(jax.random.fold_in(data_key, i), (config.batch_size,), 0, phi.shape[0])  # (B,)

        def loss_fn(p):
            return jnp.mean((net.apply(p, phi[idx]) - u[idx]) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(config.steps))
    return params, losses


def train_inverse_dynamics(x_k: np.ndarray, x_next: np.ndarray, u: np.ndarray, config: InverseDynamicsConfig,
                           seed: int) -> tuple[InverseDynamics, np.ndarray]:
    """Fits u = f(x_k, x_next) by least squares; deterministic given the data, config and seed.

    Args:
      x_k: (M, 37) states; x_next: (M, 37) their successors; u: (M, 12) the actions between them.
      config: network and optimiser.
      seed: seed of the initial weights and of the minibatches.

    Returns:
      The model (numpy leaves) and the training loss (mean squared action error) of every step, (steps,).
    """
    x_k, x_next, u = (np.asarray(a, np.float32) for a in (x_k, x_next, u))
    if x_k.shape != x_next.shape or x_k.ndim != 2 or x_k.shape[1] != STATE_DIM or u.shape != (len(x_k), ACTION_DIM):
        raise ValueError(f"need x_k, x_next (M, {STATE_DIM}) and u (M, {ACTION_DIM}), got {x_k.shape}, "
                         f"{x_next.shape}, {u.shape}")
    phi = transition_features(x_k, x_next)  # (M, 68)
    mean, std = phi.mean(axis=0), np.maximum(phi.std(axis=0), MIN_STD)  # (68,)
    params, losses = _fit(jnp.asarray((phi - mean) / std), jnp.asarray(u), jax.random.PRNGKey(seed), config)
    model = InverseDynamics(params=jax.tree.map(np.asarray, params), feature_mean=mean.astype(np.float32),
                            feature_std=std.astype(np.float32), hidden=config.hidden)
    return model, np.asarray(losses)


@jax.jit
def _predict(model: InverseDynamics, x_k: jax.Array, x_next: jax.Array) -> jax.Array:
    return model(x_k, x_next)


def predict(model: InverseDynamics, x_k: np.ndarray, x_next: np.ndarray) -> np.ndarray:
    """Actions between states, numpy in and out (jitted; compiled once per model size and input shape).

    Args:
      model: the inverse dynamics.
      x_k: (..., 37) states; x_next: (..., 37) the states to reach one control step (20 ms) later.

    Returns:
      (..., 12) float32 actions in [-1, 1].
    """
    x_k, x_next = np.asarray(x_k, np.float32), np.asarray(x_next, np.float32)
    if x_k.shape != x_next.shape or x_k.shape[-1:] != (STATE_DIM,):
        raise ValueError(f"x_k and x_next must have the same shape (..., {STATE_DIM}), got {x_k.shape}, "
                         f"{x_next.shape}")
    return np.asarray(_predict(model, x_k, x_next), np.float32)
