"""Tests of envs.native: the float64 MuJoCo simulator with the rollout's control step."""

import mujoco
import numpy as np
import pytest

from envs import physics
from envs.native import NativeGo1, replay
from envs.physics import FOOT_RADIUS, JOINT_POS, JOINT_VEL, NQ, PHYSICS, STATE_DIM


def _moving_state(seed: int = 0) -> np.ndarray:
    """(37,) home state with some joint and base velocity, so that a step does something."""
    rng = np.random.default_rng(seed)
    x = PHYSICS.home_state.astype(np.float64)
    x[JOINT_POS] += rng.uniform(-0.1, 0.1, 12)
    x[NQ:] = rng.normal(0.0, 0.3, STATE_DIM - NQ)
    return x


def test_state_round_trip_and_shapes():
    sim = NativeGo1()
    x = _moving_state()
    sim.set_state(x)
    assert sim.state().shape == (STATE_DIM,) and sim.state().dtype == np.float64
    np.testing.assert_array_equal(sim.state(), x)
    with pytest.raises(ValueError, match=r"\(37,\)"):
        sim.set_state(np.zeros(36))
    with pytest.raises(ValueError, match=r"\(12,\)"):
        sim.step(np.zeros(13))


def test_does_not_mutate_the_cached_model():
    sim = NativeGo1()
    cached = physics.load_mj_model()
    assert sim.model is not cached
    sim.model.opt.timestep = 0.01
    assert cached.opt.timestep == PHYSICS.sim_dt


def test_step_is_a_function_of_state_and_action():
    """Stepping from a state rebuilt from its 37 numbers reproduces the continuous run exactly.

    This fails if any hidden MjData field (e.g. the solver warm start) carries over.
    """
    rng = np.random.default_rng(1)
    U = 0.3 * rng.standard_normal((4, 12))
    a = NativeGo1()
    a.set_state(_moving_state())
    for u in U[:2]:
        a.step(u)
    b = NativeGo1()
    b.set_state(a.state())
    for u in U[2:]:
        a.step(u)
        b.step(u)
    np.testing.assert_array_equal(a.state(), b.state())


def test_step_sets_the_servo_targets_and_runs_the_substeps():
    sim = NativeGo1()
    sim.set_state(PHYSICS.home_state)
    u = np.linspace(-1.0, 1.0, 12)
    sim.step(u)
    np.testing.assert_array_equal(sim.data.ctrl, physics.motor_targets(u))
    assert sim.data.time == pytest.approx(PHYSICS.ctrl_dt)


def test_replay_matches_stepping():
    rng = np.random.default_rng(2)
    x0 = _moving_state(2)
    U = 0.3 * rng.standard_normal((5, 12))
    X = replay(x0, U)
    assert X.shape == (6, STATE_DIM)
    np.testing.assert_array_equal(X[0], x0)
    sim = NativeGo1()
    sim.set_state(x0)
    for k, u in enumerate(U):
        sim.step(u)
        np.testing.assert_array_equal(X[k + 1], sim.state())
    with pytest.raises(ValueError, match=r"\(H, 12\)"):
        replay(x0, np.zeros(12))


def test_foot_heights_at_home():
    sim = NativeGo1()
    sim.set_state(PHYSICS.home_state)
    z = sim.foot_heights()
    assert z.shape == (4,)
    # The home pose puts the foot spheres (r 0.023 m) on the floor, within 1 mm.
    np.testing.assert_allclose(z, FOOT_RADIUS, atol=1e-3)
    sim.step(np.zeros(12))
    assert not sim.diverged


def test_blow_up_is_detected_even_after_mujoco_resets_the_data():
    sim = NativeGo1()
    x = PHYSICS.home_state.astype(np.float64)
    x[NQ:] = 1e6
    sim.set_state(x)
    sim.step(np.zeros(12))
    assert sim.diverged
    # MuJoCo reset the data to qpos0 after its bad-qacc warning: the state is
    # finite and slow, so only the warning counters reveal the blow-up.
    assert np.all(np.isfinite(sim.state()))
    assert sim.data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number >= 1
    sim.set_state(PHYSICS.home_state)
    assert not sim.diverged


def test_large_velocity_counts_as_diverged():
    sim = NativeGo1()
    x = PHYSICS.home_state.astype(np.float64)
    x[JOINT_VEL.start] = 2e3
    sim.set_state(x)
    assert sim.diverged
