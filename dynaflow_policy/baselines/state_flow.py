"""Flow matching in state space: the network predicts the window X_1 itself, no rollout (Decision-Diffuser style).

Same notation and the same X_t as ``dynaflow_policy.flow`` (heading frame, normalised)::

    X_1    (B, H+1, 37)  data window, physical units; x0 = X_1[:, 0]
    X_0    (B, H+1, 37)  flow.noise_window: N(0, noise_scale^2), row 0 = normalised x0
    X_t    (B, H+1, 37)  flow.interpolate: (1 - t) X_0 + t X_1, row 0 = normalised x0
    X_hat1 (B, H+1, 37)  normalised x0 ++ DiT1d(config, predict="states")(X_t, t, c)

    loss = sum(W * (X_hat1 - norm(X_1))^2) / (B * sum(W)),  W = flow.loss_weights (row 0 masked)

The only difference from DynaFlow's ``flow.matching_loss`` is X_hat1: here the
network output, there ``norm(Phi(x0, U))``. Nothing constrains the sampled states
to be reachable; ``dynaflow_policy.baselines.policy`` turns them into actions
with the inverse dynamics. The sampler is ``flow.euler_integrate`` of
``flow.flow_velocity(X_hat1, X_t, t)``, like DynaFlow's.

Training reuses DynaFlow's pieces unchanged: ``DiTTrainConfig``, ``TrainState``,
``make_optimizer`` (clip, AdamW) and the EMA (``train_state.apply_gradients``),
``WindowSampler``'s data order as a function of (seed, step), ``prepare_batch``
(heading frame and ``conditioning(command, gait)``) and the step's noise
``fold_in(rng, step)``, so a resumed run computes the same steps as an
uninterrupted one. It runs on one device.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynaflow_policy import metrics as metrics_lib
from dynaflow_policy.configs import DiTConfig, DiTTrainConfig, FlowConfig
from dynaflow_policy.data.pool import WindowPool, WindowSampler, eval_batch, prepare_batch
from dynaflow_policy.devices import to_host
from dynaflow_policy.flow import (ApplyFn, Params, euler_integrate, flow_velocity, interpolate, loss_weights,
                                  noise_window)
from dynaflow_policy.model import DiT1d
from dynaflow_policy.normalizer import Normalizer
from dynaflow_policy.run_log import MetricsDict, ProgressFn
from dynaflow_policy.train_state import TrainState, apply_gradients, init_train_state, make_optimizer

SaveFn = Callable[[TrainState], None]
"""save_fn(state): writes a checkpoint of the host state (the caller decides what goes with it)."""


def _predict_window(params: Params, apply_fn: ApplyFn, x_t: jax.Array, t: jax.Array, cond: jax.Array) -> jax.Array:
    """X_hat1 (B, H+1, 37), normalised: row 0 of x_t (the normalised x0), then the network's rows 1..H."""
    return jnp.concatenate([x_t[:, :1], apply_fn(params, x_t, t, cond)], axis=1)


def state_matching_loss(params: Params, apply_fn: ApplyFn, x1_window: jax.Array, cond: jax.Array, rng: jax.Array,
                        normalizer: Normalizer, config: FlowConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Conditional flow-matching loss in state space (see the module docstring); jittable, differentiable.

    Args:
      params: model parameters (first argument of ``apply_fn``).
      apply_fn: ``DiT1d(dit, predict="states").apply``: (X_t, t, c) -> rows 1..H (B, H, 37), normalised.
      x1_window: (B, H+1, 37) data windows X_1, heading frame, physical units.
      cond: (B, 7) conditioning (command ++ gait one-hot).
      rng: PRNG key for the noise X_0 and the times t ~ U(0, 1).
      normalizer: state normaliser.
      config: flow config (``noise_scale``, ``state_weights``).

    Returns:
      loss: scalar.
      aux: ``train/loss``; ``train/last_state_mse``, the normalised squared error of the last state.
    """
    b, rows, _ = x1_window.shape
    rng_noise, rng_t = jax.random.split(rng)
    x1_n = normalizer.normalize(x1_window)  # (B, H+1, 37)
    x_noise = noise_window(rng_noise, x1_n[:, 0], rows - 1, config)  # (B, H+1, 37)
    t = jax.random.uniform(rng_t, (b,))  # (B,)
    x_hat1 = _predict_window(params, apply_fn, interpolate(x_noise, x1_n, t), t, cond)  # (B, H+1, 37)
    sq_err = (x_hat1 - x1_n) ** 2  # (B, H+1, 37)
    w = jnp.asarray(loss_weights(rows - 1, config))  # (H+1, 37)
    loss = jnp.sum(w * sq_err) / (b * jnp.sum(w))
    return loss, {"train/loss": loss, "train/last_state_mse": jnp.mean(sq_err[:, -1])}


def sample_states(params: Params, apply_fn: ApplyFn, x0: jax.Array, cond: jax.Array, rng: jax.Array,
                  normalizer: Normalizer, config: FlowConfig, *, horizon: int) -> jax.Array:
    """Samples state windows from x0 with ``config.ode_steps`` Euler steps; jittable (apply_fn, config, horizon static).

    Args:
      params, apply_fn: the network (``DiT1d(dit, predict="states")``).
      x0: (B, 37) current states in their own heading frame (``to_heading_frame(x[:, None])[:, 0]``), physical units.
      cond: (B, 7) conditioning.
      rng: PRNG key of the noise X_0.
      normalizer: state normaliser.
      config: flow config (``ode_steps``, ``t_clamp``, ``noise_scale``).
      horizon: H.

    Returns:
      (B, H+1, 37) heading-frame states in physical units with unit quaternions
      (``Normalizer.denormalize``); row 0 is ``x0`` exactly.
    """
    b = x0.shape[0]
    x_init = noise_window(rng, normalizer.normalize(x0), horizon, config)  # (B, H+1, 37)

    def field(x_t: jax.Array, t: jax.Array) -> tuple[jax.Array, None]:
        tb = jnp.full((b,), t)  # (B,)
        return flow_velocity(_predict_window(params, apply_fn, x_t, tb, cond), x_t, tb, config.t_clamp), None

    x1, _ = euler_integrate(field, x_init, config.ode_steps)  # (B, H+1, 37) normalised
    return normalizer.denormalize(x1).at[:, 0].set(x0)


# --------------------------------------------------------------------------------------------------------------------
# Training


def init_state(config: DiTTrainConfig) -> TrainState:
    """Fresh training state from ``config.seed``: state-predicting DiT (zero head), EMA = params, step 0."""
    return init_train_state(config, predict="states")


def train_step(state: TrainState, batch: dict[str, jax.Array], normalizer: Normalizer, *, dit: DiTConfig,
               flow: FlowConfig, tx: optax.GradientTransformation,
               ema_decay: float) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser step; pure (bind the keyword arguments with ``functools.partial`` and jit).

    Args:
      state: training state.
      batch: ``states`` (B, H+1, 37) world frame, ``command`` (B, 3), ``gait`` (B,) int32.
      normalizer: the state normaliser (fitted on heading-frame training windows).
      dit, flow: model and flow configs.
      tx: the optimiser (``dynaflow_policy.train_state.make_optimizer``).
      ema_decay: EMA decay per step.

    Returns:
      The new state, and ``train/loss``, ``train/last_state_mse``, ``train/grad_norm`` (before clipping).
    """
    rng = jax.random.fold_in(state.rng, state.step)
    x1, cond = prepare_batch(batch, flow)
    loss_fn = functools.partial(state_matching_loss, apply_fn=DiT1d(dit, predict="states").apply, x1_window=x1,
                                cond=cond, rng=rng, normalizer=normalizer, config=flow)
    (_, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return apply_gradients(state, grads, tx, ema_decay), {**aux, "train/grad_norm": optax.tree.norm(grads)}


@functools.lru_cache(maxsize=8)
def _jit_train_step(dit: DiTConfig, flow: FlowConfig, lr: float, weight_decay: float, grad_clip: float,
                    ema_decay: float):
    fn = functools.partial(train_step, dit=dit, flow=flow, tx=make_optimizer(lr, weight_decay, grad_clip),
                           ema_decay=ema_decay)
    return jax.jit(fn, donate_argnums=0)


def jit_train_step(config: DiTTrainConfig):
    """:func:`train_step` bound to ``config`` and jitted with the state donated (cached on the relevant fields)."""
    return _jit_train_step(config.dit_config, config.flow, config.lr, config.weight_decay, config.grad_clip,
                           config.ema_decay)


def eval_step(params: Params, batch: dict[str, jax.Array], normalizer: Normalizer, rng: jax.Array, *,
              dit: DiTConfig, flow: FlowConfig) -> dict[str, jax.Array]:
    """``eval/tre`` (``dynaflow_policy.metrics.tre``) of windows sampled from the batch's x0 and c; pure."""
    x1, cond = prepare_batch(batch, flow)
    X = sample_states(params, DiT1d(dit, predict="states").apply, x1[:, 0], cond, rng, normalizer, flow,
                      horizon=dit.horizon)
    return {"eval/tre": metrics_lib.tre(X, x1, normalizer)}


@functools.lru_cache(maxsize=8)
def jit_eval_step(dit: DiTConfig, flow: FlowConfig):
    """:func:`eval_step` bound to the configs and jitted (cached)."""
    return jax.jit(functools.partial(eval_step, dit=dit, flow=flow))


def fit(config: DiTTrainConfig, state: TrainState, normalizer: Normalizer, train_pool: WindowPool,
        held_pool: WindowPool, *, save_fn: SaveFn | None = None,
        progress_fn: ProgressFn | None = None) -> tuple[TrainState, MetricsDict]:
    """Trains from ``state.step`` to ``config.steps``, logging, evaluating and saving at the config's intervals.

    Args:
      config: the run (``steps``, ``batch_size``, intervals, seed of the data order).
      state: the state to continue from (fresh from :func:`init_state` or restored).
      normalizer: the state normaliser.
      train_pool, held_pool: training and held-out windows (``dynaflow_policy.data.pool.load_windows``).
      save_fn: called with the host state every ``checkpoint_every`` steps and at the last step.
      progress_fn: ``progress_fn(step, metrics)`` after each logged step (``train/...`` averaged over the
        interval, ``train/steps_per_s``) and each held-out evaluation (``eval/tre``).

    Returns:
      The final state (host numpy leaves) and a summary: ``loss_first`` (loss of the first step run),
      ``loss_last`` (mean loss of the last logged interval) and ``steps_per_s`` (optimiser steps per second
      after the first, compiling, step; evaluations and checkpoints not counted).
    """
    sampler = WindowSampler(train_pool, config.batch_size, config.seed)
    held = eval_batch(held_pool, config.eval_windows, config.seed)
    eval_rng = jax.random.PRNGKey(config.seed)
    step_fn = jit_train_step(config)
    summary: MetricsDict = {}
    clock = {"mark": time.perf_counter(), "mark_step": int(state.step), "seconds": 0.0, "steps": 0}

    def lap(done: int) -> float:
        """Waits for the queued steps, books the time since the mark; returns the lap's steps per second."""
        jax.block_until_ready(state)
        now = time.perf_counter()
        seconds, steps = now - clock["mark"], done - clock["mark_step"]
        clock["seconds"] += seconds
        clock["steps"] += steps
        clock["mark"], clock["mark_step"] = now, done
        return steps / seconds if steps else float("nan")

    def restart_clock(done: int) -> None:
        clock["mark"], clock["mark_step"] = time.perf_counter(), done

    start = int(state.step)
    pending: list[dict[str, jax.Array]] = []
    for step in range(start, config.steps):
        state, step_metrics = step_fn(state, sampler.batch(step), normalizer)
        pending.append(step_metrics)
        done = step + 1
        if step == start:  # the first step compiles: keep it out of the clock
            summary["loss_first"] = float(step_metrics["train/loss"])
            restart_clock(done)
        if done % config.log_every == 0 or done == config.steps:
            rate = lap(done)
            host = to_host(pending)
            values = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
            values["train/steps_per_s"] = rate
            summary["loss_last"] = values["train/loss"]
            pending = []
            if progress_fn is not None:
                progress_fn(done, values)
            restart_clock(done)
        if held is not None and (done % config.eval_every == 0 or done == config.steps):
            lap(done)
            eval_metrics = jit_eval_step(config.dit_config, config.flow)(state.ema_params, held, normalizer,
                                                                         eval_rng)
            if progress_fn is not None:
                progress_fn(done, {k: float(v) for k, v in eval_metrics.items()})
            restart_clock(done)
        if save_fn is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            lap(done)
            save_fn(to_host(state))
            restart_clock(done)
    if clock["steps"]:
        summary["steps_per_s"] = clock["steps"] / clock["seconds"]
    return to_host(state), summary


def abstract_state(config: DiTTrainConfig) -> TrainState:
    """Shape-only :class:`TrainState` of ``config``: the target a checkpoint is restored into."""
    return jax.eval_shape(functools.partial(init_state, config))
