"""The benchmark: DynaFlow against the PPO expert and a state-space flow + inverse-dynamics baseline.

    python eval/benchmark.py            # shipped checkpoints and data; writes results/benchmark/

One command, every number in ``results/benchmark/benchmark.md`` (and the
plots beside it) measured by it. Inputs by default:

- ``DynaFlow (1 ODE step)``, ``DynaFlow (N ODE steps)``: ``checkpoints/dynaflow_go1_expert``.
- ``PPO expert``: ``checkpoints/ppo_go1_trot``.
- ``State flow + ID``: ``checkpoints/state_flow_go1_expert``.
- Demonstrations: ``data/go1_expert_heldout_small.npz`` (``python -m dynaflow_policy.data.collect
  --preset expert-heldout``, a seed no run trained on; windows of constant command); kinematic gaits:
  ``checkpoints/dynaflow_go1_kinematic`` and ``data/kinematic_small.npz``.
- Four gaits: ``checkpoints/ppo_go1_gaits`` and ``checkpoints/dynaflow_go1_gaits``.

The sections and their metrics are described in :mod:`dynaflow_policy.benchmark`.
"""

from __future__ import annotations

import os
import sys

import tyro

from dynaflow_policy.benchmark import BenchmarkConfig, run_benchmark
from dynaflow_policy.benchmark.run import REPORT
from envs.compilation_cache import enable_compilation_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.path.join(REPO, "checkpoints")

DEFAULTS = BenchmarkConfig(
    dynaflow=os.path.join(CKPT, "dynaflow_go1_expert"),
    dynaflow_kinematic=os.path.join(CKPT, "dynaflow_go1_kinematic"),
    ppo=os.path.join(CKPT, "ppo_go1_trot"),
    state_flow=os.path.join(CKPT, "state_flow_go1_expert"),
    ppo_gaits=os.path.join(CKPT, "ppo_go1_gaits"),
    dynaflow_gaits=os.path.join(CKPT, "dynaflow_go1_gaits"),
    data=os.path.join(REPO, "data", "go1_expert_heldout_small.npz"),
    kinematic_data=os.path.join(REPO, "data", "kinematic_small.npz"),
    out=os.path.join(REPO, "results", "benchmark"),
)
"""The shipped checkpoints and data of this repository, at the full sizes."""


def main(config: BenchmarkConfig) -> str:
    """Runs the benchmark with JAX's persistent compilation cache, prints the report and returns it."""
    enable_compilation_cache()
    text, _ = run_benchmark(config, relative_to=REPO)
    print(text)
    print(f"wrote {os.path.join(config.out, REPORT)}", file=sys.stderr)
    return text


if __name__ == "__main__":
    main(tyro.cli(BenchmarkConfig, default=DEFAULTS))
