"""Frozen configs of the learning core: the DiT action predictor and the flow.

Both are frozen (hashable) dataclasses, so they can be static arguments of
``jax.jit``; each checks its values in ``__post_init__``.
"""

from __future__ import annotations

import dataclasses

from envs.physics import ACTION_DIM, STATE_DIM
from envs.task import COMMAND_DIM, GAITS

COND_DIM = COMMAND_DIM + len(GAITS)  # 3 + 4
"""Width of the conditioning vector c: velocity command (vx, vy, yaw rate) ++ gait one-hot."""


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """The 1-D DiT D_theta(X_t, t, c) -> U.

    Presets (parameter counts measured by ``tests/test_model.py``):
    :meth:`small` 0.96M, :meth:`medium` 5.08M, :meth:`large` 10.02M.

    Attributes:
      d_model: token width D.
      depth: number of DiT blocks.
      num_heads: attention heads; must divide ``d_model``.
      mlp_ratio: hidden width of each block's MLP, as a multiple of ``d_model``.
      horizon: H, actions per window; the model reads H+1 state tokens.
      state_dim: width of a state token, 37 (``envs.physics.STATE_DIM``).
      action_dim: width of an action, 12 (``envs.physics.ACTION_DIM``).
      cond_dim: width of c, 3 command + 4 gait one-hot = 7.
      time_freq_dim: number of sinusoidal features of the flow time t (even).
    """

    d_model: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 8.0
    horizon: int = 16
    state_dim: int = STATE_DIM
    action_dim: int = ACTION_DIM
    cond_dim: int = COND_DIM
    time_freq_dim: int = 256

    def __post_init__(self) -> None:
        for name in ("d_model", "depth", "num_heads", "horizon", "state_dim", "action_dim", "cond_dim",
                     "time_freq_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DiTConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"DiTConfig.num_heads must divide d_model={self.d_model}, got {self.num_heads}")
        if self.mlp_ratio <= 0 or round(self.mlp_ratio * self.d_model) < 1:
            raise ValueError(f"DiTConfig.mlp_ratio must give an MLP width >= 1, got {self.mlp_ratio}")
        if self.time_freq_dim % 2:
            raise ValueError(f"DiTConfig.time_freq_dim must be even, got {self.time_freq_dim}")

    @property
    def mlp_dim(self) -> int:
        """Hidden width of each block's MLP."""
        return round(self.mlp_ratio * self.d_model)

    @classmethod
    def small(cls, **overrides) -> DiTConfig:
        """d=128, depth 2, 4 heads, MLP 8x: 0.96M parameters."""
        return cls(**{**dict(d_model=128, depth=2, num_heads=4, mlp_ratio=8.0), **overrides})

    @classmethod
    def medium(cls, **overrides) -> DiTConfig:
        """d=256, depth 3, 4 heads, MLP 7x: 5.08M parameters."""
        return cls(**{**dict(d_model=256, depth=3, num_heads=4, mlp_ratio=7.0), **overrides})

    @classmethod
    def large(cls, **overrides) -> DiTConfig:
        """d=384, depth 3, 6 heads, MLP 5.5x: 10.02M parameters."""
        return cls(**{**dict(d_model=384, depth=3, num_heads=6, mlp_ratio=5.5), **overrides})


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Flow matching through the rollout, and its Euler sampler.

    Attributes:
      ode_steps: N, Euler steps of the sampler (network evaluations and rollouts per sample).
      t_clamp: lower bound on 1 - t in the sampler's velocity (X_hat_1 - X_t) / (1 - t).
      noise_scale: standard deviation of the noise X_0 in normalised space.
      heading_frame: windows, x0 and the normaliser statistics are expressed in the
        heading frame of each window's first state (``dynaflow_policy.frames``);
        False is the world-frame ablation. The flow itself is frame-agnostic: the
        data pipeline and the policy read this flag and transform before and after.
      state_weights: per-dimension loss weights (37,), or None for uniform weights.
        Row 0 (the given x0) is always masked out on top of these.
    """

    ode_steps: int = 1
    t_clamp: float = 0.05
    noise_scale: float = 1.0
    heading_frame: bool = True
    state_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ode_steps, int) or self.ode_steps < 1:
            raise ValueError(f"FlowConfig.ode_steps must be a positive int, got {self.ode_steps!r}")
        if not 0.0 < self.t_clamp <= 1.0:
            raise ValueError(f"FlowConfig.t_clamp must be in (0, 1], got {self.t_clamp}")
        if self.noise_scale <= 0.0:
            raise ValueError(f"FlowConfig.noise_scale must be positive, got {self.noise_scale}")
        if self.state_weights is not None:
            object.__setattr__(self, "state_weights", tuple(float(w) for w in self.state_weights))
            if len(self.state_weights) != STATE_DIM:
                raise ValueError(f"FlowConfig.state_weights must have {STATE_DIM} entries, "
                                 f"got {len(self.state_weights)}")
            if min(self.state_weights) < 0.0 or sum(self.state_weights) <= 0.0:
                raise ValueError(f"FlowConfig.state_weights must be >= 0 and not all 0, got {self.state_weights}")
