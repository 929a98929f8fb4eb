"""JAX's persistent compilation cache, for tests and scripts (never enabled on import).

Compiling an MJX control step takes ~10 s on a 2-core CPU and its gradient
~40-100 s; the cache makes every later process load them in about a second.
"""

from __future__ import annotations

import os

import jax

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "dynaflow_policy", "jax")


def enable_compilation_cache(path: str | None = None) -> str:
    """Turns on the cache at ``path`` ($DYNAFLOW_JAX_CACHE or ~/.cache/...); returns the path."""
    path = path or os.environ.get("DYNAFLOW_JAX_CACHE", DEFAULT_DIR)
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
