"""Flow matching through the rollout: the training loss and the Euler sampler.

Notation (all windows in the heading frame of their first state, see
``dynaflow_policy.frames``; "normalised" means ``Normalizer.normalize``)::

    X_1   (B, H+1, 37)  data window, physical units; x0 = X_1[:, 0]
    X_0   (B, H+1, 37)  noise N(0, noise_scale^2) in normalised space, row 0 = normalised x0
    X_t   (B, H+1, 37)  (1 - t) X_0 + t X_1 in normalised space, t (B,) in [0, 1]
    U     (B, H, 12)    D_theta(X_t, t, c), actions in [-1, 1]
    X_hat (B, H+1, 37)  Phi(x0, U) = envs.rollout(x0, U), physical units

The network never predicts states: every state it is judged by, and every
state the sampler returns, is a rollout of its actions from the true x0.

``params`` is whatever ``apply_fn`` takes first; with flax that is the
variables dict of ``DiT1d.init`` and ``apply_fn = DiT1d(config).apply``.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

import envs
from dynaflow_policy.configs import FlowConfig
from dynaflow_policy.normalizer import Normalizer
from envs.kinematics import foot_heights
from envs.physics import (BASE_ANGVEL, BASE_LINVEL, BASE_POS, BASE_QUAT, FOOT_CONTACT_HEIGHT, JOINT_POS, JOINT_VEL,
                          PHYSICS, STATE_DIM, PhysicsConfig)

Params = Any
"""The network's parameter pytree (first argument of ``apply_fn``)."""

ApplyFn = Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]
"""apply_fn(params, X_t (B, H+1, 37), t (B,), c (B, 7)) -> U (B, H, 12)."""

Aux = TypeVar("Aux")


def _start_perturbation_std() -> np.ndarray:
    std = np.zeros(STATE_DIM)
    std[BASE_POS] = (0.0, 0.0, 0.005)  # m: height only; x, y stay at the heading frame's origin
    std[BASE_QUAT] = (0.0, 0.02, 0.02, 0.0)  # x, y components: about 2.3 degrees of roll and pitch, no yaw
    std[JOINT_POS] = 0.05  # rad
    std[BASE_LINVEL] = (0.1, 0.1, 0.05)  # m/s
    std[BASE_ANGVEL] = 0.2  # rad/s
    std[JOINT_VEL] = 0.5  # rad/s
    return std


START_PERTURBATION_STD = _start_perturbation_std()
"""(37,) standard deviation, per unit of ``start_noise``, of the perturbation of a window's
heading-frame start state. A starting point, not tuned: ``start_noise`` scales it."""
_START_STREAM = 1  # fold_in tag of the perturbation's key: the noise and times of a run without it are unchanged


def loss_weights(horizon: int, config: FlowConfig) -> np.ndarray:
    """W (H+1, 37): 0 on row 0 (the given x0), ``config.state_weights`` (or 1) on rows 1..H."""
    dims = np.ones(STATE_DIM) if config.state_weights is None else np.asarray(config.state_weights)
    rows = np.concatenate([[0.0], np.ones(horizon)])  # (H+1,)
    return (rows[:, None] * dims[None, :]).astype(np.float32)  # (H+1, 37)


def interpolate(x_noise: jax.Array, x_data: jax.Array, t: jax.Array) -> jax.Array:
    """X_t = (1 - t) X_0 + t X_1, with row 0 set to the data's row 0 for every t.

    Args:
      x_noise: (B, H+1, 37) X_0, normalised.
      x_data: (B, H+1, 37) X_1, normalised.
      t: (B,) flow time in [0, 1].

    Returns:
      (B, H+1, 37) X_t, normalised.
    """
    tt = t[:, None, None]  # (B, 1, 1)
    x_t = (1.0 - tt) * x_noise + tt * x_data
    return x_t.at[:, 0].set(x_data[:, 0])


def noise_window(rng: jax.Array, x0_normalised: jax.Array, horizon: int, config: FlowConfig) -> jax.Array:
    """X_0 (B, H+1, 37): N(0, noise_scale^2) noise with row 0 = the normalised x0 (B, 37)."""
    b = x0_normalised.shape[0]
    noise = config.noise_scale * jax.random.normal(rng, (b, horizon + 1, STATE_DIM))
    return noise.at[:, 0].set(x0_normalised)


def perturb_start(rng: jax.Array, x0: jax.Array, scale: float | jax.Array) -> jax.Array:
    """x0 + scale * START_PERTURBATION_STD * N(0, 1), with the quaternion renormalised.

    Args:
      rng: PRNG key.
      x0: (B, 37) heading-frame start states, physical units.
      scale: ``start_noise``: multiplies :data:`START_PERTURBATION_STD`; a float, or (B,) one per state.

    Returns:
      (B, 37) perturbed states: base x, y unchanged, roll and pitch tilted (yaw unchanged to first order).
    """
    std = jnp.asarray(START_PERTURBATION_STD, x0.dtype)
    scale = jnp.reshape(jnp.asarray(scale, x0.dtype), (-1, 1))  # (1, 1) or (B, 1)
    x = x0 + scale * std * jax.random.normal(rng, x0.shape, x0.dtype)
    q = x[:, BASE_QUAT]
    return x.at[:, BASE_QUAT].set(q / jnp.linalg.norm(q, axis=-1, keepdims=True))


FOOT_HEIGHT_SCALE = 0.02
"""Foot-height error (m) that the foot terms of :func:`matching_loss` count as one normalised unit."""
FOOT_CONTACT_MARGIN = 0.0025
"""Margin (m) on each side of ``envs.physics.FOOT_CONTACT_HEIGHT`` that the foot-contact term asks for."""


def foot_contact_violation(z: jax.Array, z_ref: jax.Array) -> jax.Array:
    """How far (m) each foot is on the wrong side of the contact threshold that its reference foot is on.

    A reference foot below ``FOOT_CONTACT_HEIGHT`` (in contact) asks for a foot at most
    ``FOOT_CONTACT_HEIGHT - FOOT_CONTACT_MARGIN`` high; one above it (in the air) for at least
    ``FOOT_CONTACT_HEIGHT + FOOT_CONTACT_MARGIN``; how high above does not matter. A reference foot
    inside the margin asks only for its own height, so the data itself never violates.

    Args:
      z, z_ref: (..., 4) foot heights (m) of the rollout and of the data.

    Returns:
      (..., 4) violation (m), >= 0; 0 where the foot's contact agrees with the reference's with the margin.
    """
    stance = z_ref < FOOT_CONTACT_HEIGHT
    return jnp.where(stance, jax.nn.relu(z - jnp.maximum(FOOT_CONTACT_HEIGHT - FOOT_CONTACT_MARGIN, z_ref)),
                     jax.nn.relu(jnp.minimum(FOOT_CONTACT_HEIGHT + FOOT_CONTACT_MARGIN, z_ref) - z))

_START_SCALE_STREAM = 3  # fold_in tag of the per-window scales of a uniform start noise


def start_noise_scales(rng: jax.Array, scale: float | jax.Array, batch: int, uniform: bool) -> float | jax.Array:
    """The start-noise scale of each window: ``scale`` itself, or with ``uniform`` ``scale * U(0, 1)`` per window.

    A uniform scale keeps windows that start on (or near) the data in every batch beside ones that
    start far from it, so the model learns to follow the data and to steer back to it at once.

    Args:
      rng: PRNG key (the matching loss's; a stream of its own is folded in).
      scale: a float, or (B,) one per window (a per-gait start noise).
      batch: B; uniform: static.

    Returns:
      ``scale``, or (B,) scales in [0, scale).
    """
    if not uniform:
        return scale
    return scale * jax.random.uniform(jax.random.fold_in(rng, _START_SCALE_STREAM), (batch,))


OwnPlan = Callable[[jax.Array], jax.Array]
"""own_plan(X_0 (B, H+1, 37) normalised) -> (B, H+1, 37) normalised end point (see :func:`own_plan_endpoint`)."""


def own_plan_endpoint(params: Params, apply_fn: ApplyFn, x0: jax.Array, cond: jax.Array, normalizer: Normalizer,
                      physics: PhysicsConfig = PHYSICS) -> OwnPlan:
    """The end point the sampler moves towards after its first step: the rollout of the network's plan at t = 0.

    The sampler (:func:`sample`) with N > 1 steps feeds the network X_t = (1 - t) X_0 + t X_hat,
    X_hat a rollout of its own earlier plan, never the data. Training on some such inputs
    (``own_plan_fraction``) teaches it to correct its own plans, so that more steps help.
    No gradient flows through this plan.

    Args:
      params, apply_fn: the network.
      x0: (B, 37) start states, heading frame, physical units.
      cond: (B, 7) conditioning.
      normalizer: state normaliser.
      physics: physics of the rollout (static).

    Returns:
      own_plan(X_0) -> normalised Phi(x0, D_theta(X_0, 0, c)) (B, H+1, 37).
    """
    def own_plan(x_noise: jax.Array) -> jax.Array:
        actions = jax.lax.stop_gradient(apply_fn(params, x_noise, jnp.zeros(x_noise.shape[0]), cond))
        return jax.lax.stop_gradient(normalizer.normalize(envs.rollout(x0, actions, physics)))

    return own_plan


_OWN_PLAN_STREAM = 2  # fold_in tag of the rows that get own-plan inputs: runs without them are unchanged


def network_input(rng: jax.Array, x1_normalised: jax.Array, config: FlowConfig, own_plan: OwnPlan | None = None,
                  own_plan_fraction: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """The training input of the network: X_t and t for data windows.

    Args:
      rng: PRNG key of the noise X_0, the times t ~ U(0, 1) and the own-plan rows.
      x1_normalised: (B, H+1, 37) data windows X_1, normalised.
      config: flow config (``noise_scale``).
      own_plan, own_plan_fraction: with a fraction > 0 (static), each row independently with that
        probability interpolates towards ``own_plan(X_0)`` instead of the data (the sampler's inputs).

    Returns:
      X_t (B, H+1, 37) normalised, row 0 the data's; t (B,).
    """
    b, rows, _ = x1_normalised.shape
    rng_noise, rng_t = jax.random.split(rng)
    x_noise = noise_window(rng_noise, x1_normalised[:, 0], rows - 1, config)  # (B, H+1, 37)
    t = jax.random.uniform(rng_t, (b,))  # (B,)
    end = x1_normalised
    if own_plan_fraction > 0:
        if own_plan is None:
            raise ValueError("network_input: own_plan_fraction > 0 needs own_plan")
        mine = jax.random.bernoulli(jax.random.fold_in(rng, _OWN_PLAN_STREAM), own_plan_fraction, (b,))
        end = jnp.where(mine[:, None, None], own_plan(x_noise).at[:, 0].set(x1_normalised[:, 0]), x1_normalised)
    return interpolate(x_noise, end, t), t


def label_loss(params: Params, apply_fn: ApplyFn, x1_window: jax.Array, cond: jax.Array, labels: jax.Array,
               rng: jax.Array, normalizer: Normalizer, config: FlowConfig, physics: PhysicsConfig = PHYSICS, *,
               own_plan_fraction: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Regression of the network's actions on fitted action labels (no rollout, no physics).

    L = mean((D_theta(X_t, t, c) - labels)^2), with X_t and t drawn exactly as in
    :func:`matching_loss`, so a network pre-trained with it starts the matching
    loss on the inputs it has seen. About a tenth of the cost of a matching-loss step.

    Args:
      params, apply_fn: the network.
      x1_window: (B, H+1, 37) data windows, heading frame, physical units.
      cond: (B, 7) conditioning.
      labels: (B, H, 12) fitted actions of the windows' transitions (``dynaflow_policy.data.labels``).
      rng: PRNG key of the noise and the times.
      normalizer: state normaliser.
      config: flow config.
      physics: physics of the own-plan rollouts (static).
      own_plan_fraction: fraction of rows whose X_t interpolates towards the network's own plan
        (:func:`own_plan_endpoint`; static; 0 = none, and then no rollout at all).

    Returns:
      loss, and aux ``train/loss``, ``train/label_mse``, ``train/action_rms``.
    """
    own_plan = own_plan_endpoint(params, apply_fn, x1_window[:, 0], cond, normalizer, physics)
    x_t, t = network_input(rng, normalizer.normalize(x1_window), config, own_plan,
                           own_plan_fraction)  # (B, H+1, 37), (B,)
    actions = apply_fn(params, x_t, t, cond)  # (B, H, 12)
    loss = jnp.mean((actions - labels) ** 2)
    return loss, {"train/loss": loss, "train/label_mse": loss, "train/action_rms": jnp.sqrt(jnp.mean(actions**2))}


def _is_active(weight: float | jax.Array) -> bool:
    """Whether a weight or scale switches its term on: a traced or per-window value, or a float > 0 (static)."""
    return not isinstance(weight, numbers.Real) or weight > 0


def _foot_term(weight: float | jax.Array, sq_err: jax.Array) -> jax.Array:
    """``mean(weight * sq_err) / FOOT_HEIGHT_SCALE^2``: a foot term of :func:`matching_loss`.

    Args:
      weight: a float, or (B,) one weight per window.
      sq_err: (B, H, 4) squared foot-height error or violation (m^2).
    """
    window_weight = jnp.reshape(jnp.asarray(weight), (-1, 1, 1))  # (B or 1, 1, 1)
    return jnp.mean(window_weight * sq_err) / FOOT_HEIGHT_SCALE**2


def matching_loss(params: Params, apply_fn: ApplyFn, x1_window: jax.Array, cond: jax.Array, rng: jax.Array,
                  normalizer: Normalizer, config: FlowConfig, physics: PhysicsConfig = PHYSICS, *,
                  start_noise: float | jax.Array = 0.0, labels: jax.Array | None = None, label_weight: float = 0.0,
                  own_plan_fraction: float = 0.0, start_noise_uniform: bool = False,
                  foot_height_weight: float | jax.Array = 0.0,
                  foot_contact_weight: float | jax.Array = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Conditional flow-matching loss through the differentiable rollout.

    L = sum(W * (norm(Phi(x0, U)) - norm(X_1))^2) / (B * sum(W)), U = D_theta(X_t, t, c),
    with W from :func:`loss_weights` (row 0 masked); with ``start_noise`` > 0 the
    rollout starts from :func:`perturb_start` of x0 instead. With ``label_weight``
    > 0, ``label_weight * mean((U - labels)^2)`` is added (the auxiliary term of
    :func:`label_loss`); with ``foot_height_weight`` > 0, ``foot_height_weight *
    mean(((z_feet(Phi) - z_feet(X_1)) / FOOT_HEIGHT_SCALE)^2)`` over rows 1..H, the world
    heights of the four feet (:func:`envs.kinematics.foot_heights`), which decide the
    contact pattern but weigh little among the 37 state dimensions; with ``foot_contact_weight`` > 0,
    ``foot_contact_weight * mean((foot_contact_violation / FOOT_HEIGHT_SCALE)^2)`` over the same rows,
    which asks only that each foot be on the ground or in the air when the data's is
    (:func:`foot_contact_violation`), not that it follow the data's height. Works under
    ``jax.value_and_grad(..., has_aux=True)`` and ``jax.jit``.

    Args:
      params: model parameters (first argument of ``apply_fn``).
      apply_fn: the network, see :data:`ApplyFn`.
      x1_window: (B, H+1, 37) data windows X_1, heading frame, physical units.
      cond: (B, 7) conditioning c (command ++ gait one-hot).
      rng: PRNG key for the noise X_0, the times t ~ U(0, 1) and the start perturbation.
      normalizer: state normaliser.
      config: flow config.
      physics: physics of the rollout (static).
      start_noise: scale of the start-state perturbation: a float (static; 0 = none), or (B,) one
        per window (``train.batch_loss`` gives each window its gait's). The
        rollout starts from the perturbed state and is still scored against the
        demonstration, so the model learns to steer back to the data from states near it.
      start_noise_uniform: draw each window's scale uniformly from [0, start_noise) (static;
        :func:`start_noise_scales`).
      labels: (B, H, 12) fitted action labels; needed when ``label_weight`` > 0.
      label_weight: weight of the auxiliary label term (static; 0 = none).
      own_plan_fraction: fraction of rows whose X_t interpolates towards the network's own
        plan (:func:`own_plan_endpoint`, from the rollout's start; static; 0 = none).
      foot_height_weight: weight of the foot-height term: a float (static; 0 = none), or (B,) one
        per window (``train.batch_loss`` gives each window its gait's).
      foot_contact_weight: weight of the foot-contact term, the same way.

    Returns:
      loss: scalar.
      aux: ``train/loss``; ``train/last_state_mse``, the normalised squared error of
      the window's last state (errors grow along the horizon); ``train/action_rms``;
      ``train/foot_height_rmse`` (m); with the foot-contact term, ``train/foot_contact_agreement`` (fraction of
      the rollout's feet on the data's side of the contact threshold); with labels, ``train/matching_loss``
      and ``train/label_mse``.
    """
    b, rows, _ = x1_window.shape
    if _is_active(start_noise):
        scale = start_noise_scales(rng, start_noise, b, start_noise_uniform)
        x0 = perturb_start(jax.random.fold_in(rng, _START_STREAM), x1_window[:, 0], scale)
        x1_window = x1_window.at[:, 0].set(x0)  # row 0 is masked in the loss: only the rollout's start moves
    own_plan = own_plan_endpoint(params, apply_fn, x1_window[:, 0], cond, normalizer, physics)
    x1_n = normalizer.normalize(x1_window)  # (B, H+1, 37)
    x_t, t = network_input(rng, x1_n, config, own_plan, own_plan_fraction)  # (B, H+1, 37), (B,)
    actions = apply_fn(params, x_t, t, cond)  # (B, H, 12)
    x_hat = envs.rollout(x1_window[:, 0], actions, physics)  # (B, H+1, 37)
    sq_err = (normalizer.normalize(x_hat) - x1_n) ** 2  # (B, H+1, 37)
    w = jnp.asarray(loss_weights(rows - 1, config))  # (H+1, 37)
    loss = jnp.sum(w * sq_err) / (b * jnp.sum(w))
    z_hat, z_ref = foot_heights(x_hat[:, 1:], jnp), foot_heights(x1_window[:, 1:], jnp)  # (B, H, 4) each
    foot_sq_err = (z_hat - z_ref) ** 2  # (B, H, 4)
    aux = {
        "train/last_state_mse": jnp.mean(sq_err[:, -1]),
        "train/action_rms": jnp.sqrt(jnp.mean(actions**2)),
        "train/foot_height_rmse": jnp.sqrt(jnp.mean(foot_sq_err)),
    }
    if _is_active(foot_height_weight):
        loss = loss + _foot_term(foot_height_weight, foot_sq_err)
    if _is_active(foot_contact_weight):
        loss = loss + _foot_term(foot_contact_weight, foot_contact_violation(z_hat, z_ref) ** 2)
        aux["train/foot_contact_agreement"] = jnp.mean(
            ((z_hat < FOOT_CONTACT_HEIGHT) == (z_ref < FOOT_CONTACT_HEIGHT)).astype(jnp.float32))
    if label_weight > 0:
        if labels is None:
            raise ValueError("matching_loss: label_weight > 0 needs labels (B, H, 12)")
        label_mse = jnp.mean((actions - labels) ** 2)
        aux.update({"train/matching_loss": loss, "train/label_mse": label_mse})
        loss = loss + label_weight * label_mse
    aux["train/loss"] = loss
    return loss, aux


def flow_velocity(x_hat1: jax.Array, x_t: jax.Array, t: jax.Array, t_clamp: float) -> jax.Array:
    """u = (X_hat_1 - X_t) / max(1 - t, t_clamp): the straight-line velocity towards X_hat_1.

    Args:
      x_hat1: (B, H+1, 37) predicted end point, normalised.
      x_t: (B, H+1, 37) current point, normalised.
      t: (B,) flow time.
      t_clamp: lower bound on 1 - t, keeps u finite as t -> 1.

    Returns:
      (B, H+1, 37) velocity in normalised units per unit flow time.
    """
    return (x_hat1 - x_t) / jnp.maximum(1.0 - t, t_clamp)[:, None, None]


def euler_integrate(field: Callable[[jax.Array, jax.Array], tuple[jax.Array, Aux]], x_init: jax.Array,
                    num_steps: int) -> tuple[jax.Array, Aux]:
    """Integrates dx/dt = v(x, t) from t = 0 to 1 with ``num_steps`` equal Euler steps.

    The steps run in a ``lax.scan``, so ``field`` is traced (and the rollout in
    it compiled) once, whatever the number of steps.

    Args:
      field: ``field(x, t) -> (v, aux)`` with t a scalar, v shaped like x, aux any pytree.
      x_init: x at t = 0.
      num_steps: N >= 1 (static).

    Returns:
      x at t = 1, and the aux of the last evaluation (at t = (N-1)/N).
    """
    dt = 1.0 / num_steps

    def body(x: jax.Array, i: jax.Array) -> tuple[jax.Array, Aux]:
        v, aux = field(x, i * dt)
        return x + dt * v, aux

    x1, auxs = jax.lax.scan(body, x_init, jnp.arange(num_steps, dtype=jnp.float32))
    return x1, jax.tree.map(lambda a: a[-1], auxs)


def denoise(params: Params, apply_fn: ApplyFn, x_t: jax.Array, t: jax.Array, x0: jax.Array, cond: jax.Array,
            normalizer: Normalizer, config: FlowConfig,
            physics: PhysicsConfig = PHYSICS) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """One network evaluation of the sampler: velocity, rollout and actions at (X_t, t).

    Args:
      params, apply_fn: the network.
      x_t: (B, H+1, 37) current point, normalised; row 0 is the normalised x0.
      t: (B,) flow time.
      x0: (B, 37) initial states, heading frame, physical units.
      cond: (B, 7) conditioning.
      normalizer: state normaliser.
      config: flow config (``t_clamp``).
      physics: physics of the rollout (static).

    Returns:
      v: (B, H+1, 37) velocity (:func:`flow_velocity`), zero on row 0.
      (X_hat, U): the rollout Phi(x0, U) (B, H+1, 37), physical units, and U (B, H, 12).
    """
    actions = apply_fn(params, x_t, t, cond)  # (B, H, 12)
    x_hat = envs.rollout(x0, actions, physics)  # (B, H+1, 37)
    return flow_velocity(normalizer.normalize(x_hat), x_t, t, config.t_clamp), (x_hat, actions)


def sample(params: Params, apply_fn: ApplyFn, x0: jax.Array, cond: jax.Array, rng: jax.Array, normalizer: Normalizer,
           config: FlowConfig, *, horizon: int,
           physics: PhysicsConfig = PHYSICS) -> tuple[jax.Array, jax.Array]:
    """Samples an action sequence and its trajectory by Euler integration of the flow.

    Starts from X_0 (:func:`noise_window`) and takes ``config.ode_steps`` Euler
    steps with :func:`denoise`. With one step (the default) this is a single
    network evaluation at t = 0 and a single rollout. Jittable with
    ``apply_fn``, ``config``, ``horizon`` and ``physics`` static.

    Args:
      params, apply_fn: the network.
      x0: (B, 37) current states in the HEADING frame of themselves (base x = y = 0,
        yaw 0: ``to_heading_frame(x[:, None])[:, 0]``), physical units.
      cond: (B, 7) conditioning.
      rng: PRNG key for the noise.
      normalizer: state normaliser.
      config: flow config.
      horizon: H, actions per window (the model's ``DiTConfig.horizon``).
      physics: physics of the rollout (static).

    Returns:
      X: (B, H+1, 37) heading-frame states, exactly ``envs.rollout(x0, U)``.
      U: (B, H, 12) actions of the last network evaluation, in [-1, 1].
    """
    b = x0.shape[0]
    x_init = noise_window(rng, normalizer.normalize(x0), horizon, config)  # (B, H+1, 37)

    def field(x_t: jax.Array, t: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        return denoise(params, apply_fn, x_t, jnp.full((b,), t), x0, cond, normalizer, config, physics)

    _, (x_hat, actions) = euler_integrate(field, x_init, config.ode_steps)
    return x_hat, actions
