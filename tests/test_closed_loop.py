"""dynaflow_policy.closed_loop: metrics of a controller whose behaviour is known (hold the default pose)."""

import dataclasses

import gymnasium
import numpy as np
import pytest

import envs
from dynaflow_policy.closed_loop import (Scenario, command_result, evaluate, evaluate_command, markdown_table,
                                         run_episode, stride_means)
from envs.physics import BASE_LINVEL, STATE_DIM
from envs.task import COMMAND_DIM, GAIT_PERIODS, GAITS


class Stand:
    """Holds the default pose: the Go1 stands still (tests/test_physics checks that it stays up)."""

    resets = 0

    def act(self, obs):
        return np.zeros(12, np.float32)

    def reset(self):
        self.resets += 1


class Record(Stand):
    """Stands and records every observation it is given."""

    def __init__(self):
        self.obs = []

    def act(self, obs):
        self.obs.append(obs)
        return super().act(obs)


class Flail:
    def __init__(self):
        self.rng = np.random.default_rng(0)

    def act(self, obs):
        return np.sign(self.rng.standard_normal(12)).astype(np.float32)

    def reset(self):
        pass


def test_standing_controller_tracks_zero_and_misses_a_speed_command_by_its_size():
    stand = Stand()
    still = evaluate_command(stand, (0.0, 0.0, 0.0), episodes=2, seconds=2.0)
    assert stand.resets == 2
    assert still.falls_per_episode == 0 and still.survival_seconds == pytest.approx(2.0)
    assert still.vx_rmse < 0.1 and still.yaw_rate_rmse < 0.1  # settling sway after a reset with joint noise
    assert 0 < still.mean_torque < 10  # holding 12.7 kg up takes a few N m per joint
    assert still.foot_slip < 0.05  # feet planted
    assert np.isnan(still.energy_per_meter)  # no translation asked for
    assert np.isnan(still.reached_half_command)  # no command to reach
    moving = evaluate_command(stand, (0.5, 0.0, -0.4), episodes=2, seconds=2.0)
    assert moving.vx_rmse == pytest.approx(0.5, abs=0.05)  # standing still misses 0.5 m/s by 0.5 m/s
    assert moving.vx_stride_rmse == pytest.approx(0.5, abs=0.05)  # in every stride too
    assert moving.yaw_rate_rmse == pytest.approx(0.4, abs=0.05)
    assert moving.reached_half_command == 0
    # Four feet down: no foot in the air, a third of the trot's foot pairs, all of the pronk's.
    assert still.gait == "trot" and still.feet_in_air == 0 and still.contact_pattern == pytest.approx(2 / 6)
    pronk = evaluate_command(stand, (0.0, 0.0, 0.0), episodes=1, seconds=2.0, gait="pronk")
    assert pronk.gait == "pronk" and pronk.contact_pattern == 1.0


def test_stride_means_remove_the_surge_within_a_stride_and_keep_the_bias():
    """A speed that surges once per gait period around a bias: each stride's mean is the bias, whatever the gait."""
    trot, bound = (int(round(GAIT_PERIODS[GAITS.index(g)] / envs.PHYSICS.ctrl_dt)) for g in ("trot", "bound"))
    assert (trot, bound) == (25, 20)
    surge = lambda n, k: 0.3 * np.sin(2 * np.pi * np.arange(n * k) / n)  # k whole periods of n steps
    errors = np.concatenate([0.05 + surge(trot, 2), -0.1 + surge(bound, 3), np.full(7, 9.0)])  # a partial stride
    gaits = np.array([GAITS.index("trot")] * (2 * trot) + [GAITS.index("bound")] * (3 * bound + 7))
    np.testing.assert_allclose(stride_means(errors, gaits), [0.05, 0.05, -0.1, -0.1, -0.1], atol=1e-12)
    assert stride_means(errors[:trot - 1], gaits[:trot - 1]).shape == (0,)


def test_reached_half_command_counts_the_episodes_that_get_going():
    """An expert that walks in the even episodes and stands in the odd ones: half of them reach the command."""
    from dynaflow_policy.data.collect import DEFAULT_EXPERT
    from dynaflow_policy.experts import load_expert

    class EveryOther:
        def __init__(self):
            self.expert, self.episode = load_expert(DEFAULT_EXPERT), -1

        def act(self, obs):
            return self.expert.act(obs) if self.episode % 2 == 0 else np.zeros(12, np.float32)

        def reset(self):
            self.episode += 1

    r = evaluate_command(EveryOther(), (0.6, 0.0, 0.0), episodes=4, seconds=2.0)
    assert r.reached_half_command == 0.5 and r.falls_per_episode == 0


def test_falls_are_counted_and_end_the_episode():
    r = evaluate_command(Flail(), (0.0, 0.0, 0.0), episodes=2, seconds=20.0)
    assert r.falls_per_episode > 0
    assert r.survival_seconds < 20.0
    assert r.falls_per_minute == pytest.approx(r.falls_per_episode * 2 / (2 * r.survival_seconds / 60))


def test_episode_runs_the_given_gait_and_command():
    rec = Record()
    env = gymnasium.make(envs.GYM_ID)
    ep = run_episode(env, rec, (0.2, 0.0, 0.1), seconds=0.1, seed=0, gait="pronk")
    env.close()
    obs = np.stack(rec.obs)  # (5, 44): state, command, gait one-hot
    assert len(obs) == 5 and ep["contacts"].shape == (5, 4) and not ep["fell"]
    command, gait = obs[:, STATE_DIM:STATE_DIM + COMMAND_DIM], obs[:, STATE_DIM + COMMAND_DIM:]
    np.testing.assert_allclose(command, np.tile([0.2, 0.0, 0.1], (5, 1)), atol=1e-7)
    np.testing.assert_array_equal(gait, np.tile(np.eye(len(GAITS))[GAITS.index("pronk")], (5, 1)))


def test_scenario_changes_the_command_on_time_and_shoves_the_base():
    rec = Record()
    scenario = Scenario(((0.0, (0.2, 0.0, 0.0)), (0.1, (0.0, -0.3, 0.5))), pushes=((0.16, (0.8, -0.4)),))
    env = gymnasium.make(envs.GYM_ID)
    ep = run_episode(env, rec, scenario, seconds=0.2, seed=0)
    env.close()
    obs = np.stack(rec.obs)  # (10, 44)
    command = obs[:, STATE_DIM:STATE_DIM + COMMAND_DIM]
    np.testing.assert_allclose(command[:5], np.tile([0.2, 0.0, 0.0], (5, 1)), atol=1e-7)  # steps 0..4: 0..0.08 s
    np.testing.assert_allclose(command[5:], np.tile([0.0, -0.3, 0.5], (5, 1)), atol=1e-7)
    np.testing.assert_allclose(ep["commands"], command, atol=1e-7)
    # the shove lands in the observation of step 8 (0.16 s): the base's velocity jumps by it on top of the
    # settling after the reset (which changes it by a few cm/s per step)
    v = obs[:, BASE_LINVEL][:, :2]
    np.testing.assert_allclose(v[8] - v[7] - (v[7] - v[6]), [0.8, -0.4], atol=0.03)
    # a standing robot misses the second command by its size, measured against each step's command
    r = command_result([ep], scenario.command_at(0), settle_seconds=0.0)
    assert r.vy_rmse == pytest.approx(np.sqrt(5 / 10 * 0.3**2), abs=0.15)
    with pytest.raises(ValueError, match="start at 0 s"):
        Scenario(((0.5, (0.0, 0.0, 0.0)),))
    with pytest.raises(ValueError, match="pushes"):
        Scenario(((0.0, (0.0, 0.0, 0.0)),), pushes=((1.0, (np.nan, 0.0)),))
    env = gymnasium.make(envs.GYM_ID)
    env.reset(seed=0)
    before = env.unwrapped.state
    with pytest.raises(ValueError, match="push velocity"):
        env.unwrapped.push((1.0, 2.0, 3.0))
    np.testing.assert_array_equal(env.unwrapped.state, before)
    env.close()


def test_scenario_switches_the_gait_on_time():
    rec = Record()
    scenario = Scenario(((0.0, (0.3, 0.0, 0.0)),), gaits=((0.0, "pace"), (0.06, "pronk")))
    env = gymnasium.make(envs.GYM_ID)
    ep = run_episode(env, rec, scenario, seconds=0.1, seed=0, gait="trot")
    env.close()
    onehot = np.stack(rec.obs)[:, -len(GAITS):]  # (5, 4)
    want = [GAITS.index("pace")] * 3 + [GAITS.index("pronk")] * 2  # steps 0..2: 0..0.04 s
    np.testing.assert_array_equal(onehot, np.eye(len(GAITS))[want])
    np.testing.assert_array_equal(ep["gaits"], want)
    assert scenario.gait_at(0, "trot") == "pace" and Scenario.constant((0, 0, 0)).gait_at(9, "bound") == "bound"
    with pytest.raises(ValueError, match="trot.*pace.*bound.*pronk"):
        Scenario(((0.0, (0.0, 0.0, 0.0)),), gaits=((0.0, "gallop"),))
    with pytest.raises(ValueError, match="gaits must start at 0 s"):
        Scenario(((0.0, (0.0, 0.0, 0.0)),), gaits=((1.0, "pace"),))


def test_table_has_a_row_per_command():
    results = evaluate(Stand(), {"a": (0.0, 0.0, 0.0), "b": (0.3, 0.0, 0.0)}, episodes=1, seconds=1.5)
    table = markdown_table(results)
    assert len(table.splitlines()) == 4 and "| b (0.3, 0.0, 0.0) |" in table
    assert table.splitlines()[0].count("|") == table.splitlines()[2].count("|")


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="episodes"):
        evaluate_command(Stand(), (0.0, 0.0, 0.0), episodes=0)
    with pytest.raises(ValueError, match="settle_seconds"):
        evaluate_command(Stand(), (0.0, 0.0, 0.0), episodes=1, seconds=0.5)


class Bang:
    """Bang-bang on the sign of an elementwise function of the observation: deterministic, falls, and a
    row's action does not depend on the batch it is in."""

    def act(self, obs):
        return np.sign(np.sin(1e3 * np.asarray(obs)[..., :12])).astype(np.float32)

    def reset(self, mask=None):
        pass


@pytest.mark.parametrize("controller", ["ppo", "bang"])
def test_vector_env_episodes_equal_the_single_env_loop(controller):
    """Same seeds, deterministic controller: run_episodes (3 envs, 5 episodes) gives run_episode's episodes."""
    from dynaflow_policy import load_policy
    from dynaflow_policy.closed_loop import run_episodes
    from dynaflow_policy.data.collect import DEFAULT_EXPERT

    c = load_policy(DEFAULT_EXPERT) if controller == "ppo" else Bang()
    seconds = 1.5 if controller == "ppo" else 3.0
    env = gymnasium.make(envs.GYM_ID)
    single = [run_episode(env, c, (0.6, 0.0, 0.2), seconds, s, "trot") for s in range(5)]
    env.close()
    batched = run_episodes(c, (0.6, 0.0, 0.2), seconds, list(range(5)), "trot", num_envs=3)
    assert [e["fell"] for e in batched] == [e["fell"] for e in single]
    if controller == "bang":
        assert all(e["fell"] for e in single) and len({len(e["actions"]) for e in single}) > 1
    for a, b in zip(single, batched):
        for key in ("states", "actions", "torques", "power", "contacts"):
            np.testing.assert_array_equal(a[key], b[key])
    r1 = evaluate_command(c, (0.6, 0.0, 0.2), episodes=5, seconds=seconds)
    r3 = evaluate_command(c, (0.6, 0.0, 0.2), episodes=5, seconds=seconds, num_envs=3)
    np.testing.assert_equal(dataclasses.asdict(r3), dataclasses.asdict(r1))  # NaN == NaN here
    with pytest.raises(ValueError, match="num_envs"):
        evaluate_command(c, (0.6, 0.0, 0.2), episodes=1, num_envs=0)
