"""Physics throughput: native MuJoCo floor, MJX forward rollout, MJX rollout gradient.

    python eval/bench_physics.py                 # B in {64, 256}, H = 16, all CPU cores
    python eval/bench_physics.py --devices 1     # one XLA device

On CPU, XLA runs most fused kernels on one thread, so the batch is split over
``--devices`` host devices (``dynaflow_policy.devices.set_host_device_count``), one
per core by default: the same data-parallel sharding the trainer uses. The
floor is native MuJoCo stepping the same model on one thread, in the same run.

A "window" is one (x0, U) pair of H control steps, i.e. H * n_substeps physics
steps; gradient windows/s times the gradient of a scalar loss of all H+1
states with respect to all H actions.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import tyro

from dynaflow_policy.devices import set_host_device_count


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    batch_sizes: tuple[int, ...] = (64, 256)
    """Batch sizes B to measure."""
    horizon: int = 16
    """Control steps H per window."""
    devices: int = os.cpu_count() or 1
    """XLA host devices to split the batch over (one per core is fastest)."""
    repeats: int = 5
    """Timed calls per measurement (after one warm-up call)."""


def main(cfg: BenchConfig) -> None:
    set_host_device_count(cfg.devices)
    import resource
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import envs
    from envs.compilation_cache import enable_compilation_cache
    from envs.native import NativeGo1
    from envs.physics import PHYSICS

    enable_compilation_cache()
    H = cfg.horizon

    def timed(fn, *args):
        jax.block_until_ready(fn(*args))
        t0 = time.perf_counter()
        for _ in range(cfg.repeats):
            jax.block_until_ready(fn(*args))
        return (time.perf_counter() - t0) / cfg.repeats

    sim = NativeGo1()
    rng = np.random.default_rng(0)
    U_native = 0.3 * rng.standard_normal((2000, 12))
    t0 = time.perf_counter()
    for u in U_native:
        sim.step(u)
    native_steps = len(U_native) / (time.perf_counter() - t0)
    print(f"device: {jax.devices()[0].platform} x{jax.device_count()}, "
          f"jax {jax.__version__}, H={H}, substeps/step={PHYSICS.n_substeps}")
    print(f"floor  native MuJoCo, 1 thread: {native_steps:,.0f} control steps/s "
          f"= {native_steps / H:,.1f} windows/s")

    mesh = Mesh(np.array(jax.devices()), ("batch",))
    batch = NamedSharding(mesh, PartitionSpec("batch"))

    def loss(U, x0):
        return jnp.mean(envs.rollout(x0, U)[..., 2])

    grad = jax.jit(jax.grad(loss))
    rows = []
    for B in cfg.batch_sizes:
        x0 = jax.device_put(jnp.tile(jnp.asarray(PHYSICS.home_state), (B, 1)), batch)
        U = jax.device_put(0.3 * jax.random.normal(jax.random.PRNGKey(0), (B, H, 12)), batch)
        t_fwd = timed(envs.rollout, x0, U)
        t_grad = timed(grad, U, x0)
        mem = grad.lower(U, x0).compile().memory_analysis()
        temp_gb = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 1e9
        rows.append((B, B / t_fwd, B / t_grad, t_grad / t_fwd, temp_gb))
        print(f"B={B:4d}  MJX forward {B / t_fwd:8.1f} windows/s ({B * H / t_fwd / native_steps:5.2f}x floor)  "
              f"gradient {B / t_grad:7.1f} windows/s ({B * H / t_grad / native_steps:5.2f}x floor)  "
              f"grad/fwd {t_grad / t_fwd:4.2f}  XLA buffers {temp_gb:.2f} GB per device", flush=True)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak process memory (max RSS, all of the above): {peak_rss:.2f} GB")


if __name__ == "__main__":
    sys.exit(main(tyro.cli(BenchConfig)))
