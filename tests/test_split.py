"""dynaflow_policy.data.split: a checkpoint's training split read back, and the evaluation windows it implies."""

import dataclasses

import numpy as np
import pytest

from artifacts import write_dynaflow_checkpoint, write_ppo_expert
from dynaflow_policy.checkpoint import CheckpointError
from dynaflow_policy.data import load_dataset, save_dataset, split_trajectories
from dynaflow_policy.data.kinematic import generate_kinematic_dataset
from dynaflow_policy.data.split import TrainingSplit, held_out_windows_for, training_split
from dynaflow_policy.frames import to_heading_frame
from dynaflow_policy.normalizer import Normalizer

H = 8


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "gaits.npz"
    save_dataset(path, generate_kinematic_dataset(8, 1.0, seed=0))
    return str(path)


def _split(datasets=("gaits.npz",), seed=0) -> TrainingSplit:
    X = np.random.default_rng(seed).standard_normal((4, H + 1, 37))
    return TrainingSplit(frozenset(datasets), 0.25, seed, H, Normalizer.fit(to_heading_frame(X)))


def test_training_split_of_a_checkpoint(tmp_path):
    path = write_dynaflow_checkpoint(tmp_path / "run" / "checkpoints", horizon=H)
    split = training_split(tmp_path / "run" / "checkpoints")  # the newest step directory under it
    assert (split.datasets, split.held_out_fraction, split.seed, split.horizon) == (frozenset(), 0.1, 0, H)
    again = training_split(path)
    assert again.datasets == split.datasets
    np.testing.assert_array_equal(again.normalizer.std, split.normalizer.std)
    with pytest.raises(CheckpointError, match="no held-out split"):
        training_split(write_ppo_expert(tmp_path / "ppo", out_scale=0.0))


def test_windows_of_a_file_a_checkpoint_trained_on_come_from_its_held_out_trajectories(data_file):
    split = _split()
    held = held_out_windows_for([split, _split(datasets=("other.npz",), seed=1)], data_file, windows=5, seed=0)
    _, held_out = split_trajectories(load_dataset(data_file, horizon=H).gait, 0.25, 0)
    assert held.batch["states"].shape == (5, H + 1, 37) and set(held.batch["trajectory"]) <= set(held_out)
    assert held.normalizer is split.normalizer and "held out of training (fraction 0.25, seed 0)" in held.rule
    again = held_out_windows_for([split], data_file, windows=5, seed=0)
    np.testing.assert_array_equal(again.batch["states"], held.batch["states"])  # a function of the seed


def test_a_file_no_checkpoint_trained_on_is_evaluated_whole(data_file):
    held = held_out_windows_for([], data_file, windows=10_000, seed=0, horizon=H)
    n = load_dataset(data_file, horizon=H)
    assert len(held.batch["states"]) == n.n_trajectories * (n.n_steps - H) and "whole file" in held.rule
    assert held.normalizer.std.shape == (37,)
    other = held_out_windows_for([_split(datasets=("other.npz",))], data_file, windows=3, seed=0)
    assert "whole file" in other.rule and other.normalizer is not None


def test_checkpoints_that_split_the_file_differently_are_refused(data_file):
    with pytest.raises(ValueError, match="different held-out splits"):
        held_out_windows_for([_split(seed=0), _split(seed=1)], data_file, windows=3, seed=0)


def test_constant_command_windows_and_a_file_without_any(data_file, tmp_path):
    ds = load_dataset(data_file)
    commands = ds.commands.copy()
    commands[0, H + 5:] += 0.1  # trajectory 0 changes its command once; the others hold theirs
    changed = tmp_path / "changed.npz"
    save_dataset(changed, dataclasses.replace(ds, commands=commands))
    held = held_out_windows_for([], changed, windows=10_000, seed=0, horizon=H, constant_command_only=True)
    n = load_dataset(changed, horizon=H)
    assert len(held.batch["states"]) == n.n_trajectories * (n.n_steps - H) - H  # the H windows over the change
    assert "constant command" in held.rule
    commands[:, 1::2] += 0.1  # every step changes it
    save_dataset(changed, dataclasses.replace(ds, commands=commands))
    with pytest.raises(ValueError, match="constant"):
        held_out_windows_for([], changed, windows=5, seed=0, horizon=H, constant_command_only=True)
