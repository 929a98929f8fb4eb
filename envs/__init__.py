"""Go1 physics for dynaflow-policy: MJCF, physics config, differentiable rollout, Brax and Gymnasium envs.

``import envs`` registers the Gymnasium id ``dynaflow/Go1-v0``. ``envs.Go1Env``
(Brax) is imported on first use, since importing Brax takes seconds.
"""

import gymnasium

from envs.physics import (ACTION_DIM, GO1_XML, JOINT_NAMES, PHYSICS, STATE_DIM, PhysicsConfig, load_mj_model,
                          motor_targets)
from envs.dynamics import rollout
from envs.task import GAITS, CommandRanges, RewardWeights

GYM_ID = "dynaflow/Go1-v0"
EPISODE_SECONDS = 20.0
"""Default Gymnasium episode length (s): 1000 control steps at 50 Hz."""

if GYM_ID not in gymnasium.registry:
    gymnasium.register(id=GYM_ID, entry_point="envs.gym_env:Go1GymEnv",
                       max_episode_steps=round(EPISODE_SECONDS / PHYSICS.ctrl_dt))


def __getattr__(name):
    if name == "Go1Env":
        from envs.brax_env import Go1Env
        return Go1Env
    raise AttributeError(f"module 'envs' has no attribute {name!r}")


__all__ = ["ACTION_DIM", "GO1_XML", "JOINT_NAMES", "PHYSICS", "STATE_DIM", "PhysicsConfig", "load_mj_model",
           "motor_targets", "rollout", "GAITS", "CommandRanges", "RewardWeights", "GYM_ID", "Go1Env"]
