"""PPO expert: ``python -m dynaflow_policy.experts.ppo --workdir runs/ppo [--resume]``.

Brax's PPO (``brax.training.agents.ppo.train``) on ``envs.Go1Env``: velocity
commands uniform in ``envs.task.CommandRanges()`` (vx [-0.5, 1], vy [-0.5, 0.5],
yaw rate [-1, 1]), trot gait, the rewards of ``envs.task``. The networks see
``envs.task.policy_input(obs)`` (no world position or heading).

Schedule. The run is cut into ``num_evals - 1`` equal intervals of
``eval_interval_steps`` env steps (a whole number of PPO training steps of
``batch_size * num_minibatches * unroll_length`` env steps each). After every
interval Brax evaluates the policy (``num_eval_envs`` episodes of
``episode_length`` steps) and this module

1. appends one line to ``<workdir>/metrics.jsonl`` (``dynaflow_policy.run_log``):
   ``step`` (env steps), ``time``, ``eval/episode_reward`` (and Brax's other ``eval/...`` scalars),
   ``reward/<name>`` (episode sum of each unweighted term of
   ``envs.task.reward_terms``, averaged over the eval episodes; ``reward_std/<name>``
   its std over episodes) and ``train/...``
   (Brax's training scalars, ``train/sps`` = env steps/s of the interval);
2. redraws ``<workdir>/learning_curve.png``;
3. saves ``<workdir>/checkpoints/<env_steps>/`` through :mod:`dynaflow_policy.checkpoint`
   (``kind`` = ``"ppo"``; see :mod:`dynaflow_policy.experts.policy` for the arrays).

Resuming (``--resume``). Brax 0.14.2's ``train`` accepts only
``restore_params = (normaliser, policy params, value params)``; it does not take
or return the Adam state, the env states or its PRNG state. A resumed run
therefore continues from the newest checkpoint with exactly the observation
normaliser (its running mean, variance and count), the policy and the value
network; the optimiser moments restart from zero, every env restarts from a
reset, and the PRNG seed is ``seed + 10007 * intervals done`` (so a resumed
run does not replay the randomness of the first). It is not bit-identical to an
uninterrupted run. Work since the last evaluation is lost. ``metrics.jsonl``
lines after the checkpoint's step are dropped on resume.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Annotated, Any

import numpy as np
import tyro

from dynaflow_policy import checkpoint, run_log
from dynaflow_policy.experts.policy import (CLOCKED_POLICY_INPUTS, EXPERT_KIND, INPUT_DIMS, POLICY_INPUTS, PPOExpert,
                                           load_expert)
from dynaflow_policy.run_log import METRICS_FILE, PLOT_FILE, MetricsDict, MetricsLog, ProgressFn, read_metrics
from envs.physics import ACTION_DIM
from envs.task import GAIT_COMMAND_RANGES, GAITS, POLICY_INPUT_DIM, POLICY_INPUT_STRUCTURE, CommandRanges, RewardWeights

CHECKPOINT_DIR = "checkpoints"


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """A PPO run. Defaults follow MuJoCo Playground's Go1 joystick PPO (lr 3e-4, entropy 1e-2, discount 0.97,
    unroll 20, batch 256 x 32 minibatches, 4 updates, (512, 256, 128) MLPs, grad clip 1), with 1024 envs
    instead of 8192 and fewer env steps, for a 2-core CPU."""

    num_timesteps: int = 30_000_000
    """Total env steps (rounded up to whole evaluation intervals). A resumed run stops at the same total.
    At the 4,500-4,900 env steps/s measured with these defaults on the 2-core CPU, about 1.8 h of training."""
    num_evals: int = 11
    """Evaluations including the one at step 0; checkpoints are written at the other num_evals - 1."""
    num_envs: int = 1024
    """Parallel training envs; batch_size * num_minibatches must be a multiple of it."""
    episode_length: int = 1000
    """Steps per episode (20 s at 50 Hz) for training and evaluation."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    entropy_cost: float = 1e-2
    """Weight of the policy-entropy bonus."""
    discounting: float = 0.97
    """Discount factor gamma."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clipping_epsilon: float = 0.3
    """PPO ratio clip."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm."""
    reward_scaling: float = 1.0
    """Rewards are multiplied by this in the loss."""
    unroll_length: int = 20
    """Env steps per unroll (trajectory segment)."""
    batch_size: int = 256
    """Unrolls per minibatch."""
    num_minibatches: int = 32
    """Minibatches per PPO update; one training step uses batch_size * num_minibatches unrolls."""
    num_updates_per_batch: int = 4
    """Passes over each batch of unrolls."""
    policy_hidden_layer_sizes: tuple[int, ...] = (512, 256, 128)
    """Policy MLP hidden sizes."""
    value_hidden_layer_sizes: tuple[int, ...] = (512, 256, 128)
    """Value MLP hidden sizes."""
    num_eval_envs: int = 128
    """Episodes per evaluation (run in parallel)."""
    seed: int = 0
    """Seed of the networks, the envs and the PPO sampling."""
    gaits: tuple[str, ...] = ("trot",)
    """Gaits drawn at reset and with every new command (``envs.task.GAITS``); ``envs.task.gait_sync`` rewards
    each one's contact pattern."""
    gait_clock: bool = False
    """The policy also reads the gait clock (``envs.task.gait_clock``); pair it with a ``gait_schedule`` reward."""
    resample_command_steps: int = 500
    """A new command is drawn every this many env steps (``envs.Go1Env``)."""
    gait_redraw_probability: float = 1.0
    """Chance that a new command comes with a newly drawn gait; below 1 the policy also meets command
    changes within a gait."""
    single_axis_probability: float = 0.0
    """Chance that a drawn command keeps one component and zeros the others (``envs.Go1Env``): straight
    walks, sidesteps and turns in place, the commands evaluations give."""
    per_gait_commands: bool = False
    """Draw each gait's commands from ``envs.task.GAIT_COMMAND_RANGES`` instead of ``CommandRanges()``."""
    reward_weights: RewardWeights = RewardWeights()
    """Weights of the reward terms (``envs.task.RewardWeights``)."""
    init_from: str | None = None
    """Start a new run from the policy, value network and normaliser of this PPO checkpoint (e.g. the trot
    expert), widened to this run's inputs: the added inputs start with zero weights, and the gait one-hot's
    statistics are reset to those of a uniform draw over ``gaits``."""
    domain_randomization: bool = False
    """Train under randomised floor friction, body masses and trunk payload (``envs.randomization``)."""
    keep_checkpoints: int = 3
    """Newest checkpoints kept in ``<workdir>/checkpoints``."""

    RESUMABLE_FIELDS = ("num_timesteps", "num_evals", "num_eval_envs", "keep_checkpoints", "init_from")
    """Fields that may differ between a run and the checkpoint it resumes (a class constant, not a field).
    The evaluation interval of the first run is kept."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy_hidden_layer_sizes", tuple(int(n) for n in self.policy_hidden_layer_sizes))
        object.__setattr__(self, "value_hidden_layer_sizes", tuple(int(n) for n in self.value_hidden_layer_sizes))
        object.__setattr__(self, "gaits", tuple(self.gaits))
        for name in ("num_timesteps", "num_envs", "episode_length", "unroll_length", "batch_size",
                     "num_minibatches", "num_updates_per_batch", "num_eval_envs", "keep_checkpoints",
                     "resample_command_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PPOConfig.{name} must be a positive int, got {value!r}")
        if not isinstance(self.num_evals, int) or self.num_evals < 2:
            raise ValueError(f"PPOConfig.num_evals must be an int >= 2 (step 0 and at least one checkpoint), "
                             f"got {self.num_evals!r}")
        if (self.batch_size * self.num_minibatches) % self.num_envs:
            raise ValueError(f"PPOConfig: batch_size * num_minibatches = {self.batch_size * self.num_minibatches} "
                             f"must be a multiple of num_envs = {self.num_envs}")
        for name in ("learning_rate", "max_grad_norm", "reward_scaling", "clipping_epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PPOConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.gait_redraw_probability <= 1.0:
            raise ValueError(f"PPOConfig.gait_redraw_probability must be in [0, 1], got {self.gait_redraw_probability}")
        if not 0.0 <= self.single_axis_probability <= 1.0:
            raise ValueError(f"PPOConfig.single_axis_probability must be in [0, 1], got {self.single_axis_probability}")
        if not self.entropy_cost >= 0:
            raise ValueError(f"PPOConfig.entropy_cost must be >= 0, got {self.entropy_cost}")
        for name in ("discounting", "gae_lambda"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in (0, 1], got {getattr(self, name)}")
        if not self.policy_hidden_layer_sizes or not self.value_hidden_layer_sizes \
                or min(self.policy_hidden_layer_sizes + self.value_hidden_layer_sizes) < 1:
            raise ValueError("PPOConfig: hidden layer sizes must be non-empty tuples of positive ints, got "
                             f"{self.policy_hidden_layer_sizes}, {self.value_hidden_layer_sizes}")
        if not self.gaits or any(g not in GAITS for g in self.gaits):
            raise ValueError(f"PPOConfig.gaits must name gaits from {GAITS}, got {self.gaits}")
        if self.init_from is not None and not os.path.exists(self.init_from):
            raise ValueError(f"PPOConfig.init_from: no such checkpoint {self.init_from!r}")

    @property
    def policy_inputs(self) -> str:
        """What the networks read: ``POLICY_INPUTS``, or with the gait clock ``CLOCKED_POLICY_INPUTS``."""
        return CLOCKED_POLICY_INPUTS if self.gait_clock else POLICY_INPUTS

    @property
    def command_ranges(self) -> dict[str, CommandRanges]:
        """Command ranges of each trained gait."""
        return {g: GAIT_COMMAND_RANGES[g] if self.per_gait_commands else CommandRanges() for g in self.gaits}

    @property
    def env_steps_per_training_step(self) -> int:
        """Env steps of one PPO training step: batch_size * num_minibatches * unroll_length."""
        return self.batch_size * self.num_minibatches * self.unroll_length

    @property
    def eval_interval_steps(self) -> int:
        """Env steps between evaluations: num_timesteps / (num_evals - 1), rounded up to whole training steps."""
        per = self.env_steps_per_training_step
        return per * math.ceil(self.num_timesteps / ((self.num_evals - 1) * per))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        d = dataclasses.asdict(self)
        for k in ("policy_hidden_layer_sizes", "value_hidden_layer_sizes", "gaits"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PPOConfig:
        d = dict(d)
        for k in ("policy_hidden_layer_sizes", "value_hidden_layer_sizes", "gaits"):
            if k in d:
                d[k] = tuple(d[k])
        if "reward_weights" in d:
            d["reward_weights"] = RewardWeights(**d["reward_weights"])
        d.pop("init_from", None)  # where a finished run started is history, not config: no need for the file
        return cls(**d)


def default_config() -> PPOConfig:
    """The default run (Playground's Go1 joystick PPO scaled to a 2-core CPU)."""
    return PPOConfig()


# --------------------------------------------------------------------------------------------------------------------
# Metrics and plot


def _rename(metrics: dict[str, Any]) -> MetricsDict:
    """Brax's metric names -> ours.

    ``eval/episode_reward/<k>`` -> ``reward/<k>`` (its ``..._std`` -> ``reward_std/<k>``), ``training/...`` ->
    ``train/...``; other keys (``eval/episode_reward``, ``eval/avg_episode_length``, ...) are kept.
    """
    out = {}
    for k, v in metrics.items():
        try:
            v = float(np.asarray(v))
        except (TypeError, ValueError):
            continue
        if k.startswith("eval/episode_reward/"):
            name = k[len("eval/episode_reward/"):]
            k = f"reward_std/{name[:-4]}" if name.endswith("_std") else f"reward/{name}"
        elif k.startswith("training/"):
            k = "train/" + k[len("training/"):]
        out[k] = v
    return out


def plot_learning_curve(workdir: str | os.PathLike) -> str:
    """Draws ``<workdir>/learning_curve.png`` from its metrics.jsonl: eval reward (mean +- std) and each reward
    term (unweighted episode sums) against env steps. Returns the path."""
    workdir = os.fspath(workdir)
    rows = [r for r in read_metrics(os.path.join(workdir, METRICS_FILE)) if "eval/episode_reward" in r]
    return run_log.plot_learning_curve(rows, os.path.join(workdir, PLOT_FILE), "PPO Go1",
                                       left=("eval/episode_reward",), right_prefix="reward/", left_scale="linear",
                                       right_scale="symlog", x_label="env steps")


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints


def _checkpoint_meta(config: PPOConfig, interval: int, metrics: MetricsDict) -> dict[str, Any]:
    return {
        checkpoint.KIND_KEY: EXPERT_KIND,
        "ppo_config": config.to_dict(),
        "eval_interval_steps": int(interval),
        "policy": {"inputs": config.policy_inputs, "input_dim": INPUT_DIMS[config.policy_inputs],
                   "action_dim": ACTION_DIM,
                   "hidden_layer_sizes": list(config.policy_hidden_layer_sizes),
                   "activation": "swish", "distribution": "tanh_normal", "normalize_observations": True},
        "env": {"command_ranges": {g: dataclasses.asdict(r) for g, r in config.command_ranges.items()},
                "gaits": list(config.gaits)},
        "metrics": metrics,
    }


def _params_to_arrays(params) -> dict[str, Any]:
    """Brax's (normaliser state, policy params, value params) -> nested dict of numpy arrays."""
    import flax.serialization
    import jax

    normalizer, policy, value = jax.device_get(params)
    return {"normalizer": flax.serialization.to_state_dict(normalizer),
            "policy": flax.serialization.to_state_dict(policy),
            "value": flax.serialization.to_state_dict(value)}


def _arrays_to_params(arrays: dict[str, Any], input_dim: int):
    """Inverse of :func:`_params_to_arrays`: a ``restore_params`` tuple for ``ppo.train``."""
    import flax.serialization
    import jax
    import jax.numpy as jnp
    from brax.training import acme

    template = acme.running_statistics.init_state(acme.specs.Array((input_dim,), jnp.dtype("float32")))
    normalizer = flax.serialization.from_state_dict(template, arrays["normalizer"])
    normalizer = jax.tree_util.tree_map(jnp.asarray, normalizer)
    policy = jax.tree_util.tree_map(jnp.asarray, arrays["policy"])
    value = jax.tree_util.tree_map(jnp.asarray, arrays["value"])
    return normalizer, policy, value


def widen_inputs(arrays: dict[str, Any], input_dim: int, gaits: tuple[str, ...]) -> dict[str, Any]:
    """A PPO checkpoint's arrays adapted to ``input_dim`` inputs (its own first, the added ones appended) and
    to training on ``gaits``, for a warm start (:attr:`PPOConfig.init_from`).

    The added inputs get zero weights in the first layer of the policy and the value network, and the
    normaliser statistics of a sine (mean 0, variance 1/2). The gait one-hot's statistics become those of
    a uniform draw over ``gaits`` and its first-layer weights zero (a one-gait run never varied those inputs,
    so its weights there are untrained and its variance is 0): the widened policy acts as the old one for
    every gait, until training tells the gaits apart.

    Args:
      arrays: ``normalizer`` (``mean``, ``std``, ``summed_variance`` (D,), ``count``, ...), ``policy`` and ``value``
        (``params/hidden_<i>/{kernel, bias}``).
      input_dim: inputs of the new run, >= D.
      gaits: gaits of the new run.

    Raises:
      ValueError: ``input_dim`` is smaller than the checkpoint's.
    """
    norm = _copy_tree(arrays["normalizer"])
    old = norm["mean"].shape[-1]
    if input_dim < old:
        raise ValueError(f"cannot narrow a checkpoint of {old} inputs to {input_dim}")
    extra = input_dim - old
    count = norm["count"]  # Brax's UInt64: {"hi", "lo"} 32-bit halves
    count = float(count["hi"]) * 2.0**32 + float(count["lo"]) if isinstance(count, dict) else float(count)
    gait = slice(POLICY_INPUT_DIM - POLICY_INPUT_STRUCTURE["gait"], POLICY_INPUT_DIM)
    share = np.array([g in gaits for g in GAITS], np.float32) / len(gaits)  # (4,) mean of each one-hot entry
    mean = np.concatenate([norm["mean"], np.zeros(extra, np.float32)])
    var = np.concatenate([norm["summed_variance"] / max(count, 1.0), np.full(extra, 0.5, np.float32)])
    mean[gait], var[gait] = share, np.maximum(share * (1.0 - share), 1e-2)
    norm.update(mean=mean, summed_variance=(var * count).astype(np.float32), std=np.sqrt(var).astype(np.float32))

    def widen(net: dict[str, Any]) -> dict[str, Any]:
        net = _copy_tree(net)
        first = net["params"]["hidden_0"]
        kernel = np.concatenate([np.asarray(first["kernel"]), np.zeros((extra, first["kernel"].shape[1]),
                                                                       np.float32)])
        kernel[gait] = 0.0
        first["kernel"] = kernel
        return net

    return {"normalizer": norm, "policy": widen(arrays["policy"]), "value": widen(arrays["value"])}


def _copy_tree(tree: Any) -> Any:
    """A copy of a nested dict of arrays (numpy copies of the leaves)."""
    return {k: _copy_tree(v) if isinstance(v, dict) else np.array(v) for k, v in tree.items()}


# --------------------------------------------------------------------------------------------------------------------
# Training


def make_env(config: PPOConfig):
    """The training env: ``envs.Go1Env`` with the default command ranges, ``config.gaits``, policy inputs and,
    if ``config.domain_randomization``, the default :class:`envs.randomization.DomainRandomization`."""
    from envs.brax_env import Go1Env
    from envs.randomization import DomainRandomization

    return Go1Env(command_ranges=config.command_ranges, gaits=config.gaits, reward_weights=config.reward_weights,
                  resample_command_steps=config.resample_command_steps,
                  gait_redraw_probability=config.gait_redraw_probability,
                  single_axis_probability=config.single_axis_probability, policy_inputs=True,
                  gait_clock=config.gait_clock,
                  domain_randomization=DomainRandomization() if config.domain_randomization else None)


def train(config: PPOConfig, workdir: str | os.PathLike, resume: bool = False,
          progress_fn: ProgressFn | None = None) -> str | None:
    """Trains (or continues) the PPO expert; writes checkpoints, metrics.jsonl and the plot under ``workdir``.

    Args:
      config: the run.
      workdir: output directory (created).
      resume: continue from the newest checkpoint in ``<workdir>/checkpoints`` (a fresh
        start when there is none); see the module docstring for what is restored.
      progress_fn: called as ``progress_fn(env_steps, metrics)`` after each evaluation.

    Returns:
      The newest checkpoint directory (``load_expert`` reads it), or None if nothing was trained.

    Raises:
      ValueError: resuming with a config that differs in a non-resumable field.
      CheckpointError: the newest checkpoint is unreadable (truncated, corrupt, other physics).
    """
    import functools

    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo_train

    workdir = os.path.abspath(os.fspath(workdir))
    ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
    os.makedirs(workdir, exist_ok=True)

    interval = config.eval_interval_steps
    done = 0
    restore_params = None
    log = MetricsLog(os.path.join(workdir, METRICS_FILE))
    latest = checkpoint.latest_checkpoint(ckpt_dir) if resume else None
    if latest is not None:
        arrays, meta = checkpoint.restore(latest)
        kind = checkpoint.kind_of_meta(meta, latest)
        if kind != EXPERT_KIND:
            raise checkpoint.CheckpointError(f"{latest}: not a PPO expert checkpoint (kind {kind!r})")
        checkpoint.check_resumable(PPOConfig.from_dict(meta["ppo_config"]), config, latest,
                                   PPOConfig.RESUMABLE_FIELDS)
        interval = int(meta["eval_interval_steps"])
        done = int(meta["step"])
        restore_params = _arrays_to_params(arrays, INPUT_DIMS[config.policy_inputs])
        log.truncate_after(done)
        print(f"resuming from {latest} at {done} env steps", file=sys.stderr)
    elif resume:
        print(f"no checkpoint in {ckpt_dir}: starting a new run", file=sys.stderr)
    else:
        if checkpoint.latest_checkpoint(ckpt_dir) is not None:
            raise ValueError(f"{ckpt_dir} already holds checkpoints: pass resume=True (--resume) or use a new workdir")
        log.truncate_after(-1)  # a fresh run: Brax logs step 0 itself
        if config.init_from is not None:
            arrays, meta = checkpoint.restore(config.init_from)
            if checkpoint.kind_of_meta(meta, config.init_from) != EXPERT_KIND:
                raise checkpoint.CheckpointError(f"{config.init_from}: not a PPO expert checkpoint")
            start = PPOConfig.from_dict(meta["ppo_config"])
            if (start.policy_hidden_layer_sizes, start.value_hidden_layer_sizes) != \
                    (config.policy_hidden_layer_sizes, config.value_hidden_layer_sizes):
                raise ValueError(f"init_from {config.init_from}: its networks ({start.policy_hidden_layer_sizes}, "
                                 f"{start.value_hidden_layer_sizes}) differ from this run's")
            dim = INPUT_DIMS[config.policy_inputs]
            restore_params = _arrays_to_params(widen_inputs(arrays, dim, config.gaits), dim)
            print(f"starting from {config.init_from}", file=sys.stderr)

    remaining = math.ceil(max(config.num_timesteps - done, 0) / interval)
    if remaining == 0:
        print(f"nothing to do: {done} >= num_timesteps {config.num_timesteps}", file=sys.stderr)
        return latest
    intervals_done = done // interval

    network_factory = functools.partial(
        ppo_networks.make_ppo_networks,
        policy_hidden_layer_sizes=config.policy_hidden_layer_sizes,
        value_hidden_layer_sizes=config.value_hidden_layer_sizes)

    last_params: dict[str, Any] = {}
    saved: list[str] = [latest] if latest is not None else []

    def policy_params_fn(step: int, make_policy, params) -> None:
        last_params["step"], last_params["params"] = step, params

    def brax_progress(step: int, metrics: dict[str, Any]) -> None:
        if step == 0 and latest is not None:
            return  # Brax's initial evaluation of the restored policy: already logged before the interruption
        env_steps = done + int(step)
        values = _rename(metrics)
        log.write(env_steps, values)
        plot_learning_curve(workdir)
        if step > 0 and last_params.get("step") == step:
            saved.append(checkpoint.save(ckpt_dir, env_steps, _params_to_arrays(last_params["params"]),
                                         _checkpoint_meta(config, interval, values), keep=config.keep_checkpoints))
        if progress_fn is not None:
            progress_fn(env_steps, values)

    ppo_train.train(
        environment=make_env(config),
        num_timesteps=remaining * interval,
        num_evals=remaining + 1,
        episode_length=config.episode_length,
        num_envs=config.num_envs,
        learning_rate=config.learning_rate,
        entropy_cost=config.entropy_cost,
        discounting=config.discounting,
        gae_lambda=config.gae_lambda,
        clipping_epsilon=config.clipping_epsilon,
        max_grad_norm=config.max_grad_norm,
        reward_scaling=config.reward_scaling,
        unroll_length=config.unroll_length,
        batch_size=config.batch_size,
        num_minibatches=config.num_minibatches,
        num_updates_per_batch=config.num_updates_per_batch,
        normalize_observations=True,
        # A strongly typed 0.0: Brax's default is a weakly typed Python float that training turns strong, so the
        # evaluation at step 0 and every later one would trace the whole env separately (~1 min on 2 CPU cores).
        normalize_observations_std_eps=np.float32(0.0),
        network_factory=network_factory,
        num_eval_envs=config.num_eval_envs,
        deterministic_eval=True,
        seed=config.seed + 10_007 * intervals_done,
        restore_params=restore_params,
        progress_fn=brax_progress,
        policy_params_fn=policy_params_fn,
    )
    return saved[-1] if saved else None


# --------------------------------------------------------------------------------------------------------------------
# Command line


@dataclasses.dataclass(frozen=True)
class Args:
    """``python -m dynaflow_policy.experts.ppo --workdir DIR [--resume]``; the other flags are PPOConfig."""

    workdir: str
    """Directory of checkpoints/, metrics.jsonl and learning_curve.png."""
    config: Annotated[PPOConfig, tyro.conf.arg(name="")] = dataclasses.field(default_factory=default_config)
    """The run (flags without a prefix: --num-timesteps, --num-envs, ...)."""
    resume: bool = False
    """Continue from the newest checkpoint in --workdir (normaliser, policy and value networks; see the docs)."""


def _print_progress(step: int, values: MetricsDict) -> None:
    terms = ", ".join(f"{k[len('reward/'):]} {v:.3g}" for k, v in values.items() if k.startswith("reward/"))
    print(f"[{step:>11,d} steps] eval reward {values.get('eval/episode_reward', float('nan')):.3f} "
          f"(std {values.get('eval/episode_reward_std', float('nan')):.3f}, "
          f"length {values.get('eval/avg_episode_length', float('nan')):.0f}), "
          f"train {values.get('train/sps', float('nan')):.0f} env steps/s | {terms}", flush=True)


def main(args: Args) -> None:
    """Enables the compilation cache and runs :func:`train`, printing each evaluation."""
    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    import jax

    print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}; eval every "
          f"{args.config.eval_interval_steps:,d} env steps", file=sys.stderr)
    path = train(args.config, args.workdir, resume=args.resume, progress_fn=_print_progress)
    print(f"checkpoint: {path}")


__all__ = ["PPOConfig", "default_config", "train", "load_expert", "PPOExpert", "plot_learning_curve"]

if __name__ == "__main__":
    main(tyro.cli(Args))
