"""Recovery windows: on the kinematic gait itself they are its own windows; the CLI validates its options."""

import numpy as np
import pytest

from dynaflow_policy.data.kinematic import synthesize_trajectory
from dynaflow_policy.data.recovery import Args, episode_phases, kept_steps, recovery_windows
from envs.physics import PHYSICS


@pytest.mark.parametrize("gait", ["trot", "pace", "bound", "pronk"])
def test_windows_of_the_reference_are_its_own_windows(gait):
    """An 'episode' that follows the kinematic gait from phase 0 gives back its windows (the teacher is consistent)."""
    horizon, command = 16, np.array([0.4, -0.2, 0.5])
    traj = synthesize_trajectory(gait, command[None], np.zeros(1), 60, yaw0=0.7)
    np.testing.assert_allclose(episode_phases(60, gait), traj["phase"], atol=1e-9)
    steps = np.array([0, 7, 30, 43])
    out = recovery_windows(traj["states"], gait, command, horizon, steps)
    assert out["states"].shape == (4, horizon + 1, 37) and out["phase"].shape == (4, horizon + 1)
    for i, k in enumerate(steps):
        np.testing.assert_allclose(out["states"][i], traj["states"][k:k + horizon + 1], atol=2e-5)
        np.testing.assert_allclose(out["phase"][i], traj["phase"][k:k + horizon + 1], atol=1e-6)
        np.testing.assert_allclose(out["commands"][i], np.broadcast_to(command, (horizon + 1, 3)), atol=1e-6)


def test_row_zero_is_the_executed_state():
    traj = synthesize_trajectory("trot", np.array([[0.3, 0.0, 0.0]]), np.zeros(1), 20)
    executed = traj["states"].copy()
    executed[5, 2] -= 0.05  # 5 cm lower than the gait
    out = recovery_windows(executed, "trot", np.array([0.3, 0.0, 0.0]), 8, np.array([5]))
    np.testing.assert_allclose(out["states"][0, 0], executed[5], atol=1e-6)
    np.testing.assert_allclose(out["states"][0, 1:], traj["states"][6:14], atol=2e-5)  # the reference, not the drop


def test_kept_steps_leave_out_the_second_before_a_fall():
    per_second = int(round(1 / PHYSICS.ctrl_dt))
    np.testing.assert_array_equal(kept_steps(10, False, 3, 1.0), [0, 3, 6, 9])
    assert kept_steps(3 * per_second, True, 1, 1.0).max() == 2 * per_second - 1
    assert len(kept_steps(per_second // 2, True, 1, 1.0)) == 0


@pytest.mark.parametrize("field, value", [("commands_per_gait", 0), ("stride", 0), ("seconds", 0.0),
                                          ("seconds", 0.005), ("drop_before_fall", float("nan")), ("gaits", ())])
def test_args_name_the_bad_option(field, value):
    with pytest.raises(ValueError, match=f"--{field.replace('_', '-')}"):
        Args(checkpoint="x", **{field: value})


def test_args_refuse_an_unknown_gait():
    with pytest.raises(ValueError, match="--gaits.*trot"):
        Args(checkpoint="x", gaits=("gallop",))


def test_collect_writes_a_loadable_kinematic_dataset(tmp_path):
    """The CLI end to end on a tiny clocked checkpoint: a file the training loader reads, one window per kept step."""
    from artifacts import write_dynaflow_checkpoint

    from dynaflow_policy.data.recovery import main
    from dynaflow_policy.data.schema import load_dataset

    ckpt = write_dynaflow_checkpoint(tmp_path / "ckpt", horizon=8, gaits=("trot", "pace"), gait_clock=True)
    out = str(tmp_path / "recovery.npz")
    main(Args(checkpoint=ckpt, out=out, commands_per_gait=2, seconds=0.2, stride=3, gaits=("trot", "pace")))
    ds = load_dataset(out)
    per_episode = len(kept_steps(11, False, 3, 1.0))  # 10 steps, 11 states unless it fell
    assert ds.n_steps == 9 and ds.phase is not None and ds.metadata.source == "kinematic"
    report = ds.metadata.extra["per_gait"]
    assert report["trot"]["episodes"] == 2 and set(ds.gait.tolist()) == {0, 1}
    assert set(ds.episode.tolist()) <= {0, 1, 2, 3} and (np.diff(ds.episode) >= 0).all()  # one id per run
    for e in np.unique(ds.episode):  # episodes 0, 1 trot, 2, 3 pace; each run's clock starts at 0
        assert (ds.gait[ds.episode == e] == e // 2).all() and ds.phase[ds.episode == e][0, 0] == 0
    if report["trot"]["falls"] + report["pace"]["falls"] == 0:
        assert ds.n_trajectories == 4 * per_episode
        np.testing.assert_array_equal(ds.episode, np.repeat(np.arange(4), per_episode))
    step = PHYSICS.ctrl_dt / 0.5  # the trot's clock per control step
    np.testing.assert_allclose(np.mod(ds.phase[:, 1] - ds.phase[:, 0], 1.0), step, atol=1e-6)
    np.testing.assert_allclose(ds.phase[:per_episode, 0], 3 * step * np.arange(per_episode), atol=1e-6)


def test_collect_refuses_a_checkpoint_without_the_gait_clock(tmp_path):
    from artifacts import write_dynaflow_checkpoint

    from dynaflow_policy.data.recovery import collect

    ckpt = write_dynaflow_checkpoint(tmp_path / "ckpt", horizon=8, gaits=("trot",))
    with pytest.raises(ValueError, match="--checkpoint.*gait clock"):
        collect(Args(checkpoint=ckpt, commands_per_gait=1, seconds=0.1, gaits=("trot",)))
