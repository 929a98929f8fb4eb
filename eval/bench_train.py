"""Training throughput: the full training step beside the bare rollout gradient, measured in the same run.

    python eval/bench_train.py                   # DiT small, B = 64, H = 16, all CPU cores
    python eval/bench_train.py --devices 1       # one XLA device

Full step: what ``train_and_evaluate`` does per step. The host gathers a batch
(``WindowSampler.batch``) and places it on the devices (``shard_batch``); the
jitted, state-donating ``train_step`` moves it into the heading frame,
normalises it, runs the DiT, the rollout and the backward pass through both,
then clips, applies AdamW and updates the EMA. Steps are dispatched back to
back as in the training loop, so host work overlaps device work.

Bare rollout gradient: ``jax.grad`` of ``mean(envs.rollout(x0, U)[..., 2])``
with respect to U, at the same B, H and sharding (as ``eval/bench_physics.py``).
The target is full / bare <= 1.3: the physics must dominate the step, not the
network or the data pipeline. The network alone (DiT forward and backward, no
rollout) is timed too, to show where the rest goes.

On CPU the batch is split over ``--devices`` XLA host devices, one per core by
default, exactly as the trainer does (``dynaflow_policy.devices.set_host_device_count``,
``dynaflow_policy.train.make_mesh``).
Data: kinematic gait trajectories (generated in memory; the physics cost does
not depend on which states are fed in).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Literal

import tyro

from dynaflow_policy.devices import set_host_device_count


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    batch_size: int = 64
    """Global batch B."""
    horizon: int = 16
    """Control steps H per window."""
    model: Literal["small", "medium", "large"] = "small"
    """DiT preset."""
    devices: int = os.cpu_count() or 1
    """XLA host devices to split the batch over on CPU (one per core is fastest)."""
    repeats: int = 10
    """Timed calls per measurement (after two warm-up calls)."""
    trajectories: int = 32
    """Trajectories (of 4 s) in the in-memory dataset."""


def main(cfg: BenchConfig) -> None:
    set_host_device_count(cfg.devices)
    import functools
    import resource
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    import envs
    from dynaflow_policy import train
    from dynaflow_policy.configs import TrainConfig
    from dynaflow_policy.data.kinematic import generate_kinematic_dataset
    from dynaflow_policy.data.pool import WindowPool, WindowSampler, fit_normalizer, prepare_batch
    from dynaflow_policy.data.windows import WindowSet
    from dynaflow_policy.devices import to_host
    from dynaflow_policy.model import DiT1d, count_params
    from dynaflow_policy.train_state import init_train_state
    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    B, H = cfg.batch_size, cfg.horizon
    config = TrainConfig(dataset=("<in-memory kinematic>",), horizon=H, batch_size=B, model=cfg.model)
    mesh = train.make_mesh()
    pool = WindowPool([WindowSet(generate_kinematic_dataset(cfg.trajectories, 4.0, seed=0), H)])
    sampler = WindowSampler(pool, B, seed=0)
    normalizer = fit_normalizer(pool, config)
    host_state = to_host(jax.jit(functools.partial(init_train_state, config))())
    n_params = count_params(host_state.params)

    def seconds_per_call(fn, *args):
        for _ in range(2):
            jax.block_until_ready(fn(*args))
        t0 = time.perf_counter()
        for _ in range(cfg.repeats):
            out = fn(*args)
        jax.block_until_ready(out)
        return (time.perf_counter() - t0) / cfg.repeats

    def buffers_gb(jitted, *args):
        mem = jitted.lower(*args).compile().memory_analysis()
        return (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 1e9

    print(f"device: {jax.devices()[0].platform} x{jax.device_count()}, jax {jax.__version__}, "
          f"DiT {cfg.model} ({n_params / 1e6:.2f}M parameters), B={B}, H={H}", flush=True)

    # Bare rollout gradient, same batch sharding.
    batch0 = train.shard_batch(sampler.batch(0), mesh)
    x0 = jax.jit(lambda b: prepare_batch(b, config.flow)[0][:, 0])(batch0)  # (B, 37) heading frame
    U = train.shard_batch({"U": 0.3 * np.random.default_rng(0).standard_normal((B, H, 12)).astype(np.float32)},
                          mesh)["U"]
    bare = jax.jit(jax.grad(lambda U, x0: jnp.mean(envs.rollout(x0, U)[..., 2])))
    t_bare = seconds_per_call(bare, U, x0)
    gb_bare = buffers_gb(bare, U, x0)
    print(f"bare rollout gradient  {1e3 * t_bare:8.1f} ms/step  {B / t_bare:7.1f} windows/s  "
          f"XLA buffers {gb_bare:.3f} GB per device", flush=True)

    # Network alone: DiT forward + backward of a dummy loss on the same batch.
    norm = train.replicate(normalizer, mesh)
    state = train.replicate(host_state, mesh)

    def net_loss(params, batch):
        x1, cond = prepare_batch(batch, config.flow)
        t = jnp.full((B,), 0.5)
        return jnp.mean(DiT1d(config.dit_config).apply(params, normalizer.normalize(x1), t, cond) ** 2)

    net = jax.jit(jax.grad(net_loss))
    t_net = seconds_per_call(net, state.params, batch0)

    # Full step, dispatched back to back with the host pipeline as in train_and_evaluate.
    step_fn = train.jit_train_step(config, mesh)
    gb_full = buffers_gb(step_fn, state, batch0, norm)
    for k in range(2):
        state, m = step_fn(state, train.shard_batch(sampler.batch(k), mesh), norm)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for k in range(2, 2 + cfg.repeats):
        state, m = step_fn(state, train.shard_batch(sampler.batch(k), mesh), norm)
    jax.block_until_ready(m)
    t_full = (time.perf_counter() - t0) / cfg.repeats
    assert np.isfinite(float(to_host(m["train/loss"])))

    t_host = time.perf_counter()
    for k in range(cfg.repeats):
        train.shard_batch(sampler.batch(100 + k), mesh)
    t_host = (time.perf_counter() - t_host) / cfg.repeats

    print(f"full training step     {1e3 * t_full:8.1f} ms/step  {B / t_full:7.1f} windows/s  "
          f"XLA buffers {gb_full:.3f} GB per device", flush=True)
    print(f"  of which alone: DiT fwd+bwd {1e3 * t_net:.1f} ms, host batch gather + device put "
          f"{1e3 * t_host:.1f} ms")
    print(f"ratio full / bare: {t_full / t_bare:.2f} (target <= 1.3)")
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        print(f"peak device memory (device 0): {stats['peak_bytes_in_use'] / 1e9:.2f} GB")
    print(f"peak process memory (max RSS, all of the above): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    sys.exit(main(tyro.cli(BenchConfig)))
