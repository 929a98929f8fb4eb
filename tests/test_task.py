"""envs.task: heading-free policy inputs and the gait contact-pattern term (numpy, fast)."""

import numpy as np
import pytest

from envs import task
from envs.physics import BASE_LINVEL, BASE_POS, BASE_QUAT, JOINT_POS, PHYSICS


def _obs(rng):
    x = np.asarray(PHYSICS.home_state, np.float64).copy()
    x[BASE_POS] += rng.normal(size=3) * [1.0, 1.0, 0.01]
    q = rng.normal(size=4) * [1.0, 0.1, 0.1, 1.0]
    x[BASE_QUAT] = q / np.linalg.norm(q)
    x[BASE_LINVEL.start:] = rng.normal(size=x.size - BASE_LINVEL.start)
    return task.observation(x, rng.normal(size=3), 2)


def test_policy_input_layout():
    rng = np.random.default_rng(0)
    obs = _obs(rng)
    p = task.policy_input(obs)
    assert p.shape == (task.POLICY_INPUT_DIM,) == (41,)
    assert sum(task.POLICY_INPUT_STRUCTURE.values()) == task.POLICY_INPUT_DIM
    offsets = np.cumsum([0, *task.POLICY_INPUT_STRUCTURE.values()])
    block = dict(zip(task.POLICY_INPUT_STRUCTURE, (slice(a, b) for a, b in zip(offsets[:-1], offsets[1:]))))
    assert p[block["base_height"]][0] == obs[2]
    np.testing.assert_allclose(p[block["projected_gravity"]], task.projected_gravity(obs[:37]))
    np.testing.assert_allclose(p[block["joint_offset"]], obs[JOINT_POS] - np.asarray(PHYSICS.default_pose))
    np.testing.assert_array_equal(p[block["command"]], obs[37:40])
    np.testing.assert_array_equal(p[block["gait"]], [0, 0, 1, 0])
    assert task.policy_input(np.stack([obs, obs])).shape == (2, 41)


@pytest.mark.parametrize("yaw", [0.4, 2.5, -1.7])
def test_policy_input_is_invariant_to_world_position_and_heading(yaw):
    obs = _obs(np.random.default_rng(1))
    moved = obs.copy()
    moved[BASE_POS] += [5.0, -3.0, 0.0]
    w, x, y, z = obs[BASE_QUAT]
    ch, sh = np.cos(yaw / 2), np.sin(yaw / 2)
    moved[BASE_QUAT] = [ch * w - sh * z, ch * x - sh * y, ch * y + sh * x, ch * z + sh * w]
    c, s = np.cos(yaw), np.sin(yaw)
    moved[BASE_LINVEL] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ obs[BASE_LINVEL]
    np.testing.assert_allclose(task.policy_input(moved), task.policy_input(obs), atol=1e-12)
    upright = task.policy_input(task.observation(np.asarray(PHYSICS.home_state), np.zeros(3), 0))
    np.testing.assert_allclose(upright[1:4], [0, 0, -1], atol=1e-7)


@pytest.mark.parametrize("gait,down,expected", [
    ("trot", [1, 0, 0, 1], 1.0),  # FR + RL: one diagonal pair
    ("trot", [1, 1, 0, 0], 2 / 6),  # front pair: a bound, not a trot
    ("trot", [1, 1, 1, 1], 2 / 6),  # standing
    ("pace", [1, 0, 1, 0], 1.0),
    ("bound", [0, 0, 1, 1], 1.0),
    ("pronk", [1, 1, 1, 1], 1.0),
    ("pronk", [0, 0, 0, 0], 1.0),
    ("pronk", [1, 0, 0, 1], 2 / 6),
])
def test_gait_sync_scores_the_contact_pattern(gait, down, expected):
    got = task.gait_sync(np.array(down, bool), task.gait_index(gait))
    assert got == pytest.approx(expected)


def test_gait_sync_is_batched_over_gaits():
    contact = np.array([[1, 0, 0, 1], [1, 0, 1, 0]], bool)
    np.testing.assert_allclose(task.gait_sync(contact, np.array([0, 1])), [1.0, 1.0])
    np.testing.assert_allclose(task.gait_sync(contact, np.array([1, 0])), [2 / 6, 2 / 6])


def test_group_height_spread_measures_feet_of_one_group_apart():
    """Diagonal pairs at 2 cm and 8 cm (FR, FL, RR, RL): a trot's groups are level; a pace's and a pronk's are not."""
    z = np.array([0.02, 0.08, 0.08, 0.02])
    spread = task.group_height_spread(np.stack([z] * 4), np.arange(4))  # trot, pace, bound, pronk
    np.testing.assert_allclose(spread, [0.0, 0.06, 0.06, 4 * 0.06 / 6])
    level = np.full((4, 4), 0.02)
    np.testing.assert_allclose(task.group_height_spread(level, np.arange(4)), 0.0)


def test_height_term_takes_its_per_gait_factor():
    """The same staggered feet, one row per gait: the term is the spread times that gait's factor, while moving."""
    weights = task.RewardWeights(gait_height_sync_scale=(1.0, 0.5, 0.0, 3.0))
    x = np.tile(PHYSICS.home_state, (4, 1)).astype(np.float32)
    u = np.zeros((4, 12), np.float32)
    z = np.tile([0.02, 0.08, 0.05, 0.02], (4, 1)).astype(np.float32)  # every gait's groups apart
    gait = np.arange(4)
    feet = np.zeros((4, 4))

    def term(command):
        return task.reward_terms(x, u, u, np.tile(command, (4, 1)).astype(np.float32), gait, feet > 0, feet, feet,
                                 np.zeros(4, bool), weights, phase=np.zeros(4), foot_z=z)["gait_height_sync"]

    spread = task.group_height_spread(z, gait)
    assert np.all(spread > 0)
    np.testing.assert_allclose(term([0.5, 0.0, 0.0]), spread * [1.0, 0.5, 0.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(term([0.0, 0.0, 0.0]), 0.0)  # standing still: no gait to keep


@pytest.mark.parametrize("scale", [(1.0, 1.0, 1.0), (1.0, 1.0, float("nan"), 1.0), (1.0, -1.0, 1.0, 1.0), 2.0])
def test_height_scale_needs_one_finite_factor_per_gait(scale):
    with pytest.raises(ValueError, match="gait_height_sync_scale.*trot"):
        task.RewardWeights(gait_height_sync_scale=scale)
