"""Small checkpoints for tests: an untrained-but-non-trivial DynaFlow model and hand-made PPO experts; and the
eval/ scripts as modules."""

import importlib.util
import os
import sys

import jax
import numpy as np

import envs
from dynaflow_policy import checkpoint
from dynaflow_policy.configs import DiTConfig, FlowConfig, TrainConfig
from dynaflow_policy.experts.policy import CLOCKED_POLICY_INPUTS, EXPERT_KIND, INPUT_DIMS, POLICY_INPUTS
from dynaflow_policy.frames import to_heading_frame
from dynaflow_policy.normalizer import Normalizer
from dynaflow_policy.train_state import init_train_state, save_checkpoint
from envs.physics import ACTION_DIM


def tiny_dit(horizon: int = 8, **overrides) -> DiTConfig:
    return DiTConfig(**{**dict(horizon=horizon, d_model=32, depth=1, num_heads=2), **overrides})


def write_dynaflow_checkpoint(directory, horizon: int = 8, gaits: tuple[str, ...] | None = None,
                              gait_clock: bool = False) -> str:
    """A DynaFlow checkpoint whose EMA weights are perturbed away from the zero-initialised head (so U != 0).

    ``gaits``: the training data's gaits it records (None: none recorded, as in older checkpoints).
    ``gait_clock``: a model conditioned on the gait clock too (``FlowConfig.gait_clock``).
    """
    flow = FlowConfig(gait_clock=gait_clock)
    config = TrainConfig(horizon=horizon, dit=tiny_dit(horizon, cond_dim=flow.cond_dim), flow=flow)
    state = init_train_state(config)
    leaves, treedef = jax.tree.flatten(state.ema_params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    noisy = [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    state = state.replace(ema_params=jax.tree.unflatten(treedef, noisy))
    rng = np.random.default_rng(0)
    X = np.repeat(np.asarray(envs.PHYSICS.home_state, np.float64)[None, None], horizon + 1, axis=1)
    X = X + 0.05 * rng.standard_normal((32, horizon + 1, envs.STATE_DIM))
    return save_checkpoint(directory, state, Normalizer.fit(to_heading_frame(X)), config, gaits=gaits)


def write_ppo_expert(directory, out_scale: float, seed: int = 0, gaits: tuple[str, ...] | None = None) -> str:
    """A PPO-expert checkpoint with random hidden layers; ``out_scale`` 0 makes it hold the default pose.

    ``gaits``: a clocked expert of these gaits (it reads the gait clock too); None: the trot expert's inputs.
    """
    rng = np.random.default_rng(seed)
    inputs = POLICY_INPUTS if gaits is None else CLOCKED_POLICY_INPUTS
    dim = INPUT_DIMS[inputs]
    sizes = [dim, 16, 2 * ACTION_DIM]
    policy = {"params": {f"hidden_{i}": {"kernel": rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a),
                                         "bias": np.zeros(b, np.float32)}
                         for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}}
    policy["params"]["hidden_1"]["kernel"] *= out_scale
    arrays = {"normalizer": {"mean": np.zeros(dim, np.float32), "std": np.ones(dim, np.float32)}, "policy": policy}
    meta = {"kind": EXPERT_KIND, "policy": {"inputs": inputs, "activation": "swish"}}
    if gaits is not None:
        meta["ppo_config"] = {"gaits": list(gaits)}
    return checkpoint.save(directory, 1, arrays, meta)


def load_eval_script(name: str):
    """``eval/<name>.py`` imported as the module ``<name>`` (registered, so its dataclasses find their module)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "eval", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
