"""Latency of ``act()``: DynaFlowPolicy (1 and 10 ODE steps) beside the PPO expert's MLP, same run, same CPU.

    python eval/bench_policy.py [--dynaflow DIR] [--ppo DIR] [--calls 300]

Each controller acts in the Gymnasium env (native MuJoCo) on the observations
of its own rollout; only the ``act()`` call is timed (``time.perf_counter``),
after warm-up calls that compile the network. DynaFlow is timed with
``execute_steps=1`` (a plan on every call: the worst case, and the latency of
one replanning) and with the default ``execute_steps`` (the amortised cost per
control step). The native env step is timed in the same loop as the floor.
Without a shipped DynaFlow checkpoint an untrained ``small`` model of the
same shape is timed (latency does not depend on the weights); the output says so.
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


def _untrained_dynaflow(**kwargs):
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
    return DynaFlowPolicy(params, dit, FlowConfig(), Normalizer.fit(x), **kwargs)


def _untrained_ppo():
    from dynaflow_policy.experts.policy import PPOExpert
    from envs.physics import ACTION_DIM
    from envs.task import POLICY_INPUT_DIM

    rng = np.random.default_rng(0)
    sizes = [POLICY_INPUT_DIM, 512, 256, 128, 2 * ACTION_DIM]
    layers = [(rng.standard_normal((a, b)) / np.sqrt(a), np.zeros(b)) for a, b in zip(sizes[:-1], sizes[1:])]
    return PPOExpert(np.zeros(POLICY_INPUT_DIM), np.ones(POLICY_INPUT_DIM), layers)


def time_controller(controller, calls: int, warmup: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(act() seconds (calls,), env.step() seconds (calls,)) in a closed loop (reset on a fall)."""
    import gymnasium

    import envs

    env = gymnasium.make(envs.GYM_ID)
    obs, _ = env.reset(seed=seed, options={"command": (0.5, 0.0, 0.0)})
    controller.reset()
    act_t, step_t = [], []
    for i in range(warmup + calls):
        t0 = time.perf_counter()
        action = controller.act(obs)
        t1 = time.perf_counter()
        obs, _, terminated, truncated, _ = env.step(action)
        t2 = time.perf_counter()
        if i >= warmup:
            act_t.append(t1 - t0)
            step_t.append(t2 - t1)
        if terminated or truncated:
            obs, _ = env.reset(options={"command": (0.5, 0.0, 0.0)})
            controller.reset()
    env.close()
    return np.array(act_t), np.array(step_t)


def main(args: Args) -> list[dict]:
    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    from dynaflow_policy import DynaFlowPolicy
    from dynaflow_policy.experts import load_expert
    from dynaflow_policy.policy import DEFAULT_EXECUTE_STEPS

    trained_df = os.path.isdir(args.dynaflow)
    trained_ppo = os.path.isdir(args.ppo)

    def dynaflow(**kwargs):
        return DynaFlowPolicy.from_checkpoint(args.dynaflow, **kwargs) if trained_df else _untrained_dynaflow(**kwargs)

    ppo_name = os.path.relpath(args.ppo, REPO) if trained_ppo else "untrained MLP (512, 256, 128)"
    df_name = os.path.relpath(args.dynaflow, REPO) if trained_df else "untrained small DiT"
    configs = [
        (f"PPO expert ({ppo_name})", lambda: load_expert(args.ppo) if trained_ppo else _untrained_ppo()),
        (f"DynaFlow 1 ODE step, plan every call ({df_name})", lambda: dynaflow(ode_steps=1, execute_steps=1)),
        (f"DynaFlow 10 ODE steps, plan every call ({df_name})", lambda: dynaflow(ode_steps=10, execute_steps=1)),
        (f"DynaFlow 1 ODE step, plan every {DEFAULT_EXECUTE_STEPS} calls ({df_name})",
         lambda: dynaflow(ode_steps=1)),
        (f"DynaFlow 10 ODE steps, plan every {DEFAULT_EXECUTE_STEPS} calls ({df_name})",
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
