"""How infeasible is the kinematic gait data? Best one-step fit of each transition, native MuJoCo only.

    python eval/kinematic_infeasibility.py                        # 200 transitions per gait, generated data
    python eval/kinematic_infeasibility.py --dataset data/kinematic.npz

For a transition (x_k, x_{k+1}) of the data, find the action that comes
closest, ``u* = argmin_{u in [-1, 1]^12} || (f(x_k, u) - x_{k+1}) / sigma ||``
where f is one control step of ``envs.native.NativeGo1`` and sigma the
per-dimension state scale: bounded nonlinear least squares (SciPy's
trust-region reflective method, forward-difference Jacobian, i.e. a damped
Gauss-Newton) from several starts (the servo guess "target = next joint
position", the hold pose "target = current joint position", zero, and a few
random actions), keeping the best. The reported error is that best normalised
distance, averaged over transitions: a one-step SAE with the best actions the
search finds, hence an upper bound on the best achievable one.

Calibration. The same search runs on feasible transitions (x_k, f(x_k, u_true))
from the same data states, whose true answer is 0, with u_true uniform in
[-1, 1]^12 ("uniform") or the servo guess plus N(0, 0.25^2) noise ("servo +
noise"). The one-step map of this physics is only piecewise smooth in u (one
solver iteration with a line search, contacts switching within the 5
substeps, torque and target clipping), so a local search from these starts
does not always find u_true; the calibration rows show how far from zero it
stays on data that is feasible by construction, and only errors well above
them measure infeasibility.

Centroidal check (no optimiser, exact). Whatever the actions, the centre of
mass obeys m a_com = m g + (sum of contact forces), and contact forces are
unilateral and inside the friction pyramid (|f_x|, |f_y| <= mu f_z in the
contact frame, so |f_xy| <= sqrt(2) mu f_z in any horizontal axes). With
a_com from second differences of the COM (MuJoCo forward kinematics of the
three states x_{k-1}, x_k, x_{k+1}), the violation is the distance of
a_com - g from that cone (or its norm when no foot is within
``FOOT_CONTACT_HEIGHT`` of the floor in any of the three states), in units of
g. It is a lower bound on infeasibility: zero is necessary, not sufficient.
The reference rows are native rollouts under smooth random actions.

sigma follows the training normaliser's convention: standard deviation of the
states of H+1 = 17-step windows expressed in the heading frame of their first
state, floored at 0.01, one shared scale for the four quaternion entries.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import mujoco
import numpy as np
import tyro
from scipy.optimize import least_squares

from envs.native import NativeGo1, replay
from envs.physics import (ACTION_DIM, BASE_ANGVEL, BASE_LINVEL, BASE_POS, BASE_QUAT, FOOT_CONTACT_HEIGHT, FOOT_SITES,
                          JOINT_POS, JOINT_VEL, PHYSICS, STATE_DIM, load_mj_model)
from envs.task import GAITS, is_fallen

from dynaflow_policy.data import Dataset, generate_kinematic_dataset, load_dataset

BLOCKS = {"base_pos (m)": BASE_POS, "base_quat": BASE_QUAT, "joint_pos (rad)": JOINT_POS,
          "base_linvel (m/s)": BASE_LINVEL, "base_angvel (rad/s)": BASE_ANGVEL, "joint_vel (rad/s)": JOINT_VEL}


@dataclasses.dataclass(frozen=True)
class Args:
    dataset: str | None = None
    """Kinematic dataset (.npz); default: generate one (see the next two fields, seed 0)."""
    generated_trajectories: int = 16
    """Trajectories of the generated dataset (spread over the four gaits)."""
    generated_seconds: float = 10.0
    """Duration (s) of the generated trajectories."""
    transitions_per_gait: int = 200
    """Transitions sampled per gait."""
    max_nfev: int = 40
    """Residual evaluations per start (the Jacobian's 12 extra steps not counted)."""
    random_starts: int = 2
    """Random starts in addition to the servo guess, the hold pose and zero."""
    fd_eps: float = 1e-5
    """Relative forward-difference step on the action."""
    feasible_checks: int = 25
    """Feasible transitions per gait and kind for the optimiser check (0: skip)."""
    min_std: float = 1e-2
    """Floor on the state scale sigma."""
    horizon: int = 16
    """Window length H for the state scale."""
    reference_episodes: int = 4
    """Native rollouts for the centroidal check's feasible reference."""
    seed: int = 0
    """Sampling seed."""


def heading_frame_scale(states: np.ndarray, horizon: int, min_std: float = 1e-2) -> np.ndarray:
    """(37,) per-dimension std of heading-frame windows (see the module docstring).

    Args:
      states: (N, T, 37) states.
    """
    n, t, _ = states.shape
    starts = np.arange(0, t - horizon, max(1, horizon // 2))
    w = np.stack([states[:, s:s + horizon + 1] for s in starts], 1).reshape(-1, horizon + 1, STATE_DIM)
    w = w.astype(np.float64)  # (W, H+1, 37)
    q0 = w[:, 0, BASE_QUAT]
    yaw = np.arctan2(2 * (q0[:, 0] * q0[:, 3] + q0[:, 1] * q0[:, 2]), 1 - 2 * (q0[:, 2] ** 2 + q0[:, 3] ** 2))
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]  # (W, 1)

    def rot(v):  # rotate world xy by -yaw
        return np.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1], v[..., 2]], -1)

    w[..., BASE_POS] = rot(w[..., BASE_POS] - w[:, :1, BASE_POS] * np.array([1.0, 1.0, 0.0]))
    w[..., BASE_LINVEL] = rot(w[..., BASE_LINVEL])
    hw, hz = np.cos(yaw / 2)[:, None], np.sin(yaw / 2)[:, None]  # q_heading^{-1} * q
    qw, qx, qy, qz = np.moveaxis(w[..., BASE_QUAT], -1, 0)
    w[..., BASE_QUAT] = np.stack([hw * qw + hz * qz, hw * qx + hz * qy, hw * qy - hz * qx, hw * qz - hz * qw], -1)
    var = w.reshape(-1, STATE_DIM).var(0)
    std = np.sqrt(var)
    std[BASE_QUAT] = np.sqrt(var[BASE_QUAT].mean())
    return np.maximum(std, min_std)


def step(sim: NativeGo1, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(37,) state one control step after x under action u (native float64)."""
    sim.set_state(x)
    sim.step(u)
    return sim.state()


def servo_guess(x_next: np.ndarray) -> np.ndarray:
    """(12,) action whose servo target is the next joint position."""
    return np.clip((x_next[JOINT_POS] - np.asarray(PHYSICS.default_pose)) / PHYSICS.action_scale, -1, 1)


def best_fit(sim: NativeGo1, x: np.ndarray, x_next: np.ndarray, scale: np.ndarray, starts: list[np.ndarray],
             max_nfev: int, fd_eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounded least squares (trust-region reflective, forward-difference Jacobian) from several starts.

    Returns:
      u: (12,) best action found; r: (37,) its normalised residual (f(x, u) - x_next) / scale.
    """
    def residual(u):
        return (step(sim, x, u) - x_next) / scale

    best_u, best_r = None, None
    for u0 in starts:
        fit = least_squares(residual, np.clip(u0, -1 + 1e-9, 1 - 1e-9), bounds=(-1.0, 1.0), method="trf",
                            diff_step=fd_eps, max_nfev=max_nfev)
        if best_r is None or fit.fun @ fit.fun < best_r @ best_r:
            best_u, best_r = fit.x, fit.fun
    return best_u, best_r


def _starts(x: np.ndarray, x_next: np.ndarray, n_random: int, rng: np.random.Generator) -> list[np.ndarray]:
    hold = np.clip((x[JOINT_POS] - np.asarray(PHYSICS.default_pose)) / PHYSICS.action_scale, -1, 1)
    return [servo_guess(x_next), hold, np.zeros(ACTION_DIM)] + [rng.uniform(-1, 1, ACTION_DIM)
                                                                 for _ in range(n_random)]


def centroidal_violation(states: np.ndarray, physics=PHYSICS) -> np.ndarray:
    """Per-step violation of the centroidal necessary condition (module docstring), in units of g.

    Args:
      states: (T, 37) consecutive states at the control rate.

    Returns:
      (T-2,) violation at steps 1..T-2.
    """
    m = load_mj_model(physics)
    d = mujoco.MjData(m)
    sites = [m.site(name).id for name in FOOT_SITES]
    mu = float(max(m.geom_friction[m.geom("floor").id, 0], m.geom_friction[m.geom(FOOT_SITES[0]).id, 0]))
    g = -float(m.opt.gravity[2])
    com, foot_z = np.empty((len(states), 3)), np.empty((len(states), 4))
    for k, x in enumerate(np.asarray(states, np.float64)):
        d.qpos[:] = x[:m.nq]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        com[k], foot_z[k] = d.subtree_com[1], d.site_xpos[sites, 2]  # body 1 = trunk: the whole robot
    dt = physics.ctrl_dt
    force = (com[2:] - 2 * com[1:-1] + com[:-2]) / dt**2 + np.array([0.0, 0.0, g])  # (T-2, 3) contact force / mass
    near = (foot_z < FOOT_CONTACT_HEIGHT).any(-1)  # (T,)
    can_push = near[2:] | near[1:-1] | near[:-2]
    fn, ft, mu2 = force[:, 2], np.linalg.norm(force[:, :2], axis=-1), np.sqrt(2.0) * mu
    to_cone = np.where(ft <= mu2 * fn, 0.0,
                       np.where(mu2 * ft <= -fn, np.hypot(ft, fn), (ft - mu2 * fn) / np.sqrt(1.0 + mu2**2)))
    return np.where(can_push, to_cone, np.linalg.norm(force, axis=-1)) / g


def _feasible_reference(n_episodes: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Centroidal violations of native rollouts from the home pose under smooth random actions."""
    out = []
    for _ in range(n_episodes):
        U = np.clip(0.05 * np.cumsum(rng.standard_normal((steps, ACTION_DIM)), 0), -1, 1)  # (steps, 12)
        X = replay(PHYSICS.home_state, U)
        fallen = np.flatnonzero(is_fallen(X))
        X = X[: fallen[0]] if fallen.size else X
        if len(X) > 2:
            out.append(centroidal_violation(X))
    return np.concatenate(out)


def main(args: Args) -> dict:
    ds: Dataset = (load_dataset(args.dataset) if args.dataset
                   else generate_kinematic_dataset(args.generated_trajectories, args.generated_seconds, GAITS, seed=0))
    scale = heading_frame_scale(ds.states, args.horizon, args.min_std)
    rng = np.random.default_rng(args.seed)
    sim = NativeGo1()
    fit = functools.partial(best_fit, sim, scale=scale, max_nfev=args.max_nfev, fd_eps=args.fd_eps)
    results = {}
    t0 = time.perf_counter()
    for g, name in enumerate(GAITS):
        trajs = np.flatnonzero(ds.gait == g)
        if trajs.size == 0:
            continue
        n_idx = rng.choice(trajs, args.transitions_per_gait)
        k_idx = rng.integers(0, ds.n_steps - 1, args.transitions_per_gait)
        res, res0, raw = [], [], []
        for n, k in zip(n_idx, k_idx):
            x, x_next = ds.states[n, k].astype(np.float64), ds.states[n, k + 1].astype(np.float64)
            res0.append(np.linalg.norm((step(sim, x, servo_guess(x_next)) - x_next) / scale))
            _, r = fit(x, x_next, starts=_starts(x, x_next, args.random_starts, rng))
            res.append(np.linalg.norm(r))
            raw.append(r * scale)
        raw = np.array(raw)  # (M, 37) state-unit residuals
        checks = {"uniform": [], "near_servo": []}
        for n, k in zip(n_idx[:args.feasible_checks], k_idx[:args.feasible_checks]):
            x = ds.states[n, k].astype(np.float64)
            for kind in checks:
                u_true = (rng.uniform(-1, 1, ACTION_DIM) if kind == "uniform" else np.clip(
                    servo_guess(ds.states[n, k + 1].astype(np.float64)) + 0.25 * rng.standard_normal(ACTION_DIM),
                    -1, 1))
                x_next = step(sim, x, u_true)
                checks[kind].append(np.linalg.norm(fit(x, x_next, starts=_starts(x, x_next, args.random_starts,
                                                                                  rng))[1]))
        results[name] = {
            "best_fit": float(np.mean(res)), "best_fit_median": float(np.median(res)),
            "servo_guess": float(np.mean(res0)),
            **{f"check_{kind}": float(np.mean(v)) if v else float("nan") for kind, v in checks.items()},
            **{f"check_{kind}_solved": float(np.mean(np.array(v) < 1e-3)) if v else float("nan")
               for kind, v in checks.items()},
            "blocks_rms": {b: float(np.sqrt(np.mean(raw[:, sl] ** 2))) for b, sl in BLOCKS.items()},
        }
        viol = np.concatenate([centroidal_violation(ds.states[n]) for n in trajs])
        results[name].update(centroidal_mean=float(viol.mean()), centroidal_frac=float(np.mean(viol > 0.05)),
                             centroidal_max=float(viol.max()))
    ref = _feasible_reference(args.reference_episodes, ds.n_steps, rng)
    results["reference"] = {"centroidal_mean": float(ref.mean()), "centroidal_frac": float(np.mean(ref > 0.05)),
                            "centroidal_max": float(ref.max())}
    elapsed = time.perf_counter() - t0
    fits = {k: v for k, v in results.items() if k != "reference"}
    print(f"kinematic data: N={ds.n_trajectories} x T={ds.n_steps}; {args.transitions_per_gait} transitions per "
          f"gait; {3 + args.random_starts} starts x {args.max_nfev} evaluations; {elapsed:.1f} s")
    print("mean normalised one-step distance || (f(x_k, u*) - x_{k+1}) / sigma ||_2 over 37 dims\n")
    print("| gait | best fit u* (mean) | median | servo guess (mean) | feasible check: uniform u (solved) "
          "| feasible check: servo + noise (solved) |")
    print("|---|---|---|---|---|---|")
    for name, r in fits.items():
        print(f"| {name} | {r['best_fit']:.3f} | {r['best_fit_median']:.3f} | {r['servo_guess']:.3f} "
              f"| {r['check_uniform']:.3f} ({r['check_uniform_solved']:.0%}) "
              f"| {r['check_near_servo']:.3f} ({r['check_near_servo_solved']:.0%}) |")
    print("\nCentroidal check over all transitions: violation of m a_com = m g + contact forces, units of g\n")
    print("| data | mean | fraction > 0.05 g | max |")
    print("|---|---|---|---|")
    for name, r in results.items():
        label = "native rollouts (feasible reference)" if name == "reference" else name
        print(f"| {label} | {r['centroidal_mean']:.4f} | {r['centroidal_frac']:.3f} | {r['centroidal_max']:.3f} |")
    print("\nRMS residual of the best fit per block, state units\n")
    print("| gait | " + " | ".join(BLOCKS) + " |")
    print("|---|" + "---|" * len(BLOCKS))
    for name, r in fits.items():
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in r["blocks_rms"].values()) + " |")
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
