"""The state-space baseline end to end: ``python -m dynaflow_policy.baselines.train --dataset X.npz --workdir DIR``.

::

    dataset windows ─ first states ─► random_play (native MuJoCo, AR(1) actions) ─► ok segments
    ok segments ─ split by segment ─► train_inverse_dynamics ─► held-out action RMSE (vs predicting 0)
    dataset windows (heading frame) ─► state_flow.fit (flow matching in state space, EMA) ─► checkpoints

Random play and the inverse dynamics run once, before the first flow step;
their result is in every checkpoint, so ``--resume`` continues the flow
training without redoing them. A fresh run saves a checkpoint at step 0.

Workdir: ``checkpoints/<step>/`` through ``dynaflow_policy.checkpoint``
(``config.json``: ``kind`` = ``"state_flow"``, the configs, normaliser, physics
and the measured numbers under ``report``; ``state.msgpack``: ``{"flow":
TrainState, "inverse_dynamics": InverseDynamics}``) and ``metrics.jsonl``
(``dynaflow_policy.run_log``).
:class:`dynaflow_policy.baselines.policy.StateFlowIDPolicy` loads a step
directory, its ``checkpoints`` directory or the workdir.

Seeds: everything follows from ``--seed`` (``DiTTrainConfig.seed``): the flow model's
initialisation, noise, split and data order exactly as in DynaFlow training
(``dynaflow_policy.train_state``, ``dynaflow_policy.data.pool``); the random play's start states, its
actions, the inverse dynamics' held-out split and its training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Annotated, Any, Callable, Sequence

import flax.serialization
import jax
import numpy as np
import tyro

from dynaflow_policy import checkpoint
from dynaflow_policy.baselines import state_flow
from dynaflow_policy.baselines.inverse_dynamics import (InverseDynamics, InverseDynamicsConfig, predict,
                                                        train_inverse_dynamics, transitions)
from dynaflow_policy.baselines.random_play import RandomPlayConfig, random_play
from dynaflow_policy.configs import DiTConfig, DiTTrainConfig, FlowConfig, policy_defaults
from dynaflow_policy.data.pool import NO_DATASET, WindowPool, fit_normalizer, load_windows
from dynaflow_policy.metrics import action_recovery_rmse
from dynaflow_policy.normalizer import Normalizer
from dynaflow_policy.run_log import METRICS_FILE, MetricsDict, MetricsLog, ProgressFn
from dynaflow_policy.train_state import (EMA_ONLY, POLICY_KEY, TrainState, checkpoint_meta, gaits_meta, read_gaits,
                                         read_policy_defaults)
from envs.physics import PHYSICS

KIND = "state_flow"
"""``config.json`` ``kind`` of a baseline checkpoint (``dynaflow_policy.checkpoint.KINDS``)."""

CheckpointError = checkpoint.CheckpointError

LogFn = Callable[[str], None]
"""log(line): one line of text per stage of a run (``print`` by default)."""

_PLAY_STREAM, _ID_STREAM = 11, 12  # seed streams, apart from dynaflow_policy.data.pool's


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Everything that defines a baseline run."""

    train: Annotated[DiTTrainConfig, tyro.conf.arg(name="")] = DiTTrainConfig()
    """The flow model and its training: DynaFlow's fields without ``start_noise``, ``objective`` and
    ``label_weight``, which concern a rollout and action labels this loss does not have (flags without a
    prefix: --dataset, --steps, ...)."""
    random_play: RandomPlayConfig = RandomPlayConfig()
    """Random play that the inverse dynamics learns from."""
    inverse_dynamics: InverseDynamicsConfig = InverseDynamicsConfig()
    """The inverse-dynamics MLP and its training."""

    RESUMABLE_FIELDS = tuple(f"train.{name}" for name in DiTTrainConfig.RESUMABLE_FIELDS)
    """Fields that may differ between a run and the checkpoint it resumes (dotted paths, a class constant):
    those of the flow training; ``random_play`` and ``inverse_dynamics`` were used before the first step."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        return {"train": self.train.to_dict(), "random_play": dataclasses.asdict(self.random_play),
                "inverse_dynamics": dataclasses.asdict(self.inverse_dynamics)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaselineConfig:
        """The config of a :meth:`to_dict` dict. ``train.start_noise``, always 0 in configs written while the
        baseline borrowed DynaFlow's ``TrainConfig``, is dropped."""
        train = {k: v for k, v in d["train"].items() if k != "start_noise"}
        return cls(train=DiTTrainConfig.from_dict(train), random_play=RandomPlayConfig(**d["random_play"]),
                   inverse_dynamics=InverseDynamicsConfig(**d["inverse_dynamics"]))


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints


@dataclasses.dataclass(frozen=True)
class BaselineCheckpoint:
    """A loaded baseline checkpoint.

    Attributes:
      ema_params: the flow model's EMA weights, numpy leaves: what a policy runs.
      state: the flow model's training state (numpy leaves), or None for an exported checkpoint.
      inverse_dynamics: the inverse dynamics.
      normalizer: the state normaliser of the flow model.
      config: the run's config.
      report: the numbers measured before the flow training (:func:`train_baseline`).
      step: flow training step.
      path: the directory it was read from.
      policy_defaults: the controller defaults ``{"execute_steps": int, "ode_steps": int}``, as
        ``dynaflow_policy.train_state.Checkpoint.policy_defaults``.
      gaits: the gaits of the training data, or None when the checkpoint does not record them (as
        ``dynaflow_policy.train_state.Checkpoint.gaits``).
    """

    ema_params: Any
    state: TrainState | None
    inverse_dynamics: InverseDynamics
    normalizer: Normalizer
    config: BaselineConfig
    report: dict[str, float]
    step: int
    path: str
    policy_defaults: dict[str, int]
    gaits: tuple[str, ...] | None = None

    @property
    def dit(self) -> DiTConfig:
        return self.config.train.dit_config

    @property
    def flow(self) -> FlowConfig:
        return self.config.train.flow


def _checkpoint_meta(normalizer: Normalizer, config: BaselineConfig, report: dict[str, float],
                     gaits: Sequence[str] | None) -> dict[str, Any]:
    return {**checkpoint_meta(KIND, config.train.dit_config, config.train.flow, normalizer),
            "baseline_config": config.to_dict(), "report": report, **gaits_meta(gaits)}


def save_checkpoint(directory: str | os.PathLike, state: TrainState, inverse_dynamics: InverseDynamics,
                    normalizer: Normalizer, config: BaselineConfig, report: dict[str, float],
                    gaits: Sequence[str] | None = None) -> str:
    """Writes ``<directory>/<state.step>/`` with ``dynaflow_policy.checkpoint.save``; returns its path.

    ``gaits``: the gaits of the training data, recorded so that the controller refuses the others."""
    arrays = {"flow": flax.serialization.to_state_dict(state),
              "inverse_dynamics": flax.serialization.to_state_dict(inverse_dynamics)}
    return checkpoint.save(directory, int(state.step), arrays, _checkpoint_meta(normalizer, config, report, gaits),
                           keep=config.train.keep_checkpoints)


def export_policy(source: str | os.PathLike, out: str | os.PathLike, execute_steps: int | None = None,
                  ode_steps: int | None = None) -> str:
    """Writes a shippable checkpoint in ``out``: the flow model's EMA weights, the inverse dynamics and
    the controller defaults.

    Like ``dynaflow_policy.train_state.export_policy`` (same ``execute_steps`` and ``ode_steps``): it loads
    with :func:`load_checkpoint` and ``StateFlowIDPolicy.from_checkpoint`` and cannot be resumed. Returns
    the absolute path of ``out``.

    Raises:
      ValueError: ``execute_steps`` or ``ode_steps`` out of range (before anything is written).
    """
    ckpt = load_checkpoint(source)
    policy = policy_defaults(execute_steps, ode_steps, ckpt.config.train.horizon, ckpt.config.train.flow)
    arrays = {"ema_params": flax.serialization.to_state_dict(ckpt.ema_params),
              "inverse_dynamics": flax.serialization.to_state_dict(ckpt.inverse_dynamics)}
    meta = {**_checkpoint_meta(ckpt.normalizer, ckpt.config, ckpt.report, ckpt.gaits), "contents": EMA_ONLY,
            POLICY_KEY: policy}
    return checkpoint.save_single(out, ckpt.step, arrays, meta)


def load_checkpoint(path: str | os.PathLike) -> BaselineCheckpoint:
    """Loads a checkpoint of :func:`save_checkpoint` or :func:`export_policy`.

    Args:
      path: a step directory, a ``checkpoints`` directory, a work directory (the newest complete
        checkpoint) or an exported checkpoint.

    Raises:
      CheckpointError: none found; truncated or corrupt files; other physics; not a baseline checkpoint;
        arrays that do not fit the stored config.
    """
    path = checkpoint.resolve(path)
    arrays, meta = checkpoint.restore(path)
    kind = checkpoint.kind_of_meta(meta, path)
    if kind != KIND:
        raise CheckpointError(f"{path}: not a state-flow baseline checkpoint (kind {kind!r}); "
                              "DynaFlow checkpoints load with dynaflow_policy.DynaFlowPolicy")
    try:
        config = BaselineConfig.from_dict(meta["baseline_config"])
        normalizer = Normalizer.from_dict(meta["normalizer"])
        report = {k: float(v) for k, v in meta["report"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad config in {checkpoint.META_FILE}: {type(e).__name__}: {e}") from e
    exported = meta.get("contents") == EMA_ONLY
    flow_key = "ema_params" if exported else "flow"
    if not isinstance(arrays, dict) or set(arrays) != {flow_key, "inverse_dynamics"}:
        raise CheckpointError(f"{path}: {checkpoint.STATE_FILE} must hold exactly '{flow_key}' and "
                              "'inverse_dynamics'")
    target = state_flow.abstract_state(config.train)
    if exported:
        state, ema_params = None, checkpoint.restore_tree(target.ema_params, arrays[flow_key], path, "EMA")
    else:
        state = checkpoint.restore_tree(target, arrays[flow_key], path, "flow")
        ema_params = state.ema_params
    inverse = checkpoint.restore_tree(InverseDynamics.abstract(config.inverse_dynamics.hidden),
                                      arrays["inverse_dynamics"], path, "inverse-dynamics")
    return BaselineCheckpoint(ema_params=ema_params, state=state, inverse_dynamics=inverse, normalizer=normalizer,
                              config=config, report=report, step=int(meta["step"]), path=path,
                              policy_defaults=read_policy_defaults(meta, config.train.horizon, config.train.flow,
                                                                   path),
                              gaits=read_gaits(meta, path))


# --------------------------------------------------------------------------------------------------------------------
# Random play and inverse dynamics


def collect_and_fit_inverse_dynamics(pool: WindowPool, config: BaselineConfig,
                                     log: LogFn = print) -> tuple[InverseDynamics, dict[str, float]]:
    """Random play from the pool's window start states, then the inverse dynamics on its ok segments.

    Args:
      pool: the training windows; start states are the first states of windows drawn uniformly.
      config: the run (``random_play``, ``inverse_dynamics``, ``train.seed``).
      log: called with one line of text per stage.

    Returns:
      The inverse dynamics, and a report: ``random_play/segments``, ``random_play/transitions`` (of ok
      segments), ``random_play/fall_fraction``, ``random_play/seconds``, ``inverse_dynamics/train_loss``
      (mean of the last 100 steps), ``inverse_dynamics/held_out_rmse``, ``inverse_dynamics/zero_rmse``
      (RMSE of predicting u = 0 on the same held-out transitions), ``inverse_dynamics/seconds``.

    Raises:
      ValueError: fewer than 2 segments stayed up.
    """
    play, seed = config.random_play, config.train.seed
    rng = np.random.default_rng((seed, _PLAY_STREAM))
    starts = pool.batch(rng.integers(len(pool), size=play.segments))["states"][:, 0]  # (N, 37)
    t0 = time.perf_counter()
    data = random_play(starts, play.steps, play.action_std, play.smoothing, int(rng.integers(2**31)), PHYSICS)
    play_seconds = time.perf_counter() - t0
    ok = np.flatnonzero(data["ok"])
    if ok.size < 2:
        raise ValueError(f"random play: only {ok.size} of {play.segments} segments stayed up; lower "
                         f"--random-play.action-std ({play.action_std}) or --random-play.steps ({play.steps})")
    order = np.random.default_rng((seed, _ID_STREAM)).permutation(ok)
    n_held = min(max(1, round(play.held_out_fraction * ok.size)), ok.size - 1)
    held, train = order[:n_held], order[n_held:]
    log(f"random play: {play.segments} segments x {play.steps} steps in {play_seconds:.1f} s, "
        f"{1 - ok.size / play.segments:.1%} fell; inverse dynamics on {train.size} segments, {held.size} held out")
    t0 = time.perf_counter()
    model, losses = train_inverse_dynamics(*transitions(data["states"][train], data["actions"][train]),
                                           config.inverse_dynamics, seed)
    id_seconds = time.perf_counter() - t0
    x_k, x_next, u = transitions(data["states"][held], data["actions"][held])
    report = {
        "random_play/segments": float(play.segments),
        "random_play/transitions": float(ok.size * play.steps),
        "random_play/fall_fraction": 1.0 - ok.size / play.segments,
        "random_play/seconds": play_seconds,
        "inverse_dynamics/train_loss": float(np.mean(losses[-100:])),
        "inverse_dynamics/held_out_rmse": float(action_recovery_rmse(predict(model, x_k, x_next), u)),
        "inverse_dynamics/zero_rmse": float(action_recovery_rmse(np.zeros_like(u), u)),
        "inverse_dynamics/seconds": id_seconds,
    }
    log(f"inverse dynamics: held-out action RMSE {report['inverse_dynamics/held_out_rmse']:.4f} "
        f"(predicting 0: {report['inverse_dynamics/zero_rmse']:.4f}), trained in {id_seconds:.1f} s")
    return model, report


# --------------------------------------------------------------------------------------------------------------------
# The run


def train_baseline(config: BaselineConfig, workdir: str | os.PathLike, progress_fn: ProgressFn | None = None, *,
                   resume: bool = False, log: LogFn = print) -> dict[str, float]:
    """Random play, inverse dynamics and state-flow training in ``workdir`` (see the module docstring).

    Args:
      config: the run.
      workdir: directory of ``checkpoints/`` and ``metrics.jsonl`` (created).
      progress_fn: ``progress_fn(step, metrics)`` after each logged flow step and evaluation.
      resume: continue from the newest checkpoint in ``workdir``; without one, start fresh.
      log: called with one line of text per stage.

    Returns:
      The report of :func:`collect_and_fit_inverse_dynamics` plus ``state_flow/loss_first`` (first step
      of this call), ``state_flow/loss_last`` (last logged interval), ``state_flow/steps_per_s`` (those
      absent if no step was run) and ``state_flow/step``.

    Raises:
      ValueError: no dataset; a resumed config that differs in a field that changes the training.
      FileExistsError: ``workdir`` has checkpoints and ``resume`` is False.
    """
    if not config.train.dataset:
        raise ValueError(NO_DATASET)
    workdir = os.path.abspath(os.fspath(workdir))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    os.makedirs(workdir, exist_ok=True)
    train_pool, held_pool = load_windows(config.train)
    existing = checkpoint.checkpoint_to_resume(workdir, resume)
    if existing is not None:
        ckpt = load_checkpoint(existing)
        checkpoint.check_resumable(ckpt.config, config, existing, BaselineConfig.RESUMABLE_FIELDS)
        state, inverse, normalizer, report = ckpt.state, ckpt.inverse_dynamics, ckpt.normalizer, dict(ckpt.report)
        log(f"resuming {existing} at step {ckpt.step}")
    else:
        inverse, report = collect_and_fit_inverse_dynamics(train_pool, config, log)
        normalizer = fit_normalizer(train_pool, config.train)
        state = jax.tree.map(np.asarray, jax.jit(lambda: state_flow.init_state(config.train))())
        save_checkpoint(ckpt_dir, state, inverse, normalizer, config, report, train_pool.gaits)
    metrics_file = MetricsLog(os.path.join(workdir, METRICS_FILE))
    metrics_file.truncate_after(int(state.step))

    def progress(step: int, values: MetricsDict) -> None:
        metrics_file.write(step, values)
        if progress_fn is not None:
            progress_fn(step, values)

    state, summary = state_flow.fit(
        config.train, state, normalizer, train_pool, held_pool, progress_fn=progress,
        save_fn=lambda s: save_checkpoint(ckpt_dir, s, inverse, normalizer, config, report, train_pool.gaits))
    return {**report, **{f"state_flow/{k}": v for k, v in summary.items()}, "state_flow/step": float(state.step)}


# --------------------------------------------------------------------------------------------------------------------
# Command line


@dataclasses.dataclass(frozen=True)
class Args:
    """``python -m dynaflow_policy.baselines.train --dataset PATH --workdir DIR [--resume] [--steps N]``."""

    workdir: str
    """Directory of checkpoints/ and metrics.jsonl."""
    config: Annotated[BaselineConfig, tyro.conf.arg(name="")] = dataclasses.field(default_factory=BaselineConfig)
    """The run (flow flags without a prefix: --dataset, --steps, ...; --random-play.*, --inverse-dynamics.*)."""
    resume: bool = False
    """Continue from the newest checkpoint in --workdir (same step counter and data order)."""


def main(args: Args) -> dict[str, float]:
    """Runs :func:`train_baseline` and prints the measured numbers; returns them."""
    if not args.config.train.dataset:
        raise SystemExit(f"error: {NO_DATASET}")
    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()

    def progress(step: int, values: MetricsDict) -> None:
        print(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()), file=sys.stderr)

    report = train_baseline(args.config, args.workdir, progress, resume=args.resume)
    print(json.dumps(report, indent=1, sort_keys=True))
    return report


if __name__ == "__main__":
    main(tyro.cli(Args))
