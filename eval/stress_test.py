"""Stress test: controllers under random held commands and shoves, each episode its own scenario.

    python eval/stress_test.py --controller "dynaflow=checkpoints/dynaflow_go1_expert" \\
        "ppo=checkpoints/ppo_go1_trot" --episodes 32 --seed 1000

Each controller is ``NAME=PATH[:key=value,...]`` (:func:`dynaflow_policy.load_policy` overrides such as
``ode_steps=4``); every controller runs the same scenarios and env seeds
(:mod:`dynaflow_policy.benchmark.stress`). Writes ``stress.md`` and ``stress.json`` under ``--out``
and prints the table with one line per fall.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import tyro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Args:
    controller: tuple[str, ...]
    """``NAME=PATH[:key=value,...]`` each, space-separated after one ``--controller``: any checkpoint kind."""
    gaits: tuple[str, ...] = ("trot",)
    """Gaits to run."""
    ranges_from: str = os.path.join(REPO, "checkpoints", "ppo_go1_trot")
    """PPO expert whose trained command ranges, per gait, the commands are drawn from (the demonstrator of the
    controllers; the four-gait one for the four-gait controllers)."""
    episodes: int = 32
    """Episodes per controller and gait, each with its own random scenario."""
    seconds: float = 10.0
    """Episode length (s)."""
    hold_seconds: float = 2.5
    """Seconds each random command holds."""
    pushes: int = 1
    """Shoves per episode."""
    push_speed: tuple[float, float] = (0.3, 0.8)
    """Range of a shove's velocity jump (m/s)."""
    seed: int = 1000
    """Seed of the scenarios, the env resets and the sampling noise; use one no training file was collected with."""
    out: str = os.path.join(REPO, "results", "stress")
    """Output directory."""

    def __post_init__(self):
        from dynaflow_policy.data.dagger import check_scenario_options

        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"--episodes must be an int >= 1, got {self.episodes!r}")
        check_scenario_options(self.seconds, self.hold_seconds, self.pushes, self.push_speed, "--pushes")


def main(args: Args) -> str:
    from dynaflow_policy import load_policy
    from dynaflow_policy.benchmark.stress import markdown, section_stress
    from dynaflow_policy.checkpoint import checkpoint_kind
    from dynaflow_policy.experts import load_expert
    from dynaflow_policy.loading import parse_variant
    from envs.compilation_cache import enable_compilation_cache
    from envs.task import gait_index

    for gait in args.gaits:
        gait_index(gait)  # ValueError naming the four gaits, before anything loads
    demonstrator = load_expert(args.ranges_from)
    missing = [g for g in args.gaits if g not in demonstrator.gaits]
    if missing:
        raise ValueError(f"--gaits {' '.join(missing)}: --ranges-from {args.ranges_from} was trained on "
                         f"{', '.join(demonstrator.gaits)} only")
    ranges = {gait: demonstrator.command_ranges(gait) for gait in args.gaits}
    controllers = [parse_variant(c, "--controller") for c in args.controller]
    for name, path, _ in controllers:
        if not os.path.exists(path):
            raise FileNotFoundError(f"--controller {name}: {path} does not exist")
    enable_compilation_cache()
    loaded = {}
    for name, path, overrides in controllers:
        if checkpoint_kind(path) != "ppo":  # the sampling noise of DynaFlow and state flow
            overrides = {"seed": args.seed, **overrides}
        loaded[name] = load_policy(path, **overrides)
    t0 = time.perf_counter()
    results = section_stress(loaded, ranges, args.episodes, args.seconds, args.seed, args.hold_seconds,
                             args.pushes, args.push_speed)
    table = markdown(results)
    header = (f"{args.episodes} episodes x {args.seconds:g} s per controller and gait from rest, each a random "
              f"command every {args.hold_seconds:g} s (the ranges `{os.path.relpath(args.ranges_from, REPO)}` was "
              f"trained on) and {args.pushes} shove(s) of {args.push_speed[0]:g}-"
              f"{args.push_speed[1]:g} m/s, seed {args.seed}; tracking RMSE after the first second. "
              f"{time.perf_counter() - t0:.0f} s.\n\n")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "stress.md"), "w") as f:
        f.write(header + table + "\n")
    with open(os.path.join(args.out, "stress.json"), "w") as f:
        json.dump({name: {gait: {"metrics": dataclasses.asdict(r), "falls": [dataclasses.asdict(x) for x in falls]}
                          for gait, (r, falls) in per_gait.items()} for name, per_gait in results.items()}, f,
                  indent=1)
    print(header + table)
    return table


if __name__ == "__main__":
    main(tyro.cli(Args))
