"""Tests of the Gymnasium env dynaflow/Go1-v0 (envs.gym_env)."""

import re
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import task
from envs.gym_env import OBS_DIM, Go1GymEnv
from envs.physics import (BASE_ANGVEL, BASE_LINVEL, BASE_POS, BASE_QUAT, JOINT_POS, JOINT_VEL, NQ, PHYSICS,
                          STATE_DIM)


@pytest.fixture
def env():
    e = Go1GymEnv()
    yield e
    e.close()


@pytest.fixture(scope="module")
def mjx_env():
    """The one MJX-backed env of this module (its step compiles once, ~10-25 s cold)."""
    e = Go1GymEnv(backend="mjx")
    yield e
    e.close()


def _check_env_quietly(e):
    with warnings.catch_warnings():
        # The -inf/inf observation bounds are deliberate (positions and velocities are unbounded).
        warnings.filterwarnings("ignore", message=".*Box observation space m.* value is .*infinity")
        warnings.filterwarnings("ignore", message=".*not having a spec")  # test_make_and_check_env has one
        check_env(e)


def test_check_env(env):
    _check_env_quietly(env)


def test_make_and_check_env():
    e = gymnasium.make(envs.GYM_ID)
    assert e.spec.max_episode_steps == round(envs.EPISODE_SECONDS / PHYSICS.ctrl_dt) == 1000
    # With a spec, check_env also builds the env in every render mode and renders it.
    _check_env_quietly(e.unwrapped)
    obs, _ = e.reset(seed=0)
    assert obs.shape == (OBS_DIM,) and obs.dtype == np.float32
    e.close()


def test_refused_reset_leaves_the_made_env_usable():
    e = gymnasium.make(envs.GYM_ID)
    with pytest.raises(ValueError, match="command"):
        e.reset(options={"command": (0.5, 0.0)})
    e.reset(seed=0)
    obs, _, terminated, truncated, _ = e.step(np.zeros(12, np.float32))
    assert obs.shape == (OBS_DIM,) and not terminated and not truncated
    e.close()


def test_time_limit_truncates():
    e = gymnasium.make(envs.GYM_ID, max_episode_steps=3)
    e.reset(seed=0, options={"state": PHYSICS.home_state})
    for _ in range(3):
        _, _, terminated, truncated, _ = e.step(np.zeros(12, np.float32))
    assert truncated and not terminated
    e.close()


def test_spaces_and_observation_structure(env):
    assert env.action_space == gymnasium.spaces.Box(-1.0, 1.0, (12,), np.float32)
    assert env.observation_space.shape == (44,) and env.observation_space.dtype == np.float32
    assert sum(env.observation_structure.values()) == OBS_DIM == 44
    state_blocks = [BASE_POS, BASE_QUAT, JOINT_POS, BASE_LINVEL, BASE_ANGVEL, JOINT_VEL]
    assert list(env.observation_structure.values())[:6] == [s.stop - s.start for s in state_blocks]
    assert env.observation_structure["command"] == 3 and env.observation_structure["gait"] == len(task.GAITS)


def test_reset_is_deterministic_under_a_seed(env):
    obs_a, info_a = env.reset(seed=123)
    obs_b, info_b = env.reset(seed=123)
    obs_c, _ = env.reset(seed=124)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(info_a["command"], info_b["command"])
    assert not np.array_equal(obs_a, obs_c)
    # The sampled command lies in the ranges; the joint noise is at most task.INIT_JOINT_NOISE rad.
    assert np.all(info_a["command"] >= env.command_ranges.low) and np.all(info_a["command"] <= env.command_ranges.high)
    assert np.max(np.abs(obs_a[JOINT_POS] - np.array(PHYSICS.default_pose))) <= task.INIT_JOINT_NOISE + 1e-6
    np.testing.assert_allclose(np.linalg.norm(obs_a[BASE_QUAT]), 1.0, atol=1e-6)


def test_reset_options_fix_command_gait_and_state(env):
    x0 = PHYSICS.home_state.astype(np.float64)
    x0[BASE_POS] = (1.0, -2.0, 0.3)
    obs, info = env.reset(seed=0, options={"command": (0.7, -0.2, 0.4), "gait": "bound", "state": x0})
    np.testing.assert_allclose(obs[37:40], (0.7, -0.2, 0.4), rtol=1e-6)
    np.testing.assert_array_equal(obs[40:44], (0, 0, 1, 0))
    np.testing.assert_array_equal(obs[:37], x0.astype(np.float32))
    assert info["gait"] == "bound"
    obs, info = env.reset(options={"gait": "pronk"})
    np.testing.assert_array_equal(obs[40:44], (0, 0, 0, 1))


def test_set_command_steers_mid_episode(env):
    env.reset(seed=0, options={"command": (0.5, 0.0, 0.0)})
    env.set_command((0.2, -0.1, 0.6))
    obs, _, _, _, info = env.step(np.zeros(12))
    np.testing.assert_allclose(obs[37:40], (0.2, -0.1, 0.6), rtol=1e-6)
    np.testing.assert_allclose(info["command"], (0.2, -0.1, 0.6), rtol=1e-6)
    assert info["contact"].shape == (4,) and info["contact"].dtype == bool
    for bad in [(0.1, 0.2), (np.nan, 0.0, 0.0)]:
        with pytest.raises(ValueError, match="command"):
            env.set_command(bad)
    np.testing.assert_allclose(env.command, (0.2, -0.1, 0.6), rtol=1e-6)  # unchanged by the bad calls


@pytest.mark.parametrize("options, match", [
    ({"command": (0.1, 0.2)}, "command"),
    ({"command": (0.1, np.nan, 0.0)}, "command"),
    ({"gait": "gallop"}, "gait"),
    ({"state": np.zeros(36)}, r"\(37,\)"),
    ({"state": np.full(37, np.inf)}, "finite"),
    ({"speed": 1.0}, "unknown"),
])
def test_reset_rejects_bad_options(env, options, match):
    with pytest.raises(ValueError, match=match):
        env.reset(options=options)


@pytest.mark.parametrize("action", [np.zeros(11), np.zeros((1, 12)), 0.0, [0.0] * 13])
def test_wrong_action_shape_raises(env, action):
    env.reset(seed=0)
    found = np.asarray(action).shape
    with pytest.raises(ValueError, match=rf"\(12,\).*{re.escape(str(found))}"):
        env.step(action)


def test_accepts_float64_float32_and_lists(env):
    u = np.linspace(-0.5, 0.5, 12)
    results = []
    for action in (u, u.astype(np.float32).astype(np.float64), u.astype(np.float32), u.astype(np.float32).tolist()):
        env.reset(seed=0)
        results.append(env.step(action)[0])
    np.testing.assert_array_equal(results[1], results[2])
    np.testing.assert_array_equal(results[1], results[3])
    assert np.all(np.isfinite(results[0]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_raises_and_leaves_env_unchanged(bad):
    """After a rejected action the env behaves exactly like one that never saw it."""
    rng = np.random.default_rng(0)
    a, b = Go1GymEnv(), Go1GymEnv()
    actions = 0.3 * rng.standard_normal((6, 12))
    for e in (a, b):
        e.reset(seed=3)
        for u in actions[:3]:
            e.step(u)
    state_before = a.state
    u_bad = actions[3].copy()
    u_bad[5] = bad
    with pytest.raises(ValueError, match="finite"):
        a.step(u_bad)
    np.testing.assert_array_equal(a.state, state_before)
    for u in actions[3:]:
        out_a, out_b = a.step(u), b.step(u)
        np.testing.assert_array_equal(out_a[0], out_b[0])
        assert out_a[1] == out_b[1]
        for k in out_a[4]:
            np.testing.assert_array_equal(out_a[4][k], out_b[4][k])


@pytest.mark.parametrize("backend", ["mujoco", "mjx"])
def test_blow_up_terminates_with_finite_obs(request, backend):
    e = Go1GymEnv() if backend == "mujoco" else request.getfixturevalue("mjx_env")
    x = PHYSICS.home_state.astype(np.float64)
    x[NQ:] = 1e6
    obs0, _ = e.reset(seed=0, options={"state": x})
    obs, reward, terminated, truncated, info = e.step(np.zeros(12))
    assert terminated and not truncated
    assert info["diverged"] is True
    assert np.all(np.isfinite(obs)) and np.isfinite(reward)
    np.testing.assert_array_equal(obs, obs0)  # the last finite observation
    assert info["reward/termination"] == 1.0
    for key, value in info.items():
        if key.startswith("reward/") or key in ("torque", "power"):
            assert np.all(np.isfinite(value)), key


def test_torque_and_power_are_substep_averages_of_the_actuators():
    e = Go1GymEnv()
    e.reset(options={"state": PHYSICS.home_state})
    for _ in range(100):  # settle, then stand still
        _, _, _, _, info = e.step(np.zeros(12))
    assert info["power"] < 0.5  # standing still: the servos hold, they do no work
    assert 1.0 < np.abs(info["torque"]).mean() < 10.0  # but they carry 12.7 kg
    _, _, _, _, info = e.step(np.full(12, 0.8))
    assert info["power"] > 20.0
    # The first substep after a new target sees the largest error: the substep mean exceeds the post-step law.
    post_step = task.servo_torque(e.state, np.full(12, 0.8))
    assert np.abs(info["torque"]).mean() > np.abs(post_step).mean()


def test_reward_is_the_weighted_sum_of_the_terms():
    weights = task.RewardWeights(tracking_lin_vel=2.0, orientation=-1.0, torques=-1e-3)
    e = Go1GymEnv(reward_weights=weights)
    e.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(10):
        _, reward, terminated, _, info = e.step(0.3 * rng.standard_normal(12))
        terms = {k[len("reward/"):]: v for k, v in info.items() if k.startswith("reward/")}
        assert set(terms) == set(weights.as_dict())
        by_hand = PHYSICS.ctrl_dt * sum(w * terms[k] for k, w in weights.as_dict().items())
        assert reward == pytest.approx(by_hand, rel=1e-12, abs=1e-15)
        assert reward == pytest.approx(task.total_reward(terms, weights), rel=1e-12, abs=1e-15)
        assert info["torque"].shape == (12,)
        assert np.all(np.abs(info["torque"]) <= np.array(PHYSICS.torque_limit) + 1e-9)
        assert not terminated


def test_feet_air_time_is_credited_on_landing(env):
    """Dropped from 6 cm above standing height, all four feet land after >0.1 s in the air."""
    x = PHYSICS.home_state.astype(np.float64)
    x[BASE_POS.start + 2] += 0.06
    env.reset(options={"state": x, "command": (0.5, 0.0, 0.0)})
    landed = []
    for _ in range(25):
        _, _, terminated, _, info = env.step(np.zeros(12))
        landed.append(info["reward/feet_air_time"])
        assert not terminated
    assert max(landed) > 0.0  # sum over feet of (air time - 0.1 s) at touchdown


def test_render_rgb_array():
    # 800x600 is larger than the MJCF's 640x480 offscreen buffer, which the env must enlarge.
    e = Go1GymEnv(render_mode="rgb_array", width=800, height=600)
    e.reset(seed=0)
    e.step(np.zeros(12))
    img = e.render()
    assert img.shape == (600, 800, 3) and img.dtype == np.uint8
    assert img.min() != img.max()
    e.close()
    e.close()  # closing twice is allowed
    with pytest.warns(UserWarning, match="render_mode"):
        assert Go1GymEnv().render() is None


def test_standing_with_zero_action_native(env):
    """Zero action holds the home pose for 5 s: trunk stays 0.20-0.32 m high and upright."""
    env.reset(options={"state": PHYSICS.home_state, "command": (0.0, 0.0, 0.0)})
    for _ in range(round(5.0 / PHYSICS.ctrl_dt)):  # 250 steps
        obs, _, terminated, _, info = env.step(np.zeros(12))
        assert not terminated and not info["diverged"]
        assert 0.20 <= obs[2] <= 0.32
        assert task.projected_gravity(obs[:STATE_DIM].astype(np.float64))[2] < -0.9


# Measured max |MJX - native| over the 10 steps below (seeds 0-3, CPU, JAX 0.9 / MuJoCo 3.17):
#   base pos 2e-7 m, quat 5e-7, joint pos 2e-6 rad, base linvel 3e-6 m/s,
#   base angvel 3e-5 rad/s, joint vel 4e-5 rad/s.
# MJX runs in float32 (eps 1.2e-7) and native MuJoCo in float64; the gap is
# float32 rounding, largest in the velocities because the stiff servo and
# contact forces turn rounding in positions into accelerations over each 4 ms
# substep. The tolerances leave 20-50x headroom; a real physics mismatch
# (different model, substeps, targets or warm start) shows up as 1e-3 to 1e-1.
MJX_TOL = {"pos": 1e-5, "quat": 1e-5, "joint_pos": 1e-4, "linvel": 1e-4, "angvel": 1e-3, "joint_vel": 1e-3}
_BLOCKS = {"pos": BASE_POS, "quat": BASE_QUAT, "joint_pos": JOINT_POS, "linvel": BASE_LINVEL,
           "angvel": BASE_ANGVEL, "joint_vel": JOINT_VEL}


@pytest.mark.parametrize("seed", [0, 1])
def test_mjx_backend_matches_native(mjx_env, seed):
    native = Go1GymEnv()
    obs_n, _ = native.reset(seed=seed)
    obs_j, _ = mjx_env.reset(seed=seed)
    np.testing.assert_array_equal(obs_n, obs_j)
    rng = np.random.default_rng(seed)
    worst = {k: 0.0 for k in _BLOCKS}
    for _ in range(10):
        u = 0.3 * rng.standard_normal(12)
        out_n, out_j = native.step(u), mjx_env.step(u)
        diff = np.abs(native.state - mjx_env.state)
        for k, s in _BLOCKS.items():
            worst[k] = max(worst[k], float(diff[s].max()))
        assert out_n[2] == out_j[2] and not out_j[4]["diverged"]
        assert out_n[1] == pytest.approx(out_j[1], abs=1e-5)
    print("max |mjx - native| per block:", {k: f"{v:.1e}" for k, v in worst.items()})
    for k, v in worst.items():
        assert v <= MJX_TOL[k], (k, v)
    # The state actually moved, so the comparison is not vacuous.
    assert np.max(np.abs(native.state[JOINT_POS] - obs_n[JOINT_POS])) > 0.05


def test_invalid_constructor_arguments():
    with pytest.raises(ValueError, match="backend"):
        Go1GymEnv(backend="brax")
    with pytest.raises(ValueError, match="render_mode"):
        Go1GymEnv(render_mode="human")
