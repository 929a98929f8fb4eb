"""Training windows: every run of H + 1 consecutive states of a :class:`Dataset`.

A window starting at step s of trajectory n::

    states   s   s+1  ...  s+H        (H+1, 37)   X_1 of the flow-matching loss
    actions  s   s+1  ...  s+H-1      (H, 12)     expert actions, if the dataset has them
    command  s                        (3,)        the command at the window start
    gait     n                        ()          the trajectory's gait
    phase    s                        ()          the gait phase at the window start, if the dataset has it

Windows are held as two index arrays (trajectory, start) into the dataset;
:meth:`WindowSet.batch` gathers the requested windows on demand, so memory is
O(number of windows) integers plus one batch, never a copy of every window.
States are raw (world frame); the heading frame and the normaliser are applied
downstream.

The train / held-out split is by trajectory: a held-out window never shares a
trajectory with a training window, so overlapping windows cannot leak.
"""

from __future__ import annotations

import numpy as np

from dynaflow_policy.data.schema import Dataset


def window_starts(n_steps: int, horizon: int, stride: int = 1) -> np.ndarray:
    """Start steps of the windows of one trajectory of ``n_steps`` states.

    Returns:
      (W,) int64 starts 0, stride, ..., with W = (n_steps - horizon - 1) // stride + 1
      (0 when n_steps < horizon + 1).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return np.arange(0, n_steps - horizon, stride, dtype=np.int64)


class WindowSet:
    """The windows of some trajectories of a dataset, gathered on demand.

    Args:
      dataset: the dataset (not copied).
      horizon: H; a window holds H + 1 states.
      trajectories: trajectory indices to draw windows from (default: all), in
        the order their windows are numbered.
      stride: steps between consecutive window starts.
      labels: (N, T-1, 12) fitted action labels of the dataset's transitions
        (``dynaflow_policy.data.labels``), or None.
      constant_command_only: keep only the windows whose command is the same at all H + 1 states
        (:func:`constant_command`): a planner is told one command for its whole plan, and a window whose
        command changes shows the demonstrator answering a command the model is not told.

    Attributes:
      dataset, horizon, stride, labels.
      trajectories: (M,) int64, the trajectories used.
      traj_index: (W,) int64, trajectory of each window.
      start: (W,) int64, first step of each window.
    """

    def __init__(self, dataset: Dataset, horizon: int, trajectories=None, stride: int = 1,
                 labels: np.ndarray | None = None, constant_command_only: bool = False):
        if labels is not None and np.shape(labels) != (dataset.n_trajectories, dataset.n_steps - 1, 12):
            raise ValueError(f"labels must have shape (N, T-1, 12) = ({dataset.n_trajectories}, "
                             f"{dataset.n_steps - 1}, 12) for this dataset, got {np.shape(labels)}")
        self.dataset = dataset
        self.labels = labels
        self.horizon = int(horizon)
        self.stride = int(stride)
        n, t = dataset.n_trajectories, dataset.n_steps
        traj = np.arange(n, dtype=np.int64) if trajectories is None else np.asarray(trajectories, np.int64)
        if traj.ndim != 1 or (traj.size and (traj.min() < 0 or traj.max() >= n)):
            raise ValueError(f"trajectories must be a 1-D array of indices in [0, {n}), got {traj!r}")
        starts = window_starts(t, self.horizon, self.stride)  # (S,)
        if starts.size == 0:
            raise ValueError(f"trajectories have T = {t} states; a window needs horizon + 1 = {self.horizon + 1}")
        self.trajectories = traj
        self.traj_index = np.repeat(traj, starts.size)  # (W,)
        self.start = np.tile(starts, traj.size)  # (W,)
        self._offsets = np.arange(self.horizon + 1, dtype=np.int64)  # (H+1,)
        if constant_command_only:
            keep = constant_command(self)  # (W,)
            self.traj_index, self.start = self.traj_index[keep], self.start[keep]

    def __len__(self) -> int:
        return int(self.start.size)

    def repeat_where(self, mask: np.ndarray, times: int) -> None:
        """Numbers the windows of ``mask`` (W,) bool ``times`` times in all, so a uniform draw over the set
        picks them ``times`` times as often (e.g. :func:`after_command_change`); ``times`` >= 1."""
        mask = np.asarray(mask, bool)
        if mask.shape != self.start.shape:
            raise ValueError(f"mask must have shape {self.start.shape}, got {mask.shape}")
        if not isinstance(times, (int, np.integer)) or times < 1:
            raise ValueError(f"times must be an int >= 1, got {times!r}")
        extra = np.tile(np.flatnonzero(mask), times - 1)  # ((times - 1) * M,)
        self.traj_index = np.concatenate([self.traj_index, self.traj_index[extra]])
        self.start = np.concatenate([self.start, self.start[extra]])

    @property
    def has_expert_actions(self) -> bool:
        return self.dataset.expert_actions is not None

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    def batch(self, indices) -> dict[str, np.ndarray]:
        """Gathers windows.

        Args:
          indices: (B,) window indices in [0, len(self)) (any integer array-like).

        Returns:
          dict with
            ``states``: (B, H+1, 37) float32;
            ``command``: (B, 3) float32, the command at each window's first state;
            ``gait``: (B,) int64;
            ``expert_actions``: (B, H, 12) float32, only if the dataset has them;
            ``labels``: (B, H, 12) float32 fitted actions, only if the set has labels;
            ``phase``: (B,) float32 gait phase at each window's first state, only if the dataset has it;
            ``trajectory``: (B,) int64 and ``start``: (B,) int64, where each window came from.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"window indices must be in [0, {len(self)}), got min {idx.min()} max {idx.max()}")
        traj = self.traj_index[idx]  # (B,)
        start = self.start[idx]  # (B,)
        steps = start[..., None] + self._offsets  # (B, H+1)
        ds = self.dataset
        out = {
            "states": ds.states[traj[..., None], steps],  # (B, H+1, 37)
            "command": ds.commands[traj, start],  # (B, 3)
            "gait": ds.gait[traj],  # (B,)
            "trajectory": traj,
            "start": start,
        }
        if ds.expert_actions is not None:
            out["expert_actions"] = ds.expert_actions[traj[..., None], steps[..., :-1]]  # (B, H, 12)
        if self.labels is not None:
            out["labels"] = self.labels[traj[..., None], steps[..., :-1]]  # (B, H, 12)
        if ds.phase is not None:
            out["phase"] = ds.phase[traj, start]  # (B,)
        return out

    def all(self) -> dict[str, np.ndarray]:
        """Every window at once (only for small sets: this copies them all)."""
        return self.batch(np.arange(len(self)))

    def iterate(self, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = False):
        """Yields batches over one pass, shuffled if ``rng`` is given."""
        order = np.arange(len(self)) if rng is None else rng.permutation(len(self))
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for i in range(0, stop, batch_size):
            yield self.batch(order[i:i + batch_size])


def command_changes(commands: np.ndarray) -> np.ndarray:
    """(N, T) int64: how many times each trajectory's command has changed up to each step.

    Steps a <= b hold one command exactly when the counts at a and b are equal.

    Args:
      commands: (N, T, 3) commands.
    """
    changed = np.any(commands[:, 1:] != commands[:, :-1], axis=-1)  # (N, T-1): the command at step k+1 is new
    return np.concatenate([np.zeros((len(commands), 1), np.int64), np.cumsum(changed, axis=1)], axis=1)


def constant_command(windows: WindowSet) -> np.ndarray:
    """(W,) bool: the windows whose command is the same at all of their H + 1 states."""
    changes = command_changes(windows.dataset.commands)  # (N, T)
    return changes[windows.traj_index, windows.start] == changes[windows.traj_index, windows.start + windows.horizon]


COMMAND_CHANGE_SPAN = 8
"""Control steps after a command change within which a window counts as answering it
(:func:`after_command_change`): a receding-horizon controller replans at the change and again every
``execute_steps`` (<= 4) steps, so its first two plans after a change start in this span."""


def after_command_change(windows: WindowSet, span: int = COMMAND_CHANGE_SPAN) -> np.ndarray:
    """(W,) bool: the windows that start 0 .. span - 1 steps after their trajectory's command changed."""
    if span < 1:
        raise ValueError(f"span must be >= 1, got {span}")
    changes = command_changes(windows.dataset.commands)  # (N, T)
    before = np.maximum(windows.start - span, 0)
    return changes[windows.traj_index, windows.start] > changes[windows.traj_index, before]


def split_trajectories(gait: np.ndarray, held_out_fraction: float, seed: int,
                       episode: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train / held-out split of trajectory indices, stratified by gait.

    With ``episode``, whole episodes are split instead (the rule below applied to one entry per
    episode, in order of episode id), so trajectories of one episode are never on both sides.

    About ``round(held_out_fraction * N)`` trajectories are held out, shared
    over the gaits in proportion to their sizes (largest remainder); each gait
    with m >= 2 trajectories holds out at least one (when the fraction is
    positive) and at most m - 1, so training keeps every gait. Which ones is
    decided by permutations drawn from ``np.random.default_rng(seed)``. The result depends only on ``gait``,
    the fraction and the seed.

    Args:
      gait: (N,) gait index of each trajectory.
      held_out_fraction: in [0, 1).
      seed: split seed.
      episode: optional (N,) episode id of each trajectory (one gait per episode, ``Dataset.episode``).

    Returns:
      (train, held_out): sorted int64 index arrays, disjoint, together all N.
    """
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in [0, 1), got {held_out_fraction}")
    gait = np.asarray(gait)
    if episode is not None:
        _, first, inverse = np.unique(episode, return_index=True, return_inverse=True)
        _, held_episodes = split_trajectories(gait[first], held_out_fraction, seed)
        held_out = np.flatnonzero(np.isin(inverse, held_episodes)).astype(np.int64)
        return np.setdiff1d(np.arange(gait.size, dtype=np.int64), held_out), held_out
    rng = np.random.default_rng(seed)
    groups, sizes = np.unique(gait, return_counts=True)
    # Largest-remainder apportionment of round(fraction * N) over the gaits.
    quota = held_out_fraction * sizes
    counts = np.floor(quota).astype(np.int64)
    extra = int(round(held_out_fraction * gait.size)) - int(counts.sum())
    counts[np.argsort(-(quota - counts), kind="stable")[:max(extra, 0)]] += 1
    held: list[np.ndarray] = []
    for g, m, k in zip(groups, sizes, counts):
        perm = rng.permutation(np.flatnonzero(gait == g))
        k = min(max(int(k), 1), m - 1) if held_out_fraction > 0 and m >= 2 else 0
        held.append(perm[:k])
    held_out = np.sort(np.concatenate(held)).astype(np.int64) if held else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(gait.size, dtype=np.int64), held_out)
    return train, held_out


def train_held_out_windows(dataset: Dataset, horizon: int, held_out_fraction: float = 0.1, seed: int = 0,
                           stride: int = 1, held_out_stride: int | None = None,
                           labels: np.ndarray | None = None,
                           constant_command_only: bool = False) -> tuple[WindowSet, WindowSet]:
    """Train and held-out windows from disjoint trajectories, and disjoint episodes where the dataset
    has them (:func:`split_trajectories`).

    Args:
      dataset: the dataset.
      horizon: H.
      held_out_fraction: fraction of each gait's trajectories held out.
      seed: split seed.
      stride: window stride of the training set.
      held_out_stride: window stride of the held-out set (default: ``stride``).
      labels: (N, T-1, 12) fitted action labels, given to both sets, or None.
      constant_command_only: both sets keep only windows of constant command (:class:`WindowSet`).

    Returns:
      (train, held_out) window sets. The held-out set may be empty (fraction 0).
    """
    train, held = split_trajectories(dataset.gait, held_out_fraction, seed, dataset.episode)
    return (WindowSet(dataset, horizon, train, stride, labels, constant_command_only),
            WindowSet(dataset, horizon, held, stride if held_out_stride is None else held_out_stride, labels,
                      constant_command_only))
