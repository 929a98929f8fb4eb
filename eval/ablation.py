"""The ablation table: controllers (checkpoints and sampler settings) measured on the same held-out data.

    python eval/ablation.py --variant "shipped=checkpoints/dynaflow_go1_expert" \\
        "N4=checkpoints/dynaflow_go1_expert:ode_steps=4"

Each variant is ``NAME=PATH[:key=value,...]`` (NAME without "="); the keys are
:func:`dynaflow_policy.load_policy` overrides (``ode_steps``, ``execute_steps``,
``ensemble``, ...). The columns are those of
:mod:`dynaflow_policy.benchmark.ablation`. Writes ``ablation.md`` and
``ablation.json`` under ``--out`` and prints the table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import tyro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Args:
    variant: tuple[str, ...]
    """``NAME=PATH[:key=value,...]`` each, space-separated after one ``--variant``; a DynaFlow checkpoint
    (exported, a step directory or a work directory) and :func:`dynaflow_policy.load_policy` overrides."""
    data: str = os.path.join(REPO, "data", "go1_expert_heldout_small.npz")
    """Held-out demonstrations (made with a seed no run trained on)."""
    windows: int = 128
    """Held-out windows of constant command for TRE and action RMSE."""
    episodes: int = 5
    """Closed-loop episodes per command and sweep scenario."""
    seconds: float = 10.0
    """Closed-loop episode length (s)."""
    open_loop_seconds: float = 5.0
    """Length of the chained plans executed without feedback (s)."""
    open_loop_starts: int = 8
    """Held-out starts of the open-loop section."""
    seed: int = 0
    """Seed of the window draw, the sampling noise and the env resets."""
    out: str = os.path.join(REPO, "results", "ablation")
    """Output directory."""


def main(args: Args) -> str:
    from dynaflow_policy import checkpoint, load_policy
    from dynaflow_policy.benchmark.ablation import (ablation_row, constant_command_windows, markdown_rows,
                                                    training_hours)
    from dynaflow_policy.benchmark.methods import dynaflow_generator
    from dynaflow_policy.loading import parse_variant
    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    variants = [parse_variant(v) for v in args.variant]
    for name, path, _ in variants:
        if not os.path.exists(path):
            raise FileNotFoundError(f"--variant {name}: {path} does not exist")
    rows, windows = {}, {}  # windows: horizon -> (batch, normaliser), read once per horizon
    for name, path, overrides in variants:
        t0 = time.perf_counter()
        policy = load_policy(path, seed=args.seed, **overrides)
        if policy.horizon not in windows:
            windows[policy.horizon] = constant_command_windows(args.data, policy.horizon, args.windows, args.seed)
        batch, normalizer = windows[policy.horizon]
        rows[name] = ablation_row(policy, dynaflow_generator(policy), batch, normalizer, args.episodes, args.seconds,
                                  args.open_loop_seconds, args.open_loop_starts, args.seed)
        run_dir = path.split(os.sep + "checkpoints")[0]
        step = int(checkpoint.read_meta(checkpoint.resolve(path))["step"])
        rows[name].update(training_hours=training_hours(run_dir, step), step=step, path=path, overrides=overrides)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    table = markdown_rows(rows)
    header = (f"Held-out data `{os.path.relpath(args.data, REPO)}` ({args.windows} windows of constant command); "
              f"closed loop {args.episodes} episodes x {args.seconds:g} s per command and sweep scenario; open loop "
              f"{args.open_loop_starts} starts x {args.open_loop_seconds:g} s.\n\n")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write(header + table + "\n")
    with open(os.path.join(args.out, "ablation.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(header + table)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
