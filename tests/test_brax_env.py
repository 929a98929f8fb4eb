"""Tests of envs.brax_env.Go1Env: same physics as envs.dynamics.step, reward bookkeeping, standing still.

Reset and step are jitted once, vmapped over a batch of 4 (as Brax training
uses them), in a module-scoped fixture; every test reuses those compiles.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.brax_env import Go1Env
from envs.task import OBS_DIM
from envs.physics import FOOT_CONTACT_HEIGHT
from envs.physics import ACTION_DIM, PHYSICS, STATE_DIM
from envs.dynamics import step as rollout_step
from envs.task import GAITS, CommandRanges, RewardWeights, is_fallen, projected_gravity, total_reward

B = 4
RANGES = CommandRanges(vx=(0.2, 0.6), vy=(-0.3, -0.1), yaw_rate=(0.1, 0.5))  # |command| > 0.05 always
GAIT_NAMES = ("pace", "bound")
RESAMPLE = 3


@pytest.fixture(scope="module")
def sim():
    env = Go1Env(command_ranges=RANGES, gaits=GAIT_NAMES, resample_command_steps=RESAMPLE, gait_redraw_probability=0.0,
                 randomize_init=False)
    reset = jax.jit(jax.vmap(env.reset))
    step = jax.jit(jax.vmap(env.step))
    state0 = reset(jax.random.split(jax.random.PRNGKey(0), B))
    return env, reset, step, state0


def _random_steps(step, state, n, seed=1, scale=0.3):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        state = step(state, jnp.asarray(rng.uniform(-scale, scale, (B, ACTION_DIM)), jnp.float32))
    return state


def test_lazy_export_and_sizes(sim):
    env, _, _, state0 = sim
    assert envs.Go1Env is Go1Env
    assert env.observation_size == OBS_DIM == 44
    assert env.action_size == ACTION_DIM
    assert env.backend == "mjx"
    assert sum(env.observation_structure.values()) == OBS_DIM
    assert env.dt == pytest.approx(PHYSICS.ctrl_dt)
    assert state0.obs.shape == (B, OBS_DIM)


def test_obs_shape_and_finite_after_steps(sim):
    _, _, step, state0 = sim
    state = _random_steps(step, state0, 5)
    assert state.obs.shape == (B, OBS_DIM)
    assert np.all(np.isfinite(state.obs))
    assert np.all(np.isfinite(state.reward))
    assert not np.any(state.done)


def test_step_equals_rollout_step(sim):
    """One env step from any reached state is envs.dynamics.step on the obs's 37 numbers."""
    _, _, step, state0 = sim
    state = _random_steps(step, state0, 4)
    u = jnp.asarray(np.random.default_rng(7).uniform(-0.5, 0.5, (B, ACTION_DIM)), jnp.float32)
    x = state.obs[:, :STATE_DIM]
    np.testing.assert_array_equal(x, jnp.concatenate([state.pipeline_state.qpos, state.pipeline_state.qvel], -1))
    x_next = jax.jit(jax.vmap(rollout_step))(x, u)
    nxt = step(state, u)
    # float32 under two jitted programs: XLA may order sums differently, so equal to ~100 ulp (1e-5 relative)
    np.testing.assert_allclose(nxt.obs[:, :STATE_DIM], x_next, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(nxt.pipeline_state.q, x_next[:, :19], rtol=1e-5, atol=1e-5)  # Brax field refreshed


def test_reward_is_weighted_sum_of_logged_terms(sim):
    _, _, step, state0 = sim
    state = _random_steps(step, state0, 3)
    weights = RewardWeights()
    terms = {k: state.metrics[f"reward/{k}"] for k in weights.as_dict()}
    np.testing.assert_allclose(state.reward, total_reward(terms, weights), rtol=1e-6, atol=1e-7)
    manual = PHYSICS.ctrl_dt * sum(w * np.asarray(terms[k]) for k, w in weights.as_dict().items())
    np.testing.assert_allclose(state.reward, manual, rtol=1e-5, atol=1e-7)
    assert set(state.metrics) == {f"reward/{k}" for k in weights.as_dict()}


def test_commands_in_ranges_and_resampled(sim):
    _, _, step, state0 = sim
    low, high = RANGES.low, RANGES.high
    c0 = np.asarray(state0.info["command"])
    assert c0.shape == (B, 3) and np.all(c0 >= low) and np.all(c0 <= high)
    np.testing.assert_array_equal(state0.obs[:, STATE_DIM:STATE_DIM + 3], c0)
    state = state0
    for k in range(1, RESAMPLE + 1):
        state = step(state, jnp.zeros((B, ACTION_DIM)))
        c = np.asarray(state.info["command"])
        assert np.all(c >= low) and np.all(c <= high)
        np.testing.assert_array_equal(state.obs[:, STATE_DIM:STATE_DIM + 3], c)
        if k < RESAMPLE:
            np.testing.assert_array_equal(c, c0)
            np.testing.assert_array_equal(state.info["step"], k)
    assert np.all(np.any(c != c0, axis=-1))  # resampled after RESAMPLE steps
    np.testing.assert_array_equal(state.info["step"], 0)
    np.testing.assert_array_equal(state.info["gait"], state0.info["gait"])  # gait_redraw_probability=0: kept


def test_single_axis_commands_keep_one_component_of_the_same_draw(sim):
    """At probability 0.5 about half the commands keep one component (the one of the draw at probability 0) and
    zero the other two; the rest are the draw at probability 0 unchanged. RANGES never give a zero component."""
    _, reset, _, _ = sim
    env = Go1Env(command_ranges=RANGES, gaits=GAIT_NAMES, single_axis_probability=0.5, randomize_init=False)
    keys = jax.random.split(jax.random.PRNGKey(5), 400)
    full = np.asarray(reset(keys).info["command"])  # (400, 3)
    got = np.asarray(jax.jit(jax.vmap(env.reset))(keys).info["command"])
    kept = got != 0
    single = kept.sum(axis=1) == 1
    assert np.all(single | kept.all(axis=1))
    np.testing.assert_allclose(got[kept], full[kept], rtol=1e-6)
    assert 0.4 < single.mean() < 0.6
    assert len(set(np.argmax(kept[single], axis=1))) == 3  # every axis is kept sometimes


def test_gait_index_and_onehot(sim):
    _, reset, _, _ = sim
    state = reset(jax.random.split(jax.random.PRNGKey(3), B))
    gait = np.asarray(state.info["gait"])
    allowed = [GAITS.index(g) for g in GAIT_NAMES]
    assert gait.dtype == np.int32 and np.all(np.isin(gait, allowed))
    np.testing.assert_array_equal(state.obs[:, STATE_DIM + 3:], np.eye(len(GAITS))[gait])


def test_home_pose_stands_for_5_seconds(sim):
    _, _, step, state0 = sim
    np.testing.assert_allclose(state0.obs[:, :STATE_DIM], np.tile(PHYSICS.home_state, (B, 1)), atol=1e-7)
    assert np.all(state0.info["last_contact"])
    state, zero = state0, jnp.zeros((B, ACTION_DIM))
    heights, up, done = [], [], []
    for _ in range(round(5.0 / PHYSICS.ctrl_dt)):  # 250 steps
        state = step(state, zero)
        x = state.obs[:, :STATE_DIM]
        heights.append(x[:, 2])
        up.append(projected_gravity(x, jnp)[:, 2])
        done.append(state.done)
    heights, up, done = np.array(heights), np.array(up), np.array(done)
    assert heights.min() > 0.20 and heights.max() < 0.32, (heights.min(), heights.max())
    assert up.max() < -0.95  # within ~18 degrees of upright
    assert not done.any()
    assert np.all(state.info["last_contact"]) and np.all(state.info["feet_air_time"] == 0)


def test_feet_air_time_and_touchdown(sim):
    """Dropped from 10 cm: air time grows by ctrl_dt per step in the air; the touch-down step is rewarded
    (bookkeeping of envs.task.update_feet, worked out here by hand)."""
    _, _, step, state0 = sim
    ps = state0.pipeline_state
    state = state0.replace(pipeline_state=ps.replace(qpos=ps.qpos.at[:, 2].add(0.10)))
    dt, zero = PHYSICS.ctrl_dt, jnp.zeros((B, ACTION_DIM))
    n_air, n_touch = 0, 0
    for _ in range(30):
        prev = state.info
        state = step(state, zero)
        contact = np.asarray(state.info["last_contact"])  # raw contact after this step
        settled = contact | np.asarray(prev["last_contact"])  # Playground's one-step bounce filter
        air_prev, air = np.asarray(prev["feet_air_time"]), np.asarray(state.info["feet_air_time"])
        np.testing.assert_allclose(air, np.where(contact, 0.0, air_prev + dt), atol=1e-6)
        first = settled & (air_prev > 0)
        expected = np.sum((air_prev + dt - 0.1) * first, axis=-1)  # all commands are "moving"
        np.testing.assert_allclose(state.metrics["reward/feet_air_time"], expected, atol=1e-6)
        n_air += int((~contact).sum())
        n_touch += int(first.sum())
    assert n_air >= 4 * B * 3  # several steps in the air
    assert n_touch >= 4 * B  # every foot landed
    assert not np.any(state.done)
    assert FOOT_CONTACT_HEIGHT == pytest.approx(0.028)


def test_non_finite_state_is_done_and_obs_finite(sim):
    _, _, step, state0 = sim
    ps = state0.pipeline_state
    state = state0.replace(pipeline_state=ps.replace(qvel=ps.qvel.at[0].set(jnp.nan)))
    state = step(state, jnp.zeros((B, ACTION_DIM)))
    np.testing.assert_array_equal(state.done, [1, 0, 0, 0])
    assert np.all(np.isfinite(state.obs)) and np.all(np.isfinite(state.reward))
    assert state.info["step"][0] == 0 and np.all(state.info["last_act"][0] == 0)


def test_randomize_init():
    env = Go1Env(randomize_init=True)
    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(5), B))
    x = np.asarray(state.obs[:, :STATE_DIM])
    home = PHYSICS.home_state
    quat = x[:, 3:7]
    np.testing.assert_allclose(np.linalg.norm(quat, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(quat[:, 1:3], 0.0, atol=1e-7)  # yaw only
    assert np.ptp(np.arctan2(quat[:, 3], quat[:, 0])) > 0.1  # different headings
    dq = x[:, 7:19] - home[7:19]
    assert np.all(np.abs(dq) <= 0.1 + 1e-6) and np.abs(dq).max() > 0.01
    assert np.all(x[:, 7:19] >= np.array(PHYSICS.joint_lower) - 1e-6)
    assert np.all(x[:, 7:19] <= np.array(PHYSICS.joint_upper) + 1e-6)
    assert not np.any(is_fallen(x))
    np.testing.assert_array_equal(state.info["gait"], GAITS.index("trot"))


@pytest.mark.parametrize("kwargs", [dict(gaits=("gallop",)), dict(gaits=()), dict(resample_command_steps=0),
                                    dict(gait_redraw_probability=1.5),
                                    dict(backend="generalized"), dict(gait_clock=True),
                                    dict(gaits=("trot", "pace"), command_ranges={"trot": CommandRanges()})])
def test_constructor_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        Go1Env(**kwargs)


EPISODE = 30
RUN_STEPS = EPISODE + 5
"""Every call of the ``randomized`` fixture's ``run`` has this many steps: one trace and compile for all."""


@pytest.fixture(scope="module")
def randomized():
    """A domain-randomised four-gait env with policy inputs and the gait clock under Brax's training wrappers
    (time limit EPISODE steps), each gait's commands from ``envs.task.GAIT_COMMAND_RANGES``.

    ``run(state, actions (T, B, 12))`` is jitted once: a scan returning the final state and, per step,
    base height, friction draw, command, the action-rate term, the auto-reset obs, gait and phase.
    """
    from brax.envs.wrappers.training import wrap

    from envs.randomization import DomainRandomization

    env = Go1Env(command_ranges=envs.task.GAIT_COMMAND_RANGES, gaits=GAITS, randomize_init=False,
                 domain_randomization=DomainRandomization(), policy_inputs=True, gait_clock=True)
    wrapped = wrap(env, episode_length=EPISODE)
    reset = jax.jit(wrapped.reset)

    @jax.jit
    def run(state, actions):
        def body(s, u):
            s = wrapped.step(s, u)
            return s, (s.pipeline_state.qpos[:, 2], s.info["physics"]["friction"], s.info["command"],
                       s.metrics["reward/action_rate"], s.obs, s.info["gait"], s.info["phase"])
        return jax.lax.scan(body, state, actions)

    return env, reset, run


def test_domain_randomization_draws_per_env_and_changes_the_physics(randomized, sim):
    env, reset, run = randomized
    state0 = reset(jax.random.split(jax.random.PRNGKey(3), B))
    draws = state0.info["physics"]
    for name, (lo, hi) in (("friction", (0.4, 1.0)), ("mass_scale", (0.9, 1.1)), ("payload", (-0.5, 1.5))):
        assert np.all((draws[name] >= lo) & (draws[name] <= hi)) and np.unique(np.asarray(draws[name])).size == B
    assert state0.obs.shape == (B, envs.task.POLICY_INPUT_DIM + envs.task.CLOCK_DIM) == (B, env.observation_size)

    # Nominal parameters reproduce the nominal env; a heavy payload makes the robot stand lower after 25 steps
    # (before the time limit). steps = 1 marks an episode in progress, so the first step keeps these draws; all
    # strongly typed float32 like the env's own draws, so that every call of run shares one trace.
    nominal = {"friction": jnp.full(B, 0.6, jnp.float32), "mass_scale": jnp.ones(B), "payload": jnp.zeros(B)}
    heavy = {**nominal, "payload": jnp.full(B, 6.0, jnp.float32)}
    zeros = jnp.zeros((RUN_STEPS, B, ACTION_DIM))
    in_progress = {**state0.info, "steps": jnp.ones_like(state0.info["steps"])}
    _, (z_nominal, *_) = run(state0.replace(info={**in_progress, "physics": nominal}), zeros)
    _, (z_heavy, *_) = run(state0.replace(info={**in_progress, "physics": heavy}), zeros)
    _, _, step, s = sim  # the nominal env, same home start (randomize_init=False)
    for _ in range(25):
        s = step(s, jnp.zeros((B, ACTION_DIM)))
    np.testing.assert_allclose(z_nominal[24], s.pipeline_state.qpos[:, 2], atol=1e-6)
    assert np.all(z_heavy[24] < z_nominal[24] - 0.005)


def test_time_limit_reset_starts_a_fresh_episode(randomized):
    """After the time limit: a new physics draw, no stale last action, the command the restored obs shows."""
    _, reset, run = randomized
    state0 = reset(jax.random.split(jax.random.PRNGKey(4), B))
    actions = jnp.asarray(np.random.default_rng(0).uniform(-0.3, 0.3, (RUN_STEPS, B, ACTION_DIM)), jnp.float32)
    _, (_, friction, command, action_rate, obs, _, _) = run(state0, actions)
    friction, command = np.asarray(friction), np.asarray(command)
    np.testing.assert_array_equal(friction[1:EPISODE], np.broadcast_to(friction[0], (EPISODE - 1, B)))
    assert np.all(friction[EPISODE] != friction[EPISODE - 1])  # redrawn for the second episode
    # First step of each episode: the action-rate term compares with a zero last action.
    for k in (0, EPISODE):
        np.testing.assert_allclose(action_rate[k], np.sum(np.asarray(actions[k]) ** 2, axis=-1), rtol=1e-5)
    # The second episode follows the command of the auto-reset obs (the first reset's), which the policy saw.
    restored_obs = np.asarray(obs[EPISODE - 1])  # obs after the time-limit step: the first reset's obs
    np.testing.assert_allclose(command[EPISODE], restored_obs[:, -15:-12], rtol=1e-6)
    np.testing.assert_allclose(restored_obs, np.asarray(state0.obs), rtol=1e-6)


def test_gait_clock_runs_per_gait_and_restarts_with_each_episode(randomized):
    env, reset, run = randomized
    state0 = reset(jax.random.split(jax.random.PRNGKey(5), B))
    assert np.all(np.asarray(state0.info["phase"]) == 0.0)
    actions = jnp.zeros((RUN_STEPS, B, ACTION_DIM))
    _, (_, _, command, _, obs, gait, phase) = run(state0, actions)
    gait, phase, obs, command = np.asarray(gait), np.asarray(phase), np.asarray(obs), np.asarray(command)
    period = np.asarray(envs.task.GAIT_PERIODS)[gait[0]]
    np.testing.assert_allclose(phase[:3], np.mod(np.arange(1, 4)[:, None] * PHYSICS.ctrl_dt / period, 1.0),
                               rtol=1e-5)
    np.testing.assert_allclose(obs[:EPISODE - 1, :, -envs.task.CLOCK_DIM:],
                               envs.task.gait_clock(phase[:EPISODE - 1], gait[:EPISODE - 1]), atol=1e-5)
    np.testing.assert_array_equal(phase[EPISODE], np.mod(PHYSICS.ctrl_dt / period, 1.0).astype(np.float32))
    low, high = envs.task.command_range_table(envs.task.GAIT_COMMAND_RANGES)
    assert np.all((command >= low[gait] - 1e-6) & (command <= high[gait] + 1e-6))
    assert env.observation_structure["gait_clock"] == envs.task.CLOCK_DIM
