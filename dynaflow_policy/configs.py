"""Frozen configs of the learning core: the DiT, the flow, a training run, and the conditioning vector.

The configs are frozen (hashable) dataclasses, so they can be static arguments
of ``jax.jit``; each checks its values in ``__post_init__``.

- :class:`DiTConfig`: the network; :class:`FlowConfig`: flow matching and its sampler.
- :class:`DiTTrainConfig`: training a DiT on dataset windows (data, optimiser,
  schedule), shared by DynaFlow and the state-flow baseline
  (``dynaflow_policy.baselines.train``); :class:`TrainConfig` adds DynaFlow's
  ``start_noise`` (one scale, or one per gait), ``objective`` and ``label_weight``.
- :func:`conditioning`: c = command ++ gait one-hot, (B, 7).
- :func:`policy_defaults`: the controller defaults an exported checkpoint carries.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Annotated, Any, Literal, Self

import jax.numpy as jnp
import tyro

from envs.physics import ACTION_DIM, STATE_DIM
from envs.task import CLOCK_DIM, COMMAND_DIM, GAITS, gait_clock

COND_DIM = COMMAND_DIM + len(GAITS)  # 3 + 4
"""Width of the conditioning vector c: velocity command (vx, vy, yaw rate) ++ gait one-hot."""
CLOCK_COND_DIM = COND_DIM + CLOCK_DIM  # 7 + 8
"""Width of c with the gait clock (``FlowConfig.gait_clock``): command ++ gait one-hot ++ ``envs.task.gait_clock``."""


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
      cond_dim: width of c, 3 command + 4 gait one-hot = 7 (15 with the gait clock: ``FlowConfig.cond_dim``).
      time_freq_dim: number of sinusoidal features of the flow time t (even).
      plan_head_width: width of the plan head, a two-layer MLP from (x0, c) straight to all H outputs,
        added to the DiT's before the tanh (``model.PlanHead``; zero-initialised); 0 = none (the paper's DiT).
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
    plan_head_width: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.plan_head_width, int) or isinstance(self.plan_head_width, bool) \
                or self.plan_head_width < 0:
            raise ValueError(f"DiTConfig.plan_head_width must be an int >= 0, got {self.plan_head_width!r}")
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
      gait_clock: also condition on the gait clock (``envs.task.gait_clock`` of the gait phase at the
        window's first state: sine and cosine of each foot's phase), so that the model knows which feet
        the gait wants in the air next instead of inferring it from the state (ambiguous at rest). The
        data must store the phase (``Dataset.phase``; the kinematic gaits do); the controller runs its
        own clock from 0 at each reset.
    """

    ode_steps: int = 1
    t_clamp: float = 0.05
    noise_scale: float = 1.0
    heading_frame: bool = True
    state_weights: tuple[float, ...] | None = None
    gait_clock: bool = False

    @property
    def cond_dim(self) -> int:
        """Width of the conditioning c: :data:`COND_DIM`, or :data:`CLOCK_COND_DIM` with the gait clock."""
        return CLOCK_COND_DIM if self.gait_clock else COND_DIM

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


def conditioning(command, gait, xp=jnp, phase=None):
    """c = command (vx, vy, yaw rate) ++ gait one-hot [++ gait clock].

    Args:
      command: (B, 3) velocity commands.
      gait: (B,) int gait indices into ``envs.task.GAITS``.
      xp: ``jax.numpy`` or ``numpy``.
      phase: (B,) gait phases in [0, 1) for a model with ``FlowConfig.gait_clock``, else None.

    Returns:
      (B, 7) conditioning, or (B, 15) with ``phase``; dtype of ``command``.
    """
    parts = [command,  # 3
             xp.eye(len(GAITS), dtype=command.dtype)[gait]]  # 4
    if phase is not None:
        parts.append(gait_clock(phase, gait, xp).astype(command.dtype))  # 8
    return xp.concatenate(parts, axis=-1)


@dataclasses.dataclass(frozen=True)
class DiTTrainConfig:
    """Training a DiT on dataset windows: data, model, optimiser and schedule.

    The fields both trainers use: DynaFlow (:class:`TrainConfig`) and the
    state-flow baseline (``dynaflow_policy.baselines.train.BaselineConfig.train``).
    The work directory and ``--resume`` are arguments of the run, not fields.
    """

    dataset: tuple[str, ...] = ()
    """Dataset files (.npz, schema of ``dynaflow_policy.data.schema``); windows of all of them are pooled."""
    horizon: int = 16
    """H: actions per window; a window holds H+1 states."""
    batch_size: int = 64
    """Global batch B (windows per step), split over all devices; must be divisible by the device count."""
    steps: int = 50_000
    """Total optimiser steps (a resumed run stops at the same total)."""
    lr: float = 2e-4
    """AdamW learning rate, constant within a run; a resumed run may set another (to anneal after a plateau)."""
    weight_decay: float = 1e-4
    """AdamW decoupled weight decay."""
    grad_clip: float = 1.0
    """Gradients are clipped to this global norm before AdamW."""
    ema_decay: float = 0.995
    """Decay of the exponential moving average of the parameters (used for evaluation and shipped policies)."""
    seed: int = 0
    """Seed of the initial parameters, the noise, the train / held-out split and the data order."""
    held_out_fraction: float = 0.1
    """Fraction of each gait's trajectories held out for evaluation (split by trajectory)."""
    constant_command_windows: bool = False
    """Train and evaluate only on windows whose command holds over all H + 1 states: the planner is told
    one command per plan, and a window whose command changes inside it shows the demonstrator answering a
    command the model is not told (a drift it would learn to make unasked)."""
    command_change_repeats: int = 1
    """How many times each training window that starts within ``data.windows.COMMAND_CHANGE_SPAN`` (8) control
    steps after a command change is drawn, relative to the others (1 = uniform): the answer to a new command
    is the rarest thing in demonstrations whose commands hold for seconds, and what a controller shows most
    when it lags. Held-out windows are never repeated."""
    log_every: int = 100
    """Steps between logged training metrics (averaged over the interval)."""
    eval_every: int = 2_000
    """Steps between evaluations on held-out windows (and at the last step)."""
    eval_windows: int = 64
    """Held-out windows per evaluation (rounded up to a multiple of the device count)."""
    checkpoint_every: int = 2_000
    """Steps between checkpoints (and at the last step)."""
    keep_checkpoints: int = 3
    """Newest checkpoints kept in ``<workdir>/checkpoints``."""
    model: Literal["small", "medium", "large"] = "small"
    """DiT size preset (``DiTConfig.small`` ...), used unless ``dit`` is given."""
    dit: (Annotated[DiTConfig, tyro.conf.subcommand("custom")]
          | Annotated[None, tyro.conf.subcommand("preset")]) = None
    """Explicit DiT config instead of the preset (CLI: dit:custom --dit.d-model 64 ...); horizon must match."""
    flow: FlowConfig = FlowConfig()
    """Flow matching and sampler config."""

    RESUMABLE_FIELDS = ("dataset", "constant_command_windows", "command_change_repeats", "steps", "lr", "batch_size",
                        "log_every", "eval_every", "eval_windows", "checkpoint_every", "keep_checkpoints")
    """Fields that may differ between a run and the checkpoint it resumes (a class constant, not a field).

    ``dataset`` may change so that moved files can be named, or files added to fine-tune;
    ``constant_command_windows`` may change to fine-tune on held commands alone, ``command_change_repeats`` to
    fine-tune on the answers to command changes; a resumed run keeps
    the checkpoint's normaliser, and the same data order only with the same data.
    ``lr`` may change because AdamW's state does not depend on it: lowering it
    anneals a run that has plateaued. Every logged line records the ``lr`` in use.
    ``batch_size`` may change so that a run can be continued on other hardware
    (the training state does not depend on it)."""

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "dataset", tuple(os.fspath(p) for p in self.dataset))
        for field in ("horizon", "batch_size", "steps", "command_change_repeats", "log_every", "eval_every", "eval_windows",
                      "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}.{field} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"{name}.lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"{name}.weight_decay must be >= 0, got {self.weight_decay}")
        if not self.grad_clip > 0:
            raise ValueError(f"{name}.grad_clip must be positive, got {self.grad_clip}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"{name}.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise ValueError(f"{name}.held_out_fraction must be in [0, 1), got {self.held_out_fraction}")
        if self.model not in ("small", "medium", "large"):
            raise ValueError(f"{name}.model must be 'small', 'medium' or 'large', got {self.model!r}")
        if self.dit is not None and self.dit.horizon != self.horizon:
            raise ValueError(f"{name}.dit.horizon must equal {name}.horizon={self.horizon}, got {self.dit.horizon}")
        if self.dit is not None and self.dit.cond_dim != self.flow.cond_dim:
            raise ValueError(f"{name}.dit.cond_dim must be {self.flow.cond_dim} (flow.gait_clock="
                             f"{self.flow.gait_clock}), got {self.dit.cond_dim}")

    @property
    def dit_config(self) -> DiTConfig:
        """The DiT config in use: ``dit``, or the ``model`` preset with ``horizon`` and the flow's ``cond_dim``."""
        if self.dit is not None:
            return self.dit
        return getattr(DiTConfig, self.model)(horizon=self.horizon, cond_dim=self.flow.cond_dim)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        d = dataclasses.asdict(self)
        d["dataset"] = list(self.dataset)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """The config of a :meth:`to_dict` dict (missing fields take their defaults)."""
        d = dict(d)
        d["dataset"] = tuple(d.get("dataset", ()))
        if d.get("dit") is not None:
            d["dit"] = DiTConfig(**d["dit"])
        if d.get("flow") is not None:
            d["flow"] = FlowConfig(**d["flow"])
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class TrainConfig(DiTTrainConfig):
    """Everything that defines a DynaFlow training run: :class:`DiTTrainConfig` and the fields that choose
    the loss (:attr:`LOSS_FIELDS`)."""

    start_noise: float | tuple[float, float, float, float] = 0.0
    """Scale of a random perturbation of each training window's start state (0 = none;
    ``dynaflow_policy.flow.START_PERTURBATION_STD`` per unit): the rollout starts from the
    perturbed state and is still scored against the demonstration, so the model learns
    to steer back to the data. One value, or one per gait in ``envs.task.GAITS`` order
    (``--start-noise 1 1 0.5 1``: each window takes its gait's). Not in the paper's recipe,
    hence off by default."""

    start_noise_uniform: bool = False
    """Draw each window's start-noise scale uniformly from [0, start_noise) (its gait's) instead of using
    it as is, so every batch holds windows that start on the data beside ones far from it."""

    objective: Literal["matching", "labels"] = "matching"
    """``matching``: the flow-matching loss through the rollout (``dynaflow_policy.flow.matching_loss``);
    ``labels``: regression on fitted action labels, no rollout (``flow.label_loss``), a cheap pre-training
    stage. Labels come from ``python -m dynaflow_policy.data.labels`` (cached beside each dataset file)."""
    label_weight: float = 0.0
    """With the matching objective, the weight of an auxiliary term ``mean((U - labels)^2)`` (0 = none)."""
    own_plan_fraction: float = 0.0
    """Fraction of training windows whose network input X_t interpolates towards the rollout of the
    network's own one-step plan instead of the data (``dynaflow_policy.flow.own_plan_endpoint``): the
    inputs the sampler gives it with more than one ODE step. 0 = the paper's recipe."""
    foot_height_weight: float | tuple[float, float, float, float] = 0.0
    """With the matching objective, the weight of a term on the world heights of the four feet along the
    rollout against the data's (``dynaflow_policy.flow.matching_loss``; 1 counts a 2 cm error as one
    normalised state unit): the feet decide the contact pattern. One value, or one per gait in
    ``envs.task.GAITS`` order, like :attr:`start_noise`. 0 = none (the paper's recipe)."""
    foot_contact_weight: float | tuple[float, float, float, float] = 0.0
    """With the matching objective, the weight of a term that asks each foot of the rollout to be on the
    ground where the data's is and in the air where the data's is, at any height
    (``dynaflow_policy.flow.foot_contact_violation``; scaled like :attr:`foot_height_weight`). One value, or
    one per gait. 0 = none (the paper's recipe)."""

    plan_head_weight: float = 0.0
    """Weight of a term regressing the DiT's plan head alone (``DiTConfig.plan_head_width`` > 0) on the fitted
    labels of the data's start states, with either objective (``train.batch_loss``): the head then holds the
    demonstrator's answer to (x0, c), which the DiT, through noised tokens, learns slowly. 0 = none."""

    PER_GAIT_FIELDS = ("start_noise", "foot_height_weight", "foot_contact_weight")
    """Loss fields that take one value or one per gait of ``envs.task.GAITS`` (each window takes its gait's)."""
    LOSS_FIELDS = ("start_noise", "start_noise_uniform", "objective", "label_weight", "own_plan_fraction",
                   "foot_height_weight", "foot_contact_weight", "plan_head_weight")
    """The fields that choose the loss (:attr:`loss_options`, keyword arguments of ``train.batch_loss``)."""
    RESUMABLE_FIELDS = DiTTrainConfig.RESUMABLE_FIELDS + LOSS_FIELDS
    """:attr:`DiTTrainConfig.RESUMABLE_FIELDS` and :attr:`LOSS_FIELDS`, which may change to fine-tune a run
    (the training state does not depend on them): a run pre-trained on labels continues with the matching loss."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in self.PER_GAIT_FIELDS:
            object.__setattr__(self, name, _one_or_per_gait(name, getattr(self, name)))
        if self.objective not in ("matching", "labels"):
            raise ValueError(f"TrainConfig.objective (--objective) must be 'matching' or 'labels', "
                             f"got {self.objective!r}")
        if not self.label_weight >= 0:
            raise ValueError(f"TrainConfig.label_weight (--label-weight) must be >= 0, got {self.label_weight}")
        if not 0 <= self.own_plan_fraction <= 1:
            raise ValueError(f"TrainConfig.own_plan_fraction (--own-plan-fraction) must be in [0, 1], "
                             f"got {self.own_plan_fraction}")
        if self.objective == "labels" and (self.label_weight or any(self.start_noise_per_gait)
                                           or any(self.foot_height_weight_per_gait)
                                           or any(self.foot_contact_weight_per_gait)):
            raise ValueError("--label-weight, --start-noise, --foot-height-weight and --foot-contact-weight apply "
                             "to the matching objective; --objective labels takes none of them")
        if not self.plan_head_weight >= 0:
            raise ValueError(f"TrainConfig.plan_head_weight (--plan-head-weight) must be >= 0, "
                             f"got {self.plan_head_weight}")
        if self.plan_head_weight > 0 and not self.dit_config.plan_head_width:
            raise ValueError("TrainConfig.plan_head_weight (--plan-head-weight) needs a DiT with a plan head "
                             "(dit:custom --dit.plan-head-width W)")

    @property
    def start_noise_per_gait(self) -> tuple[float, ...]:
        """:attr:`start_noise` of each gait of ``envs.task.GAITS``."""
        return _per_gait(self.start_noise)

    @property
    def foot_height_weight_per_gait(self) -> tuple[float, ...]:
        """:attr:`foot_height_weight` of each gait of ``envs.task.GAITS``."""
        return _per_gait(self.foot_height_weight)

    @property
    def foot_contact_weight_per_gait(self) -> tuple[float, ...]:
        """:attr:`foot_contact_weight` of each gait of ``envs.task.GAITS``."""
        return _per_gait(self.foot_contact_weight)

    @property
    def loss_options(self) -> dict[str, float | str | tuple[float, ...]]:
        """The :attr:`LOSS_FIELDS` by name."""
        return {name: getattr(self, name) for name in self.LOSS_FIELDS}

    @property
    def uses_labels(self) -> bool:
        """Whether training reads fitted action labels (the labels objective, an auxiliary label term, or the plan head's)."""
        return self.objective == "labels" or self.label_weight > 0 or self.plan_head_weight > 0


def default_config() -> TrainConfig:
    """The default run: DiT small, H = 16, B = 64, AdamW 2e-4 / 1e-4, clip 1, EMA 0.995, one Euler step."""
    return TrainConfig()


DEFAULT_EXECUTE_STEPS = 4
"""Actions a receding-horizon controller executes from each plan before replanning, when its
checkpoint does not say (see ``dynaflow_policy.policy`` for how 4 was chosen)."""


def policy_defaults(execute_steps: int | None, ode_steps: int | None, horizon: int,
                    flow: FlowConfig, ensemble: int | None = None) -> dict[str, int]:
    """The controller defaults a checkpoint carries: ``{"execute_steps": int, "ode_steps": int}``, and
    ``"ensemble": int`` when given.

    Args:
      execute_steps: actions taken from each plan, 1..``horizon``; None: :data:`DEFAULT_EXECUTE_STEPS`.
      ode_steps: Euler steps per plan, >= 1; None: ``flow.ode_steps``.
      horizon: H, the plan length.
      flow: the model's flow config.
      ensemble: plans averaged per action (``DynaFlowPolicy``'s temporal ensembling),
        1..ceil(H / execute_steps); None: not stored (the controller's default, 1).

    Raises:
      ValueError: a value out of range, naming the option (``--execute-steps`` / ``--ode-steps`` /
        ``--ensemble``).
    """
    execute_steps = DEFAULT_EXECUTE_STEPS if execute_steps is None else execute_steps
    ode_steps = flow.ode_steps if ode_steps is None else ode_steps
    if not _is_int(execute_steps) or not 1 <= execute_steps <= horizon:
        raise ValueError(f"execute_steps (--execute-steps) must be an int in [1, {horizon}] (the plan horizon), "
                         f"got {execute_steps!r}")
    if not _is_int(ode_steps) or ode_steps < 1:
        raise ValueError(f"ode_steps (--ode-steps) must be a positive int, got {ode_steps!r}")
    out = {"execute_steps": int(execute_steps), "ode_steps": int(ode_steps)}
    if ensemble is not None:
        most = -(-horizon // execute_steps)
        if not _is_int(ensemble) or not 1 <= ensemble <= most:
            raise ValueError(f"ensemble (--ensemble) must be an int in [1, {most}] (plans that overlap a step "
                             f"with execute_steps {execute_steps}), got {ensemble!r}")
        out["ensemble"] = int(ensemble)
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _one_or_per_gait(name: str, value: Any) -> float | tuple[float, ...]:
    """A :attr:`TrainConfig.PER_GAIT_FIELDS` value checked: one number, or one per gait (a list from JSON
    becomes a tuple), all >= 0; errors name the field and its CLI option."""
    option = f"TrainConfig.{name} (--{name.replace('_', '-')})"
    if not isinstance(value, numbers.Real):
        value = tuple(float(v) for v in value)
        if len(value) != len(GAITS):
            raise ValueError(f"{option} takes one value or {len(GAITS)}, one per gait ({', '.join(GAITS)}), "
                             f"got {len(value)}: {value}")
    if not all(v >= 0 for v in _per_gait(value)):
        raise ValueError(f"{option} must be >= 0, got {value}")
    return value


def _per_gait(value: float | tuple[float, ...]) -> tuple[float, ...]:
    """One value per gait of ``envs.task.GAITS``: ``value`` repeated, or the per-gait tuple itself."""
    return (float(value),) * len(GAITS) if isinstance(value, numbers.Real) else value
