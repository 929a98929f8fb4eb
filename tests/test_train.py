"""Training: loss decrease, gradients, checkpoints (atomic, checked, resumable), data parallelism, CLI.

MJX compiles are slow on CPU, so every in-process MJX function here has one
shape: the training step and the evaluation (sampler + admissibility) of a
tiny DiT at B = 4, H = 4, compiled once by the first run and reused by all
(``dynaflow_policy.train`` caches its jitted functions on the configs). The
two-device check runs in a subprocess, since the XLA host device count is
fixed when JAX starts; it is started before the long run, so that its
compiles overlap the long run's on a second core.

Data: four feasible trajectories of 12 states, native MuJoCo replays of smooth
random actions from a standing Go1, gaits (trot, trot, pace, pace); half the
trajectories are held out, leaving 16 training windows.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
import tyro

from dynaflow_policy import checkpoint
from dynaflow_policy.checkpoint import CheckpointError
from dynaflow_policy.configs import DiTConfig, FlowConfig, TrainConfig
from dynaflow_policy.data.kinematic import generate_kinematic_dataset
from dynaflow_policy.data.pool import WindowPool, WindowSampler, load_windows, prepare_batch
from dynaflow_policy.data.schema import Dataset, DatasetMetadata, save_dataset
from dynaflow_policy.data.windows import COMMAND_CHANGE_SPAN
from dynaflow_policy.devices import to_host
from dynaflow_policy.train import jit_eval_step, make_mesh, replicate, shard_batch, train_and_evaluate
from dynaflow_policy.train_state import load_checkpoint, save_checkpoint
from envs.native import replay
from envs.physics import PHYSICS
from envs.task import GAITS, gait_clock

H = 4
N_TRAJ, T = 4, 12
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(dataset: str, **overrides) -> TrainConfig:
    """The tiny run: DiT d=32, depth 1; B = 4, H = 4; default optimiser (lr 2e-4)."""
    base = dict(dataset=(dataset,), horizon=H, batch_size=4, steps=4, held_out_fraction=0.5, log_every=1,
                eval_every=10**6, eval_windows=4, checkpoint_every=10**6,
                dit=DiTConfig(d_model=32, depth=1, num_heads=2, mlp_ratio=2.0, horizon=H))
    return TrainConfig(**{**base, **overrides})


def make_dataset(path: str, seed: int = 0) -> None:
    """Feasible demonstrations: native replays of sinusoidal actions (|u| <= 0.9) from a standing Go1."""
    rng = np.random.default_rng(seed)
    standing = replay(PHYSICS.home_state, np.zeros((25, 12)))[-1]
    t = np.arange(T - 1)[:, None] * PHYSICS.ctrl_dt  # (T-1, 1)
    states = []
    for _ in range(N_TRAJ):
        amp, freq, phase = rng.uniform(0.1, 0.4, 12), rng.uniform(0.5, 2.0, 12), rng.uniform(0, 2 * np.pi, 12)
        actions = np.clip(amp * np.sin(2 * np.pi * freq * t + phase), -0.9, 0.9)  # (T-1, 12)
        states.append(replay(standing, actions))
    commands = np.repeat(rng.uniform(-0.5, 0.5, (N_TRAJ, 1, 3)), T, axis=1)
    ds = Dataset(np.asarray(states, np.float32), commands.astype(np.float32), np.array([0, 0, 1, 1]),
                 DatasetMetadata.for_physics("test_train"))
    save_dataset(path, ds)


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data") / "feasible.npz")
    make_dataset(path)
    return path


@pytest.fixture(scope="module")
def two_devices(dataset_path):
    """The running subprocess of :data:`TWO_DEVICES` (collected by its test)."""
    env = {**os.environ, "XLA_FLAGS": ""}
    proc = subprocess.Popen([sys.executable, "-c", TWO_DEVICES, dataset_path], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def long_run(dataset_path, tmp_path_factory, two_devices):
    """300 steps at lr 2e-4, every step logged, evaluation and checkpoints at 150 and 300."""
    workdir = str(tmp_path_factory.mktemp("long_run"))
    cfg = _config(dataset_path, steps=300, eval_every=150, checkpoint_every=150)
    log: list[tuple[int, dict]] = []
    t0 = time.perf_counter()
    state = train_and_evaluate(cfg, workdir, lambda step, m: log.append((step, m)))
    return dict(cfg=cfg, workdir=workdir, state=to_host(state), log=log, seconds=time.perf_counter() - t0)


def _train_log(log, key):
    return {step: m[key] for step, m in log if key in m}


def test_config_validation_and_json_round_trip():
    cfg = _config("x.npz")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert TrainConfig().dit_config == DiTConfig.small(horizon=16)
    assert TrainConfig(horizon=8, model="medium").dit_config == DiTConfig.medium(horizon=8)
    for bad in (dict(batch_size=0), dict(lr=0.0), dict(start_noise=-0.1), dict(ema_decay=1.0),
                dict(held_out_fraction=1.0), dict(grad_clip=-1.0), dict(model="huge"), dict(steps=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="horizon"):
        TrainConfig(horizon=8, dit=DiTConfig(horizon=16))
    per_gait = _config("x.npz", start_noise=(1.0, 1.0, 0.5, 0.0))  # one scale per gait of envs.task.GAITS
    assert TrainConfig.from_dict(json.loads(json.dumps(per_gait.to_dict()))) == per_gait
    assert per_gait.start_noise_per_gait == (1.0, 1.0, 0.5, 0.0) and cfg.start_noise_per_gait == (0.0,) * 4
    parsed = tyro.cli(TrainConfig, args=["--start-noise", "1", "1", "0.5", "0", "--start-noise-uniform"])
    assert parsed.start_noise == (1.0, 1.0, 0.5, 0.0) and parsed.start_noise_uniform
    assert "start_noise_uniform" in TrainConfig.RESUMABLE_FIELDS
    for bad, message in (((1.0, 0.5), "one value or 4, one per gait \\(trot, pace, bound, pronk\\)"),
                         ((1.0, 1.0, -0.5, 1.0), "--start-noise\\) must be >= 0")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(start_noise=bad)
    with pytest.raises(ValueError, match="--objective labels takes none of them"):
        TrainConfig(objective="labels", start_noise=(0.0, 0.0, 0.3, 0.0))
    with pytest.raises(ValueError, match="--objective labels takes none of them"):
        TrainConfig(objective="labels", foot_height_weight=1.0)
    with pytest.raises(ValueError, match="--foot-height-weight\\) must be >= 0"):
        TrainConfig(foot_height_weight=-1.0)
    assert tyro.cli(TrainConfig, args=["--foot-height-weight", "0.5"]).foot_height_weight == 0.5
    feet = tyro.cli(TrainConfig, args=["--foot-height-weight", "0.3", "0", "0.3", "0.3"])
    assert feet.foot_height_weight_per_gait == (0.3, 0.0, 0.3, 0.3)
    assert TrainConfig.from_dict(json.loads(json.dumps(feet.to_dict()))) == feet
    for bad, message in (((1.0, 0.5, 1.0), "--foot-height-weight\) takes one value or 4"),
                         ((0.3, float("nan"), 0.3, 0.3), "--foot-height-weight\) must be >= 0")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(foot_height_weight=bad)
    assert "foot_height_weight" in TrainConfig.RESUMABLE_FIELDS
    contact = tyro.cli(TrainConfig, args=["--foot-contact-weight", "1", "0.5", "1", "1"])
    assert contact.foot_contact_weight == (1.0, 0.5, 1.0, 1.0) and "foot_contact_weight" in TrainConfig.RESUMABLE_FIELDS
    assert TrainConfig.from_dict(json.loads(json.dumps(contact.to_dict()))) == contact
    assert contact.foot_contact_weight_per_gait == (1.0, 0.5, 1.0, 1.0)
    older = {k: v for k, v in TrainConfig().to_dict().items() if k != "foot_contact_weight"}
    assert TrainConfig.from_dict(older) == TrainConfig()  # a run's config from before the term
    with pytest.raises(ValueError, match="--foot-contact-weight\\) must be >= 0"):
        TrainConfig(foot_contact_weight=-0.1)
    with pytest.raises(ValueError, match="--objective labels takes none of them"):
        TrainConfig(objective="labels", foot_contact_weight=1.0)


def test_no_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no dataset given"):
        train_and_evaluate(TrainConfig(), str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "dynaflow_policy.train", "--workdir", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no dataset given: pass --dataset" in proc.stderr
    assert "RuntimeWarning" not in proc.stderr  # dynaflow_policy's imports do not load train before __main__


def test_normalizer_of_a_large_pool_uses_a_seeded_subset(dataset_path, monkeypatch):
    from dynaflow_policy.data import pool as pool_module

    pool, _ = load_windows(_config(dataset_path))
    full = pool_module.fit_normalizer(pool, _config(dataset_path))
    monkeypatch.setattr(pool_module, "NORMALIZER_WINDOWS", 6)  # fewer than the 16 windows: a subset is drawn
    a = pool_module.fit_normalizer(pool, _config(dataset_path))
    b = pool_module.fit_normalizer(pool, _config(dataset_path))
    np.testing.assert_array_equal(a.std, b.std)
    assert not np.array_equal(a.std, full.std)


def test_constant_command_windows_leave_out_the_windows_a_command_change_crosses(dataset_path, tmp_path):
    from dynaflow_policy.data.schema import load_dataset

    ds = load_dataset(dataset_path)
    commands = ds.commands.copy()
    commands[0, H + 2:] += 0.2  # trajectory 0 changes its command once, at state H + 2
    changed = str(tmp_path / "changed.npz")
    save_dataset(changed, dataclasses.replace(ds, commands=commands))
    every = load_windows(_config(changed))
    held = load_windows(_config(changed, constant_command_windows=True))
    # The windows of states s..s+H with s < H + 2 <= s + H (s = 2 .. H + 1) cross the change: H of them.
    assert sum(map(len, every)) - sum(map(len, held)) == H
    assert "constant_command_windows" in TrainConfig.RESUMABLE_FIELDS  # a run may fine-tune on held commands
    commands = ds.commands.copy()
    commands[:, H + 2:] += 0.2  # every trajectory changes its command at state H + 2
    save_dataset(changed, dataclasses.replace(ds, commands=commands))
    train, held = load_windows(_config(changed))
    repeated, held_repeated = load_windows(_config(changed, command_change_repeats=3))
    # Windows starting at H + 2 .. H + 2 + COMMAND_CHANGE_SPAN - 1 answer the change; in training they count 3 times.
    answering = min(COMMAND_CHANGE_SPAN, ds.n_steps - H - (H + 2)) * sum(len(s.trajectories) for s in train.sets)
    assert answering > 0 and len(repeated) == len(train) + 2 * answering
    assert len(held_repeated) == len(held)
    with pytest.raises(ValueError, match="command_change_repeats must be a positive int, got 0"):
        _config(changed, command_change_repeats=0)
    assert "command_change_repeats" in TrainConfig.RESUMABLE_FIELDS


def test_data_order_is_a_function_of_seed_and_step(dataset_path):
    train, held = load_windows(_config(dataset_path))
    assert (len(train), len(held)) == (16, 16)  # 2 + 2 trajectories x (12 - 4) windows
    a, b = WindowSampler(train, 4, seed=3), WindowSampler(train, 4, seed=3)
    steps = [7, 0, 3, 7, 12]
    np.testing.assert_array_equal([a.indices(k) for k in steps], [b.indices(k) for k in reversed(steps)][::-1])
    # Epochs are permutations: steps 0-3 (16 windows) and 4-7 each visit every window once.
    for epoch in range(2):
        np.testing.assert_array_equal(np.sort(np.concatenate([a.indices(4 * epoch + k) for k in range(4)])),
                                      np.arange(16))
    assert not np.array_equal(WindowSampler(train, 4, seed=4).indices(0), a.indices(0))
    batch = a.batch(5)
    assert batch["states"].shape == (4, H + 1, 37) and batch["gait"].dtype == np.int32
    assert "expert_actions" not in batch
    # A pool of two sets numbers the second set's windows after the first's.
    pool = WindowPool([train.sets[0], train.sets[0]])
    np.testing.assert_array_equal(pool.batch([16, 17])["states"], train.batch([0, 1])["states"])


def test_loss_falls_by_5x(long_run):
    """lr 2e-4 (the default), B = 4, 16 windows: measured 0.92 at step 1 and ~0.05 over steps 251-300."""
    loss = _train_log(long_run["log"], "train/loss")
    assert len(loss) == 300 and all(np.isfinite(v) for v in loss.values())
    first, last = loss[1], np.mean([loss[k] for k in range(251, 301)])
    assert last < first / 5, (first, last)


def test_gradient_reaches_every_parameter(long_run):
    """AdaLN-Zero: at step 1 only the final projection (2 arrays) has a gradient; from step 3 on every array."""
    zero = _train_log(long_run["log"], "train/zero_grad_leaves")
    n_leaves = len(jax.tree.leaves(long_run["state"].params))
    assert zero[1] == n_leaves - 2
    assert all(zero[k] == 0 for k in range(3, 301)), {k: v for k, v in zero.items() if v}
    assert all(np.isfinite(v) and v > 0 for v in _train_log(long_run["log"], "train/grad_norm").values())


def test_metrics_file_and_evaluation(long_run):
    with open(os.path.join(long_run["workdir"], "metrics.jsonl")) as f:
        lines = [json.loads(ln) for ln in f]
    assert [ln["step"] for ln in lines if "train/loss" in ln] == list(range(1, 301))
    evals = [ln for ln in lines if "eval/tre" in ln]
    assert [ln["step"] for ln in evals] == [150, 300]
    for ln in evals:
        assert np.isfinite(ln["eval/tre"]) and ln["eval/tre"] > 0
        assert 0 <= ln["eval/sae"] < 1e-3  # samples are rollouts of their actions: float error only
    assert all(ln["train/windows_per_s"] > 0 for ln in lines[2:] if "train/loss" in ln)
    times = [ln["time"] for ln in lines]  # seconds since the Unix epoch, written in order
    assert times == sorted(times) and time.time() - 3600 < times[0] <= times[-1] <= time.time()


def test_checkpoint_round_trip_gives_identical_samples(long_run, dataset_path):
    ckpt = load_checkpoint(long_run["workdir"])  # a work directory: the newest checkpoint under it
    assert ckpt.step == 300 and ckpt.config == long_run["cfg"]
    assert ckpt.path.endswith(os.path.join("checkpoints", "300"))
    assert checkpoint.read_meta(ckpt.path)[checkpoint.KIND_KEY] == "dynaflow"
    assert ckpt.policy_defaults == {"execute_steps": 4, "ode_steps": ckpt.config.flow.ode_steps}  # no block: defaults
    train, _ = load_windows(ckpt.config)
    trained = {int(g) for s in train.sets for g in np.load(dataset_path)["gait"][s.trajectories]}
    assert ckpt.gaits == tuple(GAITS[g] for g in sorted(trained))  # the gaits of the training trajectories
    for a, b in zip(jax.tree.leaves(ckpt.state), jax.tree.leaves(long_run["state"])):
        np.testing.assert_array_equal(a, b)
    assert sorted(s for s, _ in checkpoint.step_dirs(os.path.join(long_run["workdir"], "checkpoints"))) == [150, 300]

    mesh = make_mesh()
    _, held = load_windows(ckpt.config)
    batch = shard_batch(held.batch(np.arange(4)), mesh)
    eval_fn = jit_eval_step(ckpt.config.dit_config, ckpt.config.flow, mesh)
    rng = replicate(jax.random.PRNGKey(7), mesh)
    m1, X1, U1 = eval_fn(replicate(long_run["state"].ema_params, mesh), batch, replicate(ckpt.normalizer, mesh), rng)
    m2, X2, U2 = eval_fn(replicate(ckpt.state.ema_params, mesh), batch, replicate(ckpt.normalizer, mesh), rng)
    np.testing.assert_array_equal(np.asarray(U1), np.asarray(U2))
    np.testing.assert_array_equal(np.asarray(X1), np.asarray(X2))
    assert float(np.abs(np.asarray(U1)).max()) > 0.01  # the trained model acts


def test_resume_gives_the_same_params_as_an_uninterrupted_run(dataset_path, tmp_path):
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    cfg = _config(dataset_path, steps=6)
    train_and_evaluate(cfg, straight)
    train_and_evaluate(dataclasses.replace(cfg, steps=3), split)
    with open(os.path.join(split, "metrics.jsonl"), "a") as f:  # as if the first run had logged past its checkpoint
        f.write(json.dumps({"step": 4, "train/loss": -1.0}) + "\n")
    with pytest.raises(FileExistsError, match="--resume"):
        train_and_evaluate(cfg, split)
    with pytest.raises(ValueError, match=r"cannot resume .*weight_decay: 0.0001 -> 0.1"):
        train_and_evaluate(dataclasses.replace(cfg, weight_decay=0.1), split, resume=True)
    with pytest.raises(ValueError, match="flow"):
        train_and_evaluate(dataclasses.replace(cfg, flow=dataclasses.replace(cfg.flow, ode_steps=2)), split,
                           resume=True)
    train_and_evaluate(cfg, split, resume=True)

    a, b = load_checkpoint(straight), load_checkpoint(split)
    assert a.step == b.step == 6
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a.state), jax.tree.leaves(b.state)):
        np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
    with open(os.path.join(split, "metrics.jsonl")) as f:
        steps = [json.loads(ln)["step"] for ln in f if "train/loss" in ln]
    assert steps == [1, 2, 3, 4, 5, 6]

    # anneal, on a smaller batch, from perturbed starts: the fields a continued run may change
    train_and_evaluate(dataclasses.replace(cfg, steps=7, lr=5e-5, batch_size=2, start_noise=0.5), split, resume=True)
    annealed = load_checkpoint(split)
    assert annealed.step == 7 and (annealed.config.lr, annealed.config.batch_size, annealed.config.start_noise) == (
        5e-5, 2, 0.5)
    with open(os.path.join(split, "metrics.jsonl")) as f:
        lrs = [json.loads(ln)["train/lr"] for ln in f if "train/loss" in ln]
    assert lrs == [cfg.lr] * 6 + [5e-5]


def test_truncated_corrupt_or_foreign_checkpoints_give_clear_errors(long_run, tmp_path):
    src = os.path.join(long_run["workdir"], "checkpoints", "300")

    def copy(name):
        dst = str(tmp_path / name)
        shutil.copytree(src, dst)
        return dst

    truncated = copy("truncated")
    state_file = os.path.join(truncated, checkpoint.STATE_FILE)
    with open(state_file, "r+b") as f:
        f.truncate(os.path.getsize(state_file) // 2)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)

    flipped = copy("flipped")
    with open(os.path.join(flipped, checkpoint.STATE_FILE), "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="corrupt: sha256"):
        load_checkpoint(flipped)

    bad_json = copy("bad_json")
    meta_file = os.path.join(bad_json, checkpoint.META_FILE)
    with open(meta_file, "r+b") as f:
        f.truncate(os.path.getsize(meta_file) - 10)
    with pytest.raises(CheckpointError, match="not valid JSON.*truncated or corrupt"):
        load_checkpoint(bad_json)

    foreign = copy("foreign")
    meta_file = os.path.join(foreign, checkpoint.META_FILE)
    with open(meta_file) as f:
        meta = json.load(f)
    meta["physics_hash"] = "0123456789abcdef"
    with open(meta_file, "w") as f:
        json.dump(meta, f)
    with pytest.raises(CheckpointError, match="physics hash 0123456789abcdef.*current physics"):
        load_checkpoint(foreign)
    assert load_checkpoint(foreign, allow_other_physics=True).step == 300

    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(str(tmp_path / "nothing_here"))


def test_failed_save_leaves_the_previous_checkpoint(long_run, tmp_path, monkeypatch):
    """A save that dies half way through writing its arrays (injected) leaves the previous one loadable."""
    directory = str(tmp_path / "checkpoints")
    ckpt = load_checkpoint(long_run["workdir"])
    save_checkpoint(directory, ckpt.state, ckpt.normalizer, ckpt.config)

    def dying_write(path, data):
        with open(path, "xb") as f:
            f.write(data[: len(data) // 2])
        raise OSError("disk full (injected)")

    monkeypatch.setattr(checkpoint, "_write_file", dying_write)
    with pytest.raises(OSError, match="injected"):
        save_checkpoint(directory, ckpt.state.replace(step=ckpt.state.step + 1), ckpt.normalizer, ckpt.config)
    monkeypatch.undo()
    assert [s for s, _ in checkpoint.step_dirs(directory)] == [300]
    assert os.listdir(directory) == ["300"]  # the failed save cleaned up its temporary directory
    assert load_checkpoint(directory).step == 300


KILLED_SAVE = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from dynaflow_policy import checkpoint as ck

    directory = sys.argv[1]
    ck.save(directory, 1, {"w": np.arange(1000.0)}, {"note": "first"})
    real_write = ck._write_file

    def write_half_then_hang(path, data):
        if path.endswith(ck.STATE_FILE):
            with open(path, "xb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            open(os.path.join(directory, "..", "half_written"), "w").close()
            time.sleep(120)
        real_write(path, data)

    ck._write_file = write_half_then_hang
    ck.save(directory, 2, {"w": np.arange(2000.0)}, {"note": "second"})
""")


def test_save_killed_mid_write_leaves_the_previous_checkpoint(tmp_path):
    """SIGKILL a real process while it writes checkpoint 2: checkpoint 1 loads, and the next save cleans up."""
    directory = tmp_path / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(directory)], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "half_written").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the saving process did not get mid-write"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    leftovers = [n for n in os.listdir(directory) if n.startswith(".tmp-2-")]
    assert len(leftovers) == 1 and os.listdir(directory / leftovers[0]) == [checkpoint.STATE_FILE]
    assert checkpoint.latest_checkpoint(directory).endswith("1")
    arrays, meta = checkpoint.restore(directory)
    assert meta["step"] == 1 and meta["note"] == "first"
    np.testing.assert_array_equal(arrays["w"], np.arange(1000.0))

    checkpoint.save(directory, 3, {"w": np.zeros(3)}, {}, keep=1)
    assert os.listdir(directory) == ["3"]  # leftovers and older checkpoints gone


def test_checkpoint_keeps_the_newest_k_and_replaces_a_step(tmp_path):
    for step in (5, 10, 15, 20):
        checkpoint.save(tmp_path, step, {"x": np.full(2, step)}, {}, keep=2)
    assert [s for s, _ in checkpoint.step_dirs(tmp_path)] == [15, 20]
    checkpoint.save(tmp_path, 20, {"x": np.full(2, -1)}, {}, keep=2)
    np.testing.assert_array_equal(checkpoint.restore(tmp_path)[0]["x"], [-1, -1])
    assert sorted(os.listdir(tmp_path)) == ["15", "20"]


TWO_DEVICES = textwrap.dedent("""
    import os, sys, json, functools
    from dynaflow_policy.devices import set_host_device_count
    set_host_device_count(2)
    from envs.compilation_cache import enable_compilation_cache
    enable_compilation_cache()
    import jax, numpy as np
    from dynaflow_policy import train
    from dynaflow_policy.configs import DiTConfig, TrainConfig
    from dynaflow_policy.data.pool import WindowSampler, fit_normalizer, load_windows
    from dynaflow_policy.devices import to_host
    from dynaflow_policy.train_state import init_train_state

    cfg = TrainConfig(dataset=(sys.argv[1],), horizon=4, batch_size=4, held_out_fraction=0.5,
                      dit=DiTConfig(d_model=32, depth=1, num_heads=2, mlp_ratio=2.0, horizon=4))
    pool, _ = load_windows(cfg)
    batch = WindowSampler(pool, 4, seed=0).batch(0)
    normalizer = fit_normalizer(pool, cfg)
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda p: np.asarray(p + 0.1 * rng.standard_normal(p.shape), np.float32),
                          to_host(jax.jit(functools.partial(init_train_state, cfg))().params))
    loss_fn = jax.jit(functools.partial(train.batch_loss, dit=cfg.dit_config, flow=cfg.flow))
    out = {"devices": jax.device_count()}
    for n in (1, 2):
        mesh = train.make_mesh(jax.devices()[:n])
        sharded = train.shard_batch(batch, mesh)
        out[f"shard_rows_{n}"] = sharded["states"].sharding.shard_shape(sharded["states"].shape)[0]
        loss, aux = loss_fn(train.replicate(params, mesh), sharded, train.replicate(normalizer, mesh),
                            train.replicate(jax.random.PRNGKey(0), mesh))
        out[f"loss_{n}"] = float(to_host(loss))
    try:
        train.shard_batch({"states": batch["states"][:3]}, train.make_mesh())
    except ValueError as e:
        out["error"] = str(e)
    print(json.dumps(out))
""")


def test_two_devices_give_the_same_loss_as_one(two_devices):
    stdout, stderr = two_devices.communicate(timeout=480)
    assert two_devices.returncode == 0, stderr[-3000:]
    out = json.loads(stdout.strip().splitlines()[-1])
    assert out["devices"] == 2 and out["shard_rows_1"] == 4 and out["shard_rows_2"] == 2
    assert out["loss_1"] > 0
    np.testing.assert_allclose(out["loss_2"], out["loss_1"], rtol=1e-5, atol=1e-6)
    assert "batch size 3" in out["error"] and "divisible by the number of devices 2" in out["error"]


@pytest.mark.slow
def test_cli_trains_and_resumes(dataset_path, tmp_path):
    """The script end to end: 2 steps, then --resume to 3 (tiny DiT through the dit:custom subcommand)."""
    base = [sys.executable, "-m", "dynaflow_policy.train", "--workdir", str(tmp_path), "--dataset", dataset_path,
            "--horizon", "4", "--batch-size", "4", "--held-out-fraction", "0.5", "--eval-windows", "4",
            "--log-every", "1", "--cpu-devices", "1"]
    tiny = ["dit:custom", "--dit.d-model", "32", "--dit.depth", "1", "--dit.num-heads", "2", "--dit.mlp-ratio", "2",
            "--dit.horizon", "4"]
    for extra in (["--steps", "2"], ["--steps", "3", "--resume"]):
        proc = subprocess.run(base + extra + tiny, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_checkpoint(str(tmp_path)).step == 3
    with open(tmp_path / "metrics.jsonl") as f:
        assert [json.loads(ln)["step"] for ln in f if "train/loss" in ln] == [1, 2, 3]


@pytest.mark.slow
def test_bench_script_runs():
    proc = subprocess.run([sys.executable, "eval/bench_train.py", "--batch-size", "4", "--horizon", "4",
                           "--repeats", "2", "--devices", "1"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio" in proc.stdout


def test_the_gait_clock_conditions_on_the_stored_phase(dataset_path, tmp_path):
    kinematic = str(tmp_path / "kinematic.npz")
    save_dataset(kinematic, generate_kinematic_dataset(4, 1.0, seed=0))
    flow = FlowConfig(gait_clock=True)
    cfg = _config(kinematic, flow=flow, dit=None)
    assert cfg.dit_config.cond_dim == flow.cond_dim == 15
    with pytest.raises(ValueError, match="cond_dim must be 15"):
        _config(kinematic, flow=flow)  # the explicit tiny DiT has cond_dim 7
    batch = load_windows(cfg)[0].batch(np.arange(6))
    _, cond = prepare_batch(batch, flow)
    np.testing.assert_allclose(cond[:, 7:], gait_clock(batch["phase"], batch["gait"]), atol=1e-6)
    with pytest.raises(ValueError, match="feasible.npz: --flow.gait-clock .* stores none"):
        load_windows(_config(dataset_path, flow=flow, dit=None))
