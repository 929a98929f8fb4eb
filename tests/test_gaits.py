"""The gait clock and schedule (envs.task), the four-gait expert's inputs, and gaits in the Gymnasium env."""

import gymnasium
import numpy as np
import pytest

import envs
from dynaflow_policy import checkpoint
from dynaflow_policy.experts import load_expert
from dynaflow_policy.experts.policy import CLOCKED_POLICY_INPUTS, PPOExpert, mlp_layers
from dynaflow_policy.experts.ppo import widen_inputs
from dynaflow_policy.data.kinematic import GAIT_OFFSETS, KinematicGaitConfig
from envs import task
from envs.physics import PHYSICS

TROT_EXPERT = "checkpoints/ppo_go1_trot"
GAITS_EXPERT = "checkpoints/ppo_go1_gaits"
GAITS_DYNAFLOW = "checkpoints/dynaflow_go1_gaits"


def test_schedule_follows_the_phase_groups():
    trot, pronk = task.gait_index("trot"), task.gait_index("pronk")
    np.testing.assert_array_equal(task.scheduled_contact(0.1, trot), [True, False, False, True])  # FR + RL
    np.testing.assert_array_equal(task.scheduled_contact(0.6, trot), [False, True, True, False])
    np.testing.assert_array_equal(task.scheduled_contact(0.1, pronk), [True] * 4)
    np.testing.assert_array_equal(task.scheduled_contact(0.6, pronk), [False] * 4)
    for gait in task.GAITS:  # the schedule of every gait scores 1 on the clock-free pattern test
        for phase in np.linspace(0.01, 0.99, 9):
            g = task.gait_index(gait)
            assert task.gait_sync(task.scheduled_contact(phase, g), g) == 1.0


def test_clock_sine_is_positive_exactly_in_scheduled_stance():
    phase = np.linspace(0.013, 0.987, 50)
    for g in range(len(task.GAITS)):
        gait = np.full(phase.shape, g)
        clock = task.gait_clock(phase, gait)
        assert clock.shape == (50, task.CLOCK_DIM)
        np.testing.assert_array_equal(clock[:, :4] > 0, task.scheduled_contact(phase, gait))
        np.testing.assert_allclose(clock[:, :4] ** 2 + clock[:, 4:] ** 2, 1.0, rtol=1e-6)


def test_phase_advances_one_cycle_per_period():
    for g, period in enumerate(task.GAIT_PERIODS):
        phase = 0.0
        steps = round(period / PHYSICS.ctrl_dt)
        for _ in range(steps - 1):
            phase = task.advance_phase(phase, g, PHYSICS.ctrl_dt)
        assert phase == pytest.approx(1.0 - PHYSICS.ctrl_dt / period, abs=1e-5)
        assert task.advance_phase(phase, g, PHYSICS.ctrl_dt) == pytest.approx(0.0, abs=1e-5)


def test_kinematic_gaits_share_the_schedule():
    assert KinematicGaitConfig().periods == task.GAIT_PERIODS and KinematicGaitConfig().duty == task.GAIT_DUTY
    for g, name in enumerate(task.GAITS):
        np.testing.assert_allclose(GAIT_OFFSETS[name], task.GAIT_PHASE_OFFSETS[g])


def test_command_range_table():
    low, high = task.command_range_table(task.GAIT_COMMAND_RANGES)
    assert low.shape == high.shape == (len(task.GAITS), 3) and np.all(low < high)
    np.testing.assert_allclose(high[task.gait_index("trot")], [1.5, 0.8, 1.2], rtol=1e-6)  # MuJoCo Playground's Go1
    low, _ = task.command_range_table(task.CommandRanges())
    np.testing.assert_array_equal(low, np.tile(task.CommandRanges().low, (len(task.GAITS), 1)))
    with pytest.raises(ValueError, match="missing.*pace"):
        task.command_range_table({"trot": task.CommandRanges()}, ("trot", "pace"))
    with pytest.raises(ValueError, match="unknown.*gallop"):
        task.command_range_table({"gallop": task.CommandRanges()}, ())


def _observations(gaits, seed=0):
    rng = np.random.default_rng(seed)
    x = np.asarray(PHYSICS.home_state, np.float32)
    return np.stack([task.observation(x + 0.02 * rng.standard_normal(x.shape).astype(np.float32),
                                      rng.uniform(-0.5, 0.5, 3).astype(np.float32), g) for g in gaits])


def _widened_expert():
    arrays, meta = checkpoint.restore(TROT_EXPERT)
    wide = widen_inputs(arrays, task.POLICY_INPUT_DIM + task.CLOCK_DIM, task.GAITS)
    meta = {**meta, "ppo_config": {**meta["ppo_config"], "gaits": list(task.GAITS)}}
    return PPOExpert(wide["normalizer"]["mean"], wide["normalizer"]["std"], mlp_layers(wide["policy"]), "swish",
                     meta, CLOCKED_POLICY_INPUTS)


def test_widened_trot_expert_acts_as_the_trot_expert_for_every_gait():
    """The warm start of the four-gait run: zero weights on the added inputs, whatever gait and phase."""
    trot = load_expert(TROT_EXPERT)
    wide = _widened_expert()
    obs = _observations([0, 1, 2, 3, 0, 1, 2, 3])
    as_trot = obs.copy()
    as_trot[:, -len(task.GAITS):] = np.eye(len(task.GAITS))[0]
    for _ in range(3):  # the clock advances between calls
        np.testing.assert_allclose(wide.act(obs), trot.act(as_trot), atol=1e-6)
    std = wide.std[task.POLICY_INPUT_DIM - len(task.GAITS):task.POLICY_INPUT_DIM]
    np.testing.assert_allclose(std, np.sqrt(0.25 * 0.75), rtol=1e-6)  # a uniform draw over four gaits
    with pytest.raises(ValueError, match="narrow"):
        widen_inputs(checkpoint.restore(TROT_EXPERT)[0], 40, task.GAITS)


def test_clocked_expert_keeps_a_phase_per_environment():
    expert = _widened_expert()
    expert.act(_observations([0, 2, 3]))
    expert.act(_observations([0, 2, 3]))
    periods = np.array(task.GAIT_PERIODS)[[0, 2, 3]]
    np.testing.assert_allclose(expert._phase, 2 * PHYSICS.ctrl_dt / periods, rtol=1e-5)
    expert.reset(np.array([False, True, False]))
    np.testing.assert_allclose(expert._phase, [2 * PHYSICS.ctrl_dt / periods[0], 0.0, 2 * PHYSICS.ctrl_dt / periods[2]],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="mask"):
        expert.reset(np.ones(2, bool))
    expert.reset()
    assert expert._phase is None


def test_trot_expert_refuses_other_gaits():
    expert = load_expert(TROT_EXPERT)
    assert expert.gaits == ("trot",) and not expert.clocked
    with pytest.raises(ValueError, match=r"trained on the gaits \('trot',\), not on \['pace'\]"):
        expert.act(_observations([0, 1]))
    with pytest.raises(ValueError, match=r"not on \['bound'\]"):
        expert.gait = "bound"
    with pytest.raises(ValueError, match="trot.*pace.*bound.*pronk"):
        expert.gait = "gallop"
    assert expert.gait is None


def test_experts_report_the_command_ranges_they_were_trained_on():
    trot, gaits = load_expert(TROT_EXPERT), load_expert(GAITS_EXPERT)
    assert trot.command_ranges("trot") == task.CommandRanges()  # one set for every gait: vx -0.5..1
    for gait in task.GAITS:  # one set per gait
        assert gaits.command_ranges(gait) == task.GAIT_COMMAND_RANGES[gait]
    with pytest.raises(ValueError, match=r"not on \['pace'\]"):
        trot.command_ranges("pace")
    with pytest.raises(ValueError, match="trot.*pace.*bound.*pronk"):
        gaits.command_ranges("gallop")


def test_expert_gait_overrides_the_observation():
    wide, twin = _widened_expert(), _widened_expert()
    obs = _observations([0, 1])
    wide.gait = "pronk"
    np.testing.assert_array_equal(wide.act(obs), twin.act(_observations([3, 3])))  # same states, pronk one-hot
    np.testing.assert_allclose(wide._phase, PHYSICS.ctrl_dt / task.GAIT_PERIODS[3], rtol=1e-6)


def test_gym_env_switches_gait_mid_episode_and_runs_the_clock():
    env = gymnasium.make(envs.GYM_ID).unwrapped
    env.reset(seed=0, options={"gait": "bound"})
    assert env.gait == "bound" and env.phase == 0.0
    _, _, _, _, info = env.step(np.zeros(12))
    assert info["phase"] == pytest.approx(PHYSICS.ctrl_dt / task.GAIT_PERIODS[task.gait_index("bound")])
    contact = info["contact"]
    expected = np.mean(contact == task.scheduled_contact(info["phase"], task.gait_index("bound")))
    assert info["reward/gait_schedule"] == pytest.approx(expected)
    env.set_gait("pace")
    obs, *_ = env.step(np.zeros(12))
    np.testing.assert_array_equal(obs[-len(task.GAITS):], np.eye(len(task.GAITS))[task.gait_index("pace")])
    with pytest.raises(ValueError, match="trot.*pace.*bound.*pronk"):
        env.set_gait("gallop")
    assert env.gait == "pace"
    env.close()


def test_each_gait_is_evaluated_within_its_ranges():
    from dynaflow_policy.closed_loop import gait_commands

    for gait in task.GAITS:
        low, high = task.GAIT_COMMAND_RANGES[gait].low, task.GAIT_COMMAND_RANGES[gait].high
        commands = np.array(list(gait_commands(gait).values()))
        assert commands.shape == (5, 3) and np.all(commands >= low - 1e-6) and np.all(commands <= high + 1e-6)
    assert gait_commands("trot")["vx 1.5"] == (1.5, 0.0, 0.0)


@pytest.mark.parametrize("path", [GAITS_EXPERT, GAITS_DYNAFLOW])
def test_shipped_four_gait_controllers_switch_gait_mid_episode_without_falling(path):
    """trot -> pace -> bound -> pronk -> trot, 3 s each: every segment keeps its contact pattern after 0.5 s."""
    from dynaflow_policy import load_policy
    from dynaflow_policy.benchmark.four_gaits import SWITCH_SCENARIO, SWITCH_SECONDS, switching_segments
    from dynaflow_policy.closed_loop import run_episode

    controller = load_policy(path)
    assert tuple(controller.gaits) == task.GAITS and (path != GAITS_EXPERT or controller.clocked)
    env = gymnasium.make(envs.GYM_ID, max_episode_steps=int(round(SWITCH_SECONDS / PHYSICS.ctrl_dt)))
    episode = run_episode(env, controller, SWITCH_SCENARIO, SWITCH_SECONDS, 0)
    env.close()
    assert not episode["fell"]
    rows = switching_segments([episode])
    assert [r["gait"] for r in rows] == ["trot", "pace", "bound", "pronk", "trot"]
    assert all(r["contact_pattern"] >= 0.8 for r in rows), rows
