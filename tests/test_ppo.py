"""PPO expert: a tiny Brax PPO run writes checkpoints and metrics, resumes, and loads as a numpy policy."""

import dataclasses
import json
import os
import shutil
import time

import gymnasium
import numpy as np
import pytest
import tyro

import envs
from dynaflow_policy import checkpoint, run_log
from dynaflow_policy.experts import load_expert
from dynaflow_policy.experts import ppo
from dynaflow_policy.experts.policy import CLOCKED_POLICY_INPUTS

# One PPO training step = batch_size * num_minibatches * unroll_length = 4 * 2 * 5 = 40 env steps;
# 160 env steps = one evaluation interval of 4 training steps. A four-gait run with the gait clock (the shipped
# trot expert covers the clock-free inputs).
TINY = ppo.PPOConfig(num_timesteps=160, num_evals=2, num_envs=4, episode_length=10, unroll_length=5, batch_size=4,
                     num_minibatches=2, num_updates_per_batch=1, policy_hidden_layer_sizes=(8, 8),
                     value_hidden_layer_sizes=(8,), num_eval_envs=2, gaits=envs.GAITS, gait_clock=True,
                     per_gait_commands=True, reward_weights=envs.task.RewardWeights(
                         gait_schedule=1.0, gait_height_sync=-1.0, gait_height_sync_scale=(1.0, 1.0, 0.0, 2.0)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(workdir, checkpoint path, progress calls) of a finished TINY run."""
    workdir = tmp_path_factory.mktemp("ppo")
    calls = []
    path = ppo.train(TINY, workdir, progress_fn=lambda step, m: calls.append((step, m)))
    return workdir, path, calls


def _normalizer_count(path):
    arrays, _ = checkpoint.restore(path)
    count = arrays["normalizer"]["count"]
    return int(count["hi"]) * 2**32 + int(count["lo"])


def test_config_checks():
    assert TINY.eval_interval_steps == 160
    assert ppo.PPOConfig().eval_interval_steps % ppo.PPOConfig().env_steps_per_training_step == 0
    with pytest.raises(ValueError, match="multiple of num_envs"):
        dataclasses.replace(TINY, num_envs=3)
    with pytest.raises(ValueError, match="num_evals"):
        dataclasses.replace(TINY, num_evals=1)
    with pytest.raises(ValueError, match="gaits"):
        dataclasses.replace(TINY, gaits=("gallop",))
    with pytest.raises(ValueError, match="init_from"):
        dataclasses.replace(TINY, init_from="no/such/checkpoint")
    with pytest.raises(ValueError, match="gait_redraw_probability"):
        dataclasses.replace(TINY, gait_redraw_probability=-0.1)
    with pytest.raises(ValueError, match="single_axis_probability"):
        dataclasses.replace(TINY, single_axis_probability=1.5)
    assert ppo.make_env(dataclasses.replace(TINY, single_axis_probability=0.5)).single_axis_probability == 0.5
    with pytest.raises(ValueError, match="resample_command_steps"):
        dataclasses.replace(TINY, resample_command_steps=0)
    assert ppo.PPOConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    assert TINY.command_ranges["trot"] == envs.task.GAIT_COMMAND_RANGES["trot"]
    assert ppo.PPOConfig().command_ranges == {"trot": envs.task.CommandRanges()}


def test_init_from_refuses_other_networks(tmp_path):
    """The trot expert's (512, 256, 128) networks cannot start TINY's (8, 8): refused before anything compiles."""
    with pytest.raises(ValueError, match="networks"):
        ppo.train(dataclasses.replace(TINY, init_from="checkpoints/ppo_go1_trot"), tmp_path)


def test_cli_flags_are_config_fields():
    args = tyro.cli(ppo.Args, args=["--workdir", "w", "--num-envs", "8", "--policy-hidden-layer-sizes", "16", "16",
                                    "--resume"])
    assert args.workdir == "w" and args.resume
    assert args.config == dataclasses.replace(ppo.default_config(), num_envs=8, policy_hidden_layer_sizes=(16, 16))


def test_run_writes_checkpoint_metrics_and_plot(tiny_run):
    workdir, path, calls = tiny_run
    assert path == os.path.join(workdir, "checkpoints", "160")
    _, meta = checkpoint.restore(path)
    assert meta[checkpoint.KIND_KEY] == "ppo" and meta["step"] == 160 and checkpoint.checkpoint_kind(path) == "ppo"
    assert ppo.PPOConfig.from_dict(meta["ppo_config"]) == TINY
    assert _normalizer_count(path) == 160  # one observation per env step went into the normaliser

    rows = run_log.read_metrics(workdir / run_log.METRICS_FILE)
    assert [r["step"] for r in rows] == [0, 160]
    times = [r["time"] for r in rows]  # seconds since the Unix epoch, as every trainer writes
    assert times == sorted(times) and time.time() - 3600 < times[0] <= times[-1] <= time.time()
    assert [s for s, _ in calls] == [0, 160]
    names = envs.RewardWeights().as_dict()
    for row in rows:
        assert np.isfinite(row["eval/episode_reward"])
        assert {f"reward/{k}" for k in names} <= set(row)  # every named term of envs.task is reported
    assert rows[-1]["train/sps"] > 0
    assert os.path.getsize(os.path.join(workdir, run_log.PLOT_FILE)) > 1000


def _interrupted_copy(tiny_run, tmp_path):
    """A copy of the TINY run whose log has a line after its checkpoint and a torn last line (killed mid-write)."""
    workdir, _, _ = tiny_run
    shutil.copytree(workdir, tmp_path, dirs_exist_ok=True)
    with open(tmp_path / run_log.METRICS_FILE, "a") as f:
        f.write(json.dumps({"step": 320, "eval/episode_reward": 0.0}) + "\n" + '{"step": 4')


def test_resume_refuses_what_it_cannot_continue(tiny_run, tmp_path):
    _interrupted_copy(tiny_run, tmp_path)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        ppo.train(TINY, tmp_path)
    with pytest.raises(ValueError, match=r"cannot resume .*learning_rate: 0\.0003 -> 0\.001"):
        ppo.train(dataclasses.replace(TINY, learning_rate=1e-3, num_timesteps=320), tmp_path, resume=True)
    assert ppo.train(TINY, tmp_path, resume=True) == os.path.join(tmp_path, "checkpoints", "160")  # nothing to do


@pytest.mark.slow  # a second ppo.train traces the env again (Brax rebuilds its functions): 2-5 min on 2 cores
def test_resume_continues_from_last_checkpoint(tiny_run, tmp_path):
    _interrupted_copy(tiny_run, tmp_path)
    path = ppo.train(dataclasses.replace(TINY, num_timesteps=320), tmp_path, resume=True)
    assert path == os.path.join(tmp_path, "checkpoints", "320")
    # The normaliser continued from the checkpoint (a fresh one would have counted 160).
    assert _normalizer_count(path) == 320
    assert [r["step"] for r in run_log.read_metrics(tmp_path / run_log.METRICS_FILE)] == [0, 160, 320]


def test_load_expert_acts_in_gym_env(tiny_run):
    _, path, _ = tiny_run
    expert, twin = load_expert(path), load_expert(path)
    env = gymnasium.make(envs.GYM_ID)
    obs, _ = env.reset(seed=0, options={"command": (0.5, 0.0, 0.0), "gait": "bound"})
    for _ in range(3):
        action = expert.act(obs)
        assert action.shape == (12,) and action.dtype == np.float32
        assert np.all(np.isfinite(action)) and np.all(np.abs(action) <= 1.0)
        np.testing.assert_array_equal(twin.act(obs), action)  # deterministic
        obs, *_ = env.step(action)
    np.testing.assert_allclose(expert._phase, env.unwrapped.phase, rtol=1e-6)  # the env's clock and the expert's
    env.close()
    assert expert.act(np.stack([obs, obs])).shape == (2, 12)
    with pytest.raises(ValueError, match="shape"):
        expert.act(np.zeros(37))
    with pytest.raises(ValueError, match="finite"):
        expert.act(np.full(envs.task.OBS_DIM, np.nan, np.float32))


def test_expert_ignores_world_position_and_heading(tiny_run):
    """Same body-frame motion at another place and heading -> the same action."""
    from envs.physics import BASE_LINVEL, BASE_POS, BASE_QUAT

    expert = load_expert(tiny_run[1])
    env = gymnasium.make(envs.GYM_ID)
    obs, _ = env.reset(seed=1, options={"command": (0.5, 0.2, 0.3)})
    for _ in range(5):
        obs, *_ = env.step(expert.act(obs))
    env.close()
    yaw = 1.234
    moved = obs.copy()
    moved[BASE_POS] += np.array([3.0, -2.0, 0.0], np.float32)
    w, x, y, z = obs[BASE_QUAT]
    ch, sh = np.cos(yaw / 2), np.sin(yaw / 2)  # q_z(yaw) * q
    moved[BASE_QUAT] = [ch * w - sh * z, ch * x - sh * y, ch * y + sh * x, ch * z + sh * w]
    c, s = np.cos(yaw), np.sin(yaw)
    moved[BASE_LINVEL] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32) @ obs[BASE_LINVEL]
    expert.reset()
    moved_action = expert.act(moved)
    expert.reset()
    np.testing.assert_allclose(moved_action, expert.act(obs), atol=1e-5)


def test_numpy_expert_matches_brax_inference(tiny_run):
    import functools

    import jax
    from brax.training.acme import running_statistics
    from brax.training.agents.ppo import networks as ppo_networks

    _, path, _ = tiny_run
    arrays, meta = checkpoint.restore(path)
    assert meta["policy"]["inputs"] == CLOCKED_POLICY_INPUTS and meta["policy"]["input_dim"] == 49
    params = ppo._arrays_to_params(arrays, 49)
    network = ppo_networks.make_ppo_networks(
        49, envs.ACTION_DIM, preprocess_observations_fn=running_statistics.normalize,
        policy_hidden_layer_sizes=TINY.policy_hidden_layer_sizes, value_hidden_layer_sizes=TINY.value_hidden_layer_sizes)
    policy = ppo_networks.make_inference_fn(network)(params, deterministic=True)
    obs = np.random.default_rng(0).normal(size=(5, envs.task.OBS_DIM)).astype(np.float32)
    obs[:, :37] += np.asarray(envs.PHYSICS.home_state, np.float32)
    obs[:, -len(envs.GAITS):] = np.eye(len(envs.GAITS), dtype=np.float32)[np.arange(5) % len(envs.GAITS)]  # valid
    gait = np.arange(5) % len(envs.GAITS)
    inputs = np.concatenate([envs.task.policy_input(obs), envs.task.gait_clock(np.zeros(5), gait)], -1)  # phase 0
    brax_action, _ = jax.jit(functools.partial(policy, key_sample=jax.random.PRNGKey(0)))(inputs)
    np.testing.assert_allclose(load_expert(path).act(obs), np.asarray(brax_action), atol=1e-5)


def test_truncated_checkpoint_is_a_clear_error(tiny_run, tmp_path):
    _, path, _ = tiny_run
    bad = tmp_path / "160"
    shutil.copytree(path, bad)
    state = bad / checkpoint.STATE_FILE
    state.write_bytes(state.read_bytes()[:-10])
    with pytest.raises(checkpoint.CheckpointError, match="truncated"):
        load_expert(bad)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        load_expert(tmp_path / "missing")
