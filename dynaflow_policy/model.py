"""The action predictor D_theta(X_t, t, c) -> U: a 1-D DiT over the H+1 state tokens.

::

    X_t (B, H+1, 37) ─ Dense ─ + sinusoidal positions ─► tokens (B, H+1, D)
    t (B,) ─ sinusoid(1000 t) ─ MLP ─┐
                                     + ─► conditioning vector (B, D)
    c (B, 7) ─────────────── MLP ─┘          │ AdaLN shift/scale/gate in every block
    tokens ─ depth x DiTBlock ─ FinalLayer ─ tokens 1..H ─ (+ plan head) ─ tanh ─► U (B, H, 12)

With ``DiTConfig.plan_head_width`` > 0 a :class:`PlanHead`, an MLP of the normalised x0
and c alone, adds its own guess of all H outputs before the tanh. The DiT reaches x0 only
through attention and c only through AdaLN, and, over noised future tokens at a random
flow time, it learns the answer to a new command slowly (docs/training.md, "Answering a
command step"); the head gives that answer, E[U | x0, c], a direct path, and the DiT
learns what the flow's tokens add to it.

With ``predict="states"`` (the state-space baseline, ``dynaflow_policy.baselines``)
the final layer emits 37 numbers per token and tokens 1..H, without tanh, are
the predicted X_1 rows 1..H in normalised state space.

Blocks use AdaLN-Zero (Peebles & Xie, 2023): layer norms without affine
parameters, modulated by a shift, scale and gate computed from the conditioning
vector by a ZERO-initialised Dense layer. A fresh block is therefore exactly the
identity, and a fresh model outputs U = 0 (the final projection is zero-initialised
too), i.e. the rollout of a fresh model is the robot holding its default pose.
Consequence for training: at initialisation only the final projection receives
a non-zero gradient; the other parameters start to learn from the next steps on.

Action tokens: u_k is read from token k+1, the token of the state x_{k+1} that
u_k must produce; token 0 carries the given x0 and only feeds attention.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dynaflow_policy.configs import DiTConfig

TIME_SCALE = 1000.0
"""Flow time t in [0, 1] is multiplied by this before its sinusoidal features."""

PREDICT_MODES: tuple[str, ...] = ("actions", "states")
"""What :class:`DiT1d` outputs: U (B, H, 12) in [-1, 1], or normalised states X_1 rows 1..H (B, H, 37)."""


def sinusoidal_embedding(x: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Transformer sinusoidal features of scalars.

    Args:
      x: (...,) positions or scaled times.
      dim: even number of features.
      max_period: longest period of the features.

    Returns:
      (..., dim) ``[cos(x f_i), sin(x f_i)]`` with ``f_i = max_period^(-i / (dim/2))``.
    """
    half = dim // 2
    freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)  # (dim/2,)
    angles = jnp.asarray(x, jnp.float32)[..., None] * freqs  # (..., dim/2)
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)  # (..., dim)


def _layer_norm() -> nn.LayerNorm:
    """LayerNorm without learned scale or bias (AdaLN supplies them)."""
    return nn.LayerNorm(epsilon=1e-6, use_bias=False, use_scale=False)


def _modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    """x (B, T, D) * (1 + scale) + shift, with shift and scale (B, 1, D)."""
    return x * (1.0 + scale) + shift


def _zero_dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros, name=name)


class MLPEmbedder(nn.Module):
    """Dense(D) - SiLU - Dense(D): embeds a feature vector (B, F) into (B, D)."""

    d_model: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Dense(self.d_model)(x)
        return nn.Dense(self.d_model)(nn.silu(x))  # (B, D)


class DiTBlock(nn.Module):
    """Self-attention and a GELU MLP, each wrapped in AdaLN-Zero.

    Attributes:
      num_heads: attention heads.
      mlp_dim: hidden width of the MLP.
    """

    num_heads: int
    mlp_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        """Updates the tokens.

        Args:
          x: (B, T, D) tokens.
          c: (B, D) conditioning vector.

        Returns:
          (B, T, D) tokens; equal to ``x`` for a freshly initialised block.
        """
        d = x.shape[-1]
        mod = _zero_dense(6 * d, "adaln_modulation")(nn.silu(c))[:, None, :]  # (B, 1, 6D)
        shift_att, scale_att, gate_att, shift_mlp, scale_mlp, gate_mlp = jnp.split(mod, 6, axis=-1)  # (B, 1, D)
        h = _modulate(_layer_norm()(x), shift_att, scale_att)  # (B, T, D)
        x = x + gate_att * nn.MultiHeadDotProductAttention(num_heads=self.num_heads, name="attention")(h)
        h = _modulate(_layer_norm()(x), shift_mlp, scale_mlp)  # (B, T, D)
        h = nn.Dense(d, name="mlp_out")(nn.gelu(nn.Dense(self.mlp_dim, name="mlp_in")(h)))  # (B, T, D)
        return x + gate_mlp * h


class FinalLayer(nn.Module):
    """AdaLN (zero-initialised modulation), then a zero-initialised projection per token.

    Attributes:
      out_dim: features per token.
    """

    out_dim: int

    @nn.compact
    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        """x (B, T, D), c (B, D) -> (B, T, out_dim)."""
        d = x.shape[-1]
        shift, scale = jnp.split(_zero_dense(2 * d, "adaln_modulation")(nn.silu(c))[:, None, :], 2, axis=-1)
        return _zero_dense(self.out_dim, "projection")(_modulate(_layer_norm()(x), shift, scale))


class PlanHead(nn.Module):
    """Dense(W) - SiLU - Dense(W) - SiLU - zero-initialised Dense(H * out_dim): (x0, c) -> (B, H, out_dim).

    Zero-initialised, so adding it leaves a fresh model's output unchanged.

    Attributes:
      width: hidden width W.
      horizon: H.
      out_dim: outputs per step.
    """

    width: int
    horizon: int
    out_dim: int

    @nn.compact
    def __call__(self, x0: jax.Array, cond: jax.Array) -> jax.Array:
        """x0 (B, 37) normalised start state, cond (B, C) -> (B, H, out_dim)."""
        h = jnp.concatenate([x0, cond], axis=-1)  # (B, 37 + C)
        h = nn.silu(nn.Dense(self.width)(h))  # (B, W)
        h = nn.silu(nn.Dense(self.width)(h))  # (B, W)
        out = _zero_dense(self.horizon * self.out_dim, "projection")(h)  # (B, H * out_dim)
        return out.reshape(x0.shape[0], self.horizon, self.out_dim)


class DiT1d(nn.Module):
    """D_theta(X_t, t, c) -> U, the action sequence whose rollout is the predicted X_1.

    Attributes:
      config: sizes (``DiTConfig``).
      predict: ``"actions"`` (DynaFlow: U, tanh-bounded) or ``"states"`` (state-space
        baseline: X_1 rows 1..H, normalised, unbounded); the two differ only in the
        width of the final projection.
    """

    config: DiTConfig
    predict: str = "actions"

    def __post_init__(self) -> None:
        if self.predict not in PREDICT_MODES:
            raise ValueError(f"DiT1d.predict must be one of {PREDICT_MODES}, got {self.predict!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
        """Predicts actions (or, with ``predict="states"``, states).

        Args:
          x_t: (B, H+1, 37) interpolated window in normalised state space; row 0 is the normalised x0.
          t: (B,) flow time in [0, 1].
          cond: (B, 7) conditioning: command (vx m/s, vy m/s, yaw rate rad/s) ++ gait one-hot.

        Returns:
          ``predict="actions"``: U (B, H, 12) actions in [-1, 1]; ``U[:, k]`` is applied at state ``x_k``.
          ``predict="states"``: (B, H, 37) predicted X_1 rows 1..H in normalised state space.
        """
        cfg = self.config
        tokens = cfg.horizon + 1
        if x_t.ndim != 3 or x_t.shape[1:] != (tokens, cfg.state_dim):
            raise ValueError(f"x_t must have shape (B, {tokens}, {cfg.state_dim}), got {x_t.shape}")
        if t.shape != x_t.shape[:1]:
            raise ValueError(f"t must have shape ({x_t.shape[0]},), got {t.shape}")
        if cond.shape != (x_t.shape[0], cfg.cond_dim):
            raise ValueError(f"cond must have shape ({x_t.shape[0]}, {cfg.cond_dim}), got {cond.shape}")
        h = nn.Dense(cfg.d_model, name="state_embed")(x_t)  # (B, H+1, D)
        h = h + sinusoidal_embedding(jnp.arange(tokens), cfg.d_model)  # (B, H+1, D)
        t_emb = MLPEmbedder(cfg.d_model, name="time_embed")(
            sinusoidal_embedding(TIME_SCALE * t, cfg.time_freq_dim))  # (B, D)
        c_emb = MLPEmbedder(cfg.d_model, name="cond_embed")(cond)  # (B, D)
        c = t_emb + c_emb  # (B, D)
        for i in range(cfg.depth):
            h = DiTBlock(cfg.num_heads, cfg.mlp_dim, name=f"block_{i}")(h, c)  # (B, H+1, D)
        out_dim = cfg.state_dim if self.predict == "states" else cfg.action_dim
        out = FinalLayer(out_dim, name="final")(h, c)[:, 1:]  # (B, H, out_dim)
        if cfg.plan_head_width:
            out = out + PlanHead(cfg.plan_head_width, cfg.horizon, out_dim, name="plan_head")(x_t[:, 0], cond)
        return out if self.predict == "states" else jnp.tanh(out)  # (B, H, 37) or (B, H, 12)


def plan_head_actions(params: dict, config: DiTConfig, x0: jax.Array, cond: jax.Array) -> jax.Array:
    """The plan head's own actions, tanh(PlanHead(x0, c)), without the DiT (for its own loss term).

    Args:
      params: ``{"params": ...}`` of a :class:`DiT1d` with ``config.plan_head_width`` > 0.
      config: that DiT's config.
      x0: (B, 37) normalised start states (heading frame).
      cond: (B, C) conditioning.

    Returns:
      (B, H, 12) actions in [-1, 1].
    """
    if not config.plan_head_width:
        raise ValueError("plan_head_actions: the DiT has no plan head (DiTConfig.plan_head_width is 0)")
    head = PlanHead(config.plan_head_width, config.horizon, config.action_dim)
    return jnp.tanh(head.apply({"params": params["params"]["plan_head"]}, x0, cond))


def init_params(config: DiTConfig, rng: jax.Array, predict: str = "actions") -> dict:
    """Fresh model variables ``{"params": ...}`` for ``DiT1d(config, predict).apply``."""
    b = 1
    x = jnp.zeros((b, config.horizon + 1, config.state_dim))
    return DiT1d(config, predict).init(rng, x, jnp.zeros((b,)), jnp.zeros((b, config.cond_dim)))


def count_params(params: dict) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(int(p.size) for p in jax.tree.leaves(params))
