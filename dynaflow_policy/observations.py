"""Checks of ``dynaflow/Go1-v0`` observations for every controller: one (44,) observation or a (N, 44) batch.

An observation is state (37) ++ command (3) ++ gait one-hot (4) (``envs.task.observation``).
A batch is rejected as a whole, naming its first bad row, so a controller that
checks first changes no per-environment state on bad input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from envs.physics import STATE_DIM
from envs.task import COMMAND_DIM, GAITS, OBS_DIM

GAIT_SLICE = slice(STATE_DIM + COMMAND_DIM, OBS_DIM)
"""Where the gait one-hot sits in an observation."""


def check_observation(obs) -> np.ndarray:
    """A (44,) observation or a (N, 44) batch as float32, checked row by row.

    Args:
      obs: (44,) or (N, 44) numbers, N >= 1.

    Returns:
      float32 array of the same shape.

    Raises:
      ValueError: another shape, a non-numeric dtype, a NaN or inf entry, or a gait
        block that is not a one-hot; for a batch the message names the row.
    """
    o = np.asarray(obs)
    if o.shape[-1:] != (OBS_DIM,) or o.ndim not in (1, 2) or (o.ndim == 2 and len(o) == 0):
        raise ValueError(f"obs must have shape ({OBS_DIM},) or (N, {OBS_DIM}) (state {STATE_DIM} ++ command "
                         f"{COMMAND_DIM} ++ gait one-hot {len(GAITS)}), got shape {o.shape}")
    if not np.issubdtype(o.dtype, np.floating) and not np.issubdtype(o.dtype, np.integer):
        raise ValueError(f"obs must be numeric, got dtype {o.dtype}")
    o = o.astype(np.float32)
    rows = o.reshape(-1, OBS_DIM)  # (N, 44)
    where = (lambda i: "obs") if o.ndim == 1 else (lambda i: f"obs row {i}")
    finite = np.isfinite(rows)
    bad = np.flatnonzero(~finite.all(axis=1))
    if bad.size:
        i = bad[0]
        raise ValueError(f"{where(i)} must be finite; entries {np.flatnonzero(~finite[i]).tolist()} are NaN or inf")
    onehot = rows[:, GAIT_SLICE]  # (N, 4)
    valid = np.all((onehot == 0) | (onehot == 1), axis=1) & (onehot.sum(axis=1) == 1)
    bad = np.flatnonzero(~valid)
    if bad.size:
        i = bad[0]
        raise ValueError(f"{where(i)}[{GAIT_SLICE.start}:] must be a gait one-hot over {GAITS}, got {onehot[i]}")
    return o


def check_trained_gaits(names: Iterable[str], trained: Sequence[str], controller: str) -> None:
    """Refuses gaits a controller was not trained on: it would otherwise run them from data it never saw.

    Args:
      names: gait names asked for (an override, or the gaits of a batch of observations).
      trained: the gaits of the controller's training data.
      controller: what to call it in the message ("expert", "DynaFlow controller", ...).

    Raises:
      ValueError: a name outside ``trained``; the message names ``trained`` and the gaits refused.
    """
    refused = sorted(set(names) - set(trained), key=GAITS.index)
    if refused:
        raise ValueError(f"this {controller} was trained on the gaits {tuple(trained)}, not on {refused}")
