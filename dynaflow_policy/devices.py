"""Devices on the host: the XLA host-device count, and copying device arrays back to numpy.

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


def set_host_device_count(count: int, keep_existing: bool = False) -> int:
    """Makes JAX's CPU backend start with ``count`` devices, by setting the flag in ``XLA_FLAGS``.

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
    flags = " ".join(pattern.sub("", flags).split() + [f"{HOST_DEVICE_FLAG}={count}"])
    os.environ["XLA_FLAGS"] = flags
    return count


def to_host(tree: Any) -> Any:
    """Numpy copy of a pytree of replicated (or single-device) arrays, from this process's first shard."""
    def fetch(x):
        return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)
    return jax.tree.map(fetch, tree)
