"""Multi-process training: two processes joined through ``jax.distributed`` (Gloo CPU collectives) train to the
same losses as one process, write one set of checkpoints, and resume from them.

The runs regress the DiT on fitted labels (no MJX in the step, so each process compiles in seconds); the
sharding, the gradient all-reduce, the checkpoints and the resume are those of every objective.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from dynaflow_policy import train_state
from dynaflow_policy.data import labels as labels_lib
from dynaflow_policy.run_log import METRICS_FILE, read_metrics
from dynaflow_policy.train import train_and_evaluate
from tests.test_train import H, _config, make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("distributed") / "feasible.npz")
    make_dataset(path)
    labels_lib.fit_labels(path, labels_lib.FitConfig(chunk_trajectories=2), workers=1, progress=False)
    return path


def _tiny(path, **overrides):
    return _config(path, objective="labels", batch_size=8, steps=STEPS, lr=3e-3, held_out_fraction=0.0,
                   checkpoint_every=3, **overrides)


def _cli(path, steps):
    """The flags of :func:`_tiny` on the command line of ``python -m dynaflow_policy.train``."""
    c = _tiny(path)
    return ["--dataset", path, "--objective", "labels", "--horizon", str(H), "--batch-size", "8", "--steps",
            str(steps), "--lr", "3e-3", "--held-out-fraction", "0.0", "--log-every", "1", "--checkpoint-every", "3",
            "--eval-every", str(c.eval_every), "--eval-windows", str(c.eval_windows), "dit:custom",
            "--dit.d-model", "32", "--dit.depth", "1", "--dit.num-heads", "2", "--dit.mlp-ratio", "2.0",
            "--dit.horizon", str(H)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(path, workdir, steps, resume=False):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [subprocess.Popen([sys.executable, "-m", "dynaflow_policy.train", "--workdir", workdir, "--cpu-devices",
                               "1", "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id",
                               str(i), *(["--resume"] if resume else []), *_cli(path, steps)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    assert "devices: 2 x cpu, processes: 2" in outputs[0], outputs[0][-2000:]


def _losses(workdir):
    return {r["step"]: r["train/label_mse"] for r in read_metrics(os.path.join(workdir, METRICS_FILE))
            if "train/label_mse" in r}


@pytest.mark.slow
def test_two_processes_train_and_resume_as_one(labelled, tmp_path):
    one = str(tmp_path / "one")
    train_and_evaluate(_tiny(labelled), one)

    two = str(tmp_path / "two")
    _two_processes(labelled, two, steps=3)  # interrupted after the first checkpoint ...
    assert sorted(os.listdir(os.path.join(two, "checkpoints"))) == ["3"]
    _two_processes(labelled, two, steps=STEPS, resume=True)  # ... and resumed by both processes

    want, got = _losses(one), _losses(two)
    assert sorted(got) == list(range(1, STEPS + 1)) == sorted(want)
    np.testing.assert_allclose([got[k] for k in sorted(got)], [want[k] for k in sorted(want)], rtol=1e-4)
    assert got[STEPS] < got[1]  # it learns
    a = train_state.load_checkpoint(os.path.join(one, "checkpoints")).state.params
    b = train_state.load_checkpoint(os.path.join(two, "checkpoints")).state.params
    np.testing.assert_allclose(_flat(b), _flat(a), rtol=1e-3, atol=1e-5)


def _flat(tree) -> np.ndarray:
    import jax
    return np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree.leaves(tree)])


def test_more_than_one_host_device_gets_long_collective_timeouts(monkeypatch):
    from dynaflow_policy.devices import COLLECTIVE_TIMEOUT_FLAGS, HOST_DEVICE_FLAG, set_host_device_count

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_collective_call_terminate_timeout_seconds=5")  # the user's own
    assert set_host_device_count(2) == 2
    flags = os.environ["XLA_FLAGS"].split()
    assert f"{HOST_DEVICE_FLAG}=2" in flags and "--xla_cpu_collective_call_terminate_timeout_seconds=5" in flags
    assert "--xla_cpu_collective_call_warn_stuck_timeout_seconds=60" in flags and len(flags) == 3
    monkeypatch.setenv("XLA_FLAGS", "")
    set_host_device_count(1)
    assert os.environ["XLA_FLAGS"] == f"{HOST_DEVICE_FLAG}=1"  # one device: no collectives
    assert set(COLLECTIVE_TIMEOUT_FLAGS) == {"--xla_cpu_collective_call_warn_stuck_timeout_seconds",
                                             "--xla_cpu_collective_call_terminate_timeout_seconds"}
