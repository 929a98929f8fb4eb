"""The metrics of docs/design.md, defined once for training logs, evaluation and tests.

All state errors are measured in normalised units: a state difference is
divided per dimension by the normaliser's ``std`` (the mean cancels), and the
quaternion of the second state is first given the sign that is closer to the
first (q and -q are the same rotation).

- SAE, statewise admissibility error: mean over transitions of
  ``|| (x_{k+1} - f(x_k, u_k)) / std ||_2`` with f one control step of the
  simulator. :func:`sae` uses the MJX step (float32, jitted);
  :func:`sae_native` the native MuJoCo step (float64, CPU, ~0.3 ms per
  transition), for datasets. For state-only data, :func:`sae_fitted_native`
  first fits the action of every transition (:func:`fit_actions_native`);
  :func:`admissibility_errors_fitted_native` gives its per-transition errors.
- TRE, trajectory reconstruction error: mean over entries of the squared
  normalised error between generated and reference windows, rows 1..H (row 0
  is the shared x0).
- Action recovery: RMSE (action units) of inferred against expert actions.
- Centroidal violation (:func:`centroidal_violation`): per step, how far the
  centre of mass's acceleration is from what gravity and foot forces inside
  the friction cone allow, in units of g; a necessary condition, exact, no fit.
"""

from __future__ import annotations

import functools
from typing import Callable, Union

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from dynaflow_policy.normalizer import Normalizer
from envs.dynamics import step
from envs.kinematics import foot_positions
from envs.native import NativeGo1
from envs.physics import (ACTION_DIM, BASE_QUAT, FOOT_CONTACT_HEIGHT, FOOT_SITES, JOINT_POS, NQ, PHYSICS,
                          STATE_DIM, PhysicsConfig, load_mj_model)

Array = Union[np.ndarray, jax.Array]
"""A numpy or JAX array."""

_QUAT_ONLY = np.zeros(STATE_DIM)
_QUAT_ONLY[BASE_QUAT] = 1.0


def _scale(normalizer_or_scale: Normalizer | Array) -> Array:
    """(37,) per-dimension scale: a normaliser's std, or the given array (numpy or JAX)."""
    scale = normalizer_or_scale.std if isinstance(normalizer_or_scale, Normalizer) else normalizer_or_scale
    if jnp.shape(scale) != (STATE_DIM,):
        raise ValueError(f"scale must have shape ({STATE_DIM},), got {jnp.shape(scale)}")
    return scale


def state_residual(x: Array, y: Array, scale: Array) -> Array:
    """Normalised difference (x - y) / scale, with y's quaternion sign aligned to x's.

    Plain arithmetic: numpy in gives numpy out (float64 kept), JAX in gives JAX
    out, and it works under ``jax.jit``.

    Args:
      x, y: (..., 37) states.
      scale: (37,) per-dimension scale.

    Returns:
      (..., 37) residual.
    """
    dot = (x[..., BASE_QUAT] * y[..., BASE_QUAT]).sum(axis=-1, keepdims=True)  # (..., 1)
    flip = 1.0 - 2.0 * _QUAT_ONLY * (dot < 0)  # (..., 37): -1 on the quaternion if the signs disagree
    return (x - y * flip) / scale


def state_distance(x: Array, y: Array, scale: Array) -> Array:
    """(...,) normalised L2 distance ``|| state_residual(x, y, scale) ||`` of states (..., 37)."""
    r = state_residual(x, y, scale)
    return (r * r).sum(axis=-1) ** 0.5


@functools.partial(jax.jit, static_argnames="physics")
def _admissibility_errors_mjx(X: jax.Array, U: jax.Array, scale: jax.Array, physics: PhysicsConfig) -> jax.Array:
    b, h = U.shape[:2]
    x_k = X[:, :-1].reshape(b * h, STATE_DIM)  # (B*H, 37)
    x_next = jax.vmap(functools.partial(step, config=physics))(x_k, U.reshape(b * h, ACTION_DIM))  # (B*H, 37)
    return state_distance(X[:, 1:], x_next.reshape(b, h, STATE_DIM), scale)  # (B, H)


def _check_pair(X: Array, U: Array) -> None:
    if X.ndim != 3 or X.shape[-1] != STATE_DIM or U.shape != (X.shape[0], X.shape[1] - 1, ACTION_DIM):
        raise ValueError(f"X must be (B, H+1, {STATE_DIM}) and U (B, H, {ACTION_DIM}), got {X.shape} and {U.shape}")


def admissibility_errors(X: Array, U: Array, normalizer_or_scale: Normalizer | Array,
                         physics: PhysicsConfig = PHYSICS) -> jax.Array:
    """Per-transition admissibility errors with the MJX step (float32, jitted).

    Args:
      X: (B, H+1, 37) states.
      U: (B, H, 12) actions, ``U[:, k]`` applied at ``X[:, k]``.
      normalizer_or_scale: ``Normalizer`` or (37,) scale.
      physics: physics config.

    Returns:
      (B, H) ``|| (X[:, k+1] - step(X[:, k], U[:, k])) / std ||``.
    """
    _check_pair(X, U)
    return _admissibility_errors_mjx(jnp.asarray(X, jnp.float32), jnp.asarray(U, jnp.float32),
                                     jnp.asarray(_scale(normalizer_or_scale), jnp.float32), physics)


def sae(X: Array, U: Array, normalizer_or_scale: Normalizer | Array, physics: PhysicsConfig = PHYSICS) -> float:
    """SAE of windows X (B, H+1, 37) under actions U (B, H, 12), MJX step; see :func:`admissibility_errors`."""
    return float(jnp.mean(admissibility_errors(X, U, normalizer_or_scale, physics)))


def admissibility_errors_native(X: Array, U: Array, normalizer_or_scale: Normalizer | Array,
                                physics: PhysicsConfig = PHYSICS) -> np.ndarray:
    """Per-transition admissibility errors (B, H), float64, with the native MuJoCo step.

    Same definition and arguments as :func:`admissibility_errors`.
    """
    X, U = np.asarray(X, np.float64), np.asarray(U, np.float64)
    _check_pair(X, U)
    sim = NativeGo1(physics)
    x_next = np.empty(X[:, 1:].shape)  # (B, H, 37)
    for i, k in np.ndindex(U.shape[:2]):
        sim.set_state(X[i, k])
        sim.step(U[i, k])
        x_next[i, k] = sim.state()
    return state_distance(X[:, 1:], x_next, np.asarray(_scale(normalizer_or_scale), np.float64))


def sae_native(X: Array, U: Array, normalizer_or_scale: Normalizer | Array,
               physics: PhysicsConfig = PHYSICS) -> float:
    """SAE of windows X (B, H+1, 37) under actions U (B, H, 12), native step (:func:`admissibility_errors_native`)."""
    return float(np.mean(admissibility_errors_native(X, U, normalizer_or_scale, physics)))


_FIT_TOL = 1e-16
"""Squared normalised residual below which a fitted action counts as exact (float64 MuJoCo)."""


def _fit_action_lm(residual: Callable[[np.ndarray], np.ndarray], u: np.ndarray, iterations: int,
                   action_bound: float, tolerance: float = _FIT_TOL) -> tuple[np.ndarray, float]:
    """Levenberg-Marquardt from u (12,) on ``residual(u) -> (37,)``; returns the final u and its squared norm.

    The Jacobian is a forward difference (12 extra evaluations); a step is kept
    only if it lowers the cost, otherwise the damping grows tenfold.
    """
    eps = 1e-6
    r = residual(u)
    cost, damping = float(r @ r), 1e-3
    for _ in range(iterations):
        if cost < tolerance:
            break
        jac = np.stack([(residual(u + eps * e) - r) / eps for e in np.eye(ACTION_DIM)], axis=1)  # (37, 12)
        a, g = jac.T @ jac, jac.T @ r  # (12, 12), (12,)
        while damping < 1e6:
            du = np.linalg.solve(a + damping * (np.diag(np.diag(a)) + 1e-6 * np.eye(ACTION_DIM)), -g)
            u_new = np.clip(u + du, -action_bound, action_bound)
            r_new = residual(u_new)
            if float(r_new @ r_new) < cost:
                u, r, cost, damping = u_new, r_new, float(r_new @ r_new), max(damping / 10, 1e-9)
                break
            damping *= 10
        else:
            break
    return u, cost


def fit_actions_native(x_k: Array, x_next: Array, normalizer_or_scale: Normalizer | Array, starts: int = 8,
                       iterations: int = 10, action_bound: float = 1.0, seed: int = 0,
                       physics: PhysicsConfig = PHYSICS, tolerance: float = _FIT_TOL) -> np.ndarray:
    """Per transition, the action whose simulated step lands closest to the next state.

    Minimises ``|| state_residual(step(x_k, u), x_next, std) ||^2`` over u in
    ``[-action_bound, action_bound]^12`` with Levenberg-Marquardt (13 native
    control steps per iteration). The map u -> step(x_k, u) is only piecewise
    smooth: contact changes inside the five substeps make it jump (measured:
    residual jumps of ~0.7 normalised units along a straight line in u), so a
    local solver can stop on the wrong piece. Hence several starts,
    tried in order until one fits exactly: the action whose servo target is
    the next joint position, zero, the previous transition's fit (for
    consecutive transitions of one trajectory), then random perturbations of
    the first. Returns the best fit found.

    Measured with the defaults on 40 transitions of replays of random actions
    from a standing Go1 (2-core CPU): with action standard deviation 0.15, 39
    recovered to 1e-3, 16 ms per transition; with 0.3, 36, 34 ms per
    transition. About half the transitions fit exactly from the first start.

    Args:
      x_k: (N, 37) states.
      x_next: (N, 37) next states.
      normalizer_or_scale: ``Normalizer`` or (37,) scale.
      starts: most starts tried per transition (>= 2).
      iterations: Levenberg-Marquardt iterations per start.
      action_bound: actions are clipped to [-action_bound, action_bound]; 1.0 is
        the range the DiT can output.
      seed: seed of the random starts.
      physics: physics config.
      tolerance: squared normalised residual at which a fit counts as exact: the
        solver and the starts stop there. The default asks for float64 exactness;
        data stored in float32 cannot fit closer than its rounding (about 1e-11),
        so a looser value lets such transitions stop after the first good start.

    Returns:
      (N, 12) float64 actions.
    """
    x_k, x_next = np.asarray(x_k, np.float64), np.asarray(x_next, np.float64)
    if x_k.ndim != 2 or x_k.shape[1] != STATE_DIM or x_next.shape != x_k.shape:
        raise ValueError(f"x_k and x_next must both be (N, {STATE_DIM}), got {x_k.shape} and {x_next.shape}")
    if starts < 2:
        raise ValueError(f"starts must be >= 2, got {starts}")
    scale = np.asarray(_scale(normalizer_or_scale), np.float64)
    sim = NativeGo1(physics)
    rng = np.random.default_rng(seed)
    default, action_scale = np.asarray(physics.default_pose), physics.action_scale
    out = np.empty((x_k.shape[0], ACTION_DIM))  # (N, 12)
    for n, (x, target) in enumerate(zip(x_k, x_next)):

        def residual(u: np.ndarray, x: np.ndarray = x, target: np.ndarray = target) -> np.ndarray:  # (37,)
            sim.set_state(x)
            sim.step(u)
            return state_residual(sim.state(), target, scale)

        kinematic = np.clip((target[JOINT_POS] - default) / action_scale, -action_bound, action_bound)  # (12,)
        guesses = [kinematic, np.zeros(ACTION_DIM)] + ([out[n - 1]] if n > 0 else [])
        best_u, best_cost = kinematic, np.inf
        for i in range(starts):
            u0 = guesses[i] if i < len(guesses) else np.clip(
                kinematic + 0.5 * rng.standard_normal(ACTION_DIM), -action_bound, action_bound)
            u, cost = _fit_action_lm(residual, u0, iterations, action_bound, tolerance)
            if cost < best_cost:
                best_u, best_cost = u, cost
            if best_cost < tolerance:
                break
        out[n] = best_u
    return out


def admissibility_errors_fitted_native(X: Array, normalizer_or_scale: Normalizer | Array, starts: int = 8,
                                       iterations: int = 10, action_bound: float = 1.0, seed: int = 0,
                                       physics: PhysicsConfig = PHYSICS) -> tuple[np.ndarray, np.ndarray]:
    """Per-transition admissibility errors of state-only windows, with the actions fitted by :func:`fit_actions_native`.

    Each error is an upper bound on the smallest one that any action in the
    bound achieves for that transition (the fit is local): 0 for feasible data
    up to the solver's tolerance, except for the transitions where every start
    stops on the wrong smooth piece (see :func:`fit_actions_native`). Windows
    are flattened in order, so each transition is also started from the
    previous transition's fit. Measured with the defaults on 200 transitions of
    native rollouts under smooth random actions (the calibration row of
    ``eval/kinematic_infeasibility.py``, sigma of a kinematic gait dataset):
    72% fit below 1e-3, median 0, 90th percentile 0.09, mean 0.04, max 1.2.

    Args:
      X: (B, H+1, 37) states.
      normalizer_or_scale, starts, iterations, action_bound, seed, physics: as in :func:`fit_actions_native`.

    Returns:
      The errors (B, H) of :func:`admissibility_errors_native` under the fitted
      actions, and those actions (B, H, 12).
    """
    X = np.asarray(X, np.float64)
    if X.ndim != 3 or X.shape[1] < 2 or X.shape[2] != STATE_DIM:
        raise ValueError(f"X must be (B, H+1, {STATE_DIM}) with H >= 1, got {X.shape}")
    b, rows, _ = X.shape
    U = fit_actions_native(X[:, :-1].reshape(-1, STATE_DIM), X[:, 1:].reshape(-1, STATE_DIM), normalizer_or_scale,
                           starts, iterations, action_bound, seed, physics)  # (B*H, 12)
    U = U.reshape(b, rows - 1, ACTION_DIM)  # (B, H, 12)
    return admissibility_errors_native(X, U, normalizer_or_scale, physics), U


def sae_fitted_native(X: Array, normalizer_or_scale: Normalizer | Array, starts: int = 8, iterations: int = 10,
                      action_bound: float = 1.0, seed: int = 0,
                      physics: PhysicsConfig = PHYSICS) -> tuple[float, np.ndarray]:
    """SAE of state-only windows: the mean of :func:`admissibility_errors_fitted_native`.

    An upper bound on the smallest SAE that any actions in the bound achieve.

    Args:
      X: (B, H+1, 37) states.
      normalizer_or_scale, starts, iterations, action_bound, seed, physics: as in :func:`fit_actions_native`.

    Returns:
      The SAE, and the fitted actions (B, H, 12).
    """
    errors, U = admissibility_errors_fitted_native(X, normalizer_or_scale, starts, iterations, action_bound, seed,
                                                   physics)
    return float(np.mean(errors)), U


def tre(X_gen: Array, X_ref: Array, normalizer_or_scale: Normalizer | Array) -> Array:
    """TRE: mean squared normalised error of rows 1..H of windows X_gen, X_ref (B, H+1, 37).

    Plain arithmetic (numpy or JAX, jittable); returns a scalar array.
    """
    r = state_residual(X_gen[:, 1:], X_ref[:, 1:], _scale(normalizer_or_scale))  # (B, H, 37)
    return (r * r).mean()


def action_recovery_rmse(U_hat: Array, U_expert: Array) -> Array:
    """RMSE over all entries of inferred actions U_hat against expert actions U_expert (B, H, 12); a scalar array."""
    d = U_hat - U_expert
    return (d * d).mean() ** 0.5


def centroidal_violation(states: np.ndarray, physics: PhysicsConfig = PHYSICS) -> np.ndarray:
    """Per-step violation of the centroidal necessary condition of feasibility, in units of g.

    Whatever the actions, the centre of mass obeys m a_com = m g + (sum of
    contact forces). The pyramidal cone (condim 3) makes each contact force a
    non-negative combination of the edges n +- mu t_i, so |f_t1| + |f_t2| <= mu f_n
    and hence |f_xy| <= mu f_z on the flat floor, for any orientation of the
    tangent axes; sums and time averages of such forces obey the same bound.
    With a_com from second differences of the COM (MuJoCo forward kinematics
    of x_{k-1}, x_k, x_{k+1}), the violation is the distance of a_com - g from
    that cone, or its norm when no foot is within
    ``envs.physics.FOOT_CONTACT_HEIGHT`` of the floor in any of the three
    states. mu is the larger friction of the floor and the foot geoms. Zero is
    necessary for feasibility, not sufficient: a lower bound on infeasibility.

    Args:
      states: (T, 37) consecutive states at the control rate.
      physics: physics config (model, control period).

    Returns:
      (T-2,) violation (units of g) at steps 1..T-2.
    """
    m = load_mj_model(physics)
    d = mujoco.MjData(m)
    mu = float(max(m.geom_friction[m.geom("floor").id, 0], m.geom_friction[m.geom(FOOT_SITES[0]).id, 0]))
    g = -float(m.opt.gravity[2])
    states = np.asarray(states, np.float64)
    com = np.empty((len(states), 3))
    for k, x in enumerate(states):
        d.qpos[:] = x[:NQ]
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        com[k] = d.subtree_com[1]  # body 1 = trunk: the whole robot
    near = (foot_positions(states, physics)[..., 2] < FOOT_CONTACT_HEIGHT).any(-1)  # (T,)
    can_push = near[2:] | near[1:-1] | near[:-2]  # (T-2,)
    force = (com[2:] - 2 * com[1:-1] + com[:-2]) / physics.ctrl_dt**2 + np.array([0.0, 0.0, g])  # (T-2, 3) / mass
    fn, ft = force[:, 2], np.linalg.norm(force[:, :2], axis=-1)
    to_cone = np.where(ft <= mu * fn, 0.0,  # inside
                       np.where(mu * ft <= -fn, np.hypot(ft, fn),  # in the polar cone: distance to the apex
                                (ft - mu * fn) / np.sqrt(1.0 + mu**2)))  # distance to the cone's surface
    return np.where(can_push, to_cone, np.linalg.norm(force, axis=-1)) / g
