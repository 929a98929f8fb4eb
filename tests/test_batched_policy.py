"""Batched control: one controller for N environments acts like N controllers, resets rows, refuses bad rows."""

import os

import gymnasium
import numpy as np
import pytest

import envs
from dynaflow_policy import load_policy
from dynaflow_policy.policy import DynaFlowPolicy
from artifacts import write_dynaflow_checkpoint

N, T = 3, 7


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return write_dynaflow_checkpoint(tmp_path_factory.mktemp("dynaflow") / "checkpoints", 8)


@pytest.fixture(scope="module")
def observations():
    """(T, N, 44): N envs (different seeds, commands and gaits) held at the default pose for T steps."""
    out = []
    for i, gait in enumerate(("trot", "pace", "bound")):
        env = gymnasium.make(envs.GYM_ID)
        o, _ = env.reset(seed=i, options={"command": (0.2 * i, 0.1, -0.1), "gait": gait})
        seq = [o]
        for _ in range(T - 1):
            o, *_ = env.step(np.zeros(12, np.float32))
            seq.append(o)
        env.close()
        out.append(np.stack(seq))
    return np.stack(out, axis=1)


def _run(policy, obs_seq, reset_at=None, row=None):
    """Actions of ``policy`` on (T, [N,] 44) observations; ``reset_at``: step before which ``row`` is reset."""
    actions = []
    for t, o in enumerate(obs_seq):
        if t == reset_at:
            policy.reset() if row is None else policy.reset(mask=np.arange(N) == row)
        actions.append(policy.act(o))
    return np.stack(actions)


def test_a_batch_acts_like_separate_policies_and_resets_only_the_masked_row(ckpt_dir, observations):
    batched = _run(DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=2, seed=7), observations, 3, row=1)
    assert batched.shape == (T, N, 12) and batched.dtype == np.float32
    for i in range(N):
        alone = _run(DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=2, seed=7), observations[:, i],
                     3 if i == 1 else None)
        # a batched network call rounds differently from a one-row call (float32 sums in another order)
        np.testing.assert_allclose(batched[:, i], alone, atol=1e-4)
        if i == 1:  # replanned alone at step 3 (the others replan at even steps): the one-row computation
            np.testing.assert_array_equal(batched[3, 1], alone[3])
    # the reset row replanned from its restarted stream; the others kept their plans
    assert not np.allclose(batched[3, 1], batched[3, 0])


def test_per_environment_seeds(ckpt_dir, observations):
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=3)
    policy.reset(seed=[4, 5, 6])
    batched = _run(policy, observations)
    for i in range(N):
        alone = _run(DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=3, seed=4 + i), observations[:, i])
        np.testing.assert_allclose(batched[:, i], alone, atol=1e-4)
    policy.reset(seed=4)  # one int: every environment, the new default
    np.testing.assert_allclose(_run(policy, observations)[:, 0], batched[:, 0], atol=1e-4)
    assert policy.seed == 4


def _state(policy):
    return [None if a is None else a.copy() for a in (policy._plans, policy._taken, policy._keys)]


@pytest.mark.parametrize("bad, match", [
    ("nan", "obs row 1 must be finite"),
    ("gait", r"obs row 2\[40:\] must be a gait one-hot"),
    ("width", r"\(N, 44\)"),
    ("size", "reset"),
])
def test_bad_rows_raise_naming_the_row_and_change_no_queue(ckpt_dir, observations, bad, match):
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=3)
    policy.act(observations[0])
    before = _state(policy)
    o = observations[1].copy()
    if bad == "nan":
        o[1, 5] = np.nan
    elif bad == "gait":
        o[2, 40:44] = (0, 1, 1, 0)
    elif bad == "width":
        o = o[:, :40]
    else:
        o = o[:2]
    with pytest.raises(ValueError, match=match):
        policy.act(o)
    for a, b in zip(before, _state(policy)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(policy.act(observations[1]), _run(
        DynaFlowPolicy.from_checkpoint(ckpt_dir, execute_steps=3), observations[:2])[1])


def test_bad_masks_and_seeds(ckpt_dir, observations):
    policy = DynaFlowPolicy.from_checkpoint(ckpt_dir)
    policy.act(observations[0])
    for mask in (np.ones(N + 1, bool), np.ones(N, int)):
        with pytest.raises(ValueError, match="mask"):
            policy.reset(mask=mask)
    with pytest.raises(ValueError, match="seed"):
        policy.reset(mask=np.ones(N, bool), seed=[1, 2])
    policy.reset()  # a full reset frees the batch size
    assert policy.num_envs is None
    assert policy.act(observations[0, 0]).shape == (12,)
    assert policy.last_actions.shape == (8, 12) and policy.planned_states().shape == (9, 37)


SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints")


def test_ppo_expert_batches_bit_identically_and_names_bad_rows(observations):
    expert = load_policy(os.path.join(SHIPPED, "ppo_go1_trot"))
    batch = observations.reshape(-1, 44).copy()  # (T * N, 44)
    batch[:, 40:44] = np.eye(4)[0]  # the trot, the only gait this expert knows
    np.testing.assert_array_equal(expert.act(batch), np.stack([expert.act(o) for o in batch]))
    bad = batch[:4].copy()
    bad[3, 40:44] = 0
    with pytest.raises(ValueError, match=r"obs row 3\[40:\]"):
        expert.act(bad)
    expert.reset(mask=np.ones(4, bool))  # stateless without a gait clock: the controller interface only


def test_state_flow_baseline_batches_like_separate_policies(observations):
    path = os.path.join(SHIPPED, "state_flow_go1_expert")
    observations = observations.copy()
    observations[..., 40:44] = np.eye(4)[0]  # the trot, the only gait of this baseline's data
    policy = load_policy(path, execute_steps=2, seed=1)
    batched = _run(policy, observations, 3, row=2)
    assert batched.shape == (T, N, 12) and policy.last_states.shape == (N, 17, 37)
    for i in range(N):
        alone = _run(load_policy(path, execute_steps=2, seed=1), observations[:, i], 3 if i == 2 else None)
        np.testing.assert_allclose(batched[:, i], alone, atol=1e-4)
