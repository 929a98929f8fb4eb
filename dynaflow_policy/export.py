"""Turns a training run into a shippable checkpoint: ``python -m dynaflow_policy.export --run DIR --out DIR``.

::

    <run>/checkpoints/<step>/   (training state: raw and EMA weights, Adam moments)
        ─► <out>/config.json, state.msgpack   EMA weights only, same checks on load, and the
                                              controller defaults {"policy": {"execute_steps", "ode_steps"}}
           <out>/metrics.jsonl                the run's log up to that step
           <out>/learning_curve.png           loss and held-out metrics vs step

Works for DynaFlow runs (``python -m dynaflow_policy.train``) and for the
state-flow baseline (``python -m dynaflow_policy.baselines.train``); the kind is
read from the checkpoint (``dynaflow_policy.checkpoint.checkpoint_kind``). The
export is about a quarter of the training checkpoint and cannot be resumed;
keep the run directory for that.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tyro

from dynaflow_policy import checkpoint, run_log, train_state
from dynaflow_policy.baselines import train as baseline_train

EXPORTERS = {"dynaflow": (train_state.export_policy, "DynaFlow"),
             "state_flow": (baseline_train.export_policy, "state flow + ID")}
"""Checkpoint kind -> (export function, learning-curve title). PPO experts ship their checkpoint as it is."""


@dataclasses.dataclass
class Args:
    run: str
    """A run's work directory (its newest checkpoint), its ``checkpoints`` directory or one step directory."""
    out: str
    """Directory to write, e.g. ``checkpoints/dynaflow_go1_expert`` (replaced if it holds a checkpoint)."""
    execute_steps: int | None = None
    """Default actions a controller executes from each plan, 1..H, stored with the export (default 4)."""
    ode_steps: int | None = None
    """Default Euler steps per plan, >= 1, stored with the export (default: the model's flow config)."""
    ensemble: int | None = None
    """DynaFlow only: default number of overlapping plans averaged per action, stored with the export
    (default: none stored, no ensembling)."""


def main(args: Args) -> str:
    """Exports ``args.run`` to ``args.out``; prints and returns the written directory.

    Raises:
      SystemExit: a PPO checkpoint, ``--execute-steps`` / ``--ode-steps`` / ``--ensemble`` out of range, or
        ``--ensemble`` for a state-flow run (nothing is written).
      dynaflow_policy.checkpoint.CheckpointError: no checkpoint at ``args.run``, or an unknown kind.
    """
    source = checkpoint.resolve(args.run)
    kind = checkpoint.checkpoint_kind(source)
    if kind not in EXPORTERS:
        raise SystemExit(f"error: {source} is a {kind!r} checkpoint; export reads {sorted(EXPORTERS)} training runs "
                         "(a PPO expert's checkpoint directory is shipped as it is)")
    export, title = EXPORTERS[kind]
    if args.ensemble is not None and kind != "dynaflow":
        raise SystemExit(f"error: --ensemble applies to DynaFlow checkpoints; {source} is a {kind!r} checkpoint")
    extra = {} if args.ensemble is None else {"ensemble": args.ensemble}
    try:
        out = export(source, args.out, execute_steps=args.execute_steps, ode_steps=args.ode_steps, **extra)
    except checkpoint.CheckpointError:
        raise
    except ValueError as e:  # --execute-steps or --ode-steps out of range
        raise SystemExit(f"error: {e}") from None
    step = int(checkpoint.read_meta(out)["step"])
    logs = [os.path.join(d, run_log.METRICS_FILE) for d in (args.run, os.path.dirname(os.path.dirname(source)))]
    rows = next((run_log.read_metrics(p, step) for p in logs if os.path.isfile(p)), [])
    if rows:
        run_log.write_metrics(os.path.join(out, run_log.METRICS_FILE), rows)
        run_log.plot_learning_curve(rows, os.path.join(out, run_log.PLOT_FILE), title)
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
