"""dynaflow_policy.data.collect: expert rollouts into the dataset schema, seeded, falls dropped, SAE ~ 0."""

import dataclasses

import numpy as np
import pytest

from artifacts import write_ppo_expert
from dynaflow_policy.data import collect as C
from dynaflow_policy.data.schema import load_dataset
from envs.physics import PHYSICS
from envs.task import CommandRanges, is_fallen

SMALL = C.CollectConfig(trajectories=3, seconds=1.0, command_knot_seconds=0.5)


@pytest.fixture(scope="module")
def standing_expert(tmp_path_factory):
    return write_ppo_expert(tmp_path_factory.mktemp("standing"), out_scale=0.0)


@pytest.fixture(scope="module")
def collected(standing_expert):
    return C.collect(standing_expert, SMALL, workers=1, progress=False)


def test_command_schedule_is_smooth_and_in_range():
    cfg = C.CollectConfig(command_knot_seconds=1.0, stand_probability=0.0)
    cmd = C.command_schedule(np.random.default_rng(0), 501, cfg)
    assert cmd.shape == (501, 3) and cmd.dtype == np.float32
    r = CommandRanges()
    assert np.all(cmd >= r.low - 1e-6) and np.all(cmd <= r.high + 1e-6)
    step = np.abs(np.diff(cmd, axis=0)).max(axis=0)
    # cosine interpolation over 50 steps: the largest change per step is pi/2 * range / 50
    assert np.all(step <= np.pi / 2 * (r.high - r.low) / 50 + 1e-6)
    knots = cmd[::50]
    assert np.unique(knots[:, 0]).size > 5  # knots really vary


def test_held_commands_hold_then_ramp_smoothly():
    cfg = C.CollectConfig(command_knot_seconds=3.0, command_transition_seconds=0.5, single_axis_probability=0.5,
                          stand_probability=0.0)
    cmd = C.command_schedule(np.random.default_rng(1), 1501, cfg)  # 30 s: 10 intervals of 150 steps
    intervals = cmd[:1500].reshape(10, 150, 3)
    assert np.all(intervals[:, :126] == intervals[:, :1])  # held for 2.5 s (125 steps after the knot)
    assert np.any(intervals[:, 126:] != intervals[:, :1])  # then ramps over the last 0.5 s
    r = CommandRanges()
    # cosine ramp over 25 steps: the largest change per step is pi/2 * range / 25
    assert np.all(np.abs(np.diff(cmd, axis=0)).max(axis=0) <= np.pi / 2 * (r.high - r.low) / 25 + 1e-6)
    nonzero = (intervals[:, 0] != 0).sum(axis=1)  # (10,) components set per held command
    assert set(nonzero.tolist()) == {1, 3}  # pure single-axis commands and combined ones


def test_the_expert_presets_stepping_commands_jump_in_one_control_step():
    cfg = C.PRESETS["expert"]["steps"]
    cmd = C.command_schedule(np.random.default_rng(3), cfg.n_states(), cfg)  # 10 s: knots every 75 steps
    changed = np.flatnonzero(np.any(np.diff(cmd, axis=0) != 0, axis=1)) + 1  # steps whose command is new
    assert set(changed.tolist()) <= set(range(75, cfg.n_states(), 75)) and len(changed) >= 4


def test_edge_knots_sit_near_the_ends_of_the_ranges():
    cfg = C.CollectConfig(command_knot_seconds=1.0, command_transition_seconds=0.5, edge_probability=1.0,
                          stand_probability=0.0)
    knots = C.command_schedule(np.random.default_rng(2), 2001, cfg)[:2000:50]  # 40 held knots
    r = CommandRanges()
    inner = C.EDGE_FRACTION * (r.high - r.low)
    assert np.all((knots <= r.low + inner + 1e-6) | (knots >= r.high - inner - 1e-6))
    assert np.all((knots < 0).any(axis=0) & (knots > 0).any(axis=0))  # both ends of every component
    with pytest.raises(ValueError, match="edge_probability"):
        C.CollectConfig(edge_probability=1.5)


def test_a_transition_longer_than_the_knot_interval_is_refused():
    with pytest.raises(ValueError, match="command_transition_seconds"):
        C.CollectConfig(command_knot_seconds=1.0, command_transition_seconds=2.0)


def test_dataset_fields_and_metadata(collected):
    ds, stats = collected
    T = SMALL.n_states()
    assert ds.states.shape == (3, T, 37) and ds.commands.shape == (3, T, 3) and ds.expert_actions.shape == (3, T, 12)
    assert ds.metadata.source == C.SOURCE and ds.metadata.physics_hash == PHYSICS.hash()
    assert stats["falls"] == 0 and stats["attempts"] == 3
    np.testing.assert_array_equal(ds.expert_actions, 0.0)  # the standing expert
    assert not np.any(is_fallen(ds.states))
    assert ds.metadata.extra["collect_config"]["trajectories"] == 3
    starts = ds.states[:, 0]
    assert np.unique(np.round(starts[:, 7:19], 5), axis=0).shape[0] == 3  # perturbed, different starts


def test_output_depends_on_seed_not_on_workers(collected, standing_expert):
    ds, _ = collected
    ds2, _ = C.collect(standing_expert, SMALL, workers=2, progress=False)
    np.testing.assert_array_equal(ds2.states, ds.states)
    np.testing.assert_array_equal(ds2.commands, ds.commands)
    ds3, _ = C.collect(standing_expert, dataclasses.replace(SMALL, seed=1), workers=1, progress=False)
    assert not np.allclose(ds3.states, ds.states)


def test_too_many_falls_is_a_clear_error(tmp_path):
    flailing = write_ppo_expert(tmp_path, out_scale=30.0)
    cfg = dataclasses.replace(SMALL, trajectories=2, seconds=4.0)
    with pytest.raises(RuntimeError, match="fell"):
        C.collect(flailing, dataclasses.replace(cfg, max_fall_fraction=0.01), workers=1, progress=False)


def test_cli_writes_a_loadable_dataset_with_near_zero_sae(standing_expert, tmp_path):
    out = tmp_path / "expert.npz"
    C.main(C.Args(out=str(out), expert=standing_expert, config=SMALL, workers=1, sae_windows=8))
    ds = load_dataset(out, horizon=16)
    sae = ds.metadata.extra["sae"]
    assert sae["windows"] == 8
    assert sae["sae_native"] < 5e-5  # float32 storage of float64 states is the only error
    assert sae["sae_mjx"] < 5e-4  # float32 MJX step vs the float64 data


def test_pool_equals_in_process_with_falls_and_nonzero_actions(tmp_path):
    """A random expert (some rollouts fall and are replaced): 1 and 2 workers give the same data and counts."""
    wobbly = write_ppo_expert(tmp_path, out_scale=0.5, seed=1)  # 3 of its first 6 rollouts fall
    cfg = dataclasses.replace(SMALL, trajectories=3, seconds=3.0, max_fall_fraction=0.95)
    a, stats_a = C.collect(wobbly, cfg, workers=1, progress=False)
    b, stats_b = C.collect(wobbly, cfg, workers=2, progress=False)
    assert stats_a["falls"] == stats_b["falls"] > 0 and stats_a["attempts"] == stats_b["attempts"]
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.expert_actions, b.expert_actions)
    assert np.abs(a.expert_actions).max() > 0.1
    assert a.metadata.extra["trajectory_indices"] == b.metadata.extra["trajectory_indices"]


def _lift(x: np.ndarray, leg: int) -> np.ndarray:
    """x (37,) with leg ``leg``'s knee folded 0.6 rad further: its foot rises by several cm."""
    x = x.copy()
    x[7 + 3 * leg + 2] -= 0.6
    return x


def test_first_swing_is_the_pair_of_the_first_foot_to_rise():
    home = np.asarray(PHYSICS.home_state, np.float64)
    still = np.repeat(home[None], 6, axis=0)
    assert C.first_swing(still) is None
    for leg, pair in [(0, "FR_RL"), (1, "FL_RR"), (2, "FL_RR"), (3, "FR_RL")]:
        states = still.copy()
        states[3:] = _lift(home, leg)
        assert C.first_swing(states) == pair
    states = still.copy()
    states[2:] = _lift(home, 3)  # RL rises first, FL later and higher
    states[4:] = _lift(_lift(home, 3), 1)
    states[4:, 7 + 3 * 1 + 2] -= 0.2
    assert C.first_swing(states) == "FR_RL"


def test_first_swing_filter_keeps_only_that_pair(tmp_path):
    from dynaflow_policy.data.collect import DEFAULT_EXPERT

    cfg = C.CollectConfig(trajectories=4, seconds=0.6, init_linvel_std=0.0, init_angvel_std=0.0,
                          init_joint_vel_std=0.0, first_swing="FR_RL")
    ds, stats = C.collect(DEFAULT_EXPERT, cfg, workers=1, progress=False)
    assert [C.first_swing(s) for s in ds.states] == ["FR_RL"] * 4
    assert stats["other_first_swing"] > 0  # the shipped expert starts with either pair from rest
    assert stats["attempts"] == 4 + stats["falls"] + stats["other_first_swing"]


def test_first_swing_filter_that_never_matches_is_a_clear_error(standing_expert):
    cfg = dataclasses.replace(SMALL, first_swing="FL_RR")  # a standing expert never swings
    with pytest.raises(RuntimeError, match="did not swing FL_RR first"):
        C.collect(standing_expert, cfg, workers=1, progress=False)
    with pytest.raises(ValueError, match="first_swing"):
        C.CollectConfig(first_swing="FR_FL")
    with pytest.raises(ValueError, match="first_swing"):
        C.CollectConfig(first_swing="FR_RL", gait="pace")


def test_settle_brings_the_robot_to_rest_on_its_feet():
    from envs.kinematics import foot_positions

    cfg = C.CollectConfig(init_linvel_std=0.0, init_angvel_std=0.0, init_joint_vel_std=0.0)
    x0 = C.initial_state(np.random.default_rng(0), cfg)
    feet_z = foot_positions(x0[None])[0, :, 2]
    assert np.ptp(feet_z) > 0.01  # joint noise: the feet start at different heights, some in the floor
    x = C.settle(x0, 1.0)
    assert np.abs(x[19:]).max() < 0.2 and not is_fallen(x)  # standing still
    assert np.ptp(foot_positions(x[None])[0, :, 2]) < 0.003  # all four feet on the floor
    np.testing.assert_array_equal(C.settle(x0, 0.0), x0)
    with pytest.raises(ValueError, match="settle_seconds"):
        C.CollectConfig(settle_seconds=-1.0)
