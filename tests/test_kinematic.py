"""Tests of dynaflow_policy.data.kinematic: leg IK, gait patterns, velocities, the dataset and its CLI."""

import os
import subprocess
import sys

import mujoco
import numpy as np
import pytest

from dynaflow_policy.data.kinematic import (GAIT_OFFSETS, KinematicGaitConfig,
                                            generate_kinematic_dataset, leg_fk, leg_geometry, leg_ik,
                                            quat_from_rpy, synthesize_trajectory)
from dynaflow_policy.data.schema import load_dataset
from envs.kinematics import foot_heights, foot_positions
from envs.physics import (BASE_ANGVEL, BASE_LINVEL, BASE_POS, BASE_QUAT, FOOT_RADIUS, JOINT_POS, JOINT_VEL, NQ,
                          PHYSICS, load_mj_model)
from envs.task import (GAIT_DUTY, GAIT_PERIODS, GAITS, CommandRanges, body_linvel, foot_phases, gait_index,
                       scheduled_contact)

DT = PHYSICS.ctrl_dt
SWAY = KinematicGaitConfig(sway=0.08)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _trajectory(gait: str, command=(0.6, 0.2, 0.5), steps: int = 100, config=SWAY, **kw):
    return synthesize_trajectory(gait, np.array([command]), np.array([0.0]), steps, config, **kw)


@pytest.fixture(scope="module")
def trajectories():
    """One 2 s float64 trajectory per gait, moving and turning, with body sway."""
    return {g: _trajectory(g, phase0=0.3, yaw0=2.5) for g in GAITS}


@pytest.fixture(scope="module")
def dataset():
    return generate_kinematic_dataset(8, 2.0, seed=0, command_segment_seconds=0.5)


def test_leg_geometry_from_mjcf():
    g = leg_geometry()
    np.testing.assert_allclose(np.abs(g.hip), [[0.1881, 0.04675, 0.0]] * 4)
    np.testing.assert_allclose(g.abduction_offset, [-0.08, 0.08, -0.08, 0.08])
    assert g.thigh == pytest.approx(0.213) and g.calf == pytest.approx(0.213)


def test_ik_matches_native_forward_kinematics():
    """IK, then set qpos in MuJoCo: the foot sites land on the targets within 1e-6 m."""
    rng = np.random.default_rng(0)
    home = leg_fk(np.asarray(PHYSICS.default_pose))  # (4, 3) trunk frame
    targets = home + rng.uniform([-0.15, -0.06, -0.05], [0.15, 0.06, 0.12], (200, 4, 3))  # (200, 4, 3)
    q = leg_ik(targets)  # (200, 12)
    x = np.tile(PHYSICS.home_state.astype(np.float64), (200, 1))
    x[:, BASE_POS] = 0.0  # trunk at the origin, unrotated: world frame = trunk frame
    x[:, JOINT_POS] = q
    np.testing.assert_allclose(foot_positions(x), targets, rtol=0, atol=1e-6)
    np.testing.assert_allclose(leg_fk(q), targets, rtol=0, atol=1e-12)
    # And back: IK of the forward kinematics returns the joint angles.
    q_rand = np.asarray(PHYSICS.default_pose) + rng.uniform(-0.4, 0.4, (200, 12))
    np.testing.assert_allclose(leg_ik(leg_fk(q_rand)), q_rand, rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="out of reach"):
        leg_ik(home + np.array([0.0, 0.0, -0.3]))


def test_analytic_foot_heights_match_native_kinematics_for_any_pose():
    """Tilted, turned, raised trunks and random joints: NumPy (float64) and JAX (float32) against MuJoCo."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    x = np.tile(PHYSICS.home_state.astype(np.float64), (64, 1))
    x[:, BASE_POS] = rng.uniform([-2, -2, 0.1], [2, 2, 0.4], (64, 3))
    x[:, BASE_QUAT] = quat_from_rpy(*rng.uniform(-0.6, 0.6, (2, 64)), rng.uniform(-np.pi, np.pi, 64))
    x[:, JOINT_POS] += rng.uniform(-0.5, 0.5, (64, 12))
    native = foot_positions(x)[..., 2]  # (64, 4)
    np.testing.assert_allclose(foot_heights(x), native, rtol=0, atol=1e-12)
    z32 = jax.jit(lambda s: foot_heights(s, jnp))(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(z32), native, rtol=0, atol=2e-6)


def test_home_pose_hand_values():
    # Home pose (hip 0.9, knee -1.8) puts the foot straight below the thigh joint at
    # 2 * 0.213 * cos(0.9) = 0.26483 m, tilted outward by the 0.1 rad abduction.
    fr = leg_fk(np.asarray(PHYSICS.default_pose))[0]
    lz = 2 * 0.213 * np.cos(0.9)
    np.testing.assert_allclose(fr, [0.1881, -0.04675 - 0.08 * np.cos(0.1) - lz * np.sin(0.1),
                                    0.08 * np.sin(0.1) - lz * np.cos(0.1)], atol=1e-12)


@pytest.mark.parametrize("gait", GAITS)
def test_trajectory_feet_match_targets_in_the_world(trajectories, gait):
    tr = trajectories[gait]
    np.testing.assert_allclose(foot_positions(tr["states"]), tr["feet"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("gait", GAITS)
def test_stance_feet_do_not_slip(trajectories, gait):
    tr = trajectories[gait]
    feet = foot_positions(tr["states"])  # (T, 4, 3)
    both = tr["stance"][1:] & tr["stance"][:-1]  # (T-1, 4) in stance at k and k+1
    assert both.sum() > 0.3 * both.size
    moved = np.linalg.norm(np.diff(feet, axis=0), axis=-1)  # (T-1, 4)
    assert moved[both].max() < 1e-9
    np.testing.assert_allclose(feet[..., 2][tr["stance"]], FOOT_RADIUS, atol=1e-9)


def _swing(states: np.ndarray) -> np.ndarray:
    """(T, 4) bool, foot above the floor by FK (order FR, FL, RR, RL)."""
    return foot_positions(states)[..., 2] > FOOT_RADIUS + 1e-4


@pytest.mark.parametrize("gait, together, apart", [
    ("trot", [(0, 3), (1, 2)], (0, 1)),
    ("pace", [(0, 2), (1, 3)], (0, 1)),
    ("bound", [(0, 1), (2, 3)], (0, 2)),
    ("pronk", [(0, 1), (0, 2), (0, 3)], None),
])
def test_gait_phase_patterns(trajectories, gait, together, apart):
    swing = _swing(trajectories[gait]["states"])
    assert 0.35 < swing.mean() < 0.5  # duty factor 0.5 (lift-off and touchdown instants count as stance)
    for a, b in together:
        np.testing.assert_array_equal(swing[:, a], swing[:, b])
    if apart is not None:
        a, b = apart
        assert not np.any(swing[:, a] & swing[:, b])  # the two pairs alternate
        assert np.any(swing[:, a]) and np.any(swing[:, b])
    else:
        flight = swing.all(-1)
        assert flight.mean() > 0.35  # pronk: a flight phase with every foot in the air...
        np.testing.assert_allclose(trajectories[gait]["states"][flight][:, 2], 0.27)  # ...and the base floats


@pytest.mark.parametrize("gait", GAITS)
def test_velocities_are_backward_differences(trajectories, gait):
    """Integrating state k's velocity over one control step from pose k-1 gives pose k (MuJoCo's convention)."""
    x = trajectories[gait]["states"]
    np.testing.assert_allclose(x[1:, BASE_LINVEL], np.diff(x[:, BASE_POS], axis=0) / DT, atol=1e-9)
    np.testing.assert_allclose(x[1:, JOINT_VEL], np.diff(x[:, JOINT_POS], axis=0) / DT, atol=1e-9)
    m = load_mj_model()
    for k in range(1, len(x)):
        qpos = x[k - 1, :NQ].copy()
        mujoco.mj_integratePos(m, qpos, x[k, NQ:], DT)  # angular velocity in the body frame
        np.testing.assert_allclose(qpos, x[k, :NQ], atol=1e-9)


def test_base_follows_the_command():
    vx, vy, wz = 0.8, -0.3, 0.6
    x = _trajectory("trot", (vx, vy, wz), config=KinematicGaitConfig(), yaw0=1.0)["states"]
    np.testing.assert_allclose(x[:, 2], 0.27)
    np.testing.assert_allclose(x[:, BASE_ANGVEL], np.tile([0.0, 0.0, wz], (len(x), 1)), atol=1e-9)
    # The chord over one step deviates from the tangent by wz * dt / 2 = 0.006 rad.
    np.testing.assert_allclose(body_linvel(x)[:, :2], np.tile([vx, vy], (len(x), 1)), atol=0.01)
    yaw = 2 * np.arctan2(x[:, 6], x[:, 3])
    np.testing.assert_allclose(np.unwrap(yaw), 1.0 + wz * DT * np.arange(len(x)), atol=1e-9)


@pytest.mark.parametrize("gait", GAITS)
def test_quaternions_unit_norm_and_sway(trajectories, gait):
    q = trajectories[gait]["states"][:, BASE_QUAT]
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    w, x, y, z = q.T
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x**2 + y**2))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1, 1))
    amplitude = (np.abs(roll).max(), np.abs(pitch).max())
    expected = {"pace": (0.08, 0.0), "bound": (0.0, 0.08)}.get(gait, (0.0, 0.0))
    np.testing.assert_allclose(amplitude, expected, atol=2e-3)  # sway 0.08 rad, sampled at 50 Hz


def test_quat_from_rpy_matches_mujoco():
    rng = np.random.default_rng(1)
    for r, p, y in rng.uniform(-1, 1, (20, 3)):
        mat = np.empty(9)
        mujoco.mju_quat2Mat(mat, quat_from_rpy(r, p, y))
        cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
        rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
        ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
        rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
        np.testing.assert_allclose(mat.reshape(3, 3), rz @ ry @ rx, atol=1e-12)


def test_dataset(dataset):
    ds = dataset
    assert ds.states.shape == (8, 100, 37) and ds.commands.shape == (8, 100, 3) and ds.expert_actions is None
    assert ds.metadata.source == "kinematic" and ds.metadata.physics_hash == PHYSICS.hash()
    np.testing.assert_array_equal(ds.gait, [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_allclose(np.linalg.norm(ds.states[..., BASE_QUAT], axis=-1), 1.0, atol=1e-6)
    q = ds.states[..., JOINT_POS]
    assert np.all(q >= np.asarray(PHYSICS.joint_lower)) and np.all(q <= np.asarray(PHYSICS.joint_upper))
    lo, hi = CommandRanges().low, CommandRanges().high
    assert np.all(ds.commands >= lo) and np.all(ds.commands <= hi)
    # Piecewise-constant commands: a new one every 0.5 s = 25 steps.
    changes = np.flatnonzero(np.any(np.diff(ds.commands[0], axis=0) != 0, axis=-1)) + 1
    np.testing.assert_array_equal(changes, [25, 50, 75])
    # Deterministic in the seed.
    again = generate_kinematic_dataset(8, 2.0, seed=0, command_segment_seconds=0.5)
    np.testing.assert_array_equal(again.states, ds.states)
    assert not np.array_equal(generate_kinematic_dataset(8, 2.0, seed=1).states, ds.states)


def test_dataset_velocities_in_float32(dataset):
    x = dataset.states.astype(np.float64)
    np.testing.assert_allclose(x[:, 1:, JOINT_VEL], np.diff(x[..., JOINT_POS], axis=1) / DT, atol=1e-3)


def test_too_fast_command_is_refused():
    with pytest.raises(ValueError, match="too fast|out of reach"):
        _trajectory("bound", (4.0, 0.0, 0.0))


def test_gait_offsets_cover_gaits_and_package_exports():
    from dynaflow_policy import data

    assert set(GAIT_OFFSETS) == set(GAITS)
    assert data.generate_kinematic_dataset is generate_kinematic_dataset and data.leg_ik is leg_ik


def test_cli(tmp_path):
    out = tmp_path / "k.npz"
    r = subprocess.run([sys.executable, "-m", "dynaflow_policy.data.kinematic", "--out", str(out),
                        "--n-trajectories", "4", "--seconds", "1", "--seed", "3"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr  # the package does not import the CLI module eagerly
    assert "N=4" in r.stdout and "T=50" in r.stdout and "generated in" in r.stdout
    ds = load_dataset(out, horizon=16)
    assert ds.states.shape == (4, 50, 37) and ds.metadata.extra["seed"] == 3


def test_infeasibility_script():
    r = subprocess.run([sys.executable, "eval/kinematic_infeasibility.py", "--transitions-per-gait", "2",
                        "--starts", "2", "--iterations", "2"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "SAE mean" in r.stdout and "centroidal mean" in r.stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in r.stdout.splitlines() if line.startswith("| ") and not line.startswith("| data")}
    calibration = [name for name in rows if name.startswith("native rollouts")]
    assert set(rows) == set(GAITS) | set(calibration) and len(calibration) == 1  # a row per gait, one calibration
    for gait in GAITS:
        assert int(rows[gait][0]) == 2 and float(rows[gait][1]) > 0.05  # SAE mean: kinematic data are infeasible
    assert float(rows["pronk"][4]) > 0.05  # centroidal mean: the floating base in flight is caught
    assert float(rows[calibration[0]][4]) < 0.01  # ...and feasible rollouts pass


@pytest.mark.parametrize("gait", GAITS)
def test_the_stored_phase_is_the_gait_clock_of_the_footfalls(trajectories, dataset, gait):
    traj = trajectories[gait]
    g = np.full(len(traj["phase"]), gait_index(gait))
    feet = foot_phases(traj["phase"], g)  # (T, 4)
    at_a_switch = (np.abs(feet - GAIT_DUTY) < 1e-9) | (feet < 1e-9) | (feet > 1 - 1e-9)  # rounding decides
    assert np.all((scheduled_contact(traj["phase"], g) == traj["stance"]) | at_a_switch)
    np.testing.assert_allclose(np.diff(np.unwrap(2 * np.pi * traj["phase"])) / (2 * np.pi),
                               DT / GAIT_PERIODS[gait_index(gait)], atol=1e-9)
    assert dataset.phase.shape == dataset.states.shape[:2] and np.all((dataset.phase >= 0) & (dataset.phase < 1))
