"""Closed-loop evaluation of a controller in the Gymnasium env: a Markdown table of falls, tracking and torque.

    python eval/closed_loop_eval.py                                      # the shipped PPO expert
    python eval/closed_loop_eval.py --checkpoint checkpoints/dynaflow_go1_expert
    python eval/closed_loop_eval.py --checkpoint runs/state_flow --num-envs 8

20 episodes of 10 s per command (vx 0.3, 0.6, 1.0 m/s and a 0.8 rad/s turn in
place), seeds 0..19, metrics of :mod:`dynaflow_policy.closed_loop`; the
controller is :func:`dynaflow_policy.load_policy` of the checkpoint (any kind).
With ``--gaits trot pace ...`` each gait runs instead on its own commands
(:func:`dynaflow_policy.closed_loop.gait_commands`: the ends of its ranges).
Prints the table and writes it (and a JSON copy) under ``--out``.

    python eval/closed_loop_eval.py --checkpoint checkpoints/ppo_go1_gaits --gaits trot pace bound pronk
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
    checkpoint: str = os.path.join(REPO, "checkpoints", "ppo_go1_trot")
    """Checkpoint directory."""
    episodes: int = 20
    """Episodes per command."""
    seconds: float = 10.0
    """Episode length (s)."""
    seed: int = 0
    """First reset seed."""
    ode_steps: int | None = None
    """DynaFlow and state flow: ODE steps per plan (default: the checkpoint's)."""
    execute_steps: int | None = None
    """DynaFlow and state flow: actions executed per plan (default: the checkpoint's)."""
    ensemble: int | None = None
    """DynaFlow: overlapping plans averaged per action (default: the checkpoint's)."""
    num_envs: int = 1
    """Episodes run at once in a sync vector env (1: one at a time)."""
    gaits: tuple[str, ...] = ()
    """Evaluate each of these gaits on its own commands; empty: the trot on the expert commands."""
    out: str = "results/closed_loop"
    """Directory for ``<name>.md`` and ``<name>.json``."""


def main(args: Args) -> str:
    from dynaflow_policy import load_policy
    from dynaflow_policy.checkpoint import checkpoint_kind
    from dynaflow_policy.closed_loop import evaluate, gait_commands, markdown_table
    from dynaflow_policy.loading import sampler_overrides
    from envs.task import gait_index

    for gait in args.gaits:
        gait_index(gait)  # ValueError naming the four gaits, before anything loads

    overrides = sampler_overrides(args)
    controller, kind = load_policy(args.checkpoint, **overrides), checkpoint_kind(args.checkpoint)
    t0 = time.perf_counter()
    if args.gaits:
        results = {f"{gait} {name}": r for gait in args.gaits
                   for name, r in evaluate(controller, gait_commands(gait), args.episodes, args.seconds, args.seed,
                                           args.num_envs, gait).items()}
    else:
        results = evaluate(controller, episodes=args.episodes, seconds=args.seconds, seed=args.seed,
                           num_envs=args.num_envs)
    wall = time.perf_counter() - t0
    table = markdown_table(results)
    name = f"{kind}_{os.path.basename(os.path.normpath(args.checkpoint))}"
    os.makedirs(args.out, exist_ok=True)
    header = (f"{kind} controller `{os.path.relpath(args.checkpoint, REPO)}`: {args.episodes} episodes x "
              f"{args.seconds:g} s per command, seeds {args.seed}..{args.seed + args.episodes - 1}; tracking RMSE "
              f"after the first 1 s. Evaluated in {wall:.0f} s.\n\n")
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(header + table + "\n")
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump({k: dataclasses.asdict(r) for k, r in results.items()}, f, indent=1)
    print(header + table)
    print(f"wrote {os.path.join(args.out, name + '.md')}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
