"""The benchmark's results, and their Markdown report, plots and JSON record."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from matplotlib.figure import Figure

from dynaflow_policy.benchmark.config import BenchmarkConfig
from dynaflow_policy.benchmark.four_gaits import (GAIT_COMMAND, SWITCH_SECONDS, TIMELINE_SECONDS, TRANSITION_SECONDS,
                                                  GaitSection, contact_figure)
from dynaflow_policy.closed_loop import CommandResult, markdown_table


@dataclasses.dataclass(frozen=True)
class BenchmarkResults:
    """Everything one run measured.

    Attributes:
      missing: notes on what did not run ("<method>: <path> missing").
      offline: rows of section 1 (``sections.section_offline``).
      closed_loop: method -> command name -> result (section 2).
      latency: method -> {"mean", "p99"} seconds per ``act()`` call.
      open_loop: method -> {"t", "position", "state"} arrays (S+1,) of section 3.
      kinematic: section 4 (``gaits.section_kinematic``), or None when not run.
      sweep: method -> scenario name -> result (section 5, ``sweep.section_sweep``).
      windows: (number of held-out windows, H, the rule that chose them) of section 1.
      wall_seconds: wall time of the run so far (s).
      four_gaits: section 6 (``four_gaits.section_four_gaits``), or None when neither checkpoint exists.
    """

    missing: list[str]
    offline: list[dict]
    closed_loop: dict[str, dict[str, CommandResult]]
    latency: dict[str, dict[str, float]]
    open_loop: dict[str, dict[str, np.ndarray]]
    kinematic: dict | None
    sweep: dict[str, dict[str, CommandResult]]
    windows: tuple[int, int, str]
    wall_seconds: float
    four_gaits: GaitSection | None = None

    def to_json(self) -> dict:
        """The record written to ``benchmark.json`` (arrays as lists)."""
        return {"offline": self.offline, "latency_s": self.latency, "missing": self.missing,
                "kinematic": self.kinematic,
                "closed_loop": {n: {c: dataclasses.asdict(r) for c, r in res.items()}
                                for n, res in self.closed_loop.items()},
                "sweep": {n: {c: dataclasses.asdict(r) for c, r in res.items()} for n, res in self.sweep.items()},
                "open_loop": {n: {k: np.asarray(v).tolist() for k, v in d.items()}
                              for n, d in self.open_loop.items()},
                "four_gaits": self.four_gaits.to_json() if self.four_gaits is not None else None}


def plots(results: BenchmarkResults, out: str) -> list[str]:
    """Writes ``closed_loop.png`` (vx RMSE, falls per minute), ``open_loop_drift.png``, ``gait_contacts.png``
    and ``kinematic_contacts.png`` (foot-contact timelines) into ``out`` when their sections ran; returns the
    paths written."""
    closed, open_loop = results.closed_loop, results.open_loop
    paths = []
    if closed:
        fig = Figure(figsize=(12, 4))
        axes = fig.subplots(1, 2)
        names = list(closed)
        commands = list(next(iter(closed.values())))
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            xs = np.arange(len(commands)) + j * width
            axes[0].bar(xs, [closed[name][c].vx_rmse for c in commands], width, label=name)
            axes[1].bar(xs, [closed[name][c].falls_per_minute for c in commands], width, label=name)
        for ax, title in zip(axes, ("vx tracking RMSE (m/s)", "falls per minute")):
            ax.set_xticks(np.arange(len(commands)) + 0.4 - width / 2, commands)
            ax.set_title(title)
            ax.grid(alpha=0.3, axis="y")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(out, "closed_loop.png"))
        fig.savefig(paths[-1], dpi=100)
    if open_loop:
        fig = Figure(figsize=(12, 4))
        axes = fig.subplots(1, 2)
        for name, d in open_loop.items():
            axes[0].plot(d["t"], d["position"], label=name)
            axes[1].plot(d["t"], d["state"], label=name)
        axes[0].set_title("open loop: |planned - executed| base position (m)")
        axes[1].set_title("open loop: normalised state distance")
        for ax in axes:
            ax.set_xlabel("time (s)")
            ax.set_yscale("symlog", linthresh=1e-4)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        paths.append(os.path.join(out, "open_loop_drift.png"))
        fig.savefig(paths[-1], dpi=100)
    if results.four_gaits is not None and results.four_gaits.timelines:
        paths.append(os.path.join(out, "gait_contacts.png"))
        contact_figure(results.four_gaits.timelines, f"foot contacts, {TIMELINE_SECONDS:g} s after the first second: "
                       "the gait clock's schedule against the executed steps").savefig(paths[-1], dpi=100)
    if results.kinematic is not None and results.kinematic["gaits"]:
        paths.append(os.path.join(out, "kinematic_contacts.png"))
        contact_figure({g: {"kinematic reference window": d["timeline"]["reference"],
                            "DynaFlow (kinematic)": d["timeline"]["executed"]}
                        for g, d in results.kinematic["gaits"].items()},
                       "foot contacts: a held-out kinematic window against the first "
                       f"{TIMELINE_SECONDS:g} s executed from rest").savefig(paths[-1], dpi=100)
    return paths


def _kinematic_lines(config: BenchmarkConfig, kinematic: dict) -> list[str]:
    lines = ["## Kinematic gaits\n",
             f"SAE over {kinematic['windows']} held-out windows of the kinematic data (actions fitted per "
             f"transition, an upper bound): {kinematic['data_sae']:.3g}; of DynaFlow's output: "
             f"{kinematic['dynaflow_sae']:.3g}.\n",
             f"Closed loop from the env's resting start, {config.episodes} episodes x {config.seconds:g} s "
             f"per gait, episode i under the gait's i-th distinct command among {config.kinematic_command_windows} "
             "held-out windows (cycling over them). Contact-pattern score: "
             "`envs.task.gait_sync`, mean over those reference windows and over every executed step "
             "(standing on four feet scores 0.33 for trot, pace and bound, and 1 for pronk). Feet in "
             "the air: mean fraction of the four feet off the ground (0 when standing). Speed: mean "
             "horizontal body speed, against the mean commanded horizontal speed.\n",
             "| gait | commands | contact-pattern score, reference / executed "
             "| feet in the air, reference / executed | speed, commanded / executed (m/s) | falls "
             "| falls / min | survival (s) |\n"
             "|---|---|---|---|---|---|---|---|"]
    return lines + [f"| {g} | {len(d['commands'])} | {d['reference']:.2f} / "
                    f"{d['executed']:.2f} | {d['reference_feet_in_air']:.2f} / {d['feet_in_air']:.2f} "
                    f"| {d['commanded_speed']:.2f} / {d['speed']:.2f} | {d['falls']} / {d['episodes']} "
                    f"| {d['falls_per_minute']:.1f} | {d['survival_seconds']:.1f} |"
                    for g, d in kinematic["gaits"].items()]


def _four_gait_lines(config: BenchmarkConfig, section: GaitSection) -> list[str]:
    lines = [f"## Four gaits ({config.episodes} episodes x {config.seconds:g} s per gait, command "
             f"{GAIT_COMMAND})\n",
             "Per gait each controller was trained on. Contact pattern: `envs.task.gait_sync` against the gait in "
             "force, and feet in the air, both after the first second; vx over strides: the RMSE of vx averaged over "
             "each gait period (`closed_loop.stride_means`), without the surge within a stride.\n",
             "| controller | gait | falls / episode | vx / vy / yaw-rate RMSE | vx RMSE over strides | contact pattern "
             "| feet in the air |",
             "|---|---|---|---|---|---|---|"]
    for name, by_gait in section.per_gait.items():
        lines += [f"| {name} | {g} | {r.falls_per_episode:.1f} | {r.vx_rmse:.3f} / {r.vy_rmse:.3f} / "
                  f"{r.yaw_rate_rmse:.3f} | {r.vx_stride_rmse:.3f} | {r.contact_pattern:.2f} | {r.feet_in_air:.2f} |"
                  for g, r in by_gait.items()]
    lines.append("")
    if section.switching:
        segments = next(iter(section.switching.values()))
        lines += [f"Gait switching ({config.switch_episodes} episodes x {SWITCH_SECONDS:g} s): contact pattern of "
                  f"each segment after a {TRANSITION_SECONDS:g} s transition; falls in the segment in brackets.\n",
                  "| controller | " + " | ".join(f"{s['gait']} from {s['start']:g} s" for s in segments) + " |",
                  "|---" * (len(segments) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(f"{s['contact_pattern']:.2f} ({s['falls']})" for s in rows) + " |"
                  for name, rows in section.switching.items()]
        lines.append("")
    return lines


def _sweep_lines(config: BenchmarkConfig, sweep: dict[str, dict[str, CommandResult]]) -> list[str]:
    names = list(sweep)
    lines = [f"## Command sweep ({config.sweep_episodes} episodes x {config.seconds:g} s per scenario)\n",
             "Each cell: falls / episode, then vx / vy / yaw-rate RMSE (m/s, m/s, rad/s) against the command in "
             "force at each step, after the first second. Scenarios: `dynaflow_policy.benchmark.sweep.SWEEP`.\n",
             "| scenario | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for scenario in next(iter(sweep.values())):
        cells = [f"{r.falls_per_episode:.1f}; {r.vx_rmse:.3f} / {r.vy_rmse:.3f} / {r.yaw_rate_rmse:.3f}"
                 for r in (sweep[n][scenario] for n in names)]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(config: BenchmarkConfig, results: BenchmarkResults, relative_to: str = os.curdir) -> str:
    """The report ``benchmark.md`` (without the plot links); paths are shown relative to ``relative_to``."""
    lines = [f"# Benchmark\n\n`python eval/benchmark.py` on {os.cpu_count()} CPU cores, "
             f"{results.wall_seconds / 60:.1f} min. Data: `{os.path.relpath(config.data, relative_to)}`.\n"]
    if results.missing:
        lines.append("Not run: " + "; ".join(results.missing) + ".\n")
    if results.offline:
        count, horizon, rule = results.windows
        lines.append(f"## Held-out demonstration windows ({count} windows, H = {horizon}, from {rule})\n")
        lines.append("| method | SAE | TRE | action RMSE vs expert |\n|---|---|---|---|")
        lines += [f"| {r['method']} | {r['sae']:.3g} | {r['tre']:.3g} | {r['action_rmse']:.3g} |"
                  for r in results.offline]
        lines.append("")
    for name, by_command in results.closed_loop.items():
        latency = results.latency[name]
        lines.append(f"## Closed loop: {name} ({config.episodes} episodes x {config.seconds:g} s per command; act() "
                     f"{1e3 * latency['mean']:.2f} ms per control step on average, p99 "
                     f"{1e3 * latency['p99']:.2f} ms, for a planner the cost of a replanning step)\n")
        lines.append(markdown_table(by_command) + "\n")
    if results.sweep:
        lines += _sweep_lines(config, results.sweep)
    if results.open_loop:
        lines.append(f"## Open loop, {config.open_loop_seconds:g} s of chained plans, no feedback "
                     f"({config.open_loop_starts} held-out starts)\n")
        lines.append("Falls and tracking are those of the executed actions (the plans run blind), tracking "
                     "against each start's command.\n")
        lines.append("| method | position drift at 1 s (m) | at end (m) | state distance at end | falls / start "
                     "| vx / vy / yaw-rate RMSE |\n|---|---|---|---|---|---|")
        for name, d in results.open_loop.items():
            k1 = min(50, len(d["t"]) - 1)
            rmse = " / ".join(f"{e:.3f}" for e in d["tracking_rmse"])
            lines.append(f"| {name} | {d['position'][k1]:.3g} | {d['position'][-1]:.3g} | {d['state'][-1]:.3g} "
                         f"| {d['falls']:.2f} | {rmse} |")
        lines.append("")
    if results.four_gaits is not None:
        lines += _four_gait_lines(config, results.four_gaits)
    if results.kinematic is not None:
        lines += _kinematic_lines(config, results.kinematic)
    else:
        lines.append("Kinematic section not run: "
                     f"{os.path.relpath(config.dynaflow_kinematic, relative_to)} or "
                     f"{os.path.relpath(config.kinematic_data, relative_to)} missing.")
    return "\n".join(lines) + "\n"
