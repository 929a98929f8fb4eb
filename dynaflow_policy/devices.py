"""Devices: the XLA host-device count, joining a multi-process run, and copying device arrays back to numpy.

On CPU, XLA runs most fused kernels on one thread, so the trainer and the
benchmarks split a batch over several XLA host devices (one per core). Their
number is read from ``XLA_FLAGS`` once, when JAX starts its CPU backend:
:func:`set_host_device_count` must run before the first JAX computation (a
later call has no effect; importing JAX does not start a backend).
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np

HOST_DEVICE_FLAG = "--xla_force_host_platform_device_count"
COLLECTIVE_TIMEOUT_FLAGS = {"--xla_cpu_collective_call_warn_stuck_timeout_seconds": 60,
                            "--xla_cpu_collective_call_terminate_timeout_seconds": 1800}
"""XLA:CPU waits this long (s) for every host device to reach an all-reduce before it warns, and before it
aborts the process. The host devices share the cores with each other and with anything else running, so
one device can reach the gradient all-reduce long after the other when the machine is busy; XLA's
defaults (seconds, not minutes) then killed long training runs. Set with more than one host device,
unless ``XLA_FLAGS`` already sets them."""


def set_host_device_count(count: int, keep_existing: bool = False) -> int:
    """Makes JAX's CPU backend start with ``count`` devices, by setting the flag in ``XLA_FLAGS``
    (with more than one, also the collective timeouts of :data:`COLLECTIVE_TIMEOUT_FLAGS`).

    Args:
      count: number of XLA host devices, >= 1.
      keep_existing: leave a count already set in ``XLA_FLAGS`` (e.g. by the user) as it is.

    Returns:
      The count in ``XLA_FLAGS`` afterwards.

    Raises:
      ValueError: ``count`` is not a positive int.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"host device count must be a positive int, got {count!r}")
    flags = os.environ.get("XLA_FLAGS", "")
    pattern = re.compile(rf"{HOST_DEVICE_FLAG}=(\d+)")
    found = pattern.findall(flags)
    if found and keep_existing:
        return int(found[-1])
    extra = [f"{HOST_DEVICE_FLAG}={count}"]
    if count > 1:
        extra += [f"{flag}={value}" for flag, value in COLLECTIVE_TIMEOUT_FLAGS.items() if flag + "=" not in flags]
    os.environ["XLA_FLAGS"] = " ".join(pattern.sub("", flags).split() + extra)
    return count


def initialize_distributed(coordinator: str, num_processes: int | None = None, process_id: int | None = None) -> None:
    """Joins this process to a multi-process JAX run (``jax.distributed.initialize``); call before any computation.

    Every process runs the same program; the global device mesh then spans all of them. On CPU the
    processes exchange gradients through Gloo (TCP), so several processes on one machine, or CPU
    machines on a network, train as one.

    Args:
      coordinator: ``HOST:PORT`` of process 0's coordination service (every process passes the same),
        or ``"auto"`` to let JAX read a cluster environment (SLURM, Open MPI, Cloud TPU).
      num_processes: the number of processes (required with an address).
      process_id: this process's index in [0, num_processes) (required with an address).

    Raises:
      ValueError: an address without both counts, or counts out of range (naming the option).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator == "auto":
        jax.distributed.initialize()
        return
    if not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"--num-processes must be a positive int with --coordinator {coordinator}, "
                         f"got {num_processes!r}")
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must be an int in [0, {num_processes}) with --coordinator {coordinator}, "
                         f"got {process_id!r}")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def to_host(tree: Any) -> Any:
    """Numpy copy of a pytree of replicated (or single-device) arrays, from this process's first shard."""
    def fetch(x):
        return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)
    return jax.tree.map(fetch, tree)
