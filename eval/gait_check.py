"""Choose between gait checkpoints: the wide closed-loop check of :mod:`dynaflow_policy.benchmark.gait_check`.

    python eval/gait_check.py --checkpoint checkpoints/dynaflow_go1_kinematic runs/my_run/checkpoints/14400

For each checkpoint (exported, a step directory or a work directory), per gait it knows:
``--commands`` distinct held-out commands of ``--data`` (windows none of the checkpoints
trained on) x ``--episodes`` episodes of ``--seconds`` from rest (falls,
contact-pattern score, feet in the air, speed against the commanded speed),
then the benchmark sweep's scenarios x ``--sweep-episodes`` seeds (falls). With
the defaults, 8 x 4 = 32 episodes per gait and 8 sweep episodes per gait:
about 8 min per checkpoint on 2 CPU cores. Prints Markdown and writes it (and
JSON) under ``--out``.
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
    checkpoint: tuple[str, ...]
    """DynaFlow checkpoints to compare, space-separated after one ``--checkpoint``."""
    data: str = os.path.join(REPO, "data", "kinematic_small.npz")
    """Held-out gait data; its commands are the episodes' commands (the benchmark's kinematic file)."""
    windows: int = 64
    """Held-out windows drawn (seed ``--seed``); each gait's first ``--commands`` give the commands."""
    commands: int = 8
    """Distinct held-out commands per gait (fewer where the drawn windows hold fewer; the table says)."""
    episodes: int = 4
    """Episodes per held-out command (seeds ``--seed ..``)."""
    sweep_episodes: int = 1
    """Episodes per sweep scenario and gait; 0 skips the sweep."""
    seconds: float = 10.0
    """Episode length (s)."""
    num_envs: int = 4
    """Episodes stepped together in the held-out part."""
    seed: int = 0
    """Seed of the window draw, the sampling noise and the env resets."""
    ode_steps: int | None = None
    """ODE steps per plan for every checkpoint (default: each checkpoint's)."""
    execute_steps: int | None = None
    """Actions executed per plan for every checkpoint (default: each checkpoint's)."""
    ensemble: int | None = None
    """Overlapping plans averaged per action for every checkpoint (default: each checkpoint's)."""
    out: str = os.path.join(REPO, "results", "gait_check")
    """Output directory (``gait_check.md``, ``gait_check.json``)."""

    def __post_init__(self):
        for name in ("windows", "commands", "episodes", "num_envs", "ode_steps", "execute_steps", "ensemble"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.sweep_episodes < 0:
            raise ValueError(f"--sweep-episodes must be >= 0, got {self.sweep_episodes}")
        if not self.seconds > 0:
            raise ValueError(f"--seconds must be positive, got {self.seconds}")
        if not self.checkpoint or len(set(map(os.path.normpath, self.checkpoint))) < len(self.checkpoint):
            raise ValueError(f"--checkpoint needs one or more distinct checkpoints, got {self.checkpoint}")


def _joined(scores: dict, key: str, fmt: str) -> str:
    """``scores``' ``key`` of each gait, formatted and joined by " / "."""
    return " / ".join(format(s[key], fmt) for s in scores.values())


def markdown(results: dict[str, dict], args: Args) -> str:
    """Two tables: the held-out spread per checkpoint, then the sweep's falls per checkpoint."""
    from dynaflow_policy.loading import sampler_overrides

    overrides = ", ".join(f"{k} {v}" for k, v in sampler_overrides(args).items())
    lines = [f"Held-out commands of `{os.path.relpath(args.data, REPO)}`: up to {args.commands} distinct per gait x "
             f"{args.episodes} episodes x {args.seconds:g} s from rest; per gait, in the order of the gaits "
             f"column{'; every checkpoint with ' + overrides if overrides else ''}.", "",
             "| checkpoint | gaits | commands | falls | contact pattern | feet in the air | speed (m/s) "
             "| commanded (m/s) |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        h = r["held_out"]
        falls = sum(s["falls"] for s in h.values())
        commands = " / ".join(str(len(s["commands"])) for s in h.values())
        lines.append(f"| `{name}` | {' / '.join(h)} | {commands} "
                     f"| {falls} of {sum(s['episodes'] for s in h.values())} ({_joined(h, 'falls', 'd')}) "
                     f"| {_joined(h, 'contact_pattern', '.2f')} | {_joined(h, 'feet_in_air', '.2f')} "
                     f"| {_joined(h, 'speed', '.2f')} | {_joined(h, 'commanded_speed', '.2f')} |")
    if args.sweep_episodes:
        lines += ["", f"Benchmark sweep scenarios x gaits, {args.sweep_episodes} episode(s) of {args.seconds:g} s "
                  "each: falls, and where.", "",
                  "| checkpoint | falls | where (gait: scenario x falls) |", "|---|---|---|"]
        for name, r in results.items():
            where = [f"{g}: {sc} x {n}" for g, per in r["sweep"].items() for sc, n in per.items() if n]
            total = sum(n for per in r["sweep"].values() for n in per.values())
            runs = sum(len(per) for per in r["sweep"].values()) * args.sweep_episodes
            lines.append(f"| `{name}` | {total} of {runs} | {'; '.join(where) or '-'} |")
    return "\n".join(lines)


def main(args: Args) -> str:
    from dynaflow_policy import load_policy
    from dynaflow_policy.benchmark.four_gaits import controller_gaits
    from dynaflow_policy.benchmark.gait_check import held_out_spread, sweep_falls
    from dynaflow_policy.data.split import held_out_windows_for, training_split
    from dynaflow_policy.loading import sampler_overrides

    if not os.path.isfile(args.data):
        raise FileNotFoundError(f"--data {args.data}: no such file")
    held = held_out_windows_for([training_split(c) for c in args.checkpoint], args.data, args.windows, args.seed)
    overrides = sampler_overrides(args)
    results = {}
    for path in args.checkpoint:
        t0 = time.perf_counter()
        policy = load_policy(path, seed=args.seed, **overrides)
        name = os.path.relpath(path, REPO)
        gaits = controller_gaits(policy)
        results[name] = {"held_out": held_out_spread(policy, held.batch, gaits, args.commands, args.episodes,
                                                     args.seconds, args.seed, args.num_envs)}
        if args.sweep_episodes:
            results[name]["sweep"] = sweep_falls(policy, gaits, args.sweep_episodes, args.seconds, args.seed)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    table = markdown(results, args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gait_check.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, "gait_check.json"), "w") as f:
        json.dump({"args": dataclasses.asdict(args), "results": results}, f, indent=1)
    print(table)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
