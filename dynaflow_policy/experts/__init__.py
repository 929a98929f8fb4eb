"""RL experts on the Go1 env: the PPO baseline and the policy that produces the feasible demonstrations.

``load_expert(path).act(obs)`` needs only numpy; training (``python -m
dynaflow_policy.experts.ppo``) imports Brax on use.
"""

from dynaflow_policy.experts.policy import PPOExpert, load_expert

__all__ = ["PPOExpert", "load_expert"]
