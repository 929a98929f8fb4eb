"""Teacher rollouts from a controller's states: scenarios, option checks, and the CLI end to end."""

import os

import numpy as np
import pytest

from dynaflow_policy.data.dagger import Args, random_scenario
from envs.physics import PHYSICS
from envs.task import CommandRanges

TROT_EXPERT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints", "ppo_go1_trot")


def test_random_scenario_holds_commands_in_range_and_shoves_within_bounds():
    ranges = CommandRanges(vx=(-0.5, 1.0), vy=(-0.3, 0.3), yaw_rate=(-1.0, 1.0))
    scenario = random_scenario(np.random.default_rng(0), 10.0, 2.5, ranges, 3, (0.3, 0.8))
    assert [t for t, _ in scenario.commands] == [0.0, 2.5, 5.0, 7.5]
    commands = np.array([c for _, c in scenario.commands])
    assert (commands >= ranges.low).all() and (commands <= ranges.high).all()
    steps = np.arange(int(10.0 / PHYSICS.ctrl_dt))
    held = np.stack([scenario.command_at(k) for k in steps])
    np.testing.assert_array_equal(held, commands[steps // int(2.5 / PHYSICS.ctrl_dt)])  # held, then a step change
    times = [t for t, _ in scenario.pushes]
    speeds = np.linalg.norm([v for _, v in scenario.pushes], axis=1)
    assert len(times) == 3 and all(1.0 <= t < 9.0 for t in times) and times == sorted(times)
    assert ((speeds >= 0.3 - 1e-9) & (speeds <= 0.8 + 1e-9)).all()
    assert random_scenario(np.random.default_rng(0), 10.0, 2.5, ranges, 0, (0.3, 0.8)).pushes == ()


@pytest.mark.parametrize("option, value, message", [
    ("episodes_per_gait", 0, "--episodes-per-gait"), ("pushes_per_episode", -1, "--pushes-per-episode"),
    ("seconds", 0.0, "--seconds"), ("start_every", float("nan"), "--start-every"),
    ("rollout_seconds", 0.001, "--rollout-seconds"), ("hold_seconds", -1.0, "--hold-seconds"),
    ("push_speed", (0.8, 0.3), "--push-speed"), ("gaits", ("gallop",), "--gaits.*trot"), ("gaits", (), "--gaits")])
def test_bad_options_are_refused_naming_the_option(option, value, message):
    with pytest.raises(ValueError, match=message):
        Args(checkpoint="x", **{option: value})


def test_collect_writes_feasible_rollouts_from_the_controllers_states(tmp_path):
    """End to end on a tiny DynaFlow checkpoint with the shipped trot expert as the teacher: the first rollout
    starts at the env's reset and follows the episode's commands, and every stored transition is one native
    MuJoCo step of the held-out expert action."""
    import gymnasium

    import envs
    from artifacts import write_dynaflow_checkpoint
    from dynaflow_policy.data.dagger import main
    from dynaflow_policy.data.schema import load_dataset
    from dynaflow_policy.experts import load_expert
    from envs.native import NativeGo1

    ckpt = write_dynaflow_checkpoint(tmp_path / "ckpt", horizon=8, gaits=("trot",))
    out = str(tmp_path / "dagger.npz")
    args = Args(checkpoint=ckpt, out=out, expert=TROT_EXPERT, episodes_per_gait=2, seconds=0.4, start_every=0.2,
                rollout_seconds=0.2, seed=3)
    main(args)
    ds = load_dataset(out)
    report = ds.metadata.extra["per_gait"]["trot"]
    assert ds.n_steps == 11 and ds.n_trajectories == report["rollouts"] >= 1 and ds.metadata.source == "ppo_expert"
    assert set(ds.episode.tolist()) <= {0, 1} and ds.expert_actions is not None
    assert ds.episode[0] == 0  # the controller's first state is the reset: the teacher never falls from there
    first = random_scenario(np.random.default_rng(args.seed), args.seconds, args.hold_seconds,
                            load_expert(TROT_EXPERT).command_ranges("trot"), args.pushes_per_episode, args.push_speed)
    np.testing.assert_allclose(ds.commands[0], np.stack([first.command_at(k) for k in range(11)]), atol=1e-6)
    env = gymnasium.make(envs.GYM_ID)
    try:
        env.reset(seed=args.seed, options={"command": tuple(first.command_at(0)), "gait": "trot"})
        np.testing.assert_allclose(ds.states[0, 0], env.unwrapped.state, atol=1e-6)
    finally:
        env.close()
    sim = NativeGo1(PHYSICS)
    for n in range(ds.n_trajectories):
        for k in range(ds.n_steps - 1):  # each stored transition is one physics step of the expert's action
            sim.set_state(ds.states[n, k].astype(np.float64))
            sim.step(ds.expert_actions[n, k])
            np.testing.assert_allclose(sim.state(), ds.states[n, k + 1], atol=1e-4)


def test_collect_refuses_a_short_rollout_a_non_dynaflow_checkpoint_and_gaits_either_lacks(tmp_path):
    from artifacts import write_dynaflow_checkpoint
    from dynaflow_policy.data.dagger import collect

    ckpt = write_dynaflow_checkpoint(tmp_path / "ckpt", horizon=8, gaits=("trot",))
    with pytest.raises(ValueError, match="--rollout-seconds.*window"):
        collect(Args(checkpoint=ckpt, expert=TROT_EXPERT, rollout_seconds=0.1))
    with pytest.raises(ValueError, match="--checkpoint.*DynaFlow"):
        collect(Args(checkpoint=TROT_EXPERT, expert=TROT_EXPERT))
    with pytest.raises(ValueError, match="--gaits pace: --checkpoint"):
        collect(Args(checkpoint=ckpt, expert=TROT_EXPERT, gaits=("pace",)))
    two_gaits = write_dynaflow_checkpoint(tmp_path / "two", horizon=8, gaits=("trot", "pace"))
    with pytest.raises(ValueError, match="--gaits pace: --expert .* trot only"):
        collect(Args(checkpoint=two_gaits, expert=TROT_EXPERT, gaits=("pace",)))
