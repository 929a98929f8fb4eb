"""Fitted action labels: they recover the expert's actions from states alone, resume, and refuse other data."""

import dataclasses
import json
import os

import numpy as np
import pytest

from dynaflow_policy.data import labels
from dynaflow_policy.data.schema import load_dataset, save_dataset

SMALL_EXPERT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                                 "go1_expert_small.npz")

FIT = labels.FitConfig(chunk_trajectories=2)


def _small(tmp_path, name="demo.npz", n=3, t=24):
    ds = load_dataset(SMALL_EXPERT_DATA)
    small = dataclasses.replace(ds, states=ds.states[:n, :t], commands=ds.commands[:n, :t], gait=ds.gait[:n],
                                expert_actions=ds.expert_actions[:n, :t])
    path = os.fspath(tmp_path / name)
    save_dataset(path, small)
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    path = _small(tmp_path_factory.mktemp("labels"))
    return path, labels.fit_labels(path, FIT, workers=1, progress=False)


def test_labels_recover_expert_actions(fitted):
    path, report = fitted
    actions, residual = labels.load_labels(path)
    assert actions.shape == (3, 23, 12) and residual.shape == (3, 23)
    assert report["transitions"] == 69
    assert report["fraction_exact"] > 0.8  # feasible data: most steps are matched to float32 rounding
    assert report["fitted_vs_expert_rmse"] < 0.1
    assert report["fitted_vs_expert_median_abs"] < 1e-3


def test_a_killed_fit_resumes_without_redoing_finished_chunks(fitted, tmp_path, monkeypatch):
    path = _small(tmp_path)
    directory = labels.cache_dir(path)
    calls = []
    real = labels.fit_chunk

    def dies_on_second_chunk(states, scale, fit, chunk_seed):
        if chunk_seed == 2:
            raise KeyboardInterrupt  # the process is killed while fitting the second chunk
        calls.append(chunk_seed)
        return real(states, scale, fit, chunk_seed)

    monkeypatch.setattr(labels, "fit_chunk", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        labels.fit_labels(path, FIT, workers=1, progress=False)
    assert sorted(os.listdir(directory)) == ["chunk-000000.npz", labels.META_FILE]
    with pytest.raises(labels.LabelsError, match="not finished"):
        labels.load_labels(path)

    monkeypatch.setattr(labels, "fit_chunk", lambda *a: (calls.append(a[3]), real(*a))[1])
    labels.fit_labels(path, FIT, workers=1, progress=False)
    assert calls == [0, 2]  # chunk 0 once, before the kill; chunk 2 after
    np.testing.assert_array_equal(labels.load_labels(path)[0], labels.load_labels(fitted[0])[0])


def test_a_cache_of_other_data_is_refused(fitted, tmp_path):
    path, _ = fitted
    other = _small(tmp_path, "other.npz", n=2)
    os.rename(labels.cache_dir(path), labels.cache_dir(other))  # the cache now sits beside another file
    try:
        with pytest.raises(labels.LabelsError, match=r"demo\.npz.*other\.npz.*'file'.*'n_trajectories'"):
            labels.load_labels(other)
    finally:
        os.rename(labels.cache_dir(other), labels.cache_dir(path))


def test_a_cache_of_other_physics_or_settings_is_refused(fitted):
    path, _ = fitted
    meta_path = os.path.join(labels.cache_dir(path), labels.META_FILE)
    original = open(meta_path).read()
    try:
        meta = json.loads(original)
        meta["dataset"]["physics_hash"] = "0" * 64
        open(meta_path, "w").write(json.dumps(meta))
        with pytest.raises(labels.LabelsError, match="physics_hash"):
            labels.load_labels(path)
        with pytest.raises(labels.LabelsError, match="fitted with"):
            meta = json.loads(original)
            open(meta_path, "w").write(json.dumps(meta))
            labels.fit_labels(path, dataclasses.replace(FIT, starts=3), workers=1, progress=False)
    finally:
        open(meta_path, "w").write(original)


@pytest.mark.parametrize("flag, value", [("starts", 1), ("iterations", 0), ("tolerance", 0.0),
                                         ("chunk_trajectories", -1)])
def test_fit_options_are_validated_by_name(flag, value):
    with pytest.raises(ValueError, match=f"--{flag.replace('_', '-')}"):
        labels.FitConfig(**{flag: value})
