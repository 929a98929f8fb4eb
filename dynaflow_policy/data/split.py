"""Evaluation windows that a trained checkpoint never saw, rebuilt from its ``config.json``.

A training run splits each of its datasets by trajectory
(:func:`dynaflow_policy.data.windows.train_held_out_windows` with the run's
``held_out_fraction`` and ``seed``, windows of H + 1 states). The split is a
function of those numbers and the file alone, so it is rebuilt here from the
checkpoint's stored training config; no weights are loaded.

Rule of :func:`held_out_windows_for`, for a data file and some checkpoints:

- if a checkpoint trained on the file (same basename among its datasets), the
  evaluation windows are those of the trajectories it held out, and every such
  checkpoint must have made the same split;
- otherwise the whole file is evaluation data (the committed ``data/*_small.npz``
  files are made with other seeds than the training sets).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import numpy as np

from dynaflow_policy import checkpoint
from dynaflow_policy.data.schema import load_dataset
from dynaflow_policy.data.windows import WindowSet, constant_command, train_held_out_windows
from dynaflow_policy.frames import to_heading_frame
from dynaflow_policy.normalizer import Normalizer

_TRAIN_CONFIG_KEYS: dict[str, tuple[str, ...]] = {"dynaflow": ("train_config",),
                                                  "state_flow": ("baseline_config", "train")}
"""Where each trained checkpoint kind keeps its training config in ``config.json``."""

NORMALIZER_STRIDE = 7
"""Every 7th window of the whole file fits the normaliser when no checkpoint provides one."""


@dataclasses.dataclass(frozen=True)
class TrainingSplit:
    """What a training run trained on and how it split it.

    Attributes:
      datasets: basenames of the run's dataset files.
      held_out_fraction: fraction of each gait's trajectories held out.
      seed: split seed.
      horizon: H of the run's windows.
      normalizer: the normaliser the run trained with.
    """

    datasets: frozenset[str]
    held_out_fraction: float
    seed: int
    horizon: int
    normalizer: Normalizer


@dataclasses.dataclass(frozen=True)
class HeldOutWindows:
    """Evaluation windows of one data file.

    Attributes:
      batch: :meth:`WindowSet.batch` of the chosen windows: ``states`` (B, H+1, 37),
        ``command`` (B, 3), ``gait`` (B,), ``expert_actions`` (B, H, 12) if the file has them, ...
      normalizer: the first checkpoint's normaliser, or one fitted on the file's windows.
      rule: which windows these are, in words.
    """

    batch: dict[str, np.ndarray]
    normalizer: Normalizer
    rule: str


def training_split(path: str | os.PathLike) -> TrainingSplit:
    """The split of a DynaFlow or state-flow checkpoint (any path ``checkpoint.resolve`` accepts).

    Raises:
      dynaflow_policy.checkpoint.CheckpointError: no checkpoint, a kind not trained on
        windows (PPO), or a ``config.json`` without the training config.
    """
    resolved = checkpoint.resolve(path)
    meta = checkpoint.read_meta(resolved)
    kind = checkpoint.kind_of_meta(meta, resolved)
    if kind not in _TRAIN_CONFIG_KEYS:
        raise checkpoint.CheckpointError(f"{resolved}: a {kind} checkpoint was not trained on dataset windows; "
                                         f"it has no held-out split (kinds with one: {list(_TRAIN_CONFIG_KEYS)})")
    try:
        config: Any = meta
        for key in _TRAIN_CONFIG_KEYS[kind]:
            config = config[key]
        return TrainingSplit(datasets=frozenset(os.path.basename(p) for p in config["dataset"]),
                             held_out_fraction=float(config["held_out_fraction"]), seed=int(config["seed"]),
                             horizon=int(config["horizon"]), normalizer=Normalizer.from_dict(meta["normalizer"]))
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{resolved}: bad training config in {checkpoint.META_FILE}: "
                                         f"{type(e).__name__}: {e}") from e


def held_out_windows_for(splits: Sequence[TrainingSplit], data_path: str | os.PathLike, windows: int, seed: int,
                         horizon: int = 16, constant_command_only: bool = False) -> HeldOutWindows:
    """Up to ``windows`` evaluation windows of ``data_path`` that none of ``splits`` trained on (module docstring).

    Args:
      splits: the checkpoints' splits; the first one's normaliser and horizon are used.
      data_path: the data file (.npz).
      windows: number of windows, drawn without replacement with ``np.random.default_rng(seed)``
        and returned in index order.
      seed: seed of that draw.
      horizon: H when ``splits`` is empty.
      constant_command_only: draw only windows whose command does not change over them
        (:func:`constant_command`), which a model told (x0, c) can reproduce.

    Raises:
      ValueError: checkpoints trained on the file with different (fraction, seed, horizon), or
        ``constant_command_only`` and no such window.
    """
    normalizer = splits[0].normalizer if splits else None
    horizon = splits[0].horizon if splits else horizon
    dataset = load_dataset(data_path, horizon=horizon)
    trained_on = [s for s in splits if os.path.basename(data_path) in s.datasets]
    if trained_on:
        keys = {(s.held_out_fraction, s.seed, s.horizon) for s in trained_on}
        if len(keys) > 1:
            raise ValueError(f"{data_path}: the checkpoints trained on it with different held-out splits "
                             f"(fraction, seed, horizon) {sorted(keys)}: their held-out windows differ")
        fraction, split_seed, _ = keys.pop()
        fit_set, held = train_held_out_windows(dataset, horizon, fraction, split_seed)
        rule = f"the trajectories held out of training (fraction {fraction}, seed {split_seed})"
    else:
        held = fit_set = WindowSet(dataset, horizon)
        rule = "the whole file (no checkpoint trained on it)"
    pool = np.arange(len(held))
    if constant_command_only:
        pool = np.flatnonzero(constant_command(held))
        if not len(pool):
            raise ValueError(f"{data_path}: no held-out window holds its command constant")
        rule += ", windows of constant command"
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(pool, size=min(windows, len(pool)), replace=False))
    if normalizer is None:
        states = fit_set.batch(np.arange(0, len(fit_set), NORMALIZER_STRIDE))["states"]  # (W, H+1, 37)
        normalizer = Normalizer.fit(to_heading_frame(states))
    return HeldOutWindows(held.batch(idx), normalizer, rule)
