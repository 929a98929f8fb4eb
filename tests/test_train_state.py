"""Checkpoint kinds, the export's controller defaults, the one resumability check, and the shipped checkpoints.

The DynaFlow checkpoints here are untrained tiny models (``tests/artifacts.py``): no training step is compiled.
"""

import dataclasses
import json
import os
import subprocess
import sys

import flax.serialization
import jax
import numpy as np
import pytest

from dynaflow_policy import checkpoint, export, train_state
from dynaflow_policy.baselines import train as baseline_train
from dynaflow_policy.configs import DiTTrainConfig, FlowConfig, TrainConfig, policy_defaults
from dynaflow_policy.experts import ppo
from artifacts import write_dynaflow_checkpoint

H = 8
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.path.join(REPO, "checkpoints")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A DynaFlow work directory holding one training checkpoint (step 0) and a two-line metrics.jsonl."""
    workdir = tmp_path_factory.mktemp("run")
    write_dynaflow_checkpoint(workdir / "checkpoints", horizon=H)
    with open(workdir / "metrics.jsonl", "w") as f:
        f.write(json.dumps({"step": 0, "time": 1.0, "eval/tre": 0.5}) + "\n" + '{"step": 0, "ti')
    return str(workdir)


def test_every_writer_names_its_kind(run_dir, tmp_path):
    meta = checkpoint.read_meta(checkpoint.resolve(run_dir))
    assert meta[checkpoint.KIND_KEY] == "dynaflow"
    out = export.main(export.Args(run=run_dir, out=str(tmp_path / "export")))
    assert checkpoint.read_meta(out)[checkpoint.KIND_KEY] == "dynaflow"
    ppo_meta = ppo._checkpoint_meta(ppo.PPOConfig(), 1, {})
    assert ppo_meta[checkpoint.KIND_KEY] == "ppo" and checkpoint.kind_of_meta(ppo_meta) == "ppo"
    baseline_meta = baseline_train._checkpoint_meta(train_state.load_checkpoint(run_dir).normalizer,
                                                    baseline_train.BaselineConfig(), {}, ("trot",))
    assert baseline_meta[checkpoint.KIND_KEY] == "state_flow" and "model" not in baseline_meta
    with pytest.raises(ValueError, match="kind must be one of"):
        train_state.checkpoint_meta("ppo-expert", TrainConfig().dit_config, FlowConfig(),
                                    train_state.load_checkpoint(run_dir).normalizer)


@pytest.mark.parametrize("name, kind", [("dynaflow_go1_expert", "dynaflow"), ("dynaflow_go1_kinematic", "dynaflow"),
                                        ("dynaflow_go1_gaits", "dynaflow"), ("state_flow_go1_expert", "state_flow"),
                                        ("ppo_go1_trot", "ppo"), ("ppo_go1_gaits", "ppo")])
def test_shipped_checkpoints_keep_their_kind_and_arrays(name, kind):
    """The legacy markers still name the kind; the loaders return the stored arrays bit for bit."""
    path = os.path.join(CKPT, name)
    assert checkpoint.checkpoint_kind(path) == kind
    arrays, _ = checkpoint.restore(path)
    if kind == "ppo":
        return
    load = train_state.load_checkpoint if kind == "dynaflow" else baseline_train.load_checkpoint
    ckpt = load(path)
    assert ckpt.state is None and ckpt.policy_defaults == checkpoint.read_meta(path)["policy"]
    stored = jax.tree_util.tree_leaves_with_path(arrays["ema_params"])
    loaded = jax.tree.leaves(flax.serialization.to_state_dict(ckpt.ema_params))
    assert len(stored) == len(loaded) > 0
    for (key, a), b in zip(stored, loaded):
        assert a.dtype == b.dtype, jax.tree_util.keystr(key)
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(key))


def test_export_stores_controller_defaults(run_dir, tmp_path):
    training = train_state.load_checkpoint(run_dir)
    assert training.policy_defaults == {"execute_steps": 4, "ode_steps": training.config.flow.ode_steps}
    out = export.main(export.Args(run=run_dir, out=str(tmp_path / "a"), execute_steps=2, ode_steps=3))
    assert checkpoint.read_meta(out)["policy"] == {"execute_steps": 2, "ode_steps": 3}
    shipped = train_state.load_checkpoint(out)
    assert shipped.policy_defaults == {"execute_steps": 2, "ode_steps": 3} and shipped.state is None
    jax.tree.map(np.testing.assert_array_equal, shipped.ema_params, training.ema_params)
    assert [r["step"] for r in map(json.loads, open(os.path.join(out, "metrics.jsonl")))] == [0]  # cut line dropped
    default = export.main(export.Args(run=run_dir, out=str(tmp_path / "b")))
    assert train_state.load_checkpoint(default).policy_defaults == {"execute_steps": 4, "ode_steps": 1}


@pytest.mark.parametrize("options, match", [(dict(execute_steps=0), "--execute-steps"),
                                            (dict(execute_steps=H + 1), rf"--execute-steps.*\[1, {H}\]"),
                                            (dict(ode_steps=0), "--ode-steps"),
                                            (dict(ode_steps=1.5), "--ode-steps")])
def test_export_refuses_bad_controller_defaults(run_dir, tmp_path, options, match):
    with pytest.raises(SystemExit, match=match):
        export.main(export.Args(run=run_dir, out=str(tmp_path / "out"), **options))
    assert not os.path.exists(tmp_path / "out")  # nothing written


def test_export_cli_names_the_bad_option(run_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dynaflow_policy.export", "--run", run_dir, "--out",
                           str(tmp_path / "out"), "--execute-steps", "0"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and "--execute-steps" in proc.stderr and "got 0" in proc.stderr


def test_a_bad_policy_block_is_a_checkpoint_error(run_dir, tmp_path):
    out = export.main(export.Args(run=run_dir, out=str(tmp_path / "shipped")))
    meta_file = os.path.join(out, checkpoint.META_FILE)
    with open(meta_file) as f:
        meta = json.load(f)
    meta["policy"] = {"execute_steps": 99, "ode_steps": 1}
    with open(meta_file, "w") as f:
        json.dump(meta, f)
    with pytest.raises(checkpoint.CheckpointError, match="bad 'policy' block.*execute_steps"):
        train_state.load_checkpoint(out)


def test_export_refuses_a_ppo_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="'ppo' checkpoint"):
        export.main(export.Args(run=os.path.join(CKPT, "ppo_go1_trot"), out=str(tmp_path / "out")))


def test_policy_defaults_validation():
    flow = FlowConfig(ode_steps=2)
    assert policy_defaults(None, None, 16, flow) == {"execute_steps": 4, "ode_steps": 2}
    assert policy_defaults(np.int64(16), 1, 16, flow) == {"execute_steps": 16, "ode_steps": 1}
    for bad in (dict(execute_steps=True), dict(execute_steps=17), dict(ode_steps=-1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            policy_defaults(**{"execute_steps": None, "ode_steps": None, **bad}, horizon=16, flow=flow)


def test_one_resumability_check_for_every_config():
    """Changed non-resumable fields are refused by name (dotted into nested configs); resumable ones pass."""
    saved = TrainConfig()
    checkpoint.check_resumable(saved, dataclasses.replace(saved, lr=1e-5, start_noise=0.3, steps=9),
                               "ckpt", TrainConfig.RESUMABLE_FIELDS)
    with pytest.raises(ValueError, match=r"cannot resume ckpt: .*seed: 0 -> 1.*may change"):
        checkpoint.check_resumable(saved, dataclasses.replace(saved, seed=1), "ckpt", TrainConfig.RESUMABLE_FIELDS)

    base = baseline_train.BaselineConfig()
    assert checkpoint.changed_fields(base, dataclasses.replace(
        base, train=dataclasses.replace(base.train, lr=1e-5, grad_clip=2.0)), base.RESUMABLE_FIELDS) == [
        "train.grad_clip"]
    assert "train.start_noise" not in base.RESUMABLE_FIELDS and "start_noise" in TrainConfig.RESUMABLE_FIELDS
    assert set(DiTTrainConfig.RESUMABLE_FIELDS) < set(TrainConfig.RESUMABLE_FIELDS)

    config = ppo.PPOConfig()
    checkpoint.check_resumable(config, dataclasses.replace(config, num_timesteps=10**8), "p",
                               ppo.PPOConfig.RESUMABLE_FIELDS)
    with pytest.raises(ValueError, match="entropy_cost: 0.01 -> 0.02"):
        checkpoint.check_resumable(config, dataclasses.replace(config, entropy_cost=0.02), "p",
                                   ppo.PPOConfig.RESUMABLE_FIELDS)
