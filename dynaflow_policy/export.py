"""Turns a training run into a shippable checkpoint: ``python -m dynaflow_policy.export --run DIR --out DIR``.

::

    <run>/checkpoints/<step>/   (training state: raw and EMA weights, Adam moments)
        ─► <out>/config.json, state.msgpack   EMA weights only, same checks on load
           <out>/metrics.jsonl                the run's log up to that step
           <out>/learning_curve.png           loss and held-out metrics vs step

Works for DynaFlow runs (``python -m dynaflow_policy.train``) and for the
state-flow baseline (``python -m dynaflow_policy.baselines.train``); the kind is
read from the checkpoint. The export is about a quarter of the training
checkpoint and cannot be resumed; keep the run directory for that.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tyro

from dynaflow_policy import checkpoint
from dynaflow_policy.baselines import train as baseline_train
from dynaflow_policy.train import export_policy

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "learning_curve.png"


def read_metrics(path: str, up_to_step: int | None = None) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (step <= ``up_to_step`` if given); [] if the file is missing."""
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if up_to_step is None or r["step"] <= up_to_step]


def plot_learning_curve(rows: list[dict], path: str, title: str) -> str:
    """Draws the training loss and every ``eval/*`` metric against the step (log y) into ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    train = [r for r in rows if "train/loss" in r]
    ax0.plot([r["step"] for r in train], [r["train/loss"] for r in train])
    ax0.set_title(f"{title}: training loss")
    names = sorted({k for r in rows for k in r if k.startswith("eval/")})
    for name in names:
        evals = [r for r in rows if name in r]
        ax1.plot([r["step"] for r in evals], [r[name] for r in evals], "o-", ms=3, label=name[len("eval/"):])
    ax1.set_title("held-out windows")
    if names:
        ax1.legend()
    for ax in (ax0, ax1):
        ax.set_xlabel("optimiser step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@dataclasses.dataclass
class Args:
    run: str
    """A run's work directory (its newest checkpoint), its ``checkpoints`` directory or one step directory."""
    out: str
    """Directory to write, e.g. ``checkpoints/dynaflow_go1_expert`` (replaced if it holds a checkpoint)."""


def main(args: Args) -> str:
    """Exports ``args.run`` to ``args.out``; prints and returns the written directory."""
    source = checkpoint.resolve(args.run)
    meta = checkpoint.read_meta(source)
    is_baseline = meta.get("model") == baseline_train.MODEL
    out = (baseline_train.export_policy if is_baseline else export_policy)(source, args.out)
    step = int(meta["step"])
    logs = [os.path.join(d, METRICS_FILE) for d in (args.run, os.path.dirname(os.path.dirname(source)))]
    rows = next((read_metrics(p, step) for p in logs if os.path.isfile(p)), [])
    if rows:
        with open(os.path.join(out, METRICS_FILE), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        plot_learning_curve(rows, os.path.join(out, PLOT_FILE),
                            "state flow + ID" if is_baseline else "DynaFlow")
    size = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    print(f"exported step {step} of {source} to {out} ({size / 2**20:.1f} MiB, "
          f"{len(rows)} metric rows, final {_last(rows)})")
    return out


def _last(rows: list[dict]) -> str:
    evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
    if not evals:
        return "no held-out evaluation"
    return ", ".join(f"{k} {v:.4g}" for k, v in evals[-1].items() if k.startswith("eval/") and np.isfinite(v))


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__.split("\n\n")[0]))
