"""Training: ``python -m dynaflow_policy.train --dataset data/demos.npz --workdir runs/demos [--resume]``.

One step::

    host   WindowPool ── batch indices = f(seed, step) ──► states (B, H+1, 37) world frame,
           command (B, 3), gait (B,)  ──  device_put, sharded over the "data" mesh axis
    device to_heading_frame ─► X_1 (B, H+1, 37);  c = command ++ one_hot(gait)  (B, 7)
           matching_loss (normalise, noise, DiT, envs.rollout) ─► grad ─► clip ─► AdamW ─► EMA
           (``--objective labels``: label_loss, the DiT regressed on fitted actions, no rollout)

Parallelism: a 1-D ``jax.sharding.Mesh`` over ``jax.devices()`` (axis "data");
the batch is split over it and the state is replicated, so XLA turns the mean
loss into per-device partial sums and one all-reduce of the gradient. The same
code runs on one device, on several GPUs or CPU host devices, and on several
hosts once the caller has run ``jax.distributed.initialize()`` (every process
loads the dataset and calls :func:`train_and_evaluate` alike; process 0 alone
writes checkpoints and metrics; checkpoints must be on a file system all
processes see to resume).

Determinism: the data order is a function of ``(seed, step)`` alone
(``dynaflow_policy.data.pool.WindowSampler``) and the step's noise is
``fold_in(state.rng, state.step)``, so a run resumed from a checkpoint computes
the same steps as one that was never interrupted (tested bit for bit on CPU).

Workdir layout: ``checkpoints/<step>/`` (``dynaflow_policy.train_state``) and
``metrics.jsonl`` (``dynaflow_policy.run_log``: ``step``, ``time`` and
``train/...`` or ``eval/...`` scalars).

The pieces live elsewhere: the config in ``dynaflow_policy.configs``, the data
in ``dynaflow_policy.data.pool``, the state, optimiser and checkpoints in
``dynaflow_policy.train_state``. This module binds the loss to a step, jits it
over the device mesh, and runs the loop.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import sys
import time
from typing import Annotated, Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dynaflow_policy import checkpoint
from dynaflow_policy import metrics as metrics_lib
from dynaflow_policy.configs import DiTConfig, FlowConfig, TrainConfig, default_config
from dynaflow_policy.data.pool import (EVAL_STREAM, NO_DATASET, WindowSampler, eval_batch, fit_normalizer, load_windows,
                                      prepare_batch)
from dynaflow_policy.devices import initialize_distributed, set_host_device_count, to_host
from dynaflow_policy.flow import label_loss, matching_loss, sample
from dynaflow_policy.model import DiT1d, plan_head_actions
from dynaflow_policy.normalizer import Normalizer
from dynaflow_policy.run_log import METRICS_FILE, MetricsDict, MetricsLog, ProgressFn
from dynaflow_policy.train_state import (TrainState, apply_gradients, init_train_state, load_checkpoint,
                                         make_optimizer, save_checkpoint)

DATA_AXIS = "data"
"""Name of the mesh axis the batch is split over."""


# --------------------------------------------------------------------------------------------------------------------
# Step


def batch_loss(params: Any, batch: dict[str, jax.Array], normalizer: Normalizer, rng: jax.Array, *,
               dit: DiTConfig, flow: FlowConfig, start_noise: float | tuple[float, ...] = 0.0, objective: str = "matching",
               label_weight: float = 0.0, own_plan_fraction: float = 0.0,
               start_noise_uniform: bool = False, foot_height_weight: float | tuple[float, ...] = 0.0,
               foot_contact_weight: float | tuple[float, ...] = 0.0,
               plan_head_weight: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss of one raw batch (heading frame and conditioning applied here); the keyword
    arguments after ``flow`` are ``TrainConfig.loss_options``.

    With ``plan_head_weight`` > 0, ``plan_head_weight * mean((tanh(PlanHead(x0, c)) - labels)^2)`` is
    added (``model.plan_head_actions``; aux ``train/plan_head_mse``): the DiT's plan head regressed on its own
    on the data start state's fitted labels, so that it holds E[U | x0, c] and the DiT learns the rest.

    A per-gait ``start_noise``, ``foot_height_weight`` or ``foot_contact_weight`` (one value per gait of
    ``envs.task.GAITS``) gives each window its gait's.

    Returns:
      (loss, aux) of ``dynaflow_policy.flow.matching_loss`` (``objective="matching"``, with the
      auxiliary label term if ``label_weight`` > 0) or ``flow.label_loss`` (``"labels"``).
    """
    x1, cond = prepare_batch(batch, flow)
    start_noise, foot_height_weight, foot_contact_weight = (
        value if isinstance(value, numbers.Real) else jnp.asarray(value, x1.dtype)[batch["gait"]]  # (B,)
        for value in (start_noise, foot_height_weight, foot_contact_weight))
    if objective == "labels":
        loss, aux = label_loss(params, DiT1d(dit).apply, x1, cond, batch["labels"], rng, normalizer, flow,
                               own_plan_fraction=own_plan_fraction)
    else:
        loss, aux = matching_loss(params, DiT1d(dit).apply, x1, cond, rng, normalizer, flow, start_noise=start_noise,
                                  labels=batch.get("labels"), label_weight=label_weight,
                                  own_plan_fraction=own_plan_fraction, start_noise_uniform=start_noise_uniform,
                                  foot_height_weight=foot_height_weight, foot_contact_weight=foot_contact_weight)
    if plan_head_weight > 0:
        head = plan_head_actions(params, dit, normalizer.normalize(x1[:, 0]), cond)  # (B, H, 12)
        head_mse = jnp.mean((head - batch["labels"]) ** 2)
        loss = loss + plan_head_weight * head_mse
        aux = {**aux, "train/loss": loss, "train/plan_head_mse": head_mse}
    return loss, aux


def train_step(state: TrainState, batch: dict[str, jax.Array], normalizer: Normalizer, *, dit: DiTConfig,
               flow: FlowConfig, tx: optax.GradientTransformation, ema_decay: float,
               **loss_options: float | str) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step; pure. Bind the keyword arguments with ``functools.partial`` and jit.

    Args:
      state: training state (donated by :func:`jit_train_step`).
      batch: ``states`` (B, H+1, 37) world frame, ``command`` (B, 3), ``gait`` (B,) int32, and
        ``labels`` (B, H, 12) when the objective or the label weight needs them.
      normalizer: the state normaliser (fitted on heading-frame training windows).
      dit, flow: model and flow configs.
      tx: the optimiser (:func:`make_optimizer`).
      ema_decay: EMA decay per step.
      **loss_options: ``TrainConfig.loss_options`` (keywords of :func:`batch_loss`).

    Returns:
      The new state, and scalars ``train/loss``, ``train/last_state_mse``,
      ``train/action_rms`` (from the loss), ``train/grad_norm`` (before clipping),
      ``train/param_norm``, ``train/zero_grad_leaves`` (parameter arrays whose
      gradient is exactly zero: all but the final projection at step 0, by
      AdaLN-Zero; 0 from the third step on).
    """
    rng = jax.random.fold_in(state.rng, state.step)
    loss_fn = functools.partial(batch_loss, batch=batch, normalizer=normalizer, rng=rng, dit=dit, flow=flow,
                                **loss_options)
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = apply_gradients(state, grads, tx, ema_decay)
    zero_leaves = sum(jnp.all(g == 0).astype(jnp.int32) for g in jax.tree.leaves(grads))
    step_metrics = {**aux, "train/grad_norm": optax.tree.norm(grads),
                    "train/param_norm": optax.tree.norm(new_state.params), "train/zero_grad_leaves": zero_leaves}
    return new_state, step_metrics


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
                    ema_decay: float, loss_options: tuple[tuple[str, float | str], ...], mesh: Mesh):
    fn = functools.partial(train_step, dit=dit, flow=flow, tx=make_optimizer(lr, weight_decay, grad_clip),
                           ema_decay=ema_decay, **dict(loss_options))
    return jax.jit(fn, donate_argnums=0, out_shardings=NamedSharding(mesh, PartitionSpec()))


def jit_train_step(config: TrainConfig, mesh: Mesh):
    """``train_step`` bound to ``config``, jitted with the state donated and the outputs replicated on ``mesh``.

    Cached on the fields that change the computation, so runs that differ only
    in their length, intervals or data reuse the compiled step.
    """
    return _jit_train_step(config.dit_config, config.flow, config.lr, config.weight_decay, config.grad_clip,
                           config.ema_decay, tuple(config.loss_options.items()), mesh)


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


# --------------------------------------------------------------------------------------------------------------------
# Loop


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
    log = MetricsLog(os.path.join(workdir, METRICS_FILE) if is_main else None)
    if is_main:
        os.makedirs(workdir, exist_ok=True)

    existing = checkpoint.checkpoint_to_resume(workdir, resume)
    ckpt = None if existing is None else load_checkpoint(existing)
    if ckpt is not None:
        if ckpt.state is None:
            raise ValueError(f"cannot resume {existing}: an exported checkpoint holds only the EMA weights")
        checkpoint.check_resumable(ckpt.config, config, existing, TrainConfig.RESUMABLE_FIELDS)
    train_pool, held_pool = load_windows(config, labels=config.uses_labels)
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
    eval_rng = replicate(jax.random.fold_in(jax.random.PRNGKey(config.seed), EVAL_STREAM), mesh)
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
        state, step_metrics = step_fn(state, shard_batch(sampler.batch(step, labels=config.uses_labels), mesh), norm)
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
                save_checkpoint(ckpt_dir, state, normalizer, config, gaits=train_pool.gaits)
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
    coordinator: str | None = None
    """Train as one of several processes (``jax.distributed``): HOST:PORT of process 0's coordinator, the
    same for every process, or "auto" on a cluster JAX recognises (SLURM, Open MPI). None: one process."""
    num_processes: int | None = None
    """With --coordinator HOST:PORT: how many processes train together."""
    process_id: int | None = None
    """With --coordinator HOST:PORT: this process's index, 0 .. num_processes - 1 (0 writes the checkpoints)."""


def _cpu_devices(args: Args) -> int:
    if args.cpu_devices is not None:
        return args.cpu_devices
    cores = os.cpu_count() or 1
    return max(d for d in range(1, cores + 1) if args.config.batch_size % d == 0)


def main(args: Args) -> None:
    """Sets the XLA host device count, then runs :func:`train_and_evaluate` with a progress bar."""
    if not args.config.dataset:
        raise SystemExit(f"error: {NO_DATASET}")
    set_host_device_count(_cpu_devices(args), keep_existing=args.cpu_devices is None)
    if args.coordinator is not None:
        initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    elif args.num_processes is not None or args.process_id is not None:
        raise SystemExit("error: --num-processes and --process-id need --coordinator HOST:PORT")
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
