"""DynaFlowPolicy: the Gymnasium loop, receding horizon, determinism, native-vs-MJX sampling, bad input."""

import dataclasses
import json
import os
import shutil

import gymnasium
import jax
import numpy as np
import pytest

import envs
from dynaflow_policy.checkpoint import CheckpointError, META_FILE, STATE_FILE
from dynaflow_policy.configs import FlowConfig, conditioning
from dynaflow_policy.flow import sample
from dynaflow_policy.frames import to_heading_frame
from dynaflow_policy.model import DiT1d
from dynaflow_policy.policy import DynaFlowPolicy
from envs.task import GAIT_PERIODS, gait_index
from artifacts import tiny_dit, write_dynaflow_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

H = 8
DIT = tiny_dit(H)


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return write_dynaflow_checkpoint(tmp_path_factory.mktemp("dynaflow") / "checkpoints", H)


@pytest.fixture(scope="module")
def obs():
    env = gymnasium.make(envs.GYM_ID)
    o, _ = env.reset(seed=0, options={"command": (0.6, 0.0, 0.2), "gait": "pace"})
    env.close()
    return o


def test_act_in_a_gymnasium_loop(ckpt_dir):
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=3)
    env = gymnasium.make(envs.GYM_ID)
    o, _ = env.reset(seed=0, options={"command": (0.5, 0.0, 0.0)})
    plans = []
    for _ in range(7):
        a = policy.act(o)
        assert a.shape == (12,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)
        if not plans or not np.array_equal(plans[-1], policy.last_actions):
            plans.append(policy.last_actions.copy())
        o, *_ = env.step(a)
    env.close()
    assert len(plans) == 3  # replanned at steps 0, 3 and 6
    assert not np.allclose(plans[0], plans[1])


def test_actions_are_the_plan_in_order_and_deterministic(ckpt_dir, obs):
    a = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=4, seed=3)
    b = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=4, seed=3)
    first = [a.act(obs) for _ in range(4)]
    np.testing.assert_array_equal(np.stack(first), a.last_actions[:4])
    np.testing.assert_array_equal(np.stack([b.act(obs) for _ in range(4)]), np.stack(first))
    a.reset()
    np.testing.assert_array_equal(a.act(obs), first[0])  # reset restarts the noise
    a.reset(seed=4)
    assert not np.array_equal(a.act(obs), first[0])


def test_plan_is_invariant_to_position_and_quarter_turns(ckpt_dir, obs):
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir)
    U = policy.plan(obs[:37], obs[37:40], 1).copy()
    policy.reset()
    x = obs[:37].astype(np.float64).copy()
    x[:2] += (4.0, -1.0)
    x[3:7] = [x[3] - x[6], x[4] - x[5], x[5] + x[4], x[6] + x[3]]  # q_z(90 deg) * q, unnormalised by sqrt 2
    x[3:7] /= np.sqrt(2.0)
    x[19:21] = (-x[20], x[19])  # world linear velocity turned by 90 deg
    np.testing.assert_allclose(policy.plan(x, obs[37:40], 1), U, atol=1e-5)


def test_command_and_gait_overrides(ckpt_dir, obs):
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir)
    from_obs = policy.act(obs)
    policy.reset()
    policy.command = obs[37:40]
    policy.gait = "pace"
    np.testing.assert_array_equal(policy.act(obs), from_obs)
    policy.reset()
    policy.command = (-0.5, 0.3, 0.0)
    assert not np.allclose(policy.act(obs), from_obs)
    with pytest.raises(ValueError, match="gait"):
        policy.gait = "gallop"
    with pytest.raises(ValueError, match="command"):
        policy.command = (0.1, np.nan, 0.0)


def test_a_new_command_or_gait_is_planned_for_at_once(ckpt_dir, obs):
    turned, bound = obs.copy(), obs.copy()
    turned[37:40] = (-0.5, 0.3, 0.0)
    bound[40:44] = np.eye(4)[gait_index("bound")]
    for changed in (turned, bound):
        policy = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=4)
        policy.act(obs)
        first = policy.last_actions.copy()
        a = policy.act(changed)  # the plan for obs has 3 actions left, but answers another command / gait
        eager = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=1)  # replans every step: same keys
        eager.act(obs)
        eager.act(changed)
        np.testing.assert_allclose(policy.last_actions, eager.last_actions, atol=1e-6)  # planned for `changed`
        assert not np.allclose(policy.last_actions, first)
        np.testing.assert_array_equal(a, policy.last_actions[0])
        np.testing.assert_array_equal(policy.act(changed), policy.last_actions[1])  # then the new plan runs on
    ensembled = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=1, ensemble=4)
    for _ in range(3):
        ensembled.act(obs)
    # the three plans made for obs are not averaged into the first action for the new command
    np.testing.assert_array_equal(ensembled.act(turned), ensembled.last_actions[0])
    lazy = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=4, replan_on_change=False)
    lazy.act(obs)
    first = lazy.last_actions.copy()
    np.testing.assert_array_equal(lazy.act(turned), first[1])  # waits until its plan is used up
    with pytest.raises(ValueError, match="replan_on_change"):
        DynaFlowPolicy.from_checkpoint(ckpt_dir, replan_on_change="yes")


def test_native_sampler_equals_the_mjx_sampler(ckpt_dir, obs):
    """Two ODE steps: the policy's native-MuJoCo rollouts give the plan of dynaflow_policy.flow.sample (MJX)."""
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir, ode_steps=2, seed=5)
    U_native = policy.plan(obs[:37], obs[37:40], 1)
    X_native = policy.planned_states()
    x0 = to_heading_frame(obs[None, None, :37].astype(np.float64))[:, 0]  # (1, 37)
    cond = conditioning(obs[None, 37:40], np.array([1]), np)
    _, key = jax.random.split(jax.random.PRNGKey(5))
    X, U = jax.jit(sample, static_argnames=("apply_fn", "config", "horizon"))(
        policy.params, DiT1d(DIT).apply, x0.astype(np.float32), cond, key, policy.normalizer,
        dataclasses.replace(FlowConfig(), ode_steps=2), horizon=H)
    np.testing.assert_allclose(U_native, np.asarray(U)[0], atol=2e-4)
    assert np.max(np.abs(U_native)) > 0.05  # a non-trivial plan
    assert X_native.shape == (H + 1, 37)
    np.testing.assert_allclose(X_native[0], obs[:37], atol=1e-6)  # planned states start at the world state


@pytest.mark.parametrize("bad, match", [
    (np.zeros(37), r"\(44,\)"),
    (np.zeros((2, 37)), r"\(44,\)"),
    (np.zeros((1, 1, 44)), r"\(44,\)"),
    ("nan", "finite"),
    ("gait", "one-hot"),
])
def test_bad_observations_raise(ckpt_dir, obs, bad, match):
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir)
    if isinstance(bad, str):
        o = obs.copy()
        if bad == "nan":
            o[5] = np.nan
        else:
            o[40:44] = (1, 1, 0, 0)
        bad = o
    with pytest.raises(ValueError, match=match):
        policy.act(bad)
    assert policy.last_actions is None  # nothing was planned


def test_bad_constructor_and_plan_arguments(ckpt_dir, obs):
    for bad in (H + 1, 0, 2.5, True):
        with pytest.raises(ValueError, match="execute_steps"):
            DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=bad)
    for bad in (0, True, 1.0):
        with pytest.raises(ValueError, match="ode_steps"):
            DynaFlowPolicy.from_checkpoint(ckpt_dir, ode_steps=bad)
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir)
    with pytest.raises(ValueError, match="gait"):
        policy.plan(obs[:37], obs[37:40], 4)
    with pytest.raises(ValueError, match="state"):
        policy.plan(obs[:36], obs[37:40], 0)


def test_ensemble_averages_what_the_overlapping_plans_planned_for_each_step(ckpt_dir, obs):
    """execute_steps 2, ensemble 3: the action at step k is the mean over the plans made at the last three
    replanning steps (0, 2, 4, ...) of each one's entry for step k; each row of a batch keeps its own plans."""
    plain = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=2, seed=7)
    ens = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=2, seed=7, ensemble=3)
    plans, expected, got = [], [], []
    for k in range(9):
        plain.act(obs)
        if k % 2 == 0:
            plans.append((k, plain.last_actions.copy()))
        covering = [U[k - made] for made, U in plans[-3:] if k - made < H]
        expected.append(np.mean(covering, axis=0))
        got.append(ens.act(obs))
        np.testing.assert_array_equal(ens.last_actions, plans[-1][1])  # the same plans, only their mixing differs
    np.testing.assert_array_equal(got[0], plans[0][1][0])  # one plan so far: its own action
    np.testing.assert_allclose(np.stack(got), np.stack(expected), atol=1e-6)
    batch = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=2, seed=7, ensemble=3)
    rows = np.stack([batch.act(np.stack([obs, obs])) for _ in range(5)])  # (5, 2, 12)
    batch.reset(mask=np.array([False, True]))
    after = batch.act(np.stack([obs, obs]))
    np.testing.assert_allclose(rows[:, 0], np.stack(got[:5]), atol=1e-5)
    np.testing.assert_allclose(after[1], got[0], atol=1e-5)  # the reset row forgot its plans
    np.testing.assert_allclose(after[0], got[5], atol=1e-5)
    for bad in (0, 5, 2.0):
        with pytest.raises(ValueError, match="ensemble"):
            DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=2, ensemble=bad)


def test_actions_are_copies_and_planned_states_keep_the_quaternion_sign(ckpt_dir, obs):
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir)
    a = policy.act(obs)
    a[:] = 9.0
    assert np.all(np.abs(policy.last_actions) <= 1.0)  # the caller's edit did not reach the plan
    x = obs[:37].astype(np.float64).copy()
    x[3:7] *= -1.0  # the same orientation, w < 0
    policy.plan(x, obs[37:40], 1)
    np.testing.assert_allclose(policy.planned_states()[0], x, atol=1e-6)


def test_missing_truncated_or_foreign_checkpoints(ckpt_dir, tmp_path):
    with pytest.raises(CheckpointError):
        DynaFlowPolicy.from_checkpoint(tmp_path / "nowhere")
    bad = tmp_path / "truncated"
    shutil.copytree(ckpt_dir, bad)
    state = bad / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated|sha256|corrupt"):
        DynaFlowPolicy.from_checkpoint(bad)
    other = tmp_path / "other_physics"
    shutil.copytree(ckpt_dir, other)
    meta = (other / META_FILE).read_text()
    (other / META_FILE).write_text(meta.replace(envs.PHYSICS.hash(), "0" * len(envs.PHYSICS.hash())))
    with pytest.raises(CheckpointError, match="physics"):
        DynaFlowPolicy.from_checkpoint(other)
    assert os.path.isdir(ckpt_dir)


def test_without_heading_frame_the_model_sees_world_coordinates(ckpt_dir, obs):
    """The ablation checkpoint (FlowConfig.heading_frame=False) plans from the world-frame state."""
    p = DynaFlowPolicy.from_checkpoint(ckpt_dir)
    world = DynaFlowPolicy(p.params, p.dit, dataclasses.replace(p.flow, heading_frame=False), p.normalizer,
                           execute_steps=4)
    x = obs[:37].astype(np.float64).copy()
    U = world.plan(x, obs[37:40], 1).copy()
    np.testing.assert_allclose(world.planned_states()[0], x, atol=1e-12)
    world.reset()
    x[:2] += (4.0, -1.0)
    assert not np.allclose(world.plan(x, obs[37:40], 1), U, atol=1e-4)


def test_exported_checkpoint_acts_identically_and_cannot_be_resumed(ckpt_dir, obs, tmp_path):
    """``python -m dynaflow_policy.export``: EMA weights only, same plans, smaller, truncation detected."""
    from dynaflow_policy import export
    from dynaflow_policy.train import train_and_evaluate
    from dynaflow_policy.train_state import load_checkpoint

    out = export.main(export.Args(run=str(ckpt_dir), out=str(tmp_path / "shipped")))
    assert sorted(os.listdir(out)) == [META_FILE, STATE_FILE]  # no metrics.jsonl beside a bare checkpoint dir
    assert os.path.getsize(os.path.join(out, STATE_FILE)) < 0.3 * os.path.getsize(
        os.path.join(load_checkpoint(ckpt_dir).path, STATE_FILE))
    a = DynaFlowPolicy.from_checkpoint(ckpt_dir, seed=5)
    b = DynaFlowPolicy.from_checkpoint(out, seed=5)
    np.testing.assert_array_equal(np.stack([a.act(obs) for _ in range(6)]), np.stack([b.act(obs) for _ in range(6)]))
    exported = load_checkpoint(out)
    assert exported.state is None and exported.step == load_checkpoint(ckpt_dir).step

    workdir = tmp_path / "run"
    shutil.copytree(out, workdir / "checkpoints" / str(exported.step))
    with pytest.raises(ValueError, match="exported checkpoint holds only the EMA weights"):
        train_and_evaluate(dataclasses.replace(exported.config, dataset=("unused.npz",)), workdir, resume=True)

    state = os.path.join(out, STATE_FILE)
    with open(state, "r+b") as f:
        f.truncate(os.path.getsize(state) - 7)
    with pytest.raises(CheckpointError, match="truncated"):
        DynaFlowPolicy.from_checkpoint(out)


def test_a_checkpoint_refuses_gaits_its_data_did_not_have(obs, tmp_path):
    """A trot-only checkpoint refuses pace from the observation, the override and plan(); its export keeps this."""
    from dynaflow_policy import export
    from dynaflow_policy.train_state import load_checkpoint

    path = write_dynaflow_checkpoint(tmp_path / "trot" / "checkpoints", H, gaits=("trot",))
    policy = DynaFlowPolicy.from_checkpoint(path)
    assert policy.gaits == ("trot",)
    refused = r"trained on the gaits \('trot',\), not on \['pace'\]"
    with pytest.raises(ValueError, match=refused):
        policy.act(obs)  # obs asks for pace
    with pytest.raises(ValueError, match=refused):
        policy.gait = "pace"
    with pytest.raises(ValueError, match=refused):
        policy.plan(obs[:envs.STATE_DIM], obs[envs.STATE_DIM:envs.STATE_DIM + 3], 1)
    with pytest.raises(ValueError, match="gallop.*trot"):
        policy.gait = "gallop"  # unknown: the four gaits are named
    policy.gait = "trot"
    assert np.all(np.isfinite(policy.act(obs)))  # the override replaces the observation's pace
    out = export.main(export.Args(run=path, out=str(tmp_path / "shipped")))
    assert load_checkpoint(out).gaits == ("trot",)

    meta_path = os.path.join(load_checkpoint(path).path, META_FILE)
    with open(meta_path) as f:
        meta = json.load(f)
    meta["gaits"] = ["gallop"]
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    with pytest.raises(CheckpointError, match="'gaits'.*gallop"):
        load_checkpoint(path)


def test_shipped_checkpoints_record_their_data_gaits():
    """The expert-data controllers saw only trot; the kinematic one all four gaits."""
    from dynaflow_policy.baselines.train import load_checkpoint as load_baseline
    from dynaflow_policy.train_state import load_checkpoint

    assert load_checkpoint(os.path.join(REPO, "checkpoints", "dynaflow_go1_expert")).gaits == ("trot",)
    assert load_baseline(os.path.join(REPO, "checkpoints", "state_flow_go1_expert")).gaits == ("trot",)
    assert load_checkpoint(os.path.join(REPO, "checkpoints", "dynaflow_go1_kinematic")).gaits == envs.GAITS


@pytest.fixture(scope="module")
def clock_ckpt_dir(tmp_path_factory):
    return write_dynaflow_checkpoint(tmp_path_factory.mktemp("dynaflow_clock") / "checkpoints", H, gait_clock=True)


def test_the_gait_clock_starts_at_reset_and_advances_per_action(clock_ckpt_dir, obs):
    policy = DynaFlowPolicy.from_checkpoint(clock_ckpt_dir, execute_steps=2)
    assert policy.flow.gait_clock and policy.phase is None
    for _ in range(5):
        policy.act(obs)
    pace_period = GAIT_PERIODS[gait_index("pace")]
    assert policy.phase == pytest.approx(5 * envs.PHYSICS.ctrl_dt / pace_period)
    batch = np.stack([obs, obs])
    policy.reset()
    policy.act(batch)
    policy.reset(mask=np.array([True, False]))
    np.testing.assert_allclose(policy.phase, [0.0, envs.PHYSICS.ctrl_dt / pace_period])


@pytest.mark.parametrize("gait_clock", [False, True])
def test_only_a_clocked_model_plans_by_the_phase(ckpt_dir, clock_ckpt_dir, obs, gait_clock):
    policy = DynaFlowPolicy.from_checkpoint(clock_ckpt_dir if gait_clock else ckpt_dir, execute_steps=2)

    def plan_at(phase):
        policy.reset()
        return policy.plan(obs[:37], (0.5, 0.0, 0.0), 1, phase)

    first = plan_at(0.0)
    np.testing.assert_array_equal(first, plan_at(0.0))
    assert np.allclose(first, plan_at(0.5)) != gait_clock
    with pytest.raises(ValueError, match="phase"):
        policy.plan(obs[:37], (0.5, 0.0, 0.0), 1, 1.0)
