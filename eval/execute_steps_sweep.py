"""How many planned actions to execute before replanning: a closed-loop sweep over ``execute_steps``.

    python eval/execute_steps_sweep.py --checkpoint checkpoints/dynaflow_go1_expert

For each k in ``--values`` it runs the closed-loop evaluation of
:mod:`dynaflow_policy.closed_loop` (the same commands and seeds for every k)
with ``load_policy(checkpoint, execute_steps=k)`` and reports, summed or averaged over
the commands: falls per minute, survival, vx RMSE after the first second, mean
power, and the mean wall time of ``act()`` (planning cost spread over the k
steps). It ranks the values by falls per minute, then vx RMSE, and names the
best; the default stored with an export (``python -m dynaflow_policy.export
--execute-steps``) comes from this ranking. Writes
``sweep.md`` and ``sweep.json`` under ``--out``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import numpy as np
import tyro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Args:
    checkpoint: str = os.path.join(REPO, "checkpoints", "dynaflow_go1_expert")
    """DynaFlow checkpoint (an exported one, a run's work directory or a step directory)."""
    values: tuple[int, ...] = (1, 2, 4, 8)
    """execute_steps values to compare."""
    episodes: int = 5
    """Episodes per command and value."""
    seconds: float = 10.0
    """Episode length (s)."""
    seed: int = 0
    """First reset seed (episodes use seed .. seed + episodes - 1 for every value)."""
    ode_steps: int | None = None
    """ODE steps per plan (default: the checkpoint's)."""
    out: str = "results/execute_steps"
    """Directory for sweep.md and sweep.json."""


class _Timed:
    """Wraps a controller and accumulates the wall time of its ``act`` calls."""

    def __init__(self, controller):
        self.controller, self.seconds, self.calls = controller, 0.0, 0

    def reset(self) -> None:
        self.controller.reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        action = self.controller.act(obs)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return action


def summarise(results: dict, act_ms: float) -> dict[str, float]:
    """Aggregates per-command :class:`CommandResult` s of one value: sums falls, averages the rest."""
    rows = list(results.values())
    minutes = sum(r.survival_seconds * r.episodes for r in rows) / 60.0
    falls = sum(r.falls_per_episode * r.episodes for r in rows)
    return {"falls_per_minute": falls / minutes, "falls": falls,
            "survival_seconds": float(np.mean([r.survival_seconds for r in rows])),
            "vx_rmse": float(np.mean([r.vx_rmse for r in rows])),
            "yaw_rate_rmse": float(np.mean([r.yaw_rate_rmse for r in rows])),
            "mean_power": float(np.mean([r.mean_power for r in rows])), "act_ms": act_ms}


def main(args: Args) -> int:
    """Runs the sweep, prints and writes the table; returns the best value."""
    from dynaflow_policy import checkpoint, load_policy
    from dynaflow_policy.closed_loop import EXPERT_COMMANDS, evaluate

    summary = {}
    t_start = time.perf_counter()
    for k in args.values:
        ode = {} if args.ode_steps is None else {"ode_steps": args.ode_steps}
        policy = _Timed(load_policy(args.checkpoint, execute_steps=k, **ode))
        results = evaluate(policy, EXPERT_COMMANDS, episodes=args.episodes, seconds=args.seconds, seed=args.seed)
        summary[k] = summarise(results, 1e3 * policy.seconds / max(policy.calls, 1))
        print(f"execute_steps {k}: {summary[k]}", file=sys.stderr)
    best = min(summary, key=lambda k: (summary[k]["falls_per_minute"], summary[k]["vx_rmse"]))
    step = checkpoint.read_meta(checkpoint.resolve(args.checkpoint))["step"]
    lines = [f"`{os.path.relpath(args.checkpoint, REPO)}` (training step {step}), {args.episodes} episodes x "
             f"{args.seconds:g} s per command ({', '.join(EXPERT_COMMANDS)}), "
             f"seeds {args.seed}..{args.seed + args.episodes - 1}, ODE steps {args.ode_steps or 'of the checkpoint'}; "
             f"{time.perf_counter() - t_start:.0f} s.\n",
             "| execute_steps | falls | falls / min | survival (s) | vx RMSE (m/s) | yaw-rate RMSE (rad/s) "
             "| power (W) | act() mean (ms) |", "|---|---|---|---|---|---|---|---|"]
    for k, s in summary.items():
        lines.append(f"| {k}{' (best)' if k == best else ''} | {s['falls']:.0f} | {s['falls_per_minute']:.2f} | "
                     f"{s['survival_seconds']:.1f} | {s['vx_rmse']:.3f} | {s['yaw_rate_rmse']:.3f} | "
                     f"{s['mean_power']:.0f} | {s['act_ms']:.2f} |")
    table = "\n".join(lines)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sweep.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump({"best": best, "values": {str(k): v for k, v in summary.items()}}, f, indent=1)
    print(table)
    print(f"best execute_steps: {best} (fewest falls per minute, then vx RMSE); wrote "
          f"{os.path.join(args.out, 'sweep.md')}", file=sys.stderr)
    return best


if __name__ == "__main__":
    main(tyro.cli(Args))
