"""The benchmark end to end on tiny checkpoints and data: every section runs and reports measured numbers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from artifacts import write_dynaflow_checkpoint, write_ppo_expert
from dynaflow_policy.benchmark import HELD_COMMAND_ROW, BenchmarkConfig, run_benchmark
from dynaflow_policy.data import save_dataset
from dynaflow_policy.data import collect as C
from dynaflow_policy.data.kinematic import generate_kinematic_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    expert = write_ppo_expert(tmp / "ppo", out_scale=0.0)
    held = dict(command_knot_seconds=3.0, command_transition_seconds=0.5)  # one command per 1 s trajectory
    ds, _ = C.collect(expert, C.CollectConfig(trajectories=4, seconds=1.0, **held), workers=1, progress=False)
    save_dataset(tmp / "expert.npz", ds)
    save_dataset(tmp / "kinematic.npz", generate_kinematic_dataset(8, 1.0, seed=0))
    dynaflow = write_dynaflow_checkpoint(tmp / "dynaflow" / "checkpoints", horizon=8)
    two_gaits = write_ppo_expert(tmp / "ppo_gaits", out_scale=0.0, gaits=("trot", "bound"))
    config = BenchmarkConfig(dynaflow=dynaflow, dynaflow_kinematic=dynaflow, ppo=expert,
                             state_flow=str(tmp / "no_state_flow"), ppo_gaits=two_gaits, dynaflow_gaits=dynaflow,
                             data=str(tmp / "expert.npz"),
                             kinematic_data=str(tmp / "kinematic.npz"), ode_steps=2, windows=4, episodes=1,
                             seconds=1.2, open_loop_seconds=0.4, open_loop_starts=2, kinematic_windows=2,
                             sweep_episodes=1, switch_episodes=1, out=str(tmp / "out"), latency_calls=20,
                             latency_warmup=2)
    text, _ = run_benchmark(config, log=lambda line: None)
    return text, config


def test_report_has_every_section_and_the_missing_method(run):
    text, config = run
    assert "Not run: State flow + ID" in text
    for heading in ("## Held-out demonstration windows", "## Closed loop: DynaFlow (1 ODE step)",
                    "## Closed loop: DynaFlow (2 ODE steps)", "## Closed loop: PPO expert", "## Open loop",
                    "## Kinematic gaits", "## Command sweep", "## Four gaits", "Gait switching"):
        assert heading in text
    for name in ("closed_loop.png", "open_loop_drift.png", "gait_contacts.png", "kinematic_contacts.png",
                 "benchmark.md", "benchmark.json"):
        assert os.path.getsize(os.path.join(config.out, name)) > 100


def test_dynaflow_output_is_admissible_and_its_plans_execute_without_drift(run):
    _, config = run
    with open(os.path.join(config.out, "benchmark.json")) as f:
        result = json.load(f)
    rows = {r["method"]: r for r in result["offline"]}
    assert rows["demonstrations (expert actions)"]["sae"] < 1e-4
    assert rows["DynaFlow (1 ODE step)"]["sae"] < 1e-6  # its states are the rollout of its actions
    assert rows["DynaFlow (1 ODE step)"]["tre"] > 0  # an untrained model does not reproduce the demonstration
    held = rows[HELD_COMMAND_ROW]  # the standing expert ignores the command: it replays the data
    assert held["tre"] < 1e-9 and held["action_rmse"] == 0 and held["sae"] < 1e-4
    drift = np.array(result["open_loop"]["DynaFlow (1 ODE step)"]["position"])
    assert drift.shape == (21,) and drift.max() < 1e-6
    from dynaflow_policy.benchmark.sweep import SWEEP
    assert set(result["sweep"]) == {"DynaFlow (1 ODE step)", "DynaFlow (2 ODE steps)", "PPO expert"}
    for by_scenario in result["sweep"].values():
        assert list(by_scenario) == list(SWEEP)
        for r in by_scenario.values():  # an episode that fell within the first second tracked nothing: NaN
            assert r["episodes"] == config.sweep_episodes and (r["vx_rmse"] >= 0 or r["falls_per_episode"] == 1)
    assert result["sweep"]["PPO expert"]["stand"]["falls_per_episode"] == 0
    kin = result["kinematic"]
    assert kin["dynaflow_sae"] < 1e-6 < kin["data_sae"]  # kinematic data is infeasible, DynaFlow's output is not
    assert set(kin["gaits"]) <= {"trot", "pace", "bound", "pronk"} and kin["gaits"]
    for d in kin["gaits"].values():
        assert d["episodes"] == config.episodes and 0 < d["survival_seconds"] <= config.seconds
        assert d["falls_per_minute"] == pytest.approx(d["falls"] / (d["survival_seconds"] * config.episodes / 60))
        assert 0 <= d["executed"] <= 1 and 0 <= d["reference"] <= 1
        assert 0 <= d["feet_in_air"] <= 1 and 0 < d["reference_feet_in_air"] < 1 and d["speed"] >= 0
        assert np.shape(d["timeline"]["reference"]) == (9, 4) and np.shape(d["timeline"]["executed"])[1] == 4


def test_four_gaits_section_runs_each_controller_on_its_gaits(run):
    """The two-gait expert runs its two gaits and is not asked to switch through four; DynaFlow runs all four."""
    _, config = run
    with open(os.path.join(config.out, "benchmark.json")) as f:
        section = json.load(f)["four_gaits"]
    assert list(section["per_gait"]["PPO expert (four gaits)"]) == ["trot", "bound"]
    assert list(section["per_gait"]["DynaFlow (four gaits)"]) == ["trot", "pace", "bound", "pronk"]
    assert list(section["switching"]) == ["DynaFlow (four gaits)"]
    segments = section["switching"]["DynaFlow (four gaits)"]
    assert [s["gait"] for s in segments] == ["trot", "pace", "bound", "pronk", "trot"]
    for s in segments:  # a segment the episode never reached has no score
        assert s["falls"] in (0, 1) and (0 <= s["contact_pattern"] <= 1 or np.isnan(s["contact_pattern"]))
    standing = section["per_gait"]["PPO expert (four gaits)"]["trot"]  # out_scale 0: it holds the default pose
    assert standing["falls_per_episode"] == 0 and standing["feet_in_air"] == 0
    assert standing["contact_pattern"] == pytest.approx(1 / 3)  # four feet down: 2 of the 6 foot pairs right
    assert set(section["timelines"]) == {"trot", "pace", "bound", "pronk"}
    clock = np.array(section["timelines"]["trot"]["gait clock"])
    assert clock.shape == (100, 4) and np.all(clock.sum(axis=1) == 2)  # two feet scheduled down at every step
    assert np.all(clock[:, 0] == clock[:, 3]) and np.all(clock[:, 0] != clock[:, 1])  # trot: FR with RL


def test_cli_defaults_are_the_shipped_checkpoints_and_data():
    r = subprocess.run([sys.executable, "eval/benchmark.py", "--help"], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    for default in ("checkpoints/dynaflow_go1_expert", "checkpoints/state_flow_go1_expert",
                    "data/go1_expert_heldout_small.npz", "--kinematic-windows INT"):
        assert default in r.stdout


def test_kinematic_section_spreads_a_gaits_episodes_over_its_held_out_commands():
    from dynaflow_policy.benchmark.gaits import gait_scores
    from dynaflow_policy.data.kinematic import synthesize_trajectory

    class Stand:
        def act(self, obs):
            return np.zeros(12, np.float32)

        def reset(self):
            pass

    commands = np.array([[0.3, 0.0, 0.0], [0.3, 0.0, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 0.5], [0.2, 0.0, 0.0]],
                        np.float32)
    gait = np.array([0, 0, 0, 0, 3])  # four trot windows (the first two share a command), one pronk window
    traj = synthesize_trajectory("trot", commands[:1], np.zeros(1), 9)["states"]  # (9, 37)
    X_ref = np.repeat(traj[None], 5, axis=0)
    scores = gait_scores(Stand(), {"gait": gait, "command": commands}, X_ref, episodes=4, seconds=0.2, seed=0)
    assert set(scores) == {"trot", "pronk"}
    trot = scores["trot"]  # episodes under the distinct commands of windows 0, 2, 3, then 0 again
    np.testing.assert_allclose(trot["commands"], commands[[0, 2, 3]])
    assert trot["commanded_speed"] == pytest.approx((0.3 + 0.4 + 0.0 + 0.3) / 4)
    assert trot["falls"] == 0 and trot["feet_in_air"] < 0.1  # standing (settling from the resting start)
    assert trot["executed"] < 0.5 < scores["pronk"]["executed"]  # four feet down: 2/6 for a trot, 1 for a pronk
    np.testing.assert_allclose(scores["pronk"]["commands"], commands[4:])


@pytest.mark.parametrize("field, value", [("episodes", 0), ("kinematic_command_windows", 0), ("windows", -1),
                                          ("ode_steps", 0), ("latency_warmup", -1), ("seconds", 0.0),
                                          ("open_loop_seconds", -1.0)])
def test_bad_sizes_are_refused_naming_the_option(field, value):
    from dynaflow_policy.benchmark import BenchmarkConfig

    paths = dict.fromkeys(("dynaflow", "dynaflow_kinematic", "ppo", "state_flow", "ppo_gaits", "dynaflow_gaits",
                           "data", "kinematic_data", "out"), "x")
    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')} must be"):
        BenchmarkConfig(**paths, **{field: value})
