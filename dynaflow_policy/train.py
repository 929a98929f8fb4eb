"""Training: ``python -m dynaflow_policy.train --dataset data/demos.npz --workdir runs/demos [--resume]``.

One step::

    host   WindowPool ── batch indices = f(seed, step) ──► states (B, H+1, 37) world frame,
           command (B, 3), gait (B,)  ──  device_put, sharded over the "data" mesh axis
    device to_heading_frame ─► X_1 (B, H+1, 37);  c = command ++ one_hot(gait)  (B, 7)
           matching_loss (normalise, noise, DiT, envs.rollout) ─► grad ─► clip ─► AdamW ─► EMA

Parallelism: a 1-D ``jax.sharding.Mesh`` over ``jax.devices()`` (axis "data");
the batch is split over it and the state is replicated, so XLA turns the mean
loss into per-device partial sums and one all-reduce of the gradient. The same
code runs on one device, on several GPUs or CPU host devices, and on several
hosts once the caller has run ``jax.distributed.initialize()`` (every process
loads the dataset and calls :func:`train_and_evaluate` alike; process 0 alone
writes checkpoints and metrics; checkpoints must be on a file system all
processes see to resume).

Determinism: the data order is a function of ``(seed, step)`` alone
(:class:`WindowSampler`) and the step's noise is ``fold_in(state.rng,
state.step)``, so a run resumed from a checkpoint computes the same steps as
one that was never interrupted (tested bit for bit on CPU).

Workdir layout: ``checkpoints/<step>/`` (``dynaflow_policy.checkpoint``) and
``metrics.jsonl`` (one JSON object per logged step: ``step``, ``time`` and
``train/...`` or ``eval/...`` scalars).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from typing import Annotated, Any, Callable, Literal, Sequence

import flax.serialization
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dynaflow_policy import checkpoint
from dynaflow_policy import metrics as metrics_lib
from dynaflow_policy.configs import DiTConfig, FlowConfig
from dynaflow_policy.data.schema import load_dataset
from dynaflow_policy.data.windows import WindowSet, train_held_out_windows
from dynaflow_policy.flow import matching_loss, sample
from dynaflow_policy.frames import to_heading_frame
from dynaflow_policy.model import DiT1d, init_params
from dynaflow_policy.normalizer import Normalizer
from envs.physics import PHYSICS
from envs.task import GAITS

DATA_AXIS = "data"
"""Name of the mesh axis the batch is split over."""

NORMALIZER_WINDOWS = 20_000
"""The normaliser is fitted on at most this many training windows (a seeded random subset)."""

_DATA_STREAM, _EVAL_STREAM, _NORMALIZER_STREAM = 1, 2, 3  # tags that separate the seeded streams of one seed

NO_DATASET = ("no dataset given: pass --dataset PATH.npz (one or more files in the schema of "
              "dynaflow_policy.data.schema). A kinematic gait dataset is made by\n"
              "  python -m dynaflow_policy.data.kinematic --out data/kinematic.npz\n"
              "(the paper's infeasible retargeting data; feasible demonstrations come from the RL expert).")

CheckpointError = checkpoint.CheckpointError

MetricsDict = dict[str, float]
ProgressFn = Callable[[int, MetricsDict], None]
"""progress_fn(step, metrics): called on process 0 after each logged step and each evaluation."""


# --------------------------------------------------------------------------------------------------------------------
# Config


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the work directory and ``--resume`` are arguments of the run)."""

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
    start_noise: float = 0.0
    """Scale of a random perturbation of each training window's start state (0 = none;
    ``dynaflow_policy.flow.START_PERTURBATION_STD`` per unit): the rollout starts from the
    perturbed state and is still scored against the demonstration, so the model learns
    to steer back to the data. Not in ``DESIGN.md``'s recipe, hence off by default."""

    RESUMABLE_FIELDS = ("dataset", "steps", "lr", "batch_size", "start_noise", "log_every", "eval_every",
                        "eval_windows", "checkpoint_every", "keep_checkpoints")
    """Fields that may differ between a run and the checkpoint it resumes (a class constant, not a field).

    ``dataset`` may change so that moved files can be named; a resumed run keeps
    the checkpoint's normaliser, and the same data order only with the same data.
    ``lr`` may change because AdamW's state does not depend on it: lowering it
    anneals a run that has plateaued. Every logged line records the ``lr`` in use.
    ``batch_size`` and ``start_noise`` may change so that a run can be continued on
    other hardware or fine-tuned (the training state does not depend on either)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", tuple(os.fspath(p) for p in self.dataset))
        for name in ("horizon", "batch_size", "steps", "log_every", "eval_every", "eval_windows",
                     "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if not self.start_noise >= 0:
            raise ValueError(f"TrainConfig.start_noise must be >= 0, got {self.start_noise}")
        if not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be positive, got {self.grad_clip}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise ValueError(f"TrainConfig.held_out_fraction must be in [0, 1), got {self.held_out_fraction}")
        if self.model not in ("small", "medium", "large"):
            raise ValueError(f"TrainConfig.model must be 'small', 'medium' or 'large', got {self.model!r}")
        if self.dit is not None and self.dit.horizon != self.horizon:
            raise ValueError(f"TrainConfig.dit.horizon must equal TrainConfig.horizon={self.horizon}, "
                             f"got {self.dit.horizon}")

    @property
    def dit_config(self) -> DiTConfig:
        """The DiT config in use: ``dit``, or the ``model`` preset with ``horizon``."""
        return self.dit if self.dit is not None else getattr(DiTConfig, self.model)(horizon=self.horizon)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        d = dataclasses.asdict(self)
        d["dataset"] = list(self.dataset)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["dataset"] = tuple(d.get("dataset", ()))
        if d.get("dit") is not None:
            d["dit"] = DiTConfig(**d["dit"])
        if d.get("flow") is not None:
            d["flow"] = FlowConfig(**d["flow"])
        return cls(**d)


def default_config() -> TrainConfig:
    """The default run: DiT small, H = 16, B = 64, AdamW 2e-4 / 1e-4, clip 1, EMA 0.995, one Euler step."""
    return TrainConfig()


# --------------------------------------------------------------------------------------------------------------------
# State and step


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes; a pytree.

    Attributes:
      params: DiT variables ``{"params": ...}`` (first argument of ``DiT1d(config).apply``).
      ema_params: their exponential moving average.
      opt_state: optax state of :func:`make_optimizer`.
      step: () int32, optimiser steps taken.
      rng: (2,) uint32 base key; step k uses ``fold_in(rng, k)``.
    """

    params: Any
    ema_params: Any
    opt_state: Any
    step: jax.Array
    rng: jax.Array


def make_optimizer(lr: float, weight_decay: float, grad_clip: float) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW."""
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adamw(lr, weight_decay=weight_decay))


def init_train_state(config: TrainConfig) -> TrainState:
    """Fresh state from ``config.seed``: DiT init (zero-initialised AdaLN), EMA = params, step 0. Traceable."""
    init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
    params = init_params(config.dit_config, init_key)
    tx = make_optimizer(config.lr, config.weight_decay, config.grad_clip)
    return TrainState(params=params, ema_params=jax.tree.map(jnp.copy, params), opt_state=tx.init(params),
                      step=jnp.zeros((), jnp.int32), rng=train_key)


def conditioning(command, gait, xp=jnp):
    """c = command (vx, vy, yaw rate) ++ gait one-hot.

    Args:
      command: (B, 3) velocity commands.
      gait: (B,) int gait indices into ``envs.task.GAITS``.
      xp: ``jax.numpy`` or ``numpy``.

    Returns:
      (B, 7) conditioning, dtype of ``command``.
    """
    return xp.concatenate([command,  # 3
                           xp.eye(len(GAITS), dtype=command.dtype)[gait]], axis=-1)  # 4


def prepare_batch(batch: dict[str, jax.Array], flow: FlowConfig) -> tuple[jax.Array, jax.Array]:
    """Device side of the data pipeline.

    Args:
      batch: ``states`` (B, H+1, 37) world frame, ``command`` (B, 3), ``gait`` (B,) int.
      flow: flow config (``heading_frame``).

    Returns:
      X_1 (B, H+1, 37) in the heading frame of each window's first state (world frame
      if ``flow.heading_frame`` is False), and c (B, 7).
    """
    states = batch["states"]
    x1 = to_heading_frame(states, jnp) if flow.heading_frame else states  # (B, H+1, 37)
    return x1, conditioning(batch["command"], batch["gait"])


def batch_loss(params: Any, batch: dict[str, jax.Array], normalizer: Normalizer, rng: jax.Array, *,
               dit: DiTConfig, flow: FlowConfig, start_noise: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The flow-matching loss of one raw batch (heading frame and conditioning applied here).

    Returns:
      (loss, aux) of ``dynaflow_policy.flow.matching_loss``.
    """
    x1, cond = prepare_batch(batch, flow)
    return matching_loss(params, DiT1d(dit).apply, x1, cond, rng, normalizer, flow, start_noise=start_noise)


def train_step(state: TrainState, batch: dict[str, jax.Array], normalizer: Normalizer, *, dit: DiTConfig,
               flow: FlowConfig, tx: optax.GradientTransformation, ema_decay: float,
               start_noise: float = 0.0) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step; pure. Bind the keyword arguments with ``functools.partial`` and jit.

    Args:
      state: training state (donated by :func:`jit_train_step`).
      batch: ``states`` (B, H+1, 37) world frame, ``command`` (B, 3), ``gait`` (B,) int32.
      normalizer: the state normaliser (fitted on heading-frame training windows).
      dit, flow: model and flow configs.
      tx: the optimiser (:func:`make_optimizer`).
      ema_decay: EMA decay per step.
      start_noise: ``TrainConfig.start_noise``.

    Returns:
      The new state, and scalars ``train/loss``, ``train/last_state_mse``,
      ``train/action_rms`` (from the loss), ``train/grad_norm`` (before clipping),
      ``train/param_norm``, ``train/zero_grad_leaves`` (parameter arrays whose
      gradient is exactly zero: all but the final projection at step 0, by
      AdaLN-Zero; 0 from the third step on).
    """
    rng = jax.random.fold_in(state.rng, state.step)
    loss_fn = functools.partial(batch_loss, batch=batch, normalizer=normalizer, rng=rng, dit=dit, flow=flow,
                                start_noise=start_noise)
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params, params)
    zero_leaves = sum(jnp.all(g == 0).astype(jnp.int32) for g in jax.tree.leaves(grads))
    step_metrics = {**aux, "train/grad_norm": optax.tree.norm(grads), "train/param_norm": optax.tree.norm(params),
                    "train/zero_grad_leaves": zero_leaves}
    return state.replace(params=params, ema_params=ema, opt_state=opt_state, step=state.step + 1), step_metrics


def eval_step(params: Any, batch: dict[str, jax.Array], normalizer: Normalizer, rng: jax.Array, *, dit: DiTConfig,
              flow: FlowConfig) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """Samples from the held-out windows' x0 and c and scores the samples; pure.

    Args:
      params: DiT variables (the EMA parameters during training).
      batch: as for :func:`train_step`, plus optional ``expert_actions`` (B, H, 12).
      normalizer: the state normaliser.
      rng: key of the sampler's noise (fixed during training, so evaluations compare).
      dit, flow: model and flow configs.

    Returns:
      metrics: ``eval/tre`` (``dynaflow_policy.metrics.tre`` of the samples against
      the windows), ``eval/sae`` (mean of ``dynaflow_policy.metrics.admissibility_errors``,
      i.e. ``metrics.sae``, of the samples under their actions: zero up to float
      error by construction) and, with expert actions, ``eval/action_rmse``;
      X (B, H+1, 37) sampled heading-frame windows and U (B, H, 12) their actions.
    """
    x1, cond = prepare_batch(batch, flow)
    X, U = sample(params, DiT1d(dit).apply, x1[:, 0], cond, rng, normalizer, flow, horizon=dit.horizon)
    out = {"eval/tre": metrics_lib.tre(X, x1, normalizer),
           "eval/sae": jnp.mean(metrics_lib.admissibility_errors(X, U, normalizer))}
    if "expert_actions" in batch:
        out["eval/action_rmse"] = metrics_lib.action_recovery_rmse(U, batch["expert_actions"])
    return out, X, U


@functools.lru_cache(maxsize=8)
def _jit_train_step(dit: DiTConfig, flow: FlowConfig, lr: float, weight_decay: float, grad_clip: float,
                    ema_decay: float, start_noise: float, mesh: Mesh):
    fn = functools.partial(train_step, dit=dit, flow=flow, tx=make_optimizer(lr, weight_decay, grad_clip),
                           ema_decay=ema_decay, start_noise=start_noise)
    return jax.jit(fn, donate_argnums=0, out_shardings=NamedSharding(mesh, PartitionSpec()))


def jit_train_step(config: TrainConfig, mesh: Mesh):
    """``train_step`` bound to ``config``, jitted with the state donated and the outputs replicated on ``mesh``.

    Cached on the fields that change the computation, so runs that differ only
    in their length, intervals or data reuse the compiled step.
    """
    return _jit_train_step(config.dit_config, config.flow, config.lr, config.weight_decay, config.grad_clip,
                           config.ema_decay, config.start_noise, mesh)


@functools.lru_cache(maxsize=8)
def jit_eval_step(dit: DiTConfig, flow: FlowConfig, mesh: Mesh):
    """``eval_step`` bound to the configs, jitted with replicated outputs on ``mesh`` (cached)."""
    return jax.jit(functools.partial(eval_step, dit=dit, flow=flow),
                   out_shardings=NamedSharding(mesh, PartitionSpec()))


# --------------------------------------------------------------------------------------------------------------------
# Devices


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """1-D mesh (axis ``"data"``) over ``devices`` (default: ``jax.devices()``, all processes)."""
    return Mesh(np.asarray(jax.devices() if devices is None else list(devices)), (DATA_AXIS,))


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
    """Places a host array that every process holds in full; each process fills its own devices."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Splits host arrays (B, ...) along B over the mesh's data axis; B must divide by the device count."""
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    for name, a in batch.items():
        if np.shape(a)[0] % mesh.size:
            raise ValueError(f"batch size {np.shape(a)[0]} (of '{name}') must be divisible by the number of "
                             f"devices {mesh.size}; change --batch-size or the device count")
    return {name: _put(a, sharding) for name, a in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copies every leaf of a host pytree to every device of the mesh."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: _put(x, sharding), tree)


def to_host(tree: Any) -> Any:
    """Numpy copy of a pytree of replicated (or single-device) arrays, from this process's first shard."""
    def fetch(x):
        return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)
    return jax.tree.map(fetch, tree)


# --------------------------------------------------------------------------------------------------------------------
# Data


class WindowPool:
    """The windows of several :class:`WindowSet`s, numbered one after the other.

    Args:
      sets: window sets (e.g. the training windows of each dataset file).
    """

    def __init__(self, sets: Sequence[WindowSet]):
        self.sets = [s for s in sets if len(s)]
        self._ends = np.cumsum([len(s) for s in self.sets], dtype=np.int64)  # (S,)
        self.has_expert_actions = bool(self.sets) and all(s.has_expert_actions for s in self.sets)

    def __len__(self) -> int:
        return int(self._ends[-1]) if self.sets else 0

    def batch(self, indices: np.ndarray, expert_actions: bool = False) -> dict[str, np.ndarray]:
        """Gathers windows: ``states`` (B, H+1, 37) float32, ``command`` (B, 3) float32, ``gait`` (B,) int32,
        and ``expert_actions`` (B, H, 12) float32 if asked for (evaluation only; never used for training)."""
        idx = np.asarray(indices, np.int64)
        which = np.searchsorted(self._ends, idx, side="right")  # (B,) set of each window
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window indices must be in [0, {len(self)}), got min {idx.min()} max {idx.max()}")
        keys = ("states", "command", "gait") + (("expert_actions",) if expert_actions else ())
        out: dict[str, np.ndarray] = {}
        for s in np.unique(which):
            rows = np.flatnonzero(which == s)
            local = idx[rows] - (self._ends[s - 1] if s else 0)
            part = self.sets[s].batch(local)
            for k in keys:
                if k not in out:
                    out[k] = np.empty((idx.size,) + part[k].shape[1:], part[k].dtype)
                out[k][rows] = part[k]
        out["gait"] = out["gait"].astype(np.int32)
        return out


def load_windows(config: TrainConfig) -> tuple[WindowPool, WindowPool]:
    """Loads and validates every dataset file; splits each by trajectory into training and held-out windows."""
    if not config.dataset:
        raise ValueError(NO_DATASET)
    train, held = [], []
    for path in config.dataset:
        ds = load_dataset(path, horizon=config.horizon)
        tr, ho = train_held_out_windows(ds, config.horizon, config.held_out_fraction, config.seed)
        train.append(tr)
        held.append(ho)
    return WindowPool(train), WindowPool(held)


class WindowSampler:
    """Training batch indices as a function of (seed, step) only.

    Epochs of a fixed length (the pool size N) are drawn without replacement:
    index i of step k is entry ``p % N`` of the permutation of epoch ``p // N``,
    with ``p = k * B + i`` and that permutation drawn by
    ``np.random.default_rng((seed, 1, epoch))``. Any step can be produced
    directly, which is what makes ``--resume`` continue the same data order.
    """

    def __init__(self, pool: WindowPool, batch_size: int, seed: int):
        if len(pool) == 0:
            raise ValueError("no training windows (every trajectory is held out or shorter than H + 1)")
        self.pool, self.batch_size, self.seed = pool, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) >= 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng((self.seed, _DATA_STREAM, epoch)).permutation(len(self.pool))
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        """(B,) window indices of step ``step``."""
        n = len(self.pool)
        pos = step * self.batch_size + np.arange(self.batch_size, dtype=np.int64)  # (B,)
        out = np.empty(self.batch_size, np.int64)
        for epoch in np.unique(pos // n):
            mask = pos // n == epoch
            out[mask] = self._perm(int(epoch))[pos[mask] % n]
        return out

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """Host batch of step ``step`` (see :meth:`WindowPool.batch`), without expert actions."""
        return self.pool.batch(self.indices(step))


def fit_normalizer(pool: WindowPool, config: TrainConfig) -> Normalizer:
    """Normaliser of the training windows (heading frame unless the flow config says otherwise).

    Uses at most :data:`NORMALIZER_WINDOWS` windows, a subset drawn with ``config.seed``.
    """
    n = len(pool)
    idx = np.arange(n) if n <= NORMALIZER_WINDOWS else np.sort(
        np.random.default_rng((config.seed, _NORMALIZER_STREAM)).choice(n, NORMALIZER_WINDOWS, replace=False))
    states = pool.batch(idx)["states"]  # (N, H+1, 37)
    return Normalizer.fit(to_heading_frame(states) if config.flow.heading_frame else states)


def eval_batch(pool: WindowPool, size: int, seed: int) -> dict[str, np.ndarray] | None:
    """A fixed set of ``size`` held-out windows (repeated if the pool is smaller), or None if it is empty."""
    if len(pool) == 0:
        return None
    order = np.random.default_rng((seed, _EVAL_STREAM)).permutation(len(pool))
    return pool.batch(np.resize(order, size), expert_actions=pool.has_expert_actions)


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints


EMA_ONLY = "ema_params"
"""``config.json`` ``contents`` of an exported checkpoint: the EMA weights only (:func:`export_policy`)."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
      ema_params: the EMA weights, numpy leaves: what a policy runs.
      state: the whole training state (numpy leaves), or None for an exported
        checkpoint (:func:`export_policy`), which cannot be resumed.
      normalizer: the normaliser the model was trained with.
      config: the run's config; ``config.dit_config`` and ``config.flow`` rebuild the model and sampler.
      step: training step.
      path: the directory it was read from.
    """

    ema_params: Any
    state: TrainState | None
    normalizer: Normalizer
    config: TrainConfig
    step: int
    path: str


def _checkpoint_meta(config: TrainConfig, normalizer: Normalizer) -> dict[str, Any]:
    return {"train_config": config.to_dict(), "dit_config": dataclasses.asdict(config.dit_config),
            "flow_config": dataclasses.asdict(config.flow), "normalizer": normalizer.to_dict(),
            "physics": PHYSICS.to_dict(), "jax_version": jax.__version__}


def save_checkpoint(directory: str | os.PathLike, state: TrainState, normalizer: Normalizer,
                    config: TrainConfig) -> str:
    """Writes ``<directory>/<step>/`` (``dynaflow_policy.checkpoint.save``); returns its path.

    ``config.json`` holds the TrainConfig, the resolved DiTConfig and FlowConfig, the
    normaliser, the physics config and hash; ``state.msgpack`` the TrainState.
    """
    host = to_host(state)
    return checkpoint.save(directory, int(host.step), flax.serialization.to_state_dict(host),
                           _checkpoint_meta(config, normalizer), keep=config.keep_checkpoints)


def export_policy(source: str | os.PathLike, out: str | os.PathLike) -> str:
    """Writes the EMA weights of a training checkpoint as a shippable checkpoint in ``out``.

    The export holds what :class:`dynaflow_policy.DynaFlowPolicy` needs (EMA
    weights, configs, normaliser, physics hash) and not the raw weights or the
    optimiser state: about a quarter of the size. It loads with
    :func:`load_checkpoint` and ``DynaFlowPolicy.from_checkpoint`` and cannot be resumed.

    Args:
      source: anything :func:`load_checkpoint` accepts (a run's work directory: its newest checkpoint).
      out: the directory to write (``config.json`` and ``state.msgpack`` directly in it).

    Returns:
      The absolute path of ``out``.
    """
    ckpt = load_checkpoint(source)
    meta = {**_checkpoint_meta(ckpt.config, ckpt.normalizer), "contents": EMA_ONLY}
    return checkpoint.save_single(out, ckpt.step, {"ema_params": flax.serialization.to_state_dict(ckpt.ema_params)},
                                  meta)


def load_checkpoint(path: str | os.PathLike, allow_other_physics: bool = False) -> Checkpoint:
    """Loads a checkpoint of :func:`save_checkpoint` or :func:`export_policy`.

    Args:
      path: a step directory, a ``checkpoints`` directory, a work directory
        (the newest complete checkpoint under it) or an exported checkpoint.
      allow_other_physics: accept a checkpoint made under another physics hash.

    Raises:
      dynaflow_policy.checkpoint.CheckpointError: none found, truncated or corrupt
        files, other physics, or arrays that do not fit the stored config.
    """
    path = checkpoint.resolve(path)
    arrays, meta = checkpoint.restore(path, allow_other_physics=allow_other_physics)
    try:
        config = TrainConfig.from_dict(meta["train_config"])
        normalizer = Normalizer.from_dict(meta["normalizer"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad config in {checkpoint.META_FILE}: {type(e).__name__}: {e}") from e
    target = jax.eval_shape(functools.partial(init_train_state, config))
    if meta.get("contents") == EMA_ONLY:
        state = None
        if not isinstance(arrays, dict) or set(arrays) != {"ema_params"}:
            raise CheckpointError(f"{path}: an exported checkpoint must hold exactly 'ema_params'")
        ema_params = checkpoint.restore_tree(target.ema_params, arrays["ema_params"], path, "EMA")
    else:
        state = checkpoint.restore_tree(target, arrays, path, "training-state")
        ema_params = state.ema_params
    return Checkpoint(ema_params=ema_params, state=state, normalizer=normalizer, config=config,
                      step=int(meta["step"]), path=path)


def check_resumable(saved: TrainConfig, config: TrainConfig, path: str) -> None:
    differ = [f.name for f in dataclasses.fields(TrainConfig)
              if f.name not in TrainConfig.RESUMABLE_FIELDS and getattr(saved, f.name) != getattr(config, f.name)]
    if differ:
        details = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in differ)
        raise ValueError(f"cannot resume {path}: the config differs in fields that change the training ({details}); "
                         f"only {list(TrainConfig.RESUMABLE_FIELDS)} may change")


# --------------------------------------------------------------------------------------------------------------------
# Loop


class MetricsFile:
    """Appends ``{"step", "time", **metrics}`` lines to ``metrics.jsonl`` (process 0 only)."""

    def __init__(self, path: str | None):
        self.path = path

    def truncate_after(self, step: int) -> None:
        """Drops lines of steps after ``step`` (left by a run that died after its last checkpoint)."""
        if self.path is None or not os.path.exists(self.path):
            return
        keep = []
        with open(self.path) as f:
            for line in f:
                try:
                    if json.loads(line).get("step", 0) <= step:
                        keep.append(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    pass
        with open(self.path, "w") as f:
            f.writelines(keep)

    def write(self, step: int, values: MetricsDict) -> None:
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, "time": time.time(), **values}) + "\n")


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> MetricsDict:
    host = to_host(pending)
    return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def train_and_evaluate(config: TrainConfig, workdir: str | os.PathLike, progress_fn: ProgressFn | None = None, *,
                       resume: bool = False) -> TrainState:
    """Trains, evaluates on held-out windows and checkpoints, in ``workdir``.

    Args:
      config: the run.
      workdir: directory of ``checkpoints/`` and ``metrics.jsonl`` (created).
      progress_fn: ``progress_fn(step, metrics)`` after each logged step (``train/...``
        averaged over the interval, plus ``train/windows_per_s``) and each
        evaluation (``eval/tre``, ``eval/sae``, ``eval/action_rmse`` if the held-out
        data has expert actions); process 0 only.
      resume: continue from the newest checkpoint in ``workdir`` (with the same step
        counter, data order and noise); without a checkpoint, start fresh.

    Returns:
      The final training state (replicated over the devices).

    Raises:
      ValueError: no dataset, batch size not divisible by the device count, or a
        resumed config that differs in a field that changes the training.
      FileExistsError: ``workdir`` has checkpoints and ``resume`` is False.
    """
    if not config.dataset:
        raise ValueError(NO_DATASET)
    mesh = make_mesh()
    if config.batch_size % mesh.size:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of devices {mesh.size}")
    workdir = os.path.abspath(os.fspath(workdir))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    is_main = jax.process_index() == 0
    log = MetricsFile(os.path.join(workdir, "metrics.jsonl") if is_main else None)
    if is_main:
        os.makedirs(workdir, exist_ok=True)

    existing = checkpoint.checkpoint_to_resume(workdir, resume)
    ckpt = None if existing is None else load_checkpoint(existing)
    if ckpt is not None:
        if ckpt.state is None:
            raise ValueError(f"cannot resume {existing}: an exported checkpoint holds only the EMA weights")
        check_resumable(ckpt.config, config, existing)
    train_pool, held_pool = load_windows(config)
    if ckpt is not None:
        host_state, normalizer = ckpt.state, ckpt.normalizer
        if is_main:
            log.truncate_after(ckpt.step)
    else:
        normalizer = fit_normalizer(train_pool, config)
        host_state = to_host(jax.jit(functools.partial(init_train_state, config))())
        if is_main:
            log.truncate_after(0)  # lines of a run that died before its first checkpoint

    state = replicate(host_state, mesh)
    norm = replicate(normalizer, mesh)
    sampler = WindowSampler(train_pool, config.batch_size, config.seed)
    n_eval = -(-config.eval_windows // mesh.size) * mesh.size
    held = eval_batch(held_pool, n_eval, config.seed)
    held = None if held is None else shard_batch(held, mesh)
    eval_rng = replicate(jax.random.fold_in(jax.random.PRNGKey(config.seed), _EVAL_STREAM), mesh)
    step_fn = jit_train_step(config, mesh)
    eval_fn = jit_eval_step(config.dit_config, config.flow, mesh)

    def emit(step: int, values: MetricsDict) -> None:
        if is_main:
            log.write(step, values)
            if progress_fn is not None:
                progress_fn(step, values)

    start = int(host_state.step)
    pending: list[dict[str, jax.Array]] = []
    t_mark, n_mark = time.perf_counter(), start
    for step in range(start, config.steps):
        state, step_metrics = step_fn(state, shard_batch(sampler.batch(step), mesh), norm)
        pending.append(step_metrics)
        done = step + 1
        if step == start:  # exclude compilation from windows/s
            jax.block_until_ready(step_metrics)
            t_mark, n_mark = time.perf_counter(), done
        if done % config.log_every == 0 or done == config.steps:
            values = {**_mean_metrics(pending), "train/lr": config.lr}
            now = time.perf_counter()
            if done > n_mark:
                values["train/windows_per_s"] = (done - n_mark) * config.batch_size / (now - t_mark)
            pending = []
            emit(done, values)
            t_mark, n_mark = time.perf_counter(), done
        if held is not None and (done % config.eval_every == 0 or done == config.steps):
            eval_metrics, _, _ = eval_fn(state.ema_params, held, norm, eval_rng)
            emit(done, {k: float(v) for k, v in to_host(eval_metrics).items()})
            t_mark, n_mark = time.perf_counter(), done
        if done % config.checkpoint_every == 0 or done == config.steps:
            if is_main:
                save_checkpoint(ckpt_dir, state, normalizer, config)
            t_mark, n_mark = time.perf_counter(), done
    return state


# --------------------------------------------------------------------------------------------------------------------
# Command line


@dataclasses.dataclass(frozen=True)
class Args:
    """``python -m dynaflow_policy.train --dataset PATH --workdir DIR [--resume]``; the other flags are TrainConfig."""

    workdir: str
    """Directory of checkpoints/ and metrics.jsonl."""
    config: Annotated[TrainConfig, tyro.conf.arg(name="")] = dataclasses.field(default_factory=default_config)
    """The run (flags without a prefix: --dataset, --steps, ...)."""
    resume: bool = False
    """Continue from the newest checkpoint in --workdir (same step counter and data order)."""
    cpu_devices: int | None = None
    """XLA host devices when running on CPU (default: the largest divisor of the batch size <= CPU cores)."""


def _cpu_devices(args: Args) -> int:
    if args.cpu_devices is not None:
        return args.cpu_devices
    cores = os.cpu_count() or 1
    return max(d for d in range(1, cores + 1) if args.config.batch_size % d == 0)


def main(args: Args) -> None:
    """Sets the XLA host device count, then runs :func:`train_and_evaluate` with a progress bar."""
    if not args.config.dataset:
        raise SystemExit(f"error: {NO_DATASET}")
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={_cpu_devices(args)}")
    import tqdm

    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    writer = None
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            SummaryWriter = None
    if SummaryWriter is not None and jax.process_index() == 0:
        writer = SummaryWriter(os.path.join(args.workdir, "tensorboard"))

    bar = tqdm.tqdm(total=args.config.steps, unit="step", dynamic_ncols=True,
                    disable=jax.process_index() != 0)

    def progress(step: int, values: MetricsDict) -> None:
        bar.update(step - bar.n)
        if "train/loss" in values:
            bar.set_postfix(loss=f"{values['train/loss']:.4g}", grad=f"{values['train/grad_norm']:.3g}",
                            win_s=f"{values.get('train/windows_per_s', float('nan')):.0f}")
        else:
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        if writer is not None:
            for k, v in values.items():
                writer.add_scalar(k, v, step)

    print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}, processes: {jax.process_count()}",
          file=sys.stderr)
    try:
        train_and_evaluate(args.config, args.workdir, progress, resume=args.resume)
    finally:
        bar.close()
        if writer is not None:
            writer.close()


if __name__ == "__main__":
    main(tyro.cli(Args))
