"""How DynaFlow controllers answer a command step: planned actions against the demonstrator's, offline.

    python eval/step_response.py --controller "shipped=checkpoints/dynaflow_go1_expert" \\
        "one-step=checkpoints/dynaflow_go1_expert:ode_steps=1" --data data/expert/steps.npz

Each controller is ``NAME=PATH[:key=value,...]`` (a DynaFlow checkpoint and :func:`dynaflow_policy.load_policy`
overrides). ``--data``: demonstrations whose command jumps, with their expert actions
(``python -m dynaflow_policy.data.collect --preset expert --out data/expert`` writes ``steps.npz``). Windows
at command steps and the same ones ``--hold-offset`` steps later, in the trajectories that no controller
trained on (:mod:`dynaflow_policy.benchmark.step_response`).
Writes ``step_response.md`` and ``.json`` under ``--out`` and prints the table.
"""

from __future__ import annotations

import dataclasses
import json
import os

import tyro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Args:
    controller: tuple[str, ...]
    """``NAME=PATH[:key=value,...]`` each, space-separated after one ``--controller``: DynaFlow checkpoints."""
    data: str = os.path.join(REPO, "data", "expert", "steps.npz")
    """Demonstrations whose command jumps, with expert actions."""
    windows: int = 128
    """Windows of each kind, drawn at random (all if fewer)."""
    hold_offset: int = 40
    """Control steps after a command step at which the "command held" windows start."""
    seed: int = 0
    """Seed of the window draw and the sampling noise."""
    out: str = os.path.join(REPO, "results", "step_response")
    """Output directory."""

    def __post_init__(self):
        if not self.controller:
            raise ValueError("--controller: give at least one NAME=PATH")
        for name in ("windows", "hold_offset"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an int >= 1, got {value!r}")


def main(args: Args) -> str:
    import numpy as np

    from dynaflow_policy import load_policy
    from dynaflow_policy.benchmark.step_response import markdown, plan_rmse, step_windows, untrained_trajectories
    from dynaflow_policy.checkpoint import checkpoint_kind
    from dynaflow_policy.data.schema import load_dataset
    from dynaflow_policy.data.split import training_split
    from dynaflow_policy.loading import parse_variant
    from envs.compilation_cache import enable_compilation_cache

    controllers = [parse_variant(c, "--controller") for c in args.controller]
    names = [name for name, _, _ in controllers]
    if len(set(names)) < len(names):
        raise ValueError(f"--controller: each NAME once, got {' '.join(names)}")
    for name, path, _ in controllers:
        if not os.path.exists(path):
            raise FileNotFoundError(f"--controller {name}: {path} does not exist")
        kind = checkpoint_kind(path)
        if kind != "dynaflow":
            raise ValueError(f"--controller {name}: {path} is a {kind!r} checkpoint; this "
                             "measures the action plans of DynaFlow checkpoints")
    if not os.path.exists(args.data):
        raise FileNotFoundError(f"--data {args.data} does not exist (python -m dynaflow_policy.data.collect "
                                "--preset expert --out data/expert writes steps.npz)")
    splits = [training_split(path) for _, path, _ in controllers]
    horizons = {sp.horizon for sp in splits}
    if len(horizons) > 1:
        raise ValueError(f"--controller: the checkpoints plan over different horizons {sorted(horizons)}; "
                         "compare checkpoints of one horizon")
    horizon = horizons.pop()
    dataset = load_dataset(args.data, horizon=horizon)
    trajectories, rule = untrained_trajectories(dataset, args.data, splits)
    try:
        found = step_windows(dataset, horizon, args.hold_offset, trajectories)
    except ValueError as e:
        raise ValueError(f"--hold-offset {args.hold_offset}, --data {args.data}: {e}") from None
    pick = np.sort(np.random.default_rng(args.seed).choice(len(found.at_step), min(args.windows, len(found.at_step)),
                                                           replace=False))
    kinds = {"at a command step": found.at_step[pick],
             f"command held ({args.hold_offset} steps later)": found.held[pick]}
    enable_compilation_cache()
    policies = {name: load_policy(path, **overrides) for name, path, overrides in controllers}
    results = {name: {k: plan_rmse(p, dataset, starts, args.seed) for k, starts in kinds.items()}
               for name, p in policies.items()}
    table = markdown(results, {k: len(v) for k, v in kinds.items()}, {n: p.execute_steps for n, p in policies.items()})
    os.makedirs(args.out, exist_ok=True)
    header = (f"# Answers to command steps\n\n`{args.data}`: {len(pick)} of {len(found.at_step)} command steps in "
              f"{rule}, and the same windows {args.hold_offset} steps later; RMSE of the planned actions against "
              "the demonstrator's (executed actions: the first `execute_steps`).\n\n")
    with open(os.path.join(args.out, "step_response.md"), "w") as f:
        f.write(header + table + "\n")
    with open(os.path.join(args.out, "step_response.json"), "w") as f:
        json.dump({"data": args.data, "trajectories": rule,
                   "controllers": {n: {"path": p, **o} for n, p, o in controllers},
                   "rmse_per_plan_step": {n: {k: v.tolist() for k, v in r.items()} for n, r in results.items()},
                   "windows": {k: len(v) for k, v in kinds.items()}}, f, indent=1)
    print(header + table)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
