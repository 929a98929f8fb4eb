"""How infeasible is the kinematic gait data? The project's SAE with fitted actions, plus a centroidal check.

    python eval/kinematic_infeasibility.py                        # 200 transitions per gait, generated data
    python eval/kinematic_infeasibility.py --dataset data/kinematic.npz

One-step admissibility (the project's metric, nothing re-implemented here).
For sampled transitions (x_k, x_{k+1}) of each gait,
``dynaflow_policy.metrics.admissibility_errors_fitted_native`` fits the action
``u in [-1, 1]^12`` whose native MuJoCo control step comes closest to x_{k+1}
and returns ``|| (x_{k+1} - f(x_k, u)) / sigma ||_2``; its mean is
``sae_fitted_native``, the SAE of state-only data. The fit is local
(Levenberg-Marquardt from the servo guess "target = next joint position", zero
and random starts), so each error is an upper bound on the best achievable one.

sigma is the normaliser a default training run fits on this dataset:
``dynaflow_policy.data.pool.fit_normalizer`` on the training windows (H+1 = 17
states, heading frame of ``dynaflow_policy.frames``) of
``dynaflow_policy.data.windows.train_held_out_windows``.

Calibration row. The one-step map of this physics is only piecewise smooth in
u (contacts switching within the 5 substeps, one solver iteration with a line
search, torque and target clipping), so the local fit does not always reach 0
even on feasible data. The row "native rollouts" runs the same metric, with
the same sigma, on transitions of native rollouts (``envs.native.replay``)
from the home pose under smooth random actions, cut at the first fall and
stored in float32 like a dataset: their true error is 0, so that row is the
metric's floor, and only kinematic errors well above it measure infeasibility.

Centroidal check (no optimiser, exact): ``dynaflow_policy.metrics.centroidal_violation``,
the distance (units of g) of the centre of mass's acceleration minus gravity
from the friction cone of the feet near the floor. It is a lower bound on
infeasibility: zero is necessary, not sufficient. It runs over every step of
every trajectory of the gait; the calibration row's rollouts give its floor on
feasible data.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tyro

from dynaflow_policy.configs import TrainConfig
from dynaflow_policy.data import Dataset, generate_kinematic_dataset, load_dataset
from dynaflow_policy.data.pool import WindowPool, fit_normalizer
from dynaflow_policy.data.windows import train_held_out_windows
from dynaflow_policy.metrics import admissibility_errors_fitted_native, centroidal_violation
from dynaflow_policy.normalizer import Normalizer
from envs.native import replay
from envs.physics import ACTION_DIM, PHYSICS
from envs.task import GAITS, is_fallen

GENERATED_TRAJECTORIES, GENERATED_SECONDS = 16, 10.0
"""Size of the kinematic dataset generated when no --dataset is given (four trajectories per gait)."""
CALIBRATION_EPISODES = 8
"""Native rollouts for the calibration row (each as long as the dataset's trajectories, cut at a fall)."""
EXACT = 1e-3
"""An error below this counts as an exact fit."""


@dataclasses.dataclass(frozen=True)
class Args:
    dataset: str | None = None
    """Kinematic dataset (.npz); default: generate 16 trajectories of 10 s (four per gait) with --seed."""
    transitions_per_gait: int = 200
    """Transitions fitted per gait, and for the calibration row."""
    starts: int = 8
    """Most starts of the action fit per transition (``fit_actions_native``)."""
    iterations: int = 10
    """Levenberg-Marquardt iterations per start."""
    seed: int = 0
    """Seed of the generated dataset, the sampled transitions, the rollouts and the fit's random starts."""


def training_normalizer(ds: Dataset) -> Normalizer:
    """The normaliser a training run with the default ``TrainConfig`` fits on ``ds`` (see the module docstring)."""
    config = TrainConfig()
    train, _ = train_held_out_windows(ds, config.horizon, config.held_out_fraction, config.seed)
    return fit_normalizer(WindowPool([train]), config)


def calibration_rollouts(n_episodes: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Native rollouts from the home pose under smooth random actions, cut before the first fall, float32.

    The actions are a clipped random walk, ``u_k = clip(0.05 * sum_{j <= k} N(0, I), -1, 1)``.

    Returns:
      A list of (T_i, 37) float32 state trajectories (T_i >= 3).
    """
    out = []
    for _ in range(n_episodes):
        U = np.clip(0.05 * np.cumsum(rng.standard_normal((steps, ACTION_DIM)), 0), -1, 1)  # (steps, 12)
        X = replay(PHYSICS.home_state, U)  # (steps+1, 37)
        fallen = np.flatnonzero(is_fallen(X))
        X = X[: fallen[0]] if fallen.size else X
        if len(X) >= 3:
            out.append(X.astype(np.float32))
    return out


def _transitions(trajectories: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2, 37) pairs (x_k, x_{k+1}) drawn uniformly, with replacement, from all transitions of the trajectories."""
    pairs = [(i, k) for i, x in enumerate(trajectories) for k in range(len(x) - 1)]
    pick = rng.choice(len(pairs), n)
    return np.stack([trajectories[i][k:k + 2] for i, k in (pairs[j] for j in pick)])


def _summary(errors: np.ndarray, violation: np.ndarray) -> dict[str, float]:
    return {"transitions": int(errors.size), "sae_mean": float(errors.mean()), "sae_median": float(np.median(errors)),
            "exact": float(np.mean(errors < EXACT)), "centroidal_steps": int(violation.size),
            "centroidal_mean": float(violation.mean()), "centroidal_frac": float(np.mean(violation > 0.05)),
            "centroidal_max": float(violation.max())}


def main(args: Args) -> dict[str, dict[str, float]]:
    t0 = time.perf_counter()
    ds: Dataset = (load_dataset(args.dataset, horizon=TrainConfig().horizon) if args.dataset else
                   generate_kinematic_dataset(GENERATED_TRAJECTORIES, GENERATED_SECONDS, GAITS, seed=args.seed))
    normalizer = training_normalizer(ds)
    rng = np.random.default_rng(args.seed)
    fit = dict(starts=args.starts, iterations=args.iterations, seed=args.seed)
    rows: dict[str, dict[str, float]] = {}
    for g, name in enumerate(GAITS):
        trajs = [np.asarray(ds.states[n]) for n in np.flatnonzero(ds.gait == g)]
        if not trajs:
            continue
        errors, _ = admissibility_errors_fitted_native(_transitions(trajs, args.transitions_per_gait, rng),
                                                       normalizer, **fit)  # (M, 1)
        rows[name] = _summary(errors, np.concatenate([centroidal_violation(x) for x in trajs]))
    rollouts = calibration_rollouts(CALIBRATION_EPISODES, ds.n_steps, rng)
    errors, _ = admissibility_errors_fitted_native(_transitions(rollouts, args.transitions_per_gait, rng),
                                                   normalizer, **fit)
    calibration = "native rollouts (feasible: true SAE 0)"
    rows[calibration] = _summary(errors, np.concatenate([centroidal_violation(x) for x in rollouts]))
    elapsed = time.perf_counter() - t0

    print(f"kinematic data: N={ds.n_trajectories} x T={ds.n_steps}"
          f"{'' if args.dataset else f' (generated, seed {args.seed})'}; calibration: {len(rollouts)} native "
          f"rollouts of smooth random actions, {sum(len(x) for x in rollouts)} states before falls; "
          f"fit: {args.starts} starts x {args.iterations} iterations; {elapsed:.1f} s\n")
    print("SAE: one-step || (x_{k+1} - f(x_k, u)) / sigma ||_2 with fitted u (dynaflow_policy.metrics."
          "admissibility_errors_fitted_native),\nsigma the training normaliser of this dataset. Centroidal: "
          "violation of m a_com = m g + contact forces in the friction cone, units of g,\nover every step of "
          "the trajectories.\n")
    print(f"| data | transitions | SAE mean | SAE median | exact fits (< {EXACT:g}) | centroidal mean (g) "
          "| centroidal > 0.05 g | centroidal max (g) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['transitions']} | {r['sae_mean']:.3f} | {r['sae_median']:.3f} | {r['exact']:.0%} "
              f"| {r['centroidal_mean']:.4f} | {r['centroidal_frac']:.1%} | {r['centroidal_max']:.3f} |")
    return rows


if __name__ == "__main__":
    main(tyro.cli(Args))
