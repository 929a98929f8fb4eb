"""Go1 physics for dynaflow-policy: MJCF, physics config, differentiable rollout, Brax and Gymnasium envs.

``import envs`` registers the Gymnasium id ``dynaflow/Go1-v0``:
``gymnasium.make`` gives :class:`envs.gym_env.Go1GymEnv`, ``gymnasium.make_vec``
gives :class:`envs.vector_env.Go1VectorEnv` (N envs in one jitted MJX step;
``vectorization_mode="sync"`` gives the sync vector of single envs instead).
``envs.Go1Env`` (Brax) is imported on first use, since importing Brax takes seconds.

Every entry point of the project imports this package before MJX, so MJX is
imported here, through :func:`envs.mjx_import.import_mjx`, which keeps stdout
free of MJX's "Failed to import warp" lines.
"""

from envs.mjx_import import import_mjx

import_mjx()

import gymnasium  # noqa: E402

from envs.physics import (ACTION_DIM, GO1_XML, JOINT_NAMES, PHYSICS, STATE_DIM, PhysicsConfig,  # noqa: E402
                          load_mj_model, motor_targets)
from envs.dynamics import rollout  # noqa: E402
from envs.kinematics import foot_positions  # noqa: E402
from envs.task import EPISODE_SECONDS, GAITS, CommandRanges, RewardWeights  # noqa: E402

GYM_ID = "dynaflow/Go1-v0"

if GYM_ID not in gymnasium.registry:
    # No passive env checker: when a first reset raises (a refused option), Gymnasium 1.4's checker is left
    # half-initialised and fails the next step with a TypeError. tests/test_gym_env.py runs the full
    # gymnasium.utils.env_checker.check_env on the env instead.
    gymnasium.register(id=GYM_ID, entry_point="envs.gym_env:Go1GymEnv",
                       vector_entry_point="envs.vector_env:Go1VectorEnv",
                       max_episode_steps=round(EPISODE_SECONDS / PHYSICS.ctrl_dt), disable_env_checker=True)


def __getattr__(name):
    if name == "Go1Env":
        from envs.brax_env import Go1Env
        return Go1Env
    raise AttributeError(f"module 'envs' has no attribute {name!r}")


__all__ = ["ACTION_DIM", "GO1_XML", "JOINT_NAMES", "PHYSICS", "STATE_DIM", "PhysicsConfig", "load_mj_model",
           "motor_targets", "rollout", "foot_positions", "GAITS", "CommandRanges", "RewardWeights", "GYM_ID",
           "EPISODE_SECONDS", "Go1Env"]
