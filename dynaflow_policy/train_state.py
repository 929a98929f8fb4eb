"""The training state of a DiT, its optimiser and EMA update, and DynaFlow's checkpoints.

::

    TrainState (params, ema_params, opt_state, step, rng)          a pytree
      ─ apply_gradients(grads) ─► clip ─► AdamW ─► EMA ─► step + 1   (both trainers)
      ─ save_checkpoint ─► <dir>/<step>/ config.json + state.msgpack  (dynaflow_policy.checkpoint)
      ─ export_policy ─► <out>/ EMA weights only, plus the controller defaults

``config.json`` of a DynaFlow checkpoint: ``kind`` = ``"dynaflow"``, the
``train_config`` (:class:`dynaflow_policy.configs.TrainConfig`), the resolved
``dit_config`` and ``flow_config``, the ``normalizer``, the ``physics`` config and
``jax_version``; an export adds ``contents`` = ``"ema_params"`` and ``policy`` =
``{"execute_steps", "ode_steps"}`` and optionally ``"ensemble"`` (:func:`dynaflow_policy.configs.policy_defaults`).
The state-flow baseline (``dynaflow_policy.baselines.train``) uses the same
state, update and metadata with its own arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import flax.serialization
import flax.struct
import jax
import jax.numpy as jnp
import optax

from dynaflow_policy import checkpoint
from dynaflow_policy.configs import DiTConfig, DiTTrainConfig, FlowConfig, TrainConfig, policy_defaults
from dynaflow_policy.devices import to_host
from dynaflow_policy.model import init_params
from dynaflow_policy.normalizer import Normalizer
from envs.physics import PHYSICS
from envs.task import GAITS, gait_index

EMA_ONLY = "ema_params"
"""``config.json`` ``contents`` of an exported checkpoint: the EMA weights only (:func:`export_policy`)."""

POLICY_KEY = "policy"
"""``config.json`` key of an export's controller defaults ``{"execute_steps": int, "ode_steps": int}``."""

GAITS_KEY = "gaits"
"""``config.json`` key of the gaits of the training data (names of ``envs.task.GAITS``); the policy refuses others."""


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


def init_train_state(config: DiTTrainConfig, predict: str = "actions") -> TrainState:
    """Fresh state from ``config.seed``: DiT init (zero-initialised AdaLN), EMA = params, step 0. Traceable.

    Args:
      config: the run (``dit_config``, ``seed``, the optimiser fields).
      predict: what the DiT outputs (``DiT1d``'s ``predict``): ``"actions"`` for DynaFlow,
        ``"states"`` for the state-flow baseline.
    """
    init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
    params = init_params(config.dit_config, init_key, predict=predict)
    tx = make_optimizer(config.lr, config.weight_decay, config.grad_clip)
    return TrainState(params=params, ema_params=jax.tree.map(jnp.copy, params), opt_state=tx.init(params),
                      step=jnp.zeros((), jnp.int32), rng=train_key)


def apply_gradients(state: TrainState, grads: Any, tx: optax.GradientTransformation,
                    ema_decay: float) -> TrainState:
    """The end of a training step: ``tx`` (:func:`make_optimizer`) applied to ``grads``, the EMA
    ``ema <- ema_decay * ema + (1 - ema_decay) * params`` of the new params, and ``step + 1``; pure."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params, params)
    return state.replace(params=params, ema_params=ema, opt_state=opt_state, step=state.step + 1)


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded DynaFlow checkpoint.

    Attributes:
      ema_params: the EMA weights, numpy leaves: what a policy runs.
      state: the whole training state (numpy leaves), or None for an exported
        checkpoint (:func:`export_policy`), which cannot be resumed.
      normalizer: the normaliser the model was trained with.
      config: the run's config; ``config.dit_config`` and ``config.flow`` rebuild the model and sampler.
      step: training step.
      path: the directory it was read from.
      policy_defaults: the controller defaults ``{"execute_steps": int, "ode_steps": int}``: those stored
        by :func:`export_policy`, else ``DEFAULT_EXECUTE_STEPS`` and ``config.flow.ode_steps``.
      gaits: the gaits of the training data (``config.json`` ``gaits``), or None for a checkpoint written
        before they were recorded.
    """

    ema_params: Any
    state: TrainState | None
    normalizer: Normalizer
    config: TrainConfig
    step: int
    path: str
    policy_defaults: dict[str, int]
    gaits: tuple[str, ...] | None = None


def checkpoint_meta(kind: str, dit: DiTConfig, flow: FlowConfig, normalizer: Normalizer) -> dict[str, Any]:
    """The ``config.json`` entries every DiT checkpoint holds: ``kind`` (one of
    ``dynaflow_policy.checkpoint.KINDS``), ``dit_config``, ``flow_config``, ``normalizer``, ``physics``,
    ``jax_version``."""
    if kind not in checkpoint.KINDS:
        raise ValueError(f"kind must be one of {checkpoint.KINDS}, got {kind!r}")
    return {checkpoint.KIND_KEY: kind, "dit_config": dataclasses.asdict(dit), "flow_config": dataclasses.asdict(flow),
            "normalizer": normalizer.to_dict(), "physics": PHYSICS.to_dict(), "jax_version": jax.__version__}


def gaits_meta(gaits: Sequence[str] | None) -> dict[str, list[str]]:
    """The ``config.json`` entry recording the gaits of the training data (none when unknown)."""
    return {} if gaits is None else {GAITS_KEY: [GAITS[gait_index(g)] for g in gaits]}


def read_gaits(meta: dict[str, Any], path: str) -> tuple[str, ...] | None:
    """The gaits of a checkpoint's training data, or None when it does not record them.

    Raises:
      dynaflow_policy.checkpoint.CheckpointError: an entry that is not a non-empty list of gait names.
    """
    if GAITS_KEY not in meta:
        return None
    names = meta[GAITS_KEY]
    if not isinstance(names, list) or not names or not all(isinstance(g, str) and g in GAITS for g in names):
        raise checkpoint.CheckpointError(f"{path}: '{GAITS_KEY}' in {checkpoint.META_FILE} must list gaits of "
                                         f"{GAITS}, got {names!r}")
    return tuple(names)


def read_policy_defaults(meta: dict[str, Any], horizon: int, flow: FlowConfig, path: str) -> dict[str, int]:
    """The controller defaults of a checkpoint's ``config.json``: its ``policy`` block where present, else
    ``DEFAULT_EXECUTE_STEPS`` and ``flow.ode_steps`` (training checkpoints, and exports made before the block).

    Raises:
      dynaflow_policy.checkpoint.CheckpointError: a block with values out of range.
    """
    block = meta.get(POLICY_KEY) or {}
    try:
        return policy_defaults(block.get("execute_steps"), block.get("ode_steps"), horizon, flow,
                               block.get("ensemble"))
    except (AttributeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: bad '{POLICY_KEY}' block in {checkpoint.META_FILE}: {e}") \
            from None


def save_checkpoint(directory: str | os.PathLike, state: TrainState, normalizer: Normalizer,
                    config: TrainConfig, gaits: Sequence[str] | None = None) -> str:
    """Writes ``<directory>/<step>/`` (``dynaflow_policy.checkpoint.save``); returns its path.

    ``config.json`` holds :func:`checkpoint_meta` (kind ``"dynaflow"``), the ``train_config`` and
    ``gaits`` (the gaits of the training data, when given); ``state.msgpack`` the TrainState.
    """
    host = to_host(state)
    meta = {**checkpoint_meta("dynaflow", config.dit_config, config.flow, normalizer),
            "train_config": config.to_dict(), **gaits_meta(gaits)}
    return checkpoint.save(directory, int(host.step), flax.serialization.to_state_dict(host), meta,
                           keep=config.keep_checkpoints)


def export_policy(source: str | os.PathLike, out: str | os.PathLike, execute_steps: int | None = None,
                  ode_steps: int | None = None, ensemble: int | None = None) -> str:
    """Writes the EMA weights of a training checkpoint as a shippable checkpoint in ``out``.

    The export holds what :class:`dynaflow_policy.DynaFlowPolicy` needs (EMA
    weights, configs, normaliser, physics hash, controller defaults) and not the
    raw weights or the optimiser state: about a quarter of the size. It loads
    with :func:`load_checkpoint` and cannot be resumed.

    Args:
      source: anything :func:`load_checkpoint` accepts (a run's work directory: its newest checkpoint).
      out: the directory to write (``config.json`` and ``state.msgpack`` directly in it).
      execute_steps, ode_steps, ensemble: the controller defaults stored with it
        (:func:`dynaflow_policy.configs.policy_defaults`; None: 4, the flow config's ``ode_steps``
        and no ensembling).

    Returns:
      The absolute path of ``out``.

    Raises:
      ValueError: ``execute_steps``, ``ode_steps`` or ``ensemble`` out of range (before anything is written).
    """
    ckpt = load_checkpoint(source)
    policy = policy_defaults(execute_steps, ode_steps, ckpt.config.horizon, ckpt.config.flow, ensemble)
    meta = {**checkpoint_meta("dynaflow", ckpt.config.dit_config, ckpt.config.flow, ckpt.normalizer),
            "train_config": ckpt.config.to_dict(), "contents": EMA_ONLY, POLICY_KEY: policy,
            **gaits_meta(ckpt.gaits)}
    return checkpoint.save_single(out, ckpt.step, {"ema_params": flax.serialization.to_state_dict(ckpt.ema_params)},
                                  meta)


def load_checkpoint(path: str | os.PathLike, allow_other_physics: bool = False) -> Checkpoint:
    """Loads a checkpoint of :func:`save_checkpoint` or :func:`export_policy`.

    Args:
      path: a step directory, a ``checkpoints`` directory, a work directory
        (the newest complete checkpoint under it) or an exported checkpoint.
      allow_other_physics: accept a checkpoint made under another physics hash.

    Raises:
      dynaflow_policy.checkpoint.CheckpointError: none found, not a DynaFlow checkpoint,
        truncated or corrupt files, other physics, or arrays that do not fit the stored config.
    """
    path = checkpoint.resolve(path)
    arrays, meta = checkpoint.restore(path, allow_other_physics=allow_other_physics)
    kind = checkpoint.kind_of_meta(meta, path)
    if kind != "dynaflow":
        raise checkpoint.CheckpointError(f"{path}: not a DynaFlow checkpoint (kind {kind!r})")
    try:
        config = TrainConfig.from_dict(meta["train_config"])
        normalizer = Normalizer.from_dict(meta["normalizer"])
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: bad config in {checkpoint.META_FILE}: {type(e).__name__}: {e}") \
            from e
    target = jax.eval_shape(functools.partial(init_train_state, config))
    if meta.get("contents") == EMA_ONLY:
        state = None
        if not isinstance(arrays, dict) or set(arrays) != {"ema_params"}:
            raise checkpoint.CheckpointError(f"{path}: an exported checkpoint must hold exactly 'ema_params'")
        ema_params = checkpoint.restore_tree(target.ema_params, arrays["ema_params"], path, "EMA")
    else:
        state = checkpoint.restore_tree(target, arrays, path, "training-state")
        ema_params = state.ema_params
    return Checkpoint(ema_params=ema_params, state=state, normalizer=normalizer, config=config,
                      step=int(meta["step"]), path=path,
                      policy_defaults=read_policy_defaults(meta, config.horizon, config.flow, path),
                      gaits=read_gaits(meta, path))
