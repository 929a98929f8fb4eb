"""Action labels fitted to state-only data, cached beside the dataset: ``python -m dynaflow_policy.data.labels FILE.npz``.

For every transition ``states[n, k] -> states[n, k + 1]`` of a dataset, the label
is the action whose native MuJoCo control step from ``states[n, k]`` lands
closest to ``states[n, k + 1]`` (:func:`dynaflow_policy.metrics.fit_actions_native`,
Levenberg-Marquardt, warm-started from the previous transition of the same
trajectory, stopping as soon as a fit is within the float32 rounding of the
stored states). Only states are read: expert actions, when the file has them,
are read after fitting to *measure* the labels, never to make them.

Cache layout (beside ``walk.npz``)::

    walk.npz.labels/
      meta.json            the dataset's fingerprint (file name, sha256 of its states, physics hash,
                           N, T), the fit settings and scale, and, once complete, the report
      chunk-000000.npz     actions (n, T-1, 12) f32, residual (n, T-1) f32 of trajectories [0, n)
      chunk-000016.npz     ... of trajectories [16, 16 + n)

Each chunk is written atomically (temporary file, then rename), so a run
killed while fitting resumes without redoing finished chunks. A cache whose
fingerprint differs from the dataset (another file, other contents, other
physics, other length) is refused with :class:`LabelsError`, which names both.

``residual`` is the norm of the normalised state error of the fitted step,
``|| (step(x_k, u) - x_{k+1}) / scale ||`` with the quaternion sign aligned
(:func:`dynaflow_policy.metrics.state_residual`): about 1e-6 for feasible data
stored in float32; larger where the fit stopped on a wrong smooth piece of the
contact dynamics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import time

import numpy as np
import tyro

from dynaflow_policy.data.schema import Dataset, load_dataset
from envs.native import NativeGo1
from envs.physics import ACTION_DIM, PHYSICS

CACHE_SUFFIX = ".labels"
META_FILE = "meta.json"
CACHE_VERSION = 2
"""Version 2 fingerprints the states (version 1 hashed the file's bytes)."""
EXACT_RESIDUAL = 1e-3
"""A transition whose fitted residual is below this counts as fitted exactly in the report."""


class LabelsError(ValueError):
    """A labels cache that does not belong to its dataset, or is incomplete or damaged."""


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Settings of the fit (stored in the cache: a cache fitted otherwise is refused).

    Attributes:
      starts: most starts per transition (>= 2), see ``fit_actions_native``.
      iterations: Levenberg-Marquardt iterations per start.
      tolerance: squared normalised residual at which a transition stops (float32 data
        cannot fit closer than about 1e-11).
      chunk_trajectories: trajectories per chunk file (the unit of work and of resumption).
      seed: seed of the random starts (chunk c uses (seed, c)).
    """

    starts: int = 2
    iterations: int = 5
    tolerance: float = 1e-9
    chunk_trajectories: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("starts", "iterations", "chunk_trajectories"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive int, got {value!r}")
        if self.starts < 2:
            raise ValueError(f"--starts must be >= 2, got {self.starts}")
        if not self.tolerance > 0:
            raise ValueError(f"--tolerance must be positive, got {self.tolerance}")


def cache_dir(dataset_path: str | os.PathLike) -> str:
    """``<dataset>.labels``: the cache directory of a dataset file."""
    return os.fspath(dataset_path) + CACHE_SUFFIX


def fingerprint(dataset_path: str | os.PathLike, ds: Dataset) -> dict:
    """What identifies the labelled data: file name, sha256 of the states (float32 bytes), physics hash, N and T.

    The states, not the file's bytes, are hashed: the same data collected again (collection is
    deterministic) is written with other zip timestamps, and its labels still apply.
    """
    states = np.ascontiguousarray(ds.states, np.float32)
    return {"file": os.path.basename(os.fspath(dataset_path)), "states_sha256": hashlib.sha256(states).hexdigest(),
            "physics_hash": ds.metadata.physics_hash, "n_trajectories": ds.n_trajectories, "n_steps": ds.n_steps}


def label_scale(ds: Dataset) -> np.ndarray:
    """(37,) residual scale: the std of a normaliser fitted to heading-frame windows of the dataset (seeded)."""
    from dynaflow_policy.data.windows import WindowSet
    from dynaflow_policy.frames import to_heading_frame
    from dynaflow_policy.normalizer import Normalizer

    ws = WindowSet(ds, min(16, ds.n_steps - 1))  # the training horizon, or the whole of short trajectories
    idx = np.sort(np.random.default_rng(0).choice(len(ws), size=min(4096, len(ws)), replace=False))
    return np.asarray(Normalizer.fit(to_heading_frame(ws.batch(idx)["states"])).std, np.float64)


def _describe(fp: dict) -> str:
    return (f"{fp.get('file')} (states sha256 {str(fp.get('states_sha256'))[:12]}, physics "
            f"{str(fp.get('physics_hash'))[:12]}, N={fp.get('n_trajectories')}, T={fp.get('n_steps')})")


def _check_meta(meta: dict, fp: dict, fit: FitConfig, directory: str, dataset_path: str) -> None:
    if meta.get("version") != CACHE_VERSION:
        raise LabelsError(f"{directory}: cache version {meta.get('version')!r}, this code reads {CACHE_VERSION}")
    cached = meta["dataset"]
    differ = [k for k in fp if cached.get(k) != fp[k]]
    if differ:
        raise LabelsError(f"labels cache {directory} was fitted for {_describe(cached)}, but {dataset_path} is "
                          f"{_describe(fp)}: they differ in {differ}. Delete the cache and fit again")
    if meta["fit"] != dataclasses.asdict(fit):
        raise LabelsError(f"labels cache {directory} was fitted with {meta['fit']}, asked for "
                          f"{dataclasses.asdict(fit)}; use another cache or the same settings")


def _chunk_file(directory: str, start: int) -> str:
    return os.path.join(directory, f"chunk-{start:06d}.npz")


def _write_atomic(path: str, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def fit_chunk(states: np.ndarray, scale: np.ndarray, fit: FitConfig, chunk_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels of whole trajectories.

    Args:
      states: (n, T, 37) trajectories.
      scale: (37,) residual scale.
      fit: the fit settings.
      chunk_seed: seed of this chunk's random starts.

    Returns:
      actions (n, T-1, 12) float32 and residual (n, T-1) float32 (see the module docstring).
    """
    from dynaflow_policy.metrics import fit_actions_native, state_residual

    states = np.asarray(states, np.float64)
    n, t = states.shape[:2]
    actions = np.empty((n, t - 1, ACTION_DIM), np.float32)
    residual = np.empty((n, t - 1), np.float32)
    sim = NativeGo1(PHYSICS)
    for i, s in enumerate(states):
        u = fit_actions_native(s[:-1], s[1:], scale, starts=fit.starts, iterations=fit.iterations,
                               seed=chunk_seed * 100_003 + i, tolerance=fit.tolerance)  # (T-1, 12)
        actions[i] = u
        for k in range(t - 1):
            sim.set_state(s[k])
            sim.step(u[k])
            residual[i, k] = np.linalg.norm(state_residual(sim.state(), s[k + 1], scale))
    return actions, residual


def _fit_task(args: tuple) -> int:
    path, states, scale, fit, start = args
    actions, residual = fit_chunk(states, scale, fit, start)
    _write_atomic(path, lambda f: np.savez(f, actions=actions, residual=residual))
    return len(states)


def _read_chunks(directory: str, n: int, fit: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    actions, residual = [], []
    for start in range(0, n, fit.chunk_trajectories):
        path = _chunk_file(directory, start)
        if not os.path.isfile(path):
            raise LabelsError(f"{directory}: chunk {os.path.basename(path)} is missing; the fit is not finished "
                              f"(run python -m dynaflow_policy.data.labels on the dataset to finish it)")
        with np.load(path) as z:
            actions.append(z["actions"])
            residual.append(z["residual"])
    return np.concatenate(actions), np.concatenate(residual)


def report(residual: np.ndarray, actions: np.ndarray, expert_actions: np.ndarray | None, seconds: float) -> dict:
    """Fit error statistics and, with the expert's held-out actions, the labels' RMSE against them.

    ``fit_seconds`` is the wall time of the call that finished the cache (a resumed fit counts only its own part).
    """
    r = residual.ravel()
    out = {"transitions": int(r.size), "residual_mean": float(r.mean()), "residual_median": float(np.median(r)),
           "residual_p90": float(np.quantile(r, 0.9)), "residual_max": float(r.max()),
           "fraction_exact": float(np.mean(r < EXACT_RESIDUAL)), "fit_seconds": seconds}
    if expert_actions is not None:
        err = actions - expert_actions[:, :-1]  # expert_actions[n, T-1] has no transition
        out["fitted_vs_expert_rmse"] = float(np.sqrt(np.mean(err**2)))
        out["fitted_vs_expert_median_abs"] = float(np.median(np.abs(err)))
    return out


def fit_labels(dataset_path: str | os.PathLike, fit: FitConfig = FitConfig(), workers: int | None = None,
               progress: bool = True) -> dict:
    """Fits (or finishes fitting) the labels of a dataset into its cache; returns the cache's report.

    Chunks already in the cache are kept. Work is spread over ``workers``
    processes (default: the CPU count), a chunk per task; the labels do not
    depend on the number of workers.

    Raises:
      LabelsError: the cache belongs to another dataset or fit.
      DatasetError: the dataset does not load.
    """
    dataset_path = os.fspath(dataset_path)
    ds = load_dataset(dataset_path)
    fp = fingerprint(dataset_path, ds)
    directory = cache_dir(dataset_path)
    meta_path = os.path.join(directory, META_FILE)
    if os.path.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        _check_meta(meta, fp, fit, directory, dataset_path)
        if "report" in meta:
            return meta["report"]
        scale = np.asarray(meta["scale"], np.float64)
    else:
        os.makedirs(directory, exist_ok=True)
        scale = label_scale(ds)
        meta = {"version": CACHE_VERSION, "dataset": fp, "fit": dataclasses.asdict(fit), "scale": scale.tolist()}
        _write_atomic(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    n = ds.n_trajectories
    todo = [(_chunk_file(directory, s), ds.states[s:s + fit.chunk_trajectories], scale, fit, s)
            for s in range(0, n, fit.chunk_trajectories) if not os.path.isfile(_chunk_file(directory, s))]
    from tqdm import tqdm

    t0 = time.perf_counter()
    workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
    bar = tqdm(total=n, initial=n - sum(len(t[1]) for t in todo), desc="trajectories", disable=not progress,
               file=sys.stderr)
    try:
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for done in pool.imap_unordered(_fit_task, todo):
                    bar.update(done)
        else:
            for task in todo:
                bar.update(_fit_task(task))
    finally:
        bar.close()
    actions, residual = _read_chunks(directory, n, fit)
    meta["report"] = report(residual, actions, ds.expert_actions, time.perf_counter() - t0)
    _write_atomic(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return meta["report"]


def load_labels(dataset_path: str | os.PathLike, ds: Dataset | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The cached labels of a dataset: actions (N, T-1, 12) float32, residual (N, T-1) float32.

    Raises:
      LabelsError: no cache, an unfinished one, or one fitted for other data.
    """
    dataset_path = os.fspath(dataset_path)
    ds = load_dataset(dataset_path) if ds is None else ds
    directory = cache_dir(dataset_path)
    meta_path = os.path.join(directory, META_FILE)
    if not os.path.isfile(meta_path):
        raise LabelsError(f"no labels for {dataset_path}: {meta_path} is missing; fit them with "
                          f"python -m dynaflow_policy.data.labels {dataset_path}")
    with open(meta_path) as f:
        meta = json.load(f)
    _check_meta(meta, fingerprint(dataset_path, ds), FitConfig(**meta["fit"]), directory, dataset_path)
    if "report" not in meta:
        raise LabelsError(f"{directory}: the fit is not finished (run python -m dynaflow_policy.data.labels "
                          f"{dataset_path} to finish it)")
    actions, residual = _read_chunks(directory, ds.n_trajectories, FitConfig(**meta["fit"]))
    if actions.shape != (ds.n_trajectories, ds.n_steps - 1, ACTION_DIM) or not np.all(np.isfinite(actions)):
        raise LabelsError(f"{directory}: labels of shape {actions.shape} (or not finite) for a dataset of "
                          f"N={ds.n_trajectories}, T={ds.n_steps}; the cache is damaged, delete it and fit again")
    return actions, residual


@dataclasses.dataclass(frozen=True)
class Args:
    """``python -m dynaflow_policy.data.labels DATA.npz [DATA2.npz ...] [--workers N]``."""

    datasets: tyro.conf.Positional[tuple[str, ...]]
    """Dataset files to label (each gets ``<file>.labels/``)."""
    fit: FitConfig = FitConfig()
    """Fit settings (flags without a prefix)."""
    workers: int = 0
    """Processes; 0 = one per CPU."""


def main(args: Args) -> dict[str, dict]:
    if not args.datasets:
        raise SystemExit("error: name at least one dataset file (python -m dynaflow_policy.data.labels DATA.npz)")
    if args.workers < 0:
        raise SystemExit(f"error: --workers must be >= 0 (0 = one per CPU), got {args.workers}")
    out = {}
    for path in args.datasets:
        try:
            out[path] = fit_labels(path, args.fit, args.workers or None)
        except (LabelsError, ValueError, FileNotFoundError) as e:
            raise SystemExit(f"error: {e}") from None
        print(f"{cache_dir(path)}: " + ", ".join(f"{k} {v:.4g}" for k, v in out[path].items()))
    return out


if __name__ == "__main__":
    main(tyro.cli(Args, config=(tyro.conf.OmitArgPrefixes,)))
