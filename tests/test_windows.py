"""Tests of dynaflow_policy.data.windows: training windows and the trajectory split."""

import numpy as np
import pytest

from dynaflow_policy.data.schema import Dataset, DatasetMetadata
from dynaflow_policy.data.windows import (WindowSet, after_command_change, split_trajectories, train_held_out_windows,
                                           window_starts)

N, T, H = 10, 30, 4


def _dataset(actions: bool = True) -> Dataset:
    """States encode where they came from: states[n, k, :] = 1000 n + k (but a valid base quaternion),
    so windows can be checked by value."""
    n, k = np.meshgrid(np.arange(N), np.arange(T), indexing="ij")  # (N, T)
    code = (1000 * n + k).astype(np.float32)
    states = np.repeat(code[..., None], 37, -1)  # (N, T, 37)
    states[..., 3:7] = (1.0, 0.0, 0.0, 0.0)  # valid base quaternions (checked on construction)
    commands = np.stack([code, -code, 0.5 * code], -1)  # (N, T, 3)
    gait = np.arange(N) % 4
    ea = np.repeat(code[..., None], 12, -1) if actions else None  # (N, T, 12)
    return Dataset(states, commands, gait, DatasetMetadata.for_physics("test"), ea)


def test_window_starts():
    # Hand count: T = 30 states, H + 1 = 5 per window -> starts 0..25 (26 windows) at stride 1.
    np.testing.assert_array_equal(window_starts(30, 4), np.arange(26))
    np.testing.assert_array_equal(window_starts(30, 4, stride=10), [0, 10, 20])
    np.testing.assert_array_equal(window_starts(5, 4), [0])
    assert window_starts(4, 4).size == 0
    with pytest.raises(ValueError):
        window_starts(30, 4, stride=0)


@pytest.mark.parametrize("stride", [1, 3, 7])
def test_count_and_content(stride):
    ds = _dataset()
    ws = WindowSet(ds, H, stride=stride)
    per_traj = (T - H - 1) // stride + 1
    assert len(ws) == N * per_traj
    b = ws.all()
    assert b["states"].shape == (len(ws), H + 1, 37) and b["states"].dtype == np.float32
    assert b["command"].shape == (len(ws), 3) and b["gait"].shape == (len(ws),)
    assert b["expert_actions"].shape == (len(ws), H, 12)
    n, s = b["trajectory"], b["start"]
    expected = 1000 * n[:, None] + s[:, None] + np.arange(H + 1)  # (W, H+1)
    np.testing.assert_array_equal(b["states"][..., 0], expected)
    np.testing.assert_array_equal(b["states"][..., 36], expected)
    np.testing.assert_array_equal(b["expert_actions"][..., 5], expected[:, :H])  # action k leads from state k
    np.testing.assert_array_equal(b["command"], np.stack([expected[:, 0], -expected[:, 0], 0.5 * expected[:, 0]], -1))
    np.testing.assert_array_equal(b["gait"], n % 4)
    assert set(zip(n.tolist(), s.tolist())) == {(i, j) for i in range(N) for j in range(0, T - H, stride)}


def test_batch_gathers_only_requested_windows():
    ws = WindowSet(_dataset(actions=False), H)
    b = ws.batch([3, 0, 3])
    assert "expert_actions" not in b and not ws.has_expert_actions
    np.testing.assert_array_equal(b["states"][:, 0, 0], [3, 0, 3])
    with pytest.raises(IndexError):
        ws.batch([len(ws)])
    assert ws.traj_index.nbytes + ws.start.nbytes == 2 * 8 * len(ws)  # index arrays only


def test_iterate_covers_every_window_once():
    ws = WindowSet(_dataset(), H)
    seen = np.concatenate([b["states"][:, 0, 0] for b in ws.iterate(32, np.random.default_rng(0))])
    np.testing.assert_array_equal(np.sort(seen), np.sort(ws.all()["states"][:, 0, 0]))


def test_too_short_for_a_window():
    with pytest.raises(ValueError, match="horizon"):
        WindowSet(_dataset(), T)


def test_split_is_disjoint_deterministic_and_stratified():
    gait = np.arange(40) % 4
    train, held = split_trajectories(gait, 0.25, seed=3)
    assert np.intersect1d(train, held).size == 0
    np.testing.assert_array_equal(np.union1d(train, held), np.arange(40))
    assert len(held) == 10
    for g in range(4):  # each gait held out in proportion and kept for training
        assert np.sum(gait[held] == g) in (2, 3)
        assert np.sum(gait[train] == g) >= 7
    t2, h2 = split_trajectories(gait, 0.25, seed=3)
    np.testing.assert_array_equal(held, h2)
    _, h3 = split_trajectories(gait, 0.25, seed=4)
    assert not np.array_equal(held, h3)
    t0, h0 = split_trajectories(gait, 0.0, seed=3)
    assert h0.size == 0 and t0.size == 40
    # A small positive fraction still holds out one trajectory per gait, never the last one.
    _, h_small = split_trajectories(np.array([0, 0, 1]), 0.01, seed=0)
    assert h_small.size == 1 and h_small[0] in (0, 1)


def test_split_by_episode_keeps_each_episode_on_one_side():
    episode = np.repeat(np.arange(20), 3)  # 20 episodes of 3 trajectories, 5 per gait
    gait = episode % 4
    train, held = split_trajectories(gait, 0.25, seed=3, episode=episode)
    np.testing.assert_array_equal(np.union1d(train, held), np.arange(60))
    assert not np.intersect1d(episode[train], episode[held]).size
    assert len(np.unique(episode[held])) == 5  # a quarter of the episodes, not of the trajectories
    for g in range(4):
        assert np.unique(episode[held][gait[held] == g]).size in (1, 2)
    _, by_trajectory = split_trajectories(gait, 0.25, seed=3)
    assert np.intersect1d(episode[train], episode[by_trajectory]).size  # without ids, episodes straddle


def test_held_out_windows_never_share_a_trajectory():
    ds = _dataset()
    train, held = train_held_out_windows(ds, H, held_out_fraction=0.3, seed=0, stride=2, held_out_stride=5)
    tb, hb = train.all(), held.all()
    assert len(held) > 0 and len(train) > 0
    assert set(tb["trajectory"].tolist()).isdisjoint(hb["trajectory"].tolist())
    assert set(tb["trajectory"].tolist()) | set(hb["trajectory"].tolist()) == set(range(N))
    # States (which encode the trajectory) of the two sets are disjoint too.
    assert np.intersect1d(tb["states"][..., 0] // 1000, hb["states"][..., 0] // 1000).size == 0
    assert np.all(np.diff(np.unique(hb["start"])) == 5)


def test_constant_command_only_drops_exactly_the_windows_a_command_step_crosses():
    ds = _dataset()
    commands = np.zeros((N, T, 3), np.float32)
    commands[:, 12:] = (0.5, 0.0, -0.3)  # one command step at state 12 of every trajectory
    ds = Dataset(ds.states, commands, ds.gait, ds.metadata, ds.expert_actions)
    kept = WindowSet(ds, H, constant_command_only=True).all()
    # A window of states s..s+H holds one command unless s < 12 <= s + H, i.e. s in 8..11.
    assert sorted(set(kept["start"].tolist())) == [s for s in range(T - H) if not 8 <= s <= 11]
    assert len(kept["start"]) == N * (T - H - 4)
    np.testing.assert_array_equal(kept["command"][kept["start"] >= 12], np.float32([[0.5, 0.0, -0.3]] * N * (T - H - 12)))
    train, held = train_held_out_windows(ds, H, held_out_fraction=0.3, seed=0, constant_command_only=True)
    assert len(train) + len(held) == len(kept["start"])
    assert not {8, 9, 10, 11} & (set(train.start.tolist()) | set(held.start.tolist()))


def test_windows_after_a_command_change_can_be_drawn_more_often():
    ds = _dataset()
    commands = np.zeros((N, T, 3), np.float32)
    commands[:, 12:] = (0.5, 0.0, -0.3)  # one command step at state 12 of every trajectory
    ds = Dataset(ds.states, commands, ds.gait, ds.metadata, ds.expert_actions)
    ws = WindowSet(ds, H)
    after = after_command_change(ws, span=3)
    # The command at 12 is new: windows starting at 12, 13, 14 answer it; 11 and 15 do not.
    np.testing.assert_array_equal(np.flatnonzero(after[:T - H]), [12, 13, 14])
    assert after.sum() == 3 * N
    n_before = len(ws)
    ws.repeat_where(after, 4)
    assert len(ws) == n_before + 3 * 3 * N
    starts = ws.all()["start"]
    assert np.sum(starts == 13) == 4 * N and np.sum(starts == 11) == N
    np.testing.assert_array_equal(ws.batch(np.flatnonzero(starts == 13))["states"][:, 0, 0] % 1000, 13)
    with pytest.raises(ValueError, match="times must be an int >= 1, got 0"):
        ws.repeat_where(after_command_change(ws), 0)
    with pytest.raises(ValueError, match="mask must have shape"):
        ws.repeat_where(after[:5], 2)
