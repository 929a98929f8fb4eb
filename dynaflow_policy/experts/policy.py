"""The PPO expert as a numpy policy: ``load_expert(path).act(obs (44,) or (N, 44)) -> action (12,) or (N, 12)``.

A four-gait expert (``policy.inputs`` = :data:`CLOCKED_POLICY_INPUTS`) also reads
the gait clock (``envs.task.gait_clock``, 8 numbers) of a phase it keeps per
environment: 0 at :meth:`PPOExpert.reset`, advanced by one control step of the
observation's gait after every ``act`` (the env's own clock runs the same way).

A checkpoint of :mod:`dynaflow_policy.experts.ppo` is a
:mod:`dynaflow_policy.checkpoint` step directory (``state.msgpack`` + ``config.json``,
atomic, sha256-checked, nothing pickled). The arrays are::

    normalizer/mean (D,), normalizer/std (D,), ...     Brax running statistics of the policy inputs (D = 41 or 49)
    policy/params/hidden_<i>/{kernel (n_in, n_out), bias (n_out,)}   Brax MLP, i = 0..L-1
    value/params/hidden_<i>/...                         the critic (needed to resume training)

and ``config.json`` holds ``policy`` (layer sizes, activation, distribution) and
the :class:`~dynaflow_policy.experts.ppo.PPOConfig` of the run.

The deterministic action is the mode of Brax's tanh-normal policy::

    z = (policy_input(obs) [++ gait_clock] - mean) / std     (D,), envs.task.policy_input of the (44,) obs
    h = swish(z W_0 + b_0) ... swish(. W_{L-2} + b_{L-2})
    out = h W_{L-1} + b_{L-1}                   (24,) = loc (12) ++ scale (12)
    action = tanh(loc)                          (12,) in [-1, 1]

which is what ``brax.training.agents.ppo.networks.make_inference_fn(...)(params,
deterministic=True)`` computes (a test checks the two agree).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dynaflow_policy import checkpoint
from dynaflow_policy.observations import GAIT_SLICE, check_observation, check_trained_gaits
from envs.physics import ACTION_DIM, PHYSICS
from envs.task import (CLOCK_DIM, GAITS, POLICY_INPUT_DIM, CommandRanges, advance_phase, gait_clock, gait_index,
                       policy_input)

EXPERT_KIND = "ppo"
"""``config.json`` ``kind`` of a PPO expert checkpoint (one of ``dynaflow_policy.checkpoint.KINDS``; checkpoints
written before that field say ``"ppo-expert"``, which :func:`dynaflow_policy.checkpoint.kind_of_meta` reads too)."""
POLICY_INPUTS = "envs.task.policy_input"
"""``config.json`` ``policy.inputs``: what the networks read (checked on load)."""
CLOCKED_POLICY_INPUTS = "envs.task.policy_input+envs.task.gait_clock"
"""``policy.inputs`` of an expert that also reads the gait clock (41 + 8 numbers)."""
INPUT_DIMS = {POLICY_INPUTS: POLICY_INPUT_DIM, CLOCKED_POLICY_INPUTS: POLICY_INPUT_DIM + CLOCK_DIM}
"""Size of each kind of policy input."""

_ACTIVATIONS = {
    "swish": lambda x: x * (0.5 + 0.5 * np.tanh(0.5 * x)),  # x * sigmoid(x), without overflow in exp
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
}


class PPOExpert:
    """Deterministic PPO policy in numpy (float32), for the Gymnasium env and data collection.

    Args:
      normalizer_mean: (D,) policy-input mean; normalizer_std: (D,) policy-input std.
      layers: [(kernel (n_in, n_out), bias (n_out,)), ...], the last layer outputs 2 * 12.
      activation: name in ``_ACTIVATIONS`` (Brax's default for PPO is swish).
      meta: the checkpoint's ``config.json`` (kept for reference).
      inputs: :data:`POLICY_INPUTS` (D = 41) or :data:`CLOCKED_POLICY_INPUTS` (D = 49, a stateful
        policy: it keeps each environment's gait phase).
    """

    def __init__(self, normalizer_mean: np.ndarray, normalizer_std: np.ndarray,
                 layers: list[tuple[np.ndarray, np.ndarray]], activation: str = "swish",
                 meta: dict[str, Any] | None = None, inputs: str = POLICY_INPUTS):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        if inputs not in INPUT_DIMS:
            raise ValueError(f"unknown policy inputs {inputs!r}; expected one of {sorted(INPUT_DIMS)}")
        dim = INPUT_DIMS[inputs]
        self.mean = np.asarray(normalizer_mean, np.float32)
        self.std = np.asarray(normalizer_std, np.float32)
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        if self.mean.shape != (dim,) or self.std.shape != (dim,):
            raise ValueError(f"normaliser mean and std must have shape ({dim},), got {self.mean.shape}, "
                             f"{self.std.shape}")
        if not self.layers or self.layers[0][0].shape[0] != dim or self.layers[-1][0].shape[1] != 2 * ACTION_DIM:
            raise ValueError(f"policy MLP must map {dim} inputs to {2 * ACTION_DIM} outputs (loc, scale)")
        self.activation = activation
        self._act_fn = _ACTIVATIONS[activation]
        self.meta = dict(meta or {})
        self.inputs = inputs
        self.clocked = inputs == CLOCKED_POLICY_INPUTS
        self._phase: np.ndarray | None = None  # (N,) gait phases of a clocked expert, set by the first act
        self._gait: str | None = None

    @property
    def gait(self) -> str | None:
        """A gait name that overrides the observation's gait one-hot (None: follow the observation)."""
        return self._gait

    @gait.setter
    def gait(self, value: str | None) -> None:
        if value is not None:
            gait_index(value)  # ValueError naming the four gaits
            check_trained_gaits([value], self.gaits, "expert")
        self._gait = value

    @property
    def gaits(self) -> tuple[str, ...]:
        """The gaits the expert was trained on (from its config; a checkpoint without one: trot)."""
        return tuple(self.meta.get("ppo_config", {}).get("gaits", ("trot",)))

    def command_ranges(self, gait: str) -> CommandRanges:
        """The command ranges the expert was trained on for ``gait`` (its config's ``env.command_ranges``: one set
        for every gait, or one per gait; a checkpoint without them: ``CommandRanges()``, the trot expert's)."""
        gait_index(gait)  # ValueError naming the four gaits
        check_trained_gaits([gait], self.gaits, "expert")
        ranges = self.meta.get("env", {}).get("command_ranges")
        if ranges is None:
            return CommandRanges()
        ranges = ranges.get(gait, ranges)
        return CommandRanges(**{k: tuple(v) for k, v in ranges.items()})

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action of one environment or of a batch.

        Each row goes through the MLP as a (1, 41) matrix (numpy's matrix-vector product per row of a
        stacked matmul), so a row's action does not depend on the batch it is in: batched and
        one-at-a-time actions are bit-identical.

        Args:
          obs: (44,) or (N, 44) observation(s) of the Go1 env (``envs.task.observation``).

        Returns:
          (12,) or (N, 12) float32 action in [-1, 1].

        Raises:
          ValueError: obs of another shape, non-finite, with an invalid gait one-hot (naming the row), or
            with a gait the expert was not trained on (naming its gaits).
        """
        x = check_observation(obs)  # (44,) or (N, 44)
        if self._gait is not None:
            x = x.copy()
            x[..., GAIT_SLICE] = np.eye(len(GAITS), dtype=x.dtype)[gait_index(self._gait)]
        inputs = policy_input(x).reshape(-1, POLICY_INPUT_DIM)  # (N, 41)
        gait = np.argmax(x.reshape(-1, x.shape[-1])[:, GAIT_SLICE], axis=-1)  # (N,)
        check_trained_gaits([GAITS[g] for g in np.unique(gait)], self.gaits, "expert")
        if self.clocked:
            if self._phase is None or self._phase.shape != gait.shape:
                self._phase = np.zeros(gait.shape, np.float32)
            inputs = np.concatenate([inputs, gait_clock(self._phase, gait)], axis=-1)  # (N, 49)
            self._phase = advance_phase(self._phase, gait, PHYSICS.ctrl_dt).astype(np.float32)
        h = ((inputs - self.mean) / self.std)[:, None, :]  # (N, 1, D)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = self._act_fn(h)
        a = np.tanh(h[:, 0, :ACTION_DIM])  # (N, 12): tanh of the Gaussian's loc
        return a[0] if x.ndim == 1 else a

    __call__ = act

    def reset(self, mask: np.ndarray | None = None, seed: int | None = None) -> None:
        """Restarts the gait clock (phase 0) of every environment, or of those in ``mask`` (N,) bool.

        An expert without a clock has no state. ``seed`` is that of the controller interface
        (:meth:`dynaflow_policy.policy.RecedingHorizonPolicy.reset`); the expert is deterministic.
        """
        if mask is None or self._phase is None:
            self._phase = None
        else:
            mask = np.asarray(mask, bool)
            if mask.shape != self._phase.shape:
                raise ValueError(f"reset mask must have shape {self._phase.shape}, got {mask.shape}")
            self._phase = np.where(mask, 0.0, self._phase).astype(np.float32)


def mlp_layers(params: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Brax/flax MLP variables ``{"params": {"hidden_<i>": {"kernel", "bias"}}}`` -> ordered (kernel, bias) list."""
    p = params.get("params", params)
    names = sorted((k for k in p if k.startswith("hidden_")), key=lambda k: int(k.split("_")[1]))
    if not names or len(names) != len(p):
        raise checkpoint.CheckpointError(f"policy params must be hidden_0 ... hidden_<L-1> layers, got {sorted(p)}")
    return [(np.asarray(p[k]["kernel"]), np.asarray(p[k]["bias"])) for k in names]


def load_expert(path: str | os.PathLike, allow_other_physics: bool = False) -> PPOExpert:
    """Loads a PPO expert from a checkpoint of :mod:`dynaflow_policy.experts.ppo` (no pickle, no Brax).

    Args:
      path: a step directory (``.../checkpoints/<step>``), or a directory of step
        directories (the newest complete one is read), e.g. ``runs/ppo/checkpoints``.
      allow_other_physics: load a checkpoint made under another physics config.

    Returns:
      A :class:`PPOExpert`.

    Raises:
      CheckpointError: missing, truncated or corrupt files, other physics, or not a PPO expert.
    """
    arrays, meta = checkpoint.restore(path, allow_other_physics=allow_other_physics)
    kind = checkpoint.kind_of_meta(meta, path)
    if kind != EXPERT_KIND:
        raise checkpoint.CheckpointError(f"{os.fspath(path)}: not a PPO expert checkpoint (kind {kind!r}, "
                                         f"expected {EXPERT_KIND!r})")
    inputs = meta.get("policy", {}).get("inputs")
    if inputs not in INPUT_DIMS:
        raise checkpoint.CheckpointError(f"{os.fspath(path)}: the policy reads {inputs!r}, this code feeds "
                                         f"{sorted(INPUT_DIMS)}: retrain the expert")
    try:
        norm = arrays["normalizer"]
        layers = mlp_layers(arrays["policy"])
        activation = meta["policy"]["activation"]
        return PPOExpert(norm["mean"], norm["std"], layers, activation, meta, inputs)
    except (KeyError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{os.fspath(path)}: malformed PPO expert checkpoint ({e!r})") from None
