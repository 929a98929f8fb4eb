"""Latency of ``act()``: DynaFlowPolicy (1 and 10 ODE steps) beside the PPO expert's MLP, same run, same CPU.

    python eval/bench_policy.py [--dynaflow DIR] [--ppo DIR] [--calls 300]
    python eval/bench_policy.py --episodes 16 [--seconds 4]     # closed-loop episodes/s, N = 1 vs 8

Each controller acts in the Gymnasium env (native MuJoCo) on the observations
of its own rollout; only the ``act()`` call is timed (``time.perf_counter``),
after warm-up calls that compile the network. DynaFlow is timed with
``execute_steps=1`` (a plan on every call: the worst case, and the latency of
one replanning) and with the default ``execute_steps`` (the amortised cost per
control step). The native env step is timed in the same loop as the floor.
Without a shipped DynaFlow checkpoint an untrained ``small`` model of the
same shape is timed (latency does not depend on the weights); the output says so.

With ``--episodes E`` it measures closed-loop throughput instead: E episodes of
``--seconds`` s (command vx 0.6 m/s, seeds 0..E-1) with
``dynaflow_policy.closed_loop.run_episode`` one at a time (N = 1) and with
``run_episodes`` in a sync vector env of ``--num-envs`` N environments and one
batched controller, for the PPO expert and DynaFlow, in episodes per second
(after one untimed episode that compiles).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np
import tyro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Args:
    dynaflow: str = os.path.join(REPO, "checkpoints", "dynaflow_go1_expert")
    """DynaFlow checkpoint (an untrained small model if it does not exist)."""
    ppo: str = os.path.join(REPO, "checkpoints", "ppo_go1_trot")
    """PPO expert checkpoint (an untrained MLP of the default size if it does not exist)."""
    calls: int = 300
    """Timed act() calls per configuration."""
    warmup: int = 5
    """Untimed calls first (compilation)."""
    seed: int = 0
    """Env reset seed."""
    episodes: int = 0
    """> 0: measure closed-loop episodes per second (single env vs vector env) instead of act() latency."""
    seconds: float = 4.0
    """Episode length (s) of --episodes."""
    num_envs: int = 8
    """Environments of the vector env of --episodes."""


def _untrained_dynaflow(execute_steps: int = 4, **kwargs):
    import jax

    from dynaflow_policy import DynaFlowPolicy
    from dynaflow_policy.configs import DiTConfig, FlowConfig
    from dynaflow_policy.model import init_params
    from dynaflow_policy.normalizer import Normalizer
    from envs.physics import PHYSICS, STATE_DIM

    dit = DiTConfig.small(horizon=16)
    params = init_params(dit, jax.random.PRNGKey(0))
    x = np.asarray(PHYSICS.home_state, np.float64)[None] + 0.05 * np.random.default_rng(0).standard_normal(
        (64, STATE_DIM))
    return DynaFlowPolicy(params, dit, FlowConfig(), Normalizer.fit(x), execute_steps=execute_steps, **kwargs)


def _untrained_ppo():
    from dynaflow_policy.experts.policy import PPOExpert
    from envs.physics import ACTION_DIM
    from envs.task import POLICY_INPUT_DIM

    rng = np.random.default_rng(0)
    sizes = [POLICY_INPUT_DIM, 512, 256, 128, 2 * ACTION_DIM]
    layers = [(rng.standard_normal((a, b)) / np.sqrt(a), np.zeros(b)) for a, b in zip(sizes[:-1], sizes[1:])]
    return PPOExpert(np.zeros(POLICY_INPUT_DIM), np.ones(POLICY_INPUT_DIM), layers)


def episodes_per_second(make, args: Args) -> tuple[float, float]:
    """(episodes/s one at a time, episodes/s ``args.num_envs`` at a time) of a fresh controller ``make()``."""
    import gymnasium

    import envs
    from dynaflow_policy.closed_loop import run_episode, run_episodes
    from envs.physics import PHYSICS

    command, seeds = (0.6, 0.0, 0.0), list(range(args.seed, args.seed + args.episodes))
    controller = make()
    env = gymnasium.make(envs.GYM_ID)
    run_episode(env, controller, command, PHYSICS.ctrl_dt, args.seed)  # compiles the one-row plan
    t0 = time.perf_counter()
    for s in seeds:
        run_episode(env, controller, command, args.seconds, s)
    single = args.episodes / (time.perf_counter() - t0)
    env.close()
    run_episodes(controller, command, args.seconds, seeds[:args.num_envs], num_envs=args.num_envs)  # compiles
    t0 = time.perf_counter()
    run_episodes(controller, command, args.seconds, seeds, num_envs=args.num_envs)
    return single, args.episodes / (time.perf_counter() - t0)


def main(args: Args) -> list[dict]:
    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    from dynaflow_policy import load_policy
    from dynaflow_policy.closed_loop import time_controller

    trained_df = os.path.isdir(args.dynaflow)
    trained_ppo = os.path.isdir(args.ppo)

    def dynaflow(**kwargs):
        return load_policy(args.dynaflow, **kwargs) if trained_df else _untrained_dynaflow(**kwargs)

    def ppo():
        return load_policy(args.ppo) if trained_ppo else _untrained_ppo()

    ppo_name = os.path.relpath(args.ppo, REPO) if trained_ppo else "untrained MLP (512, 256, 128)"
    df_name = os.path.relpath(args.dynaflow, REPO) if trained_df else "untrained small DiT"
    if args.episodes > 0:
        print(f"closed-loop episodes per second, {args.episodes} episodes x {args.seconds:g} s, "
              f"{os.cpu_count()} CPU cores")
        print(f"| controller | N = 1 (episodes/s) | N = {args.num_envs} (episodes/s) | speed-up |")
        print("|---|---|---|---|")
        for name, make in ((f"PPO expert ({ppo_name})", ppo), (f"DynaFlow ({df_name})", dynaflow)):
            single, batched = episodes_per_second(make, args)
            print(f"| {name} | {single:.2f} | {batched:.2f} | {batched / single:.2f} |")
        return []
    execute = dynaflow().execute_steps
    configs = [
        (f"PPO expert ({ppo_name})", ppo),
        (f"DynaFlow 1 ODE step, plan every call ({df_name})", lambda: dynaflow(ode_steps=1, execute_steps=1)),
        (f"DynaFlow 10 ODE steps, plan every call ({df_name})", lambda: dynaflow(ode_steps=10, execute_steps=1)),
        (f"DynaFlow 1 ODE step, plan every {execute} calls ({df_name})",
         lambda: dynaflow(ode_steps=1)),
        (f"DynaFlow 10 ODE steps, plan every {execute} calls ({df_name})",
         lambda: dynaflow(ode_steps=10)),
    ]
    rows = []
    floor = None
    for name, make in configs:
        act_t, step_t = time_controller(make(), args.calls, args.warmup, args.seed)
        floor = step_t if floor is None else np.concatenate([floor, step_t])
        rows.append({"controller": name, "median_ms": 1e3 * float(np.median(act_t)),
                     "p99_ms": 1e3 * float(np.percentile(act_t, 99)), "mean_ms": 1e3 * float(act_t.mean())})
    ppo_median = rows[0]["median_ms"]
    print(f"act() latency, {args.calls} calls each, {os.cpu_count()} CPU cores; floor: native env.step() median "
          f"{1e3 * np.median(floor):.3f} ms")
    print("| controller | median (ms) | p99 (ms) | mean (ms) | median / PPO |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['controller']} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} | {r['mean_ms']:.3f} | "
              f"{r['median_ms'] / ppo_median:.1f} |")
    target = rows[1]["median_ms"]
    print(f"target: DynaFlow 1 ODE step median <= 5 ms per plan: {target:.2f} ms, "
          f"{'met' if target <= 5.0 else 'MISSED'}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main(tyro.cli(Args))
