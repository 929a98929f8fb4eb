"""Training on fitted action labels: the regression stage learns (here with own-plan inputs), and a run
continues with the matching loss and the auxiliary label term."""

import dataclasses
import os

import numpy as np
import pytest

from dynaflow_policy.configs import TrainConfig
from dynaflow_policy.data import labels as labels_lib
from dynaflow_policy.run_log import METRICS_FILE, read_metrics
from dynaflow_policy.train import train_and_evaluate
from tests.test_train import _config, make_dataset


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("labelled") / "feasible.npz")
    make_dataset(path)
    report = labels_lib.fit_labels(path, labels_lib.FitConfig(chunk_trajectories=2), workers=1, progress=False)
    return path, report


def test_labels_of_replayed_actions_are_those_actions(labelled):
    _, report = labelled
    assert report["fraction_exact"] > 0.9
    assert report["residual_median"] < 1e-4


def test_regression_on_labels_learns_then_the_matching_loss_continues(labelled, tmp_path):
    path, _ = labelled
    workdir = str(tmp_path / "run")
    train_and_evaluate(_config(path, objective="labels", own_plan_fraction=0.5, steps=150, lr=3e-3, log_every=10),
                       workdir)
    rows = [r for r in read_metrics(os.path.join(workdir, METRICS_FILE)) if "train/label_mse" in r]
    first, last = rows[0]["train/label_mse"], rows[-1]["train/label_mse"]
    assert last < 0.3 * first, (first, last)

    train_and_evaluate(_config(path, objective="matching", label_weight=0.5, steps=152, lr=3e-3, log_every=1),
                       workdir, resume=True)
    tail = [r for r in read_metrics(os.path.join(workdir, METRICS_FILE)) if "train/loss" in r][-1]
    assert tail["step"] == 152
    np.testing.assert_allclose(tail["train/loss"], tail["train/matching_loss"] + 0.5 * tail["train/label_mse"],
                               rtol=1e-5)


def test_the_plan_head_learns_the_labels_of_the_start_state_on_its_own(labelled, tmp_path):
    """plan_head_weight: the head, which sees only (x0, c), is regressed on the labels; its term is part of the loss."""
    path, _ = labelled
    workdir = str(tmp_path / "run")
    dit = dataclasses.replace(_config(path).dit, plan_head_width=32)
    train_and_evaluate(_config(path, objective="labels", plan_head_weight=2.0, dit=dit, steps=150, lr=3e-3,
                               log_every=10), workdir)
    rows = [r for r in read_metrics(os.path.join(workdir, METRICS_FILE)) if "train/plan_head_mse" in r]
    assert rows[-1]["train/plan_head_mse"] < 0.3 * rows[0]["train/plan_head_mse"], (rows[0], rows[-1])
    np.testing.assert_allclose(rows[-1]["train/loss"],
                               rows[-1]["train/label_mse"] + 2.0 * rows[-1]["train/plan_head_mse"], rtol=1e-5)


def test_training_on_labels_that_were_never_fitted_names_the_file(tmp_path):
    path = str(tmp_path / "unlabelled.npz")
    make_dataset(path)
    with pytest.raises(labels_lib.LabelsError, match="unlabelled.npz"):
        train_and_evaluate(_config(path, objective="labels"), str(tmp_path / "run"))


@pytest.mark.parametrize("overrides, option", [(dict(objective="labels", label_weight=1.0), "--label-weight"),
                                               (dict(label_weight=-1.0), "--label-weight"),
                                               (dict(own_plan_fraction=1.5), "--own-plan-fraction"),
                                               (dict(objective="states"), "--objective"),
                                               (dict(plan_head_weight=-1.0), "--plan-head-weight"),
                                               (dict(plan_head_weight=1.0), "--plan-head-weight.*plan-head-width")])
def test_label_options_are_validated_by_name(overrides, option):
    with pytest.raises(ValueError, match=option):
        TrainConfig(**overrides)
