"""Tests of the MJX vector env of dynaflow/Go1-v0 (envs.vector_env), in the style of Gymnasium's env checks.

One vector size (N = 3) and module fixtures throughout: the batched step compiles once (10-40 s cold on a 2-core
CPU; the persistent compilation cache of conftest.py makes later runs fast).
"""

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import envs
from envs.gym_env import Go1GymEnv
from envs.physics import BASE_ANGVEL, BASE_LINVEL, BASE_POS, BASE_QUAT, JOINT_POS, JOINT_VEL, PHYSICS, STATE_DIM
from envs.task import COMMAND_DIM, GAITS, OBS_DIM
from envs.vector_env import Go1VectorEnv

N = 3
STEP_KEYS = {"reward/tracking_lin_vel", "reward/tracking_ang_vel", "reward/lin_vel_z", "reward/ang_vel_xy",
             "reward/orientation", "reward/torques", "reward/action_rate", "reward/feet_air_time",
             "reward/termination", "reward/gait_sync", "reward/gait_schedule", "reward/gait_height_sync", "diverged",
             "torque", "power", "contact", "phase"}
START_KEYS = {"command", "gait"}


def _with_masks(keys):
    return set(keys) | {f"_{k}" for k in keys}


def _upside_down() -> np.ndarray:
    """(37,) home pose turned over (180 degrees about x): fallen from the first step."""
    x = PHYSICS.home_state.astype(np.float64)
    x[BASE_QUAT] = (0.0, 1.0, 0.0, 0.0)
    x[BASE_POS.start + 2] = 0.4
    return x


@pytest.fixture(scope="module")
def venv():
    """The module's vector env; every test resets it first."""
    v = gymnasium.make_vec(envs.GYM_ID, num_envs=N, vectorization_mode="vector_entry_point")
    yield v
    v.close()


@pytest.fixture(scope="module")
def mjx_envs():
    """N single MJX-backed envs (their jitted step is shared: one compile)."""
    es = [Go1GymEnv(backend="mjx") for _ in range(N)]
    yield es
    for e in es:
        e.close()


def test_make_vec_modes():
    v = gymnasium.make_vec(envs.GYM_ID, num_envs=2)
    assert isinstance(v, Go1VectorEnv) and v.num_envs == 2
    assert v.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert v.max_episode_steps == round(envs.EPISODE_SECONDS / PHYSICS.ctrl_dt) == 1000
    assert v.spec.id == envs.GYM_ID and v.spec.kwargs["vectorization_mode"] == "vector_entry_point"
    sync = gymnasium.make_vec(envs.GYM_ID, num_envs=2, vectorization_mode="sync")
    assert isinstance(sync, SyncVectorEnv) and all(isinstance(e.unwrapped, Go1GymEnv) for e in sync.envs)
    assert sync.envs[0].spec.max_episode_steps == 1000
    sync.close()


def test_spaces(venv):
    single = Go1GymEnv()
    assert venv.single_observation_space == single.observation_space
    assert venv.single_action_space == single.action_space
    assert venv.observation_space.shape == (N, OBS_DIM) and venv.observation_space.dtype == np.float32
    assert venv.action_space.shape == (N, 12) and venv.action_space.dtype == np.float32
    assert venv.observation_structure == single.observation_structure


def test_reset_matches_the_sync_vector_of_native_envs(venv):
    sync = gymnasium.make_vec(envs.GYM_ID, num_envs=N, vectorization_mode="sync")
    for options in (None, {"gait": "bound"}, {"command": (0.5, 0.0, 0.2)}):
        obs, info = venv.reset(seed=7, options=options)
        obs_s, info_s = sync.reset(seed=7, options=options)
        assert obs.shape == (N, OBS_DIM) and obs.dtype == np.float32 and obs in venv.observation_space
        np.testing.assert_array_equal(obs, obs_s)
        assert set(info) == set(info_s) == _with_masks(START_KEYS)
        for k in info:
            np.testing.assert_array_equal(info[k], info_s[k])
            assert info[k].dtype == info_s[k].dtype, k
    sync.close()


def test_steps_agree_with_the_single_mjx_env(venv, mjx_envs):
    obs, _ = venv.reset(seed=3)
    for i, e in enumerate(mjx_envs):
        np.testing.assert_array_equal(e.reset(seed=3 + i)[0], obs[i])
    rng = np.random.default_rng(0)
    tol = [(BASE_POS, 1e-5), (BASE_QUAT, 1e-5), (JOINT_POS, 1e-4), (BASE_LINVEL, 1e-4), (BASE_ANGVEL, 1e-3),
           (JOINT_VEL, 1e-3)]
    for _ in range(10):
        u = (0.3 * rng.standard_normal((N, 12))).astype(np.float32)
        obs, reward, terminated, truncated, info = venv.step(u)
        assert obs.dtype == np.float32 and reward.dtype == np.float64
        assert terminated.dtype == truncated.dtype == np.bool_ and not truncated.any()
        assert set(info) == _with_masks(STEP_KEYS | START_KEYS)
        for i, e in enumerate(mjx_envs):
            obs_i, reward_i, terminated_i, _, info_i = e.step(u[i])
            for block, atol in tol:
                np.testing.assert_allclose(obs[i, block], obs_i[block], rtol=0, atol=atol)
            np.testing.assert_array_equal(obs[i, STATE_DIM:], obs_i[STATE_DIM:])
            assert reward[i] == pytest.approx(reward_i, abs=1e-5)
            assert terminated[i] == terminated_i
            np.testing.assert_array_equal(info["contact"][i], info_i["contact"])
            np.testing.assert_allclose(info["torque"][i], info_i["torque"], rtol=0, atol=1e-3)
            assert info["power"][i] == pytest.approx(info_i["power"], rel=1e-3)
            for k in STEP_KEYS - {"torque", "contact", "power"}:
                assert info[k][i] == pytest.approx(info_i[k], rel=1e-4, abs=1e-4), k
    assert np.max(np.abs(obs[:, JOINT_POS] - PHYSICS.home_state[JOINT_POS])) > 0.05  # it moved


def test_seeding_is_deterministic(venv):
    u = np.full((N, 12), 0.2, np.float32)
    runs = []
    for _ in range(2):
        obs0, _ = venv.reset(seed=11)
        runs.append((obs0, venv.step(u)[0]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    other, _ = venv.reset(seed=12)
    assert not np.array_equal(other, runs[0][0])
    obs, _ = venv.reset(seed=[11, None, 13])
    np.testing.assert_array_equal(obs[0], runs[0][0][0])


def test_autoreset_on_the_step_after_a_termination(venv):
    start = np.stack([_upside_down(), PHYSICS.home_state, PHYSICS.home_state])
    venv.reset(seed=5, options={"state": start})
    zero = np.zeros((N, 12), np.float32)
    _, reward, terminated, truncated, info = venv.step(zero)
    assert terminated.tolist() == [True, False, False] and not truncated.any()
    assert info["reward/termination"].tolist() == [1.0, 0.0, 0.0]

    obs, reward, terminated, truncated, info = venv.step(np.full((N, 12), 0.5, np.float32))  # env 0: ignored
    # Env 0 starts a new episode, drawn from its own generator exactly as the single env's autoreset draws it.
    single = Go1GymEnv()
    single.reset(seed=5, options={"state": _upside_down()})
    np.testing.assert_array_equal(obs[0], single.reset()[0])
    assert reward[0] == 0.0 and not terminated[0] and not truncated[0]
    assert info["_command"].all() and info["_gait"].all()
    np.testing.assert_array_equal(info["command"][0], obs[0, STATE_DIM:STATE_DIM + COMMAND_DIM])
    for k in STEP_KEYS:
        assert info[f"_{k}"].tolist() == [False, True, True], k
        assert not np.any(info[k][0]), k
    _, _, terminated, _, info = venv.step(zero)  # env 0 steps again
    assert info["_torque"].all() and not terminated[0]


def test_truncation_after_max_episode_steps():
    v = gymnasium.make_vec(envs.GYM_ID, num_envs=N, max_episode_steps=2)
    assert v.max_episode_steps == 2
    v.reset(seed=0, options={"state": PHYSICS.home_state})
    zero = np.zeros((N, 12), np.float32)
    assert not v.step(zero)[3].any()
    _, _, terminated, truncated, _ = v.step(zero)
    assert truncated.all() and not terminated.any()
    obs, reward, terminated, truncated, info = v.step(zero)  # every env autoresets
    assert set(info) == _with_masks(START_KEYS) and not reward.any() and not (terminated | truncated).any()
    assert not v.step(zero)[3].any() and v.step(zero)[3].all()


def test_reset_options_for_all_or_each_env(venv):
    obs, info = venv.reset(seed=0, options={"command": (0.4, 0.0, 0.1), "gait": "pace"})
    np.testing.assert_allclose(obs[:, STATE_DIM:STATE_DIM + 3], [[0.4, 0.0, 0.1]] * N, rtol=0, atol=1e-7)
    assert info["gait"].tolist() == ["pace"] * N and np.all(obs[:, STATE_DIM + 3 + GAITS.index("pace")] == 1)
    commands = np.array([[0.1, 0, 0], [0.2, 0, 0], [0.3, 0, 0]], np.float32)
    obs, info = venv.reset(options={"command": commands, "gait": ["trot", "bound", "pronk"],
                                    "state": np.tile(PHYSICS.home_state, (N, 1))})
    np.testing.assert_array_equal(obs[:, STATE_DIM:STATE_DIM + 3], commands)
    np.testing.assert_array_equal(obs[:, :STATE_DIM], np.tile(PHYSICS.home_state, (N, 1)))
    assert info["gait"].tolist() == ["trot", "bound", "pronk"]


def test_reset_mask_resets_only_those_envs(venv):
    before, _ = venv.reset(seed=0)
    after, info = venv.reset(options={"reset_mask": np.array([False, True, False]), "gait": "bound"})
    np.testing.assert_array_equal(after[[0, 2]], before[[0, 2]])
    assert not np.array_equal(after[1], before[1])
    assert info["_gait"].tolist() == [False, True, False] and info["gait"][1] == "bound"


@pytest.mark.parametrize("actions, match", [
    (np.zeros((N, 11)), "shape"), (np.zeros(12), "shape"), (np.zeros((N + 1, 12)), "shape"),
    (np.where(np.arange(N)[:, None] == 1, np.nan, 0.0) * np.ones((N, 12)), "environment 1"),
    (np.full((N, 12), np.inf), "environment 0"),
])
def test_bad_actions_raise_and_leave_the_env_unchanged(venv, actions, match):
    venv.reset(seed=0)
    state = venv.state
    with pytest.raises(ValueError, match=match):
        venv.step(actions)
    np.testing.assert_array_equal(venv.state, state)


@pytest.mark.parametrize("options, match", [
    ({"command": (0.5, 0.0)}, "environment 0: options\\['command'\\]"),
    ({"command": np.zeros((N + 1, 3))}, "one value for every environment"),
    ({"gait": ["trot", "gallop", "trot"]}, "environment 1: unknown gait"),
    ({"state": np.full(STATE_DIM, np.nan)}, "finite"),
    ({"speed": 1.0}, "unknown reset options"),
    ({"reset_mask": np.zeros(N, bool)}, "at least one"),
    ({"reset_mask": [True] * N}, "numpy bool array"),
])
def test_bad_reset_options_raise_and_leave_the_env_usable(venv, options, match):
    obs, _ = venv.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        venv.reset(seed=1, options=options)
    np.testing.assert_array_equal(venv.state, obs[:, :STATE_DIM])
    assert venv.step(np.zeros((N, 12), np.float32))[0].shape == (N, OBS_DIM)


@pytest.mark.parametrize("seed, match", [([1, -1, 2], "environment 1"), ([1, 2, 2.5], "environment 2"), (-3, ">= 0")])
def test_bad_seeds_raise_before_any_environment_is_reseeded(venv, seed, match):
    first, _ = venv.reset(seed=5)
    with pytest.raises(ValueError, match=match):
        venv.reset(seed=seed)
    np.testing.assert_array_equal(venv.state, first[:, :STATE_DIM])
    again, _ = venv.reset()  # the streams continue from seed 5, as if the bad call had not happened
    venv.reset(seed=5)
    np.testing.assert_array_equal(venv.reset()[0], again)


def test_step_before_reset_and_bad_arguments():
    with pytest.raises(gymnasium.error.ResetNeeded):
        Go1VectorEnv(2).step(np.zeros((2, 12)))
    with pytest.raises(ValueError, match="sync"):
        gymnasium.make_vec(envs.GYM_ID, num_envs=2, backend="mujoco")
    with pytest.raises(ValueError, match="render"):
        Go1VectorEnv(2, render_mode="rgb_array")
    with pytest.raises(ValueError, match="num_envs"):
        Go1VectorEnv(0)
