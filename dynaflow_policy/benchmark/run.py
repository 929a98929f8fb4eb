"""One benchmark run: load the methods, measure every section, write the report, plots and JSON."""

from __future__ import annotations

import json
import os
import sys
import time

from dynaflow_policy.benchmark.config import BenchmarkConfig
from dynaflow_policy.benchmark.four_gaits import section_four_gaits
from dynaflow_policy.benchmark.gaits import section_kinematic
from dynaflow_policy.benchmark.methods import load_methods
from dynaflow_policy.benchmark.report import BenchmarkResults, markdown, plots
from dynaflow_policy.benchmark.sweep import section_sweep
from dynaflow_policy.benchmark.sections import (Log, act_latency, section_closed_loop, section_offline,
                                                section_open_loop)
from dynaflow_policy.data.split import held_out_windows_for, training_split
from dynaflow_policy.loading import load_policy

REPORT, RECORD = "benchmark.md", "benchmark.json"
"""File names of the Markdown report and the JSON record in the output directory."""


def log_to_stderr(line: str) -> None:
    """The default progress log."""
    print(line, file=sys.stderr)


def run_benchmark(config: BenchmarkConfig, relative_to: str = os.curdir,
                  log: Log = log_to_stderr) -> tuple[str, BenchmarkResults]:
    """Runs every section whose inputs exist and writes ``config.out``/{benchmark.md, benchmark.json, *.png}.

    Held-out windows of section 1 and 3 follow :func:`dynaflow_policy.data.split.held_out_windows_for`
    with the DynaFlow and state-flow checkpoints that exist.

    Args:
      config: checkpoints, data and sizes.
      relative_to: directory that paths in the report are shown relative to.
      log: receives one line per section.

    Returns:
      The Markdown report as written (plot links included), and the results.
    """
    t0 = time.perf_counter()
    os.makedirs(config.out, exist_ok=True)
    methods = load_methods(config, relative_to)
    missing = list(methods.missing)
    offline, open_loop, windows = [], {}, (0, 0, "")
    if os.path.isfile(config.data):
        splits = [training_split(p) for p in (config.dynaflow, config.state_flow) if os.path.isdir(p)]
        held = held_out_windows_for(splits, config.data, config.windows, config.seed,
                                    constant_command_only=config.constant_command)
        windows = (held.batch["states"].shape[0], held.batch["states"].shape[1] - 1, held.rule)
        log("section 1: held-out windows")
        offline = section_offline(methods.generators, held.batch, held.normalizer,
                                  methods.controllers.get("PPO expert"))
        log("section 3: open loop")
        open_loop = section_open_loop(methods.generators, held.batch, held.normalizer, config.open_loop_seconds,
                                      config.open_loop_starts)
    else:
        missing.append(f"data: {os.path.relpath(config.data, relative_to)} missing")
    log("section 2: closed loop")
    closed = section_closed_loop(methods.controllers, config.episodes, config.seconds, config.seed, log)
    latency = act_latency(methods.controllers, config.latency_calls, config.latency_warmup, config.seed)
    log("section 5: command sweep")
    sweep = section_sweep(methods.controllers, config.sweep_episodes, config.seconds, config.seed, log)
    log("section 4: kinematic")
    kinematic = (section_kinematic(config.dynaflow_kinematic, config.kinematic_data, config.kinematic_windows,
                                   config.episodes, config.seconds, config.seed, config.kinematic_command_windows)
                 if os.path.isdir(config.dynaflow_kinematic) and os.path.isfile(config.kinematic_data) else None)
    log("section 6: four gaits")
    gait_controllers = {}
    for name, path, options in (("PPO expert (four gaits)", config.ppo_gaits, {}),
                                ("DynaFlow (four gaits)", config.dynaflow_gaits, {"seed": config.seed})):
        if os.path.isdir(path):
            gait_controllers[name] = load_policy(path, **options)
        else:
            missing.append(f"{name}: {os.path.relpath(path, relative_to)} missing")
    four_gaits = (section_four_gaits(gait_controllers, config.episodes, config.seconds, config.switch_episodes,
                                     config.seed, log) if gait_controllers else None)
    results = BenchmarkResults(missing, offline, closed, latency, open_loop, kinematic, sweep, windows,
                               time.perf_counter() - t0, four_gaits)
    text = markdown(config, results, relative_to)
    paths = plots(results, config.out)
    text += "\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in paths) + "\n"
    with open(os.path.join(config.out, REPORT), "w") as f:
        f.write(text)
    with open(os.path.join(config.out, RECORD), "w") as f:
        json.dump(results.to_json(), f, indent=1)
    return text, results
