"""State-space baseline: random play, inverse dynamics, state flow, the policy, the CLI and its checkpoints."""

import contextlib
import dataclasses
import functools
import io
import json
import os
import shutil

import gymnasium
import jax
import numpy as np
import pytest
import tyro

import envs
from dynaflow_policy import checkpoint
from dynaflow_policy.baselines import train as baseline_train
from dynaflow_policy.baselines.inverse_dynamics import (InverseDynamicsConfig, predict, train_inverse_dynamics,
                                                        transitions)
from dynaflow_policy.baselines.policy import StateFlowIDPolicy
from dynaflow_policy.baselines.random_play import random_play
from dynaflow_policy.baselines.state_flow import sample_states
from dynaflow_policy.checkpoint import META_FILE, STATE_FILE, CheckpointError
from dynaflow_policy.configs import DiTTrainConfig, conditioning
from dynaflow_policy.data.kinematic import generate_kinematic_dataset
from dynaflow_policy.data.pool import load_windows
from dynaflow_policy.data.schema import save_dataset
from dynaflow_policy.frames import _turn, to_heading_frame
from dynaflow_policy.model import DiT1d
from envs.native import NativeGo1
from envs.physics import ACTION_DIM, BASE_QUAT, STATE_DIM
from envs.task import is_fallen

H = 8
FLOW_STEPS = 150
PLAY = dict(steps=30, action_std=0.4, smoothing=0.8)


@pytest.fixture(scope="module")
def dataset():
    """8 kinematic trajectories of 2 s (two per gait, so one per gait is held out for evaluation)."""
    return generate_kinematic_dataset(8, 2.0, seed=0)


@pytest.fixture(scope="module")
def play(dataset):
    """Random play from 300 dataset states (the baseline's start-state distribution)."""
    rng = np.random.default_rng(0)
    starts = dataset.states[rng.integers(0, 8, 300), rng.integers(0, dataset.n_steps, 300)]  # (300, 37)
    return random_play(starts, seed=0, **PLAY)


@pytest.fixture(scope="module")
def id_split(play):
    """(trained model, held-out (x_k, x_next, u)): the last 32 ok segments are held out."""
    ok = np.flatnonzero(play["ok"])
    train, held = ok[:-32], ok[-32:]
    model, losses = train_inverse_dynamics(*transitions(play["states"][train], play["actions"][train]),
                                           InverseDynamicsConfig(hidden=(128, 128), steps=1000, batch_size=256), 0)
    assert losses[-100:].mean() < 0.5 * losses[:10].mean()
    return model, transitions(play["states"][held], play["actions"][held])


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    """The CLI on the kinematic data with a tiny DiT: (work directory, printed report)."""
    root = tmp_path_factory.mktemp("baseline")
    save_dataset(root / "kinematic.npz", dataset)
    argv = ["--dataset", str(root / "kinematic.npz"), "--workdir", str(root / "run"), "--steps", str(FLOW_STEPS),
            "--horizon", str(H), "--batch-size", "16", "--lr", "1e-3", "--log-every", "25", "--eval-every", "75",
            "--checkpoint-every", "100", "--eval-windows", "8",
            "--random-play.segments", "64", "--random-play.steps", "20",
            "--inverse-dynamics.hidden", "32", "--inverse-dynamics.steps", "200", "--inverse-dynamics.batch-size", "64",
            "dit:custom", "--dit.horizon", str(H), "--dit.d-model", "32", "--dit.depth", "1", "--dit.num-heads", "2"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        report = baseline_train.main(tyro.cli(baseline_train.Args, args=argv))
    assert json.loads(out.getvalue()[out.getvalue().index("{"):]) == report
    return str(root / "run"), report


@pytest.fixture(scope="module")
def obs():
    env = gymnasium.make(envs.GYM_ID)
    o, _ = env.reset(seed=0, options={"command": (0.5, 0.0, 0.3), "gait": "trot"})
    env.close()
    return o


# --------------------------------------------------------------------------------------------------------------------
# Random play and inverse dynamics


def test_random_play_shapes_ok_flags_and_replay(play):
    states, actions, ok = play["states"], play["actions"], play["ok"]
    assert states.shape == (300, PLAY["steps"] + 1, STATE_DIM) and states.dtype == np.float32
    assert actions.shape == (300, PLAY["steps"], ACTION_DIM) and actions.dtype == np.float32
    assert ok.shape == (300,) and ok.dtype == bool
    assert 0.2 < ok.mean() < 1.0  # kinematic (infeasible) starts make some segments fall
    assert not is_fallen(states[ok]).any()
    assert np.all(np.abs(actions) <= 1.0)
    lag1 = np.mean(actions[:, 1:] * actions[:, :-1]) / np.mean(actions**2)
    assert 0.6 < lag1 < 0.95  # smooth: AR(1) with coefficient 0.8 (a little less after clipping)
    sim = NativeGo1()
    for n in np.flatnonzero(ok)[:5]:
        np.testing.assert_array_equal(sim.rollout(states[n, 0], actions[n]).astype(np.float32), states[n])
    again = random_play(states[:3, 0], seed=0, **PLAY)
    np.testing.assert_array_equal(again["actions"], actions[:3])
    np.testing.assert_array_equal(again["states"], states[:3])


def test_inverse_dynamics_recovers_held_out_actions(id_split):
    model, (x_k, x_next, u) = id_split
    rmse = float(np.sqrt(np.mean((predict(model, x_k, x_next) - u) ** 2)))
    zero = float(np.sqrt(np.mean(u**2)))
    print(f"inverse dynamics, {len(u)} held-out transitions: action RMSE {rmse:.4f}, predicting 0: {zero:.4f}")
    assert rmse < 0.6 * zero


def test_inverse_dynamics_is_invariant_to_world_position_and_heading(id_split):
    model, (x_k, x_next, _) = id_split
    rng = np.random.default_rng(1)
    pair = np.stack([x_k[:64], x_next[:64]], axis=1).astype(np.float64)  # (64, 2, 37)
    moved = _turn(pair, rng.uniform(-np.pi, np.pi, 64), np)  # any yaw, about the world origin
    moved[..., :2] += rng.uniform(-50.0, 50.0, (64, 1, 2))
    u = predict(model, pair[:, 0], pair[:, 1])
    np.testing.assert_allclose(predict(model, moved[:, 0], moved[:, 1]), u, atol=1e-4)
    assert np.abs(u).max() > 0.3


def test_inverse_dynamics_training_is_deterministic(play):
    data = transitions(play["states"][:20], play["actions"][:20])
    config = InverseDynamicsConfig(hidden=(16,), steps=20, batch_size=32)
    (a, la), (b, lb), (c, _) = (train_inverse_dynamics(*data, config, seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(la, lb)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert not np.array_equal(a.params["params"]["Dense_0"]["kernel"], c.params["params"]["Dense_0"]["kernel"])


# --------------------------------------------------------------------------------------------------------------------
# State flow and the CLI


def test_cli_trains_and_reports(run):
    workdir, report = run
    print(json.dumps(report, indent=1))
    assert report["random_play/segments"] == 64 and 0.0 <= report["random_play/fall_fraction"] < 0.8
    assert report["inverse_dynamics/held_out_rmse"] < report["inverse_dynamics/zero_rmse"]
    assert report["state_flow/step"] == FLOW_STEPS and report["state_flow/steps_per_s"] > 0
    assert report["state_flow/loss_last"] < 0.5 * report["state_flow/loss_first"]
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [m["step"] for m in lines if "train/loss" in m] == list(range(25, FLOW_STEPS + 1, 25))
    assert [m["step"] for m in lines if "eval/tre" in m] == [75, FLOW_STEPS]
    assert all(np.isfinite(m["eval/tre"]) for m in lines if "eval/tre" in m)
    assert [s for s, _ in checkpoint.step_dirs(os.path.join(workdir, "checkpoints"))] == [0, 100, FLOW_STEPS]


def test_sampled_states_start_at_x0(run, dataset):
    ckpt = baseline_train.load_checkpoint(run[0])
    x0 = to_heading_frame(dataset.states[:3, 10:11])[:, 0]  # (3, 37)
    cond = conditioning(dataset.commands[:3, 10], dataset.gait[:3], np)  # (3, 7)
    sampler = jax.jit(functools.partial(sample_states, apply_fn=DiT1d(ckpt.dit, predict="states").apply,
                                        config=ckpt.flow, horizon=H))
    X = np.asarray(sampler(ckpt.state.ema_params, x0=x0, cond=cond, rng=jax.random.PRNGKey(0),
                           normalizer=ckpt.normalizer))
    assert X.shape == (3, H + 1, STATE_DIM) and np.all(np.isfinite(X))
    np.testing.assert_array_equal(X[:, 0], x0)
    np.testing.assert_allclose(np.linalg.norm(X[..., BASE_QUAT], axis=-1), 1.0, atol=1e-5)
    assert np.abs(X[:, 1:] - X[:, :1]).max() > 1e-3  # the plan moves


def test_checkpoint_round_trip(run, tmp_path):
    ckpt = baseline_train.load_checkpoint(run[0])
    assert ckpt.step == FLOW_STEPS and ckpt.path.endswith(os.path.join("checkpoints", str(FLOW_STEPS)))
    assert ckpt.gaits == load_windows(ckpt.config.train)[0].gaits  # the gaits of the training trajectories
    path = baseline_train.save_checkpoint(tmp_path, ckpt.state, ckpt.inverse_dynamics, ckpt.normalizer,
                                          ckpt.config, ckpt.report, gaits=["trot"])
    again = baseline_train.load_checkpoint(path)
    assert again.config == ckpt.config and again.report == ckpt.report and again.step == ckpt.step
    assert again.gaits == ("trot",)
    with pytest.raises(ValueError, match="trot"):
        StateFlowIDPolicy.from_checkpoint(path).gait = "pace"  # it refuses the gaits its data did not have
    meta = checkpoint.read_meta(path)
    assert meta[checkpoint.KIND_KEY] == "state_flow" and "model" not in meta
    assert again.policy_defaults == {"execute_steps": 4, "ode_steps": ckpt.flow.ode_steps}
    for a, b in ((again.state, ckpt.state), (again.inverse_dynamics, ckpt.inverse_dynamics),
                 (again.normalizer, ckpt.normalizer)):
        jax.tree.map(np.testing.assert_array_equal, a, b)


def test_resume_is_bit_identical_and_skips_random_play(run, tmp_path):
    """Resuming the run from its step-100 checkpoint reproduces its step-150 checkpoint exactly."""
    workdir = tmp_path / "run"
    shutil.copytree(run[0], workdir)
    shutil.rmtree(workdir / "checkpoints" / str(FLOW_STEPS))
    config = baseline_train.load_checkpoint(workdir).config
    with pytest.raises(FileExistsError, match="resume"):
        baseline_train.train_baseline(config, workdir, log=lambda _: None)
    changed = (dataclasses.replace(config, random_play=dataclasses.replace(config.random_play, steps=21)),
               dataclasses.replace(config, train=dataclasses.replace(config.train, weight_decay=0.5)))
    for bad, field in zip(changed, ("random_play", r"train\.weight_decay: 0\.0001 -> 0\.5")):
        with pytest.raises(ValueError, match=f"cannot resume .*{field}"):
            baseline_train.train_baseline(bad, workdir, resume=True, log=lambda _: None)
    lines = []
    resumed = baseline_train.train_baseline(config, workdir, resume=True, log=lines.append)
    assert lines == [f"resuming {workdir / 'checkpoints' / '100'} at step 100"]  # no random play, no ID training
    assert resumed["state_flow/step"] == FLOW_STEPS
    assert resumed["inverse_dynamics/held_out_rmse"] == run[1]["inverse_dynamics/held_out_rmse"]
    a, b = baseline_train.load_checkpoint(workdir), baseline_train.load_checkpoint(run[0])
    jax.tree.map(np.testing.assert_array_equal, a.state, b.state)
    steps = [[m["step"] for m in map(json.loads, open(os.path.join(d, "metrics.jsonl")))] for d in (workdir, run[0])]
    assert steps[0] == steps[1]  # lines after step 100 were replaced, not duplicated


# --------------------------------------------------------------------------------------------------------------------
# Policy


def test_policy_acts_in_a_gymnasium_loop(run):
    policy = StateFlowIDPolicy.from_checkpoint(run[0], execute_steps=3, seed=1)
    env = gymnasium.make(envs.GYM_ID)
    o, _ = env.reset(seed=0, options={"command": (0.5, 0.0, 0.0)})
    plans, actions = [], []
    for _ in range(7):
        a = policy.act(o)
        assert a.shape == (12,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)
        if not plans or not np.array_equal(plans[-1], policy.last_states):
            plans.append(policy.last_states.copy())
            np.testing.assert_allclose(plans[-1][0], o[:STATE_DIM], atol=1e-5)  # world frame, starts at the state
        actions.append(a)
        o, *_ = env.step(a)
    env.close()
    assert len(plans) == 3  # replanned at calls 0, 3 and 6
    assert np.abs(np.stack(actions)).max() > 0.05


def test_policy_is_deterministic_given_seed(run, obs):
    a = StateFlowIDPolicy.from_checkpoint(run[0], execute_steps=2, seed=3)
    b = StateFlowIDPolicy.from_checkpoint(run[0], execute_steps=2, seed=3)
    first = np.stack([a.act(obs) for _ in range(3)])
    np.testing.assert_array_equal(np.stack([b.act(obs) for _ in range(3)]), first)
    a.reset()
    np.testing.assert_array_equal(a.act(obs), first[0])
    np.testing.assert_array_equal(first[0], predict(a.inverse_dynamics, obs[:STATE_DIM], a.last_states[1]))
    a.reset(seed=4)
    assert not np.array_equal(a.act(obs), first[0])


def test_policy_command_and_gait_overrides(run, obs):
    policy = StateFlowIDPolicy.from_checkpoint(run[0])
    from_obs = policy.act(obs)
    policy.reset()
    policy.command, policy.gait = obs[37:40], "trot"
    np.testing.assert_array_equal(policy.act(obs), from_obs)
    policy.reset()
    policy.command = (-0.5, 0.3, 0.0)
    assert not np.allclose(policy.act(obs), from_obs)
    with pytest.raises(ValueError, match="gait"):
        policy.gait = "gallop"


@pytest.mark.parametrize("bad, match", [(np.zeros(37), r"\(44,\)"), ("nan", "finite"), ("gait", "one-hot")])
def test_policy_rejects_bad_observations(run, obs, bad, match):
    policy = StateFlowIDPolicy.from_checkpoint(run[0])
    if isinstance(bad, str):
        o = obs.copy()
        if bad == "nan":
            o[5] = np.nan
        else:
            o[40:44] = (1, 1, 0, 0)
        bad = o
    with pytest.raises(ValueError, match=match):
        policy.act(bad)


def test_baseline_config_has_no_start_noise(tmp_path):
    """start_noise perturbs DynaFlow's rollout, which this loss does not have: the config cannot hold it."""
    assert "start_noise" not in {f.name for f in dataclasses.fields(DiTTrainConfig)}
    with pytest.raises(TypeError, match="start_noise"):
        DiTTrainConfig(start_noise=1.0)
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        tyro.cli(baseline_train.Args, args=["--workdir", str(tmp_path), "--start-noise", "1.0"])
    old = baseline_train.BaselineConfig().to_dict()  # the nested layout written while TrainConfig was borrowed
    old["train"]["start_noise"] = 0.0
    assert baseline_train.BaselineConfig.from_dict(old) == baseline_train.BaselineConfig()


def test_missing_truncated_or_foreign_checkpoints(run, tmp_path):
    with pytest.raises(CheckpointError):
        StateFlowIDPolicy.from_checkpoint(tmp_path / "nowhere")
    bad = tmp_path / "truncated"
    shutil.copytree(os.path.join(run[0], "checkpoints", str(FLOW_STEPS)), bad)
    state = bad / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        StateFlowIDPolicy.from_checkpoint(bad)
    foreign = checkpoint.save(tmp_path / "foreign", 0, {"params": np.zeros(3)}, {"train_config": {}})
    with pytest.raises(CheckpointError, match="not a state-flow baseline checkpoint"):
        StateFlowIDPolicy.from_checkpoint(foreign)
    assert (tmp_path / "truncated" / META_FILE).exists()


def test_exported_checkpoint_acts_identically(run, dataset, tmp_path):
    """``python -m dynaflow_policy.export`` on a baseline run: EMA weights and ID only, same actions."""
    from dynaflow_policy import export

    from dynaflow_policy import run_log

    out = export.main(export.Args(run=run[0], out=str(tmp_path / "shipped"), execute_steps=2))
    assert sorted(os.listdir(out)) == [checkpoint.META_FILE, run_log.PLOT_FILE, run_log.METRICS_FILE,
                                       checkpoint.STATE_FILE]
    full = baseline_train.load_checkpoint(run[0])
    shipped = baseline_train.load_checkpoint(out)
    assert shipped.state is None and shipped.step == full.step and shipped.report == full.report
    assert shipped.gaits == full.gaits is not None
    assert checkpoint.checkpoint_kind(out) == "state_flow"
    assert shipped.policy_defaults == checkpoint.read_meta(out)["policy"] == {"execute_steps": 2,
                                                                              "ode_steps": full.flow.ode_steps}
    assert os.path.getsize(os.path.join(out, checkpoint.STATE_FILE)) < 0.5 * os.path.getsize(
        os.path.join(full.path, checkpoint.STATE_FILE))
    rows = [json.loads(line) for line in open(os.path.join(out, run_log.METRICS_FILE))]
    assert rows and max(r["step"] for r in rows) == full.step
    x = dataset.states[0, 10].astype(np.float64)
    a = StateFlowIDPolicy.from_checkpoint(run[0], seed=2).plan(x, (0.5, 0.0, 0.0), 0)
    b = StateFlowIDPolicy.from_checkpoint(out, seed=2).plan(x, (0.5, 0.0, 0.0), 0)
    np.testing.assert_array_equal(a, b)
