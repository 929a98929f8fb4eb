"""Imports ``mujoco.mjx`` without the two lines its optional Warp backend prints.

On its first import MJX imports ``mujoco.mjx.warp``, which tries ``import warp``
and ``import mujoco_warp`` and, when they are missing, ``print``s
``Failed to import warp: ...`` and ``Failed to import mujoco_warp: ...`` to
stdout (mujoco 3.17, ``mujoco/mjx/warp/__init__.py``). The print is
unconditional: no environment variable, logger or warning filter turns it off.
We run MJX's JAX implementation only (``impl="jax"``), so a missing Warp is
expected and the lines say nothing. :func:`import_mjx` captures stdout during
that one import and writes back every other line.
"""

from __future__ import annotations

import contextlib
import io
import sys

WARP_PROBE_LINES: tuple[str, ...] = ("Failed to import warp:", "Failed to import mujoco_warp:")
"""Starts of the lines ``mujoco.mjx.warp`` prints when Warp is not installed."""


def import_mjx() -> None:
    """Imports ``mujoco.mjx`` (once per process), dropping only the Warp probe lines from stdout."""
    if "mujoco.mjx" in sys.modules:
        return
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        import mujoco.mjx  # noqa: F401
    for line in captured.getvalue().splitlines(keepends=True):
        if not line.startswith(WARP_PROBE_LINES):
            sys.stdout.write(line)
