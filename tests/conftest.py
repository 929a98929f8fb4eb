"""Shared pytest setup: the persistent JAX compilation cache for every test process."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from envs.compilation_cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
