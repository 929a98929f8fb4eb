"""Env transitions per second: the MJX vector env against the sync vector of native MuJoCo envs.

    python eval/bench_vector_env.py                    # N = 8, 64, 256; about 3 s of stepping per row
    python eval/bench_vector_env.py --sizes 8 --seconds 1

Every row steps ``gymnasium.make_vec("dynaflow/Go1-v0", num_envs=N, ...)``
under one fixed random-action policy (a bank of N(0, 0.3^2) actions drawn from
``--seed``, cycled), autoresets included, for ``--seconds`` of wall time after
one warm-up step, and reports env transitions per second (N x vector steps
per second) and the ratio to the floor: one native ``gymnasium.make`` env,
measured in the same run. The MJX rows also report the warm-up step, which
holds the compile (loaded from the persistent JAX compilation cache on reruns).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tyro

ACTION_BANK = 16
"""Distinct action batches the policy cycles through."""


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    sizes: tuple[int, ...] = (8, 64, 256)
    """Numbers of environments N."""
    seconds: float = 3.0
    """Wall time (s) of stepping per row, after the warm-up step."""
    seed: int = 0
    """Seed of the resets and of the action bank."""


@dataclasses.dataclass(frozen=True)
class Row:
    mode: str
    num_envs: int
    transitions_per_s: float
    warmup_s: float


def _time_steps(env, actions: np.ndarray, seconds: float) -> tuple[float, float]:
    """(transitions per second, warm-up step s) of ``env`` stepped under ``actions`` (K, *action shape).

    A single env (no ``num_envs``) is reset when its episode ends, as the vector envs reset themselves.
    """
    num_envs = getattr(env, "num_envs", None)

    def step(action):
        _, _, terminated, truncated, _ = env.step(action)
        if num_envs is None and (terminated or truncated):
            env.reset()

    env.reset(seed=0)
    t0 = time.perf_counter()
    step(actions[0])
    warmup = time.perf_counter() - t0
    steps, t0 = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - t0 < seconds:
        step(actions[steps % len(actions)])
        steps += 1
    return steps * (num_envs or 1) / (time.perf_counter() - t0), warmup


def run(cfg: BenchConfig) -> list[Row]:
    """The floor row, then a sync and an MJX row per size."""
    import gymnasium

    import envs
    from envs.compilation_cache import enable_compilation_cache

    enable_compilation_cache()
    rng = np.random.default_rng(cfg.seed)
    single = gymnasium.make(envs.GYM_ID)
    rate, warmup = _time_steps(single, 0.3 * rng.standard_normal((ACTION_BANK, 12)).astype(np.float32), cfg.seconds)
    rows = [Row("native single env", 1, rate, warmup)]
    single.close()
    for n in cfg.sizes:
        actions = 0.3 * rng.standard_normal((ACTION_BANK, n, 12)).astype(np.float32)
        for mode, label in (("sync", "sync vector of native envs"), ("vector_entry_point", "MJX vector env")):
            env = gymnasium.make_vec(envs.GYM_ID, num_envs=n, vectorization_mode=mode)
            rate, warmup = _time_steps(env, actions, cfg.seconds)
            rows.append(Row(label, n, rate, warmup))
            env.close()
            print(f"{label}, N={n}: {rate:,.0f} transitions/s", flush=True)
    return rows


def report(rows: list[Row]) -> str:
    """Markdown table, ratios against the first (native single env) row."""
    floor = rows[0].transitions_per_s
    lines = ["| env | N | transitions/s | x native single env | warm-up step (s) |", "|---|---|---|---|---|"]
    lines += [f"| {r.mode} | {r.num_envs} | {r.transitions_per_s:,.0f} | {r.transitions_per_s / floor:.2f} | "
              f"{r.warmup_s:.2f} |" for r in rows]
    return "\n".join(lines)


def main(cfg: BenchConfig) -> list[Row]:
    if not cfg.sizes or min(cfg.sizes) < 1 or cfg.seconds <= 0:
        raise ValueError(f"need sizes >= 1 and seconds > 0, got {cfg.sizes}, {cfg.seconds}")
    rows = run(cfg)
    print(report(rows))
    return rows


if __name__ == "__main__":
    main(tyro.cli(BenchConfig))
