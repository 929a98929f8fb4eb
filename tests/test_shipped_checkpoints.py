"""The checkpoints in checkpoints/ load under the current physics and act in the Gymnasium env."""

import os

import gymnasium
import numpy as np
import pytest

import envs
from dynaflow_policy import DynaFlowPolicy
from dynaflow_policy.baselines.policy import StateFlowIDPolicy
from dynaflow_policy.experts import load_expert

CKPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints")


@pytest.mark.parametrize("name, load", [("dynaflow_go1_expert", DynaFlowPolicy.from_checkpoint),
                                        ("dynaflow_go1_kinematic", DynaFlowPolicy.from_checkpoint),
                                        ("dynaflow_go1_gaits", DynaFlowPolicy.from_checkpoint),
                                        ("state_flow_go1_expert", StateFlowIDPolicy.from_checkpoint),
                                        ("ppo_go1_trot", load_expert), ("ppo_go1_gaits", load_expert)])
def test_shipped_checkpoint_acts(name, load):
    policy = load(os.path.join(CKPT, name))
    env = gymnasium.make(envs.GYM_ID)
    obs, _ = env.reset(seed=0, options={"command": (0.6, 0.0, 0.0)})
    policy.reset()
    for _ in range(10):
        action = policy.act(obs)
        assert action.shape == (envs.ACTION_DIM,) and np.all(np.isfinite(action))
        obs, _, terminated, _, _ = env.step(action)
        assert not terminated
    env.close()
