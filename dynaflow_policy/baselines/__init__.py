"""Baselines of the benchmark that live in this package.

State-only generative baseline (Decision-Diffuser style): flow matching in
state space (:mod:`~dynaflow_policy.baselines.state_flow`) plans states, and an
inverse-dynamics MLP (:mod:`~dynaflow_policy.baselines.inverse_dynamics`) trained
on the robot's own random play (:mod:`~dynaflow_policy.baselines.random_play`)
turns them into actions (:class:`~dynaflow_policy.baselines.policy.StateFlowIDPolicy`).
Training: ``python -m dynaflow_policy.baselines.train``.
"""
