"""eval/gait_check.py and dynaflow_policy.benchmark.gait_check: the wide closed-loop check of gait checkpoints."""

import dataclasses
import json
import os

import numpy as np
import pytest

from artifacts import load_eval_script, write_dynaflow_checkpoint
from dynaflow_policy.benchmark.gait_check import held_out_spread, sweep_falls
from dynaflow_policy.closed_loop import Scenario
from dynaflow_policy.data import save_dataset
from dynaflow_policy.data.kinematic import generate_kinematic_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script():
    return load_eval_script("gait_check")


class Stand:
    """Holds the home pose (zero action), for one env or a batch."""

    def act(self, obs):
        return np.zeros(np.shape(obs)[:-1] + (12,), np.float32)

    def reset(self, mask=None):
        pass


def test_held_out_spread_runs_each_gaits_distinct_commands_and_scores_a_standing_robot():
    commands = np.array([[0.3, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.4, 0.0], [0.6, 0.0, 0.0], [0.2, 0.0, 0.0],
                         [0.1, 0.0, 0.0]], np.float32)
    batch = {"gait": np.array([0, 0, 0, 0, 3, 1]), "command": commands}  # trot windows 0-1 share a command
    out = held_out_spread(Stand(), batch, ("trot", "bound", "pronk"), commands=2, episodes=2, seconds=0.2, seed=0,
                          num_envs=2)
    assert set(out) == {"trot", "pronk"}  # no bound windows; the pace is not asked for
    trot, pronk = out["trot"], out["pronk"]
    np.testing.assert_allclose(trot["commands"], commands[[0, 2]])  # distinct, in window order, the first two
    assert trot["episodes"] == 4 and trot["falls_per_command"] == [0, 0] and pronk["episodes"] == 2
    assert trot["falls"] == sum(trot["falls_per_command"])
    assert trot["commanded_speed"] == pytest.approx(0.35) and pronk["commanded_speed"] == pytest.approx(0.2)
    assert trot["feet_in_air"] < 0.1 and trot["speed"] < 0.2  # standing, settling from the resting start
    assert trot["contact_pattern"] < 0.5 < pronk["contact_pattern"]  # four feet down: 2/6 for a trot, 1 for a pronk


def test_sweep_falls_counts_per_gait_and_scenario(monkeypatch):
    import dynaflow_policy.benchmark.gait_check as gait_check

    calls = []

    def fake_episode(env, controller, scenario, seconds, seed, gait):
        calls.append((scenario, seed, gait))
        return {"fell": gait == "bound" and scenario is scenarios["backward"] and seed % 2 == 1}

    monkeypatch.setattr(gait_check, "run_episode", fake_episode)
    scenarios = {"stand": Scenario.constant((0.0, 0.0, 0.0)), "backward": Scenario.constant((-0.4, 0.0, 0.0))}
    out = sweep_falls(Stand(), ("trot", "bound"), episodes=3, seconds=0.2, seed=4, scenarios=scenarios)
    assert out == {"trot": {"stand": 0, "backward": 0}, "bound": {"stand": 0, "backward": 1}}  # seeds 4, 5, 6
    assert len(calls) == 12 and {seed for _, seed, _ in calls} == {4, 5, 6}


def test_the_script_compares_checkpoints_on_held_out_commands_and_the_sweep(tmp_path):
    cli = _script()
    data = tmp_path / "kinematic.npz"
    save_dataset(data, generate_kinematic_dataset(8, 1.0, seed=3))
    ckpt = write_dynaflow_checkpoint(tmp_path / "run" / "checkpoints", horizon=8, gait_clock=True)
    args = cli.Args(checkpoint=(ckpt,), data=str(data), windows=16, commands=1, episodes=2, seconds=0.2,
                    sweep_episodes=1, num_envs=2, execute_steps=2, out=str(tmp_path / "out"))
    cli.main(args)
    with open(tmp_path / "out" / "gait_check.json") as f:
        results = json.load(f)["results"]
    (row,) = results.values()
    assert set(row["held_out"]) <= {"trot", "pace", "bound", "pronk"} and row["held_out"]  # the gaits drawn
    for scores in row["held_out"].values():
        assert scores["episodes"] == 2 and len(scores["commands"]) == 1
        assert scores["falls"] == sum(scores["falls_per_command"])
    assert set(row["sweep"]) == {"trot", "pace", "bound", "pronk"}  # the gaits the checkpoint knows
    assert all(len(per) == 8 for per in row["sweep"].values())  # the benchmark sweep's scenarios
    table = (tmp_path / "out" / "gait_check.md").read_text()
    assert table.count(f"| `{os.path.relpath(ckpt, REPO)}` |") == 2  # a row in each table
    assert "every checkpoint with execute_steps 2" in table
    with pytest.raises(FileNotFoundError, match="--data"):
        cli.main(dataclasses.replace(args, data=str(tmp_path / "nowhere.npz")))


@pytest.mark.parametrize("field,value", [("commands", 0), ("episodes", 0), ("windows", 0), ("num_envs", 0),
                                         ("ode_steps", 0), ("sweep_episodes", -1), ("seconds", 0.0),
                                         ("checkpoint", ()), ("checkpoint", ("a/b", "a/b/"))])
def test_bad_options_are_named(field, value):
    cli = _script()
    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')}"):
        cli.Args(**{"checkpoint": ("x",), field: value})
