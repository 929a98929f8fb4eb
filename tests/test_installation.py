"""``envs`` is this project's package, installed with ``dynaflow_policy`` (a PyPI package named ``envs`` exists)."""

import os

import dynaflow_policy
import envs


def test_envs_and_dynaflow_policy_come_from_the_same_installation():
    root = os.path.dirname(os.path.dirname(os.path.abspath(dynaflow_policy.__file__)))
    assert os.path.dirname(os.path.dirname(os.path.abspath(envs.__file__))) == root
    assert os.path.isfile(os.path.join(root, "envs", "assets", "go1.xml"))
    assert envs.GYM_ID == "dynaflow/Go1-v0"
