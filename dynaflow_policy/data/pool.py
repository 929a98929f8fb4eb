"""The training data of a run: pooled windows of several dataset files, their seeded order and normaliser.

::

    dataset files ─ load_windows ─► WindowPool (train), WindowPool (held out)    split by trajectory
    WindowPool ─ WindowSampler.batch(step) ─► states (B, H+1, 37), command (B, 3), gait (B,)
                                               [, labels (B, H, 12): fitted actions, with TrainConfig.uses_labels]
                                               [, phase (B,): gait phase, when every file stores it]
    WindowPool ─ fit_normalizer ─► Normalizer of (at most NORMALIZER_WINDOWS) heading-frame windows
    WindowPool ─ eval_batch ─► a fixed set of held-out windows for every evaluation
    batch ─ prepare_batch (on the device) ─► X_1 (B, H+1, 37) heading frame, c (B, 7; 15 with the gait clock)

Every random choice here is a seeded stream of ``np.random.default_rng((seed,
tag, ...))``; the tags (:data:`DATA_STREAM`, :data:`EVAL_STREAM`,
:data:`NORMALIZER_STREAM`) keep the streams of one seed apart. The data order
is therefore a function of (seed, step) alone, which is what lets a resumed run
continue the same order.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dynaflow_policy.configs import DiTTrainConfig, FlowConfig, conditioning
from dynaflow_policy.data.labels import load_labels
from dynaflow_policy.data.schema import load_dataset
from dynaflow_policy.data.windows import WindowSet, after_command_change, train_held_out_windows
from dynaflow_policy.frames import to_heading_frame
from dynaflow_policy.normalizer import Normalizer
from envs.task import GAITS

NORMALIZER_WINDOWS = 20_000
"""The normaliser is fitted on at most this many training windows (a seeded random subset)."""

DATA_STREAM, EVAL_STREAM, NORMALIZER_STREAM = 1, 2, 3
"""Tags that separate the seeded streams of one seed: data order, held-out evaluation, normaliser subset."""

NO_DATASET = ("no dataset given: pass --dataset PATH.npz (one or more files in the schema of "
              "dynaflow_policy.data.schema). A kinematic gait dataset is made by\n"
              "  python -m dynaflow_policy.data.kinematic --out data/kinematic.npz\n"
              "(the paper's infeasible retargeting data; feasible demonstrations come from the RL expert).")


class WindowPool:
    """The windows of several :class:`WindowSet`s, numbered one after the other.

    Args:
      sets: window sets (e.g. the training windows of each dataset file).
    """

    def __init__(self, sets: Sequence[WindowSet]):
        self.sets = [s for s in sets if len(s)]
        self._ends = np.cumsum([len(s) for s in self.sets], dtype=np.int64)  # (S,)
        self.has_expert_actions = bool(self.sets) and all(s.has_expert_actions for s in self.sets)
        self.has_labels = bool(self.sets) and all(s.has_labels for s in self.sets)
        self.has_phase = bool(self.sets) and all(s.dataset.phase is not None for s in self.sets)

    def __len__(self) -> int:
        return int(self._ends[-1]) if self.sets else 0

    @property
    def gaits(self) -> tuple[str, ...]:
        """Names of the gaits of the pool's trajectories, in ``envs.task.GAITS`` order."""
        present = set()
        for s in self.sets:
            present.update(np.unique(s.dataset.gait[s.trajectories]).tolist())
        return tuple(g for i, g in enumerate(GAITS) if i in present)

    def batch(self, indices: np.ndarray, expert_actions: bool = False, labels: bool = False) -> dict[str, np.ndarray]:
        """Gathers windows: ``states`` (B, H+1, 37) float32, ``command`` (B, 3) float32, ``gait`` (B,) int32,
        ``expert_actions`` (B, H, 12) float32 if asked for (evaluation only; never used for training), and
        ``labels`` (B, H, 12) float32 fitted actions if asked for (every set must have them), and ``phase`` (B,)
        float32 gait phases when every set's dataset stores them."""
        if labels and not self.has_labels:
            raise ValueError("labels asked for, but some dataset of the pool was loaded without its fitted labels")
        idx = np.asarray(indices, np.int64)
        which = np.searchsorted(self._ends, idx, side="right")  # (B,) set of each window
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"window indices must be in [0, {len(self)}), got min {idx.min()} max {idx.max()}")
        keys = ("states", "command", "gait") + (("expert_actions",) if expert_actions else ()) + \
            (("labels",) if labels else ()) + (("phase",) if self.has_phase else ())
        out: dict[str, np.ndarray] = {}
        for s in np.unique(which):
            rows = np.flatnonzero(which == s)
            local = idx[rows] - (self._ends[s - 1] if s else 0)
            part = self.sets[s].batch(local)
            for k in keys:
                if k not in out:
                    out[k] = np.empty((idx.size,) + part[k].shape[1:], part[k].dtype)
                out[k][rows] = part[k]
        out["gait"] = out["gait"].astype(np.int32)
        return out


def load_windows(config: DiTTrainConfig, labels: bool = False) -> tuple[WindowPool, WindowPool]:
    """Loads and validates every file of ``config.dataset``; splits each by trajectory into training and
    held-out windows of ``config.horizon`` (``held_out_fraction``, ``seed``).

    Args:
      config: the run's data fields.
      labels: also load each file's fitted action labels (``dynaflow_policy.data.labels``).

    Raises:
      ValueError: no dataset (:data:`NO_DATASET`).
      dynaflow_policy.data.schema.DatasetError: a file that does not fit the schema.
      dynaflow_policy.data.labels.LabelsError: labels asked for and a file has none, or other data's.
      ValueError: ``config.flow.gait_clock`` and a file without the gait phase (naming it).
    """
    if not config.dataset:
        raise ValueError(NO_DATASET)
    train, held = [], []
    for path in config.dataset:
        ds = load_dataset(path, horizon=config.horizon)
        if config.flow.gait_clock and ds.phase is None:
            raise ValueError(f"{path}: --flow.gait-clock conditions on the gait phase, but this dataset stores "
                             "none (the 'phase' field; python -m dynaflow_policy.data.kinematic writes it)")
        fitted = load_labels(path, ds)[0] if labels else None
        tr, ho = train_held_out_windows(ds, config.horizon, config.held_out_fraction, config.seed, labels=fitted,
                                        constant_command_only=config.constant_command_windows)
        if config.command_change_repeats > 1:
            tr.repeat_where(after_command_change(tr), config.command_change_repeats)
        train.append(tr)
        held.append(ho)
    return WindowPool(train), WindowPool(held)


class WindowSampler:
    """Training batch indices as a function of (seed, step) only.

    Epochs of a fixed length (the pool size N) are drawn without replacement:
    index i of step k is entry ``p % N`` of the permutation of epoch ``p // N``,
    with ``p = k * B + i`` and that permutation drawn by
    ``np.random.default_rng((seed, DATA_STREAM, epoch))``. Any step can be produced
    directly, which is what makes ``--resume`` continue the same data order.
    """

    def __init__(self, pool: WindowPool, batch_size: int, seed: int):
        if len(pool) == 0:
            raise ValueError("no training windows (every trajectory is held out or shorter than H + 1, or, with "
                             "--constant-command-windows, every window's command changes inside it)")
        self.pool, self.batch_size, self.seed = pool, batch_size, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) >= 2:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng((self.seed, DATA_STREAM, epoch)).permutation(len(self.pool))
        return self._perms[epoch]

    def indices(self, step: int) -> np.ndarray:
        """(B,) window indices of step ``step``."""
        n = len(self.pool)
        pos = step * self.batch_size + np.arange(self.batch_size, dtype=np.int64)  # (B,)
        out = np.empty(self.batch_size, np.int64)
        for epoch in np.unique(pos // n):
            mask = pos // n == epoch
            out[mask] = self._perm(int(epoch))[pos[mask] % n]
        return out

    def batch(self, step: int, labels: bool = False) -> dict[str, np.ndarray]:
        """Host batch of step ``step`` (see :meth:`WindowPool.batch`), without expert actions, with labels if asked."""
        return self.pool.batch(self.indices(step), labels=labels)


def fit_normalizer(pool: WindowPool, config: DiTTrainConfig) -> Normalizer:
    """Normaliser of the training windows (heading frame unless ``config.flow.heading_frame`` is False).

    Uses at most :data:`NORMALIZER_WINDOWS` windows, a subset drawn with ``config.seed``.
    """
    n = len(pool)
    idx = np.arange(n) if n <= NORMALIZER_WINDOWS else np.sort(
        np.random.default_rng((config.seed, NORMALIZER_STREAM)).choice(n, NORMALIZER_WINDOWS, replace=False))
    states = pool.batch(idx)["states"]  # (N, H+1, 37)
    return Normalizer.fit(to_heading_frame(states) if config.flow.heading_frame else states)


def eval_batch(pool: WindowPool, size: int, seed: int) -> dict[str, np.ndarray] | None:
    """A fixed set of ``size`` held-out windows (repeated if the pool is smaller), or None if it is empty.

    Returns:
      :meth:`WindowPool.batch` of the windows, with ``expert_actions`` (B, H, 12) if every set has them.
    """
    if len(pool) == 0:
        return None
    order = np.random.default_rng((seed, EVAL_STREAM)).permutation(len(pool))
    return pool.batch(np.resize(order, size), expert_actions=pool.has_expert_actions)


def prepare_batch(batch: dict[str, jax.Array], flow: FlowConfig) -> tuple[jax.Array, jax.Array]:
    """Device side of the data pipeline.

    Args:
      batch: ``states`` (B, H+1, 37) world frame, ``command`` (B, 3), ``gait`` (B,) int, and ``phase`` (B,)
        with ``flow.gait_clock``.
      flow: flow config (``heading_frame``, ``gait_clock``).

    Returns:
      X_1 (B, H+1, 37) in the heading frame of each window's first state (world frame
      if ``flow.heading_frame`` is False), and c (B, ``flow.cond_dim``).
    """
    states = batch["states"]
    x1 = to_heading_frame(states, jnp) if flow.heading_frame else states  # (B, H+1, 37)
    return x1, conditioning(batch["command"], batch["gait"], jnp, batch["phase"] if flow.gait_clock else None)
