"""dynaflow_policy.load_policy: the controller of each checkpoint kind, overrides, clear errors."""

import json
import os
import shutil

import numpy as np
import pytest

from dynaflow_policy import checkpoint, load_policy
from dynaflow_policy.baselines.policy import StateFlowIDPolicy
from dynaflow_policy.checkpoint import META_FILE, CheckpointError
from dynaflow_policy.experts.policy import PPOExpert
from dynaflow_policy.policy import DynaFlowPolicy
from artifacts import write_dynaflow_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "checkpoints")


@pytest.mark.parametrize("name, cls", [("dynaflow_go1_expert", DynaFlowPolicy),
                                       ("dynaflow_go1_gaits", DynaFlowPolicy),
                                       ("state_flow_go1_expert", StateFlowIDPolicy),
                                       ("ppo_go1_trot", PPOExpert), ("ppo_go1_gaits", PPOExpert)])
def test_each_shipped_checkpoint_gives_its_controller(name, cls):
    policy = load_policy(os.path.join(SHIPPED, name))
    assert type(policy) is cls
    if cls is not PPOExpert:
        stored = checkpoint.read_meta(os.path.join(SHIPPED, name))["policy"]  # the export's controller defaults
        assert (policy.execute_steps, policy.ode_steps) == (stored["execute_steps"], stored["ode_steps"])
        policy = load_policy(os.path.join(SHIPPED, name), execute_steps=8, ode_steps=2, seed=3, gait="trot")
        assert (policy.execute_steps, policy.ode_steps, policy.seed, policy.gait) == (8, 2, 3, "trot")


def test_a_training_run_directory_loads_its_newest_checkpoint(tmp_path):
    write_dynaflow_checkpoint(tmp_path / "run" / "checkpoints", 8)
    policy = load_policy(tmp_path / "run", execute_steps=2)
    assert isinstance(policy, DynaFlowPolicy) and policy.execute_steps == 2


def test_overrides_a_controller_does_not_take_are_named():
    with pytest.raises(TypeError, match="'execute_steps'.*overrides are none"):
        load_policy(os.path.join(SHIPPED, "ppo_go1_trot"), execute_steps=4)
    with pytest.raises(TypeError, match="'horizon'"):
        load_policy(os.path.join(SHIPPED, "dynaflow_go1_expert"), horizon=8)
    with pytest.raises(ValueError, match="execute_steps"):
        load_policy(os.path.join(SHIPPED, "dynaflow_go1_expert"), execute_steps=99)


def test_no_checkpoint_or_an_unknown_kind(tmp_path):
    with pytest.raises(CheckpointError, match=f"looked for {META_FILE}"):
        load_policy(tmp_path)
    foreign = tmp_path / "foreign"
    shutil.copytree(os.path.join(SHIPPED, "ppo_go1_trot"), foreign)
    meta = json.loads((foreign / META_FILE).read_text())
    meta["kind"] = "diffusion"
    (foreign / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"'diffusion'.*\['dynaflow', 'state_flow', 'ppo'\]"):
        load_policy(foreign)
    assert np.all(np.isfinite(load_policy(os.path.join(SHIPPED, "ppo_go1_trot")).mean))
