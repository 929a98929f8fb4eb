"""The stress test: random scenarios, the falls and when they happen, and the CLI end to end."""

import json
import os

import numpy as np
import pytest

from artifacts import load_eval_script
from dynaflow_policy.benchmark.stress import Fall, fall_of, section_stress, stress_scenarios
from dynaflow_policy.closed_loop import Scenario
from dynaflow_policy.experts import load_expert
from envs.physics import PHYSICS
from envs.task import CommandRanges

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TROT_EXPERT = os.path.join(REPO, "checkpoints", "ppo_go1_trot")


class Limp:
    """Every joint to its upper bound: the robot folds and falls within half a second."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.ones(12)

    def reset(self, mask=None, seed=None) -> None:
        pass


def test_scenarios_repeat_for_a_seed_and_stay_in_the_ranges():
    ranges = CommandRanges(vx=(-0.2, 0.4), vy=(-0.1, 0.1), yaw_rate=(-0.3, 0.3))
    a, b = stress_scenarios(ranges, 5, 10.0, seed=4), stress_scenarios(ranges, 5, 10.0, seed=4)
    assert a == b and a != stress_scenarios(ranges, 5, 10.0, seed=5) and len({s.commands for s in a}) == 5
    commands = np.array([c for s in a for _, c in s.commands])
    assert (commands >= ranges.low).all() and (commands <= ranges.high).all()


def test_a_fall_is_timed_against_the_last_shove_and_command_change():
    scenario = Scenario(((0.0, (0.5, 0.0, 0.0)), (2.5, (0.0, 0.3, 0.0)), (5.0, (0.2, 0.0, 0.0))),
                        pushes=((1.0, (0.5, 0.0)), (4.0, (0.0, 0.5))))
    steps = int(round(3.0 / PHYSICS.ctrl_dt))  # fell in the step that ends at 3 s
    run = {"actions": np.zeros((steps, 12)), "commands": np.stack([scenario.command_at(k) for k in range(steps)]),
           "fell": True}
    fall = fall_of(7, run, scenario)
    assert fall.episode == 7 and fall.command == (0.0, 0.3, 0.0)
    np.testing.assert_allclose([fall.time, fall.since_shove, fall.since_command_change], [3.0, 2.0, 0.5])
    early = fall_of(0, {**run, "actions": run["actions"][:10], "commands": run["commands"][:10]}, scenario)
    assert np.isnan(early.since_shove) and np.isnan(early.since_command_change)


def test_every_controller_meets_the_same_scenarios_and_falls_are_listed():
    expert = load_expert(TROT_EXPERT)
    ranges = {"trot": expert.command_ranges("trot")}
    results = section_stress({"a": expert, "b": load_expert(TROT_EXPERT), "limp": Limp()}, ranges, episodes=2,
                             seconds=1.5, seed=3, log=lambda _: None)
    (a, falls_a), (b, falls_b) = results["a"]["trot"], results["b"]["trot"]
    assert a == b and falls_a == falls_b == []  # the deterministic expert: same scenarios and seeds, same episodes
    limp, falls = results["limp"]["trot"]
    assert limp.falls_per_episode == 1.0 and [f.episode for f in falls] == [0, 1]
    assert all(isinstance(f, Fall) and 0 < f.time < 1.0 for f in falls)


def test_cli_writes_the_table_and_refuses_bad_options(tmp_path):
    cli = load_eval_script("stress_test")
    out = tmp_path / "out"
    cli.main(cli.Args(controller=(f"ppo={TROT_EXPERT}",), episodes=1, seconds=1.2, out=str(out)))
    assert "| ppo | trot | 0 of 1 |" in (out / "stress.md").read_text()
    assert json.loads((out / "stress.json").read_text())["ppo"]["trot"]["falls"] == []
    with pytest.raises(ValueError, match="--gaits pace: --ranges-from"):
        cli.main(cli.Args(controller=(f"ppo={TROT_EXPERT}",), gaits=("pace",), out=str(out)))
    with pytest.raises(FileNotFoundError, match="--controller x"):
        cli.main(cli.Args(controller=(f"x={tmp_path / 'nowhere'}",), out=str(out)))
    with pytest.raises(ValueError, match="--controller must be NAME=PATH"):
        cli.main(cli.Args(controller=("no-name",), out=str(out)))
    for option, value in (("episodes", 0), ("pushes", -1), ("seconds", 0.0), ("hold_seconds", -1.0),
                          ("push_speed", (0.8, 0.3))):
        with pytest.raises(ValueError, match="--" + option.replace("_", "-")):
            cli.Args(controller=("a=b",), **{option: value})
