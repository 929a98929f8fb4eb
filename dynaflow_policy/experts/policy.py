"""The PPO expert as a numpy policy: ``load_expert(path).act(obs (44,) or (N, 44)) -> action (12,) or (N, 12)``.

A checkpoint of :mod:`dynaflow_policy.experts.ppo` is a
:mod:`dynaflow_policy.checkpoint` step directory (``state.msgpack`` + ``config.json``,
atomic, sha256-checked, nothing pickled). The arrays are::

    normalizer/mean (41,), normalizer/std (41,), ...   Brax running statistics of the policy inputs
    policy/params/hidden_<i>/{kernel (n_in, n_out), bias (n_out,)}   Brax MLP, i = 0..L-1
    value/params/hidden_<i>/...                         the critic (needed to resume training)

and ``config.json`` holds ``policy`` (layer sizes, activation, distribution) and
the :class:`~dynaflow_policy.experts.ppo.PPOConfig` of the run.

The deterministic action is the mode of Brax's tanh-normal policy::

    z = (policy_input(obs) - mean) / std        (41,), envs.task.policy_input of the (44,) obs
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
from dynaflow_policy.observations import check_observation
from envs.physics import ACTION_DIM
from envs.task import POLICY_INPUT_DIM, policy_input

EXPERT_KIND = "ppo"
"""``config.json`` ``kind`` of a PPO expert checkpoint (one of ``dynaflow_policy.checkpoint.KINDS``; checkpoints
written before that field say ``"ppo-expert"``, which :func:`dynaflow_policy.checkpoint.kind_of_meta` reads too)."""
POLICY_INPUTS = "envs.task.policy_input"
"""``config.json`` ``policy.inputs``: what the networks read (checked on load)."""

_ACTIVATIONS = {
    "swish": lambda x: x * (0.5 + 0.5 * np.tanh(0.5 * x)),  # x * sigmoid(x), without overflow in exp
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
}


class PPOExpert:
    """Deterministic PPO policy in numpy (float32), for the Gymnasium env and data collection.

    Args:
      normalizer_mean: (41,) policy-input mean; normalizer_std: (41,) policy-input std.
      layers: [(kernel (n_in, n_out), bias (n_out,)), ...], the last layer outputs 2 * 12.
      activation: name in ``_ACTIVATIONS`` (Brax's default for PPO is swish).
      meta: the checkpoint's ``config.json`` (kept for reference).
    """

    def __init__(self, normalizer_mean: np.ndarray, normalizer_std: np.ndarray,
                 layers: list[tuple[np.ndarray, np.ndarray]], activation: str = "swish",
                 meta: dict[str, Any] | None = None):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        self.mean = np.asarray(normalizer_mean, np.float32)
        self.std = np.asarray(normalizer_std, np.float32)
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        if self.mean.shape != (POLICY_INPUT_DIM,) or self.std.shape != (POLICY_INPUT_DIM,):
            raise ValueError(f"normaliser mean and std must have shape ({POLICY_INPUT_DIM},), got {self.mean.shape}, "
                             f"{self.std.shape}")
        if not self.layers or self.layers[0][0].shape[0] != POLICY_INPUT_DIM \
                or self.layers[-1][0].shape[1] != 2 * ACTION_DIM:
            raise ValueError(f"policy MLP must map {POLICY_INPUT_DIM} inputs to {2 * ACTION_DIM} outputs (loc, scale)")
        self.activation = activation
        self._act_fn = _ACTIVATIONS[activation]
        self.meta = dict(meta or {})

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
          ValueError: obs of another shape, non-finite, or with an invalid gait one-hot (naming the row).
        """
        x = check_observation(obs)  # (44,) or (N, 44)
        h = ((policy_input(x) - self.mean) / self.std).reshape(-1, 1, POLICY_INPUT_DIM)  # (N, 1, 41)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = self._act_fn(h)
        a = np.tanh(h[:, 0, :ACTION_DIM])  # (N, 12): tanh of the Gaussian's loc
        return a[0] if x.ndim == 1 else a

    __call__ = act

    def reset(self, mask: np.ndarray | None = None, seed: int | None = None) -> None:
        """No internal state: nothing to forget (``mask`` and ``seed`` are those of the controller interface,
        :meth:`dynaflow_policy.policy.RecedingHorizonPolicy.reset`)."""


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
    if meta.get("policy", {}).get("inputs") != POLICY_INPUTS:
        raise checkpoint.CheckpointError(f"{os.fspath(path)}: the policy reads {meta.get('policy', {}).get('inputs')!r}"
                                         f", this code feeds {POLICY_INPUTS!r}: retrain the expert")
    try:
        norm = arrays["normalizer"]
        layers = mlp_layers(arrays["policy"])
        activation = meta["policy"]["activation"]
        return PPOExpert(norm["mean"], norm["std"], layers, activation, meta)
    except (KeyError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{os.fspath(path)}: malformed PPO expert checkpoint ({e!r})") from None
