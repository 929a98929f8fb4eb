"""The physics contract: the MJCF agrees with the frozen config, and the facts it encodes hold."""

import dataclasses

import mujoco
import numpy as np
import pytest

from envs import physics
from envs.native import NativeGo1
from envs.physics import (JOINT_NAMES, JOINT_POS, NQ, PHYSICS, STATE_DIM, PhysicsConfig, load_mj_model,
                          validate_mj_model)


def test_total_mass_within_one_percent():
    m = load_mj_model()
    assert m.body_subtreemass[m.body("trunk").id] == pytest.approx(12.74, rel=0.01)


def test_layout_sizes():
    m = load_mj_model()
    assert (m.nq, m.nv, m.nu) == (19, 18, 12)
    assert STATE_DIM == m.nq + m.nv == 37


def test_solver_pinned_to_one_iteration():
    # MJX runs solver iterations > 1 in a lax.while_loop, which JAX cannot
    # differentiate in reverse mode; with exactly one iteration it is a plain
    # function of its inputs. The rollout's gradient depends on this.
    assert PHYSICS.solver_iterations == 1
    assert load_mj_model().opt.iterations == 1


def test_warm_start_disabled_in_model():
    assert load_mj_model().opt.disableflags & mujoco.mjtDisableBit.mjDSBL_WARMSTART


def test_joint_and_actuator_order_equal_action_order():
    m = load_mj_model()
    assert tuple(m.joint(i).name for i in range(1, m.njnt)) == JOINT_NAMES
    assert tuple(m.joint(int(j)).name for j in m.actuator_trnid[:, 0]) == JOINT_NAMES
    assert JOINT_NAMES[:3] == ("FR_hip_joint", "FR_thigh_joint", "FR_calf_joint")
    assert [n[:2] for n in JOINT_NAMES[::3]] == ["FR", "FL", "RR", "RL"]


@pytest.mark.parametrize("i", range(12))
def test_moving_one_actuator_moves_its_joint(i):
    """Action i alone (robot held in the air) moves joint i the most, in its own direction."""
    sim = NativeGo1()
    x = PHYSICS.home_state.copy()
    x[2] = 1.0  # in the air: no contact forces couple the legs
    sim.set_state(x)
    u = np.zeros(12)
    u[i] = 0.5 if PHYSICS.default_pose[i] + 0.25 < PHYSICS.joint_upper[i] else -0.5
    for _ in range(5):
        sim.step(u)
    dq = sim.state()[JOINT_POS] - x[JOINT_POS]
    assert np.argmax(np.abs(dq)) == i
    assert np.sign(dq[i]) == np.sign(u[i])
    assert abs(dq[i]) > 0.05


def test_home_keyframe_is_the_default_pose():
    m = load_mj_model()
    np.testing.assert_allclose(m.keyframe("home").qpos, PHYSICS.home_state[:NQ], atol=1e-6)


def test_home_pose_feet_touch_floor_with_outward_abduction():
    sim = NativeGo1()
    z = sim.foot_heights()
    np.testing.assert_allclose(z, physics.FOOT_RADIUS, atol=2e-3)
    d = sim.data
    for leg in ("FR", "FL", "RR", "RL"):
        foot_y = d.site(f"{leg}_foot").xpos[1]
        thigh_y = d.body(f"{leg}_thigh").xpos[1]
        assert abs(foot_y) > abs(thigh_y), f"{leg} foot is not outward of its thigh"


def test_validation_rejects_xml_that_disagrees_with_config(tmp_path):
    with open(PHYSICS.xml_path) as f:
        xml = f.read()
    bad = tmp_path / "go1.xml"
    bad.write_text(xml.replace('kp="35"', 'kp="50"').replace('iterations="1"', 'iterations="4"'))
    with pytest.raises(ValueError, match="actuator kp") as err:
        load_mj_model(dataclasses.replace(PHYSICS, xml_path=str(bad)))
    assert "iterations" in str(err.value)


def test_validation_rejects_config_that_disagrees_with_xml():
    m = load_mj_model()
    with pytest.raises(ValueError, match="timestep"):
        validate_mj_model(m, dataclasses.replace(PHYSICS, sim_dt=0.002))
    with pytest.raises(ValueError, match="joint damping"):
        validate_mj_model(m, dataclasses.replace(PHYSICS, kd=2.0))


def test_config_hash_depends_on_values():
    assert PHYSICS.hash() == PhysicsConfig().hash()
    assert PHYSICS.hash() != dataclasses.replace(PHYSICS, action_scale=0.25).hash()


def test_motor_targets_clip_to_joint_range():
    u = np.full(12, 100.0, np.float32)
    np.testing.assert_allclose(physics.motor_targets(u), PHYSICS.joint_upper, rtol=1e-6)
    np.testing.assert_allclose(physics.motor_targets(np.zeros(12, np.float32)), PHYSICS.default_pose, rtol=1e-6)


def test_native_state_is_markov():
    """Stepping on after a history and stepping from the same 37 numbers rebuilt in fresh
    data agree bit for bit: no hidden solver state (the MJCF disables the warm start)."""
    sim = NativeGo1()
    U = 0.4 * np.random.default_rng(0).standard_normal((21, 12))
    for u in U[:20]:
        sim.step(u)
    x = sim.state()
    sim.step(U[20])
    continued = sim.state()
    sim.set_state(x)
    sim.step(U[20])
    np.testing.assert_array_equal(continued, sim.state())
