"""The run log of every trainer: ``metrics.jsonl`` and its learning-curve plot.

``<workdir>/metrics.jsonl`` holds one JSON object per line and logged step::

    {"step": int, "time": float, "<group>/<name>": float, ...}

- ``step``: the trainer's step counter (optimiser steps for DynaFlow and the
  state-flow baseline, env steps for the PPO expert).
- ``time``: when the line was written, in seconds since the Unix epoch
  (``time.time()``). Logs of PPO runs made before this module (e.g.
  ``checkpoints/ppo_go1_trot/metrics.jsonl``) hold seconds since the run started
  there instead; they read the same.
- the scalars: ``train/...`` (averaged over the logged interval), ``eval/...``
  (held-out evaluation), and for PPO ``reward/...`` and ``reward_std/...``.

Lines are appended, so a process killed mid-write can leave a last line cut
short: :func:`read_metrics` skips it. A resumed run first drops the lines after
its checkpoint's step (:meth:`MetricsLog.truncate_after`, an atomic rewrite), so
that steps are not logged twice.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Sequence

MetricsDict = dict[str, float]

ProgressFn = Callable[[int, MetricsDict], None]
"""progress_fn(step, metrics): a trainer's callback after each logged step and each evaluation (process 0)."""

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "learning_curve.png"


def read_metrics(path: str | os.PathLike, up_to_step: int | None = None) -> list[dict]:
    """The rows of a ``metrics.jsonl`` file, in file order; [] if the file is missing.

    Args:
      path: the file.
      up_to_step: keep only rows with ``step <= up_to_step``.

    Lines that are not a complete JSON object (a write cut short by a kill) are skipped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "step" in row and (up_to_step is None or row["step"] <= up_to_step):
                rows.append(row)
    return rows


def write_metrics(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Writes ``rows`` as a whole ``metrics.jsonl``, atomically (a temporary file renamed over ``path``)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MetricsLog:
    """Appends ``{"step", "time", **values}`` lines to one ``metrics.jsonl``.

    Args:
      path: the file (created on the first write), or None to write nothing
        (processes other than process 0 of a multi-host run).
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else os.fspath(path)

    def write(self, step: int, values: MetricsDict) -> None:
        """Appends one line; ``time`` is ``time.time()`` (seconds since the Unix epoch)."""
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": int(step), "time": time.time(), **values}) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drops the lines of steps after ``step`` (left by a run that died after its last checkpoint), and
        any line cut short; ``step = -1`` drops every line."""
        if self.path is not None and os.path.exists(self.path):
            write_metrics(self.path, read_metrics(self.path, up_to_step=step))


def plot_learning_curve(rows: Sequence[dict], path: str | os.PathLike, title: str, *,
                        left: Sequence[str] = ("train/loss",), right_prefix: str = "eval/",
                        left_scale: str = "log", right_scale: str = "log", x_label: str = "optimiser step") -> str:
    """Draws two panels against ``step`` into ``path`` (PNG, written atomically); returns ``path``.

    Args:
      rows: rows of :func:`read_metrics`.
      path: the image file.
      title: run name, in the left panel's title.
      left: keys drawn in the left panel, each with a +-std band where ``<key>_std`` is logged.
      right_prefix: every key starting with it is drawn in the right panel.
      left_scale, right_scale: matplotlib y scales (``"log"``, ``"linear"``, ``"symlog"``).
      x_label: what ``step`` counts.

    DynaFlow and the baseline use the defaults (training loss; held-out metrics);
    the PPO expert draws ``eval/episode_reward`` and the ``reward/`` terms.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key in left:
        sel = [r for r in rows if key in r]
        steps, values = np.array([r["step"] for r in sel], float), np.array([r[key] for r in sel], float)
        ax0.plot(steps, values, "o-" if len(sel) < 50 else "-", ms=3, label=key)
        if any(f"{key}_std" in r for r in sel):
            std = np.array([r.get(f"{key}_std", 0.0) for r in sel], float)
            ax0.fill_between(steps, values - std, values + std, alpha=0.2)
    ax0.set_title(f"{title}: {', '.join(left)}")
    names = sorted({k for r in rows for k in r if k.startswith(right_prefix)})
    for name in names:
        sel = [r for r in rows if name in r]
        ax1.plot([r["step"] for r in sel], [r[name] for r in sel], "o-", ms=3, label=name[len(right_prefix):])
    ax1.set_title(f"{right_prefix}*")
    if names:
        ax1.legend(fontsize=7, ncol=2 if len(names) > 6 else 1)
    for ax, scale in ((ax0, left_scale), (ax1, right_scale)):
        ax.set_xlabel(x_label)
        ax.set_yscale(scale, **({"linthresh": 1.0} if scale == "symlog" else {}))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.fspath(path)
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
