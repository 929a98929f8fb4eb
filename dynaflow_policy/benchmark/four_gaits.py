"""Section 6 of the benchmark: controllers of the four gaits, per gait and switching gait mid-episode.

Per gait (the gaits a controller was trained on, its ``gaits``), the
closed loop of :data:`GAIT_COMMAND` from the env's resting start, with the
metrics of :func:`dynaflow_policy.closed_loop.command_result` (contact-pattern
score: :func:`envs.task.gait_sync` against the gait in force, after the first
second). Then :data:`SWITCH_SCENARIO`, trot -> pace -> bound -> pronk -> trot,
3 s each: the contact-pattern score of each segment after a
:data:`TRANSITION_SECONDS` transition.

The contact timelines (``GaitSection.timelines``) show each gait's first
episode against the schedule of the gait clock (:func:`envs.task.scheduled_contact`
from phase 0, the env's phase at reset); :func:`contact_figure` draws them.
"""

from __future__ import annotations

import dataclasses
import time

import gymnasium
import numpy as np
from matplotlib.figure import Figure

import envs
from dynaflow_policy.benchmark.sections import Log
from dynaflow_policy.closed_loop import CommandResult, Controller, Scenario, command_result, run_episode
from envs.physics import PHYSICS
from envs.task import GAITS, advance_phase, gait_index, gait_sync, scheduled_contact

GAIT_COMMAND = (0.5, 0.0, 0.0)
"""(vx, vy, yaw rate) of the per-gait closed loop: inside every gait's range (``envs.task.GAIT_COMMAND_RANGES``)."""
SWITCH_SCENARIO = Scenario(((0.0, GAIT_COMMAND),),
                           gaits=((0.0, "trot"), (3.0, "pace"), (6.0, "bound"), (9.0, "pronk"), (12.0, "trot")))
"""Gait switching under :data:`GAIT_COMMAND`: 3 s per gait, 15 s in all."""
SWITCH_SECONDS = 15.0
TRANSITION_SECONDS = 0.5
"""Steps this long after a switch are not scored."""
TIMELINE_SECONDS = 2.0
"""Length of the contact timelines (after the first second of the episode)."""
CLOCK_REFERENCE = "gait clock"
"""Timeline label of the scheduled contacts."""


@dataclasses.dataclass(frozen=True)
class GaitSection:
    """Section 6's results.

    Attributes:
      per_gait: controller -> gait -> metrics of its episodes of :data:`GAIT_COMMAND`.
      switching: controller -> one row per segment of :data:`SWITCH_SCENARIO`: ``{"gait", "start"`` (s),
        ``"contact_pattern"`` (mean over the scored steps of every episode that reached them; NaN if none did),
        ``"falls"`` (episodes that fell in the segment)``}``.
      timelines: gait -> label -> (T, 4) bool foot contacts (FR, FL, RR, RL) at ``PHYSICS.ctrl_dt``; labels
        :data:`CLOCK_REFERENCE` and the controllers'.
    """

    per_gait: dict[str, dict[str, CommandResult]]
    switching: dict[str, list[dict]]
    timelines: dict[str, dict[str, np.ndarray]]

    def to_json(self) -> dict:
        return {"per_gait": {n: {g: dataclasses.asdict(r) for g, r in res.items()} for n, res in self.per_gait.items()},
                "switching": self.switching,
                "timelines": {g: {k: v.astype(int).tolist() for k, v in d.items()} for g, d in self.timelines.items()}}


def clock_contacts(gait: str, steps: int, start_step: int = 0) -> np.ndarray:
    """(steps, 4) bool: the gait clock's scheduled contacts for control steps ``start_step ..`` after a reset."""
    g = gait_index(gait)
    phase = np.float32(0.0)
    out = np.zeros((start_step + steps, 4), bool)
    for t in range(start_step + steps):
        out[t] = scheduled_contact(phase, g)
        phase = advance_phase(phase, g, PHYSICS.ctrl_dt)
    return out[start_step:]


def controller_gaits(controller: Controller) -> tuple[str, ...]:
    """The gaits a controller was trained on (its ``gaits``; all four when it does not say)."""
    return tuple(getattr(controller, "gaits", GAITS))


def switching_segments(episodes: list[dict], scenario: Scenario = SWITCH_SCENARIO,
                       seconds: float = SWITCH_SECONDS, transition: float = TRANSITION_SECONDS) -> list[dict]:
    """Per gait segment of ``scenario``: the contact-pattern score after ``transition`` and the falls in it.

    Args:
      episodes: :func:`run_episode` results of ``scenario``.
    """
    dt = PHYSICS.ctrl_dt
    bounds = [t for t, _ in scenario.gaits] + [seconds]
    rows = []
    for (start, gait), end in zip(scenario.gaits, bounds[1:]):
        first, last = int(round((start + transition) / dt)), int(round(end / dt))
        scores, falls = [], 0
        for ep in episodes:
            steps = len(ep["contacts"])
            falls += int(ep["fell"] and int(round(start / dt)) < steps <= last)
            contacts = ep["contacts"][first:min(last, steps - int(ep["fell"]))]
            scores.append(gait_sync(contacts, gait_index(gait)))
        scored = np.concatenate(scores)
        rows.append({"gait": gait, "start": start,
                     "contact_pattern": float(scored.mean()) if len(scored) else float("nan"), "falls": falls})
    return rows


def section_four_gaits(controllers: dict[str, Controller], episodes: int, seconds: float, switch_episodes: int,
                       seed: int, log: Log) -> GaitSection:
    """Runs section 6 for ``controllers`` (each on :func:`controller_gaits`); seeds ``seed ..``."""
    settle = int(round(1.0 / PHYSICS.ctrl_dt))
    timeline_steps = int(round(TIMELINE_SECONDS / PHYSICS.ctrl_dt))
    per_gait: dict[str, dict[str, CommandResult]] = {}
    switching: dict[str, list[dict]] = {}
    timelines: dict[str, dict[str, np.ndarray]] = {}
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(max(seconds, SWITCH_SECONDS) / PHYSICS.ctrl_dt)))
    try:
        for name, controller in controllers.items():
            t0 = time.perf_counter()
            per_gait[name] = {}
            for gait in controller_gaits(controller):
                runs = [run_episode(env, controller, GAIT_COMMAND, seconds, seed + i, gait) for i in range(episodes)]
                per_gait[name][gait] = command_result(runs, GAIT_COMMAND)
                timeline = timelines.setdefault(gait, {CLOCK_REFERENCE: clock_contacts(gait, timeline_steps, settle)})
                timeline[name] = runs[0]["contacts"][settle:settle + timeline_steps]
            if set(GAITS) <= set(controller_gaits(controller)):
                runs = [run_episode(env, controller, SWITCH_SCENARIO, SWITCH_SECONDS, seed + i)
                        for i in range(switch_episodes)]
                switching[name] = switching_segments(runs)
            log(f"  four gaits {name}: {time.perf_counter() - t0:.0f} s")
    finally:
        env.close()
    return GaitSection(per_gait, switching, timelines)


def contact_figure(timelines: dict[str, dict[str, np.ndarray]], title: str) -> Figure:
    """Foot-contact timelines, one panel per gait: a row per foot and source, dark while the foot is on the ground.

    Args:
      timelines: gait -> label -> (T, 4) bool (or 0/1) contacts at ``PHYSICS.ctrl_dt`` (lengths may differ).
    """
    fig = Figure(figsize=(12, 2.2 * max(len(timelines), 1) + 0.5))
    axes = np.atleast_1d(fig.subplots(max(len(timelines), 1), 1, squeeze=False)[:, 0])
    feet = ("FR", "FL", "RR", "RL")
    for ax, (gait, sources) in zip(axes, timelines.items()):
        ticks, labels = [], []
        for k, (label, contacts) in enumerate(sources.items()):
            contacts = np.asarray(contacts, bool)
            for f in range(4):
                y = k * 5 + f
                on = np.flatnonzero(contacts[:, f])
                # Runs of consecutive stance steps as (start time, duration) bars.
                splits = np.split(on, np.flatnonzero(np.diff(on) > 1) + 1) if len(on) else []
                ax.broken_barh([(r[0] * PHYSICS.ctrl_dt, len(r) * PHYSICS.ctrl_dt) for r in splits], (y - 0.4, 0.8),
                               color=f"C{k}")
                ticks.append(y)
                labels.append(f"{label}: {feet[f]}" if f == 0 else feet[f])
        ax.set_xlim(0.0, max(len(c) for c in sources.values()) * PHYSICS.ctrl_dt)
        ax.set_yticks(ticks, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(gait, fontsize=10)
        ax.set_xlabel("time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
