"""The demonstration dataset: one ``.npz`` file, documented here and validated on load.

Fields (N trajectories, T states each):

==================  ==============  =========================================================
field               shape, dtype    meaning
==================  ==============  =========================================================
``states``          (N, T, 37) f32  Go1 states ``qpos ++ qvel`` (layout in ``envs.physics``),
                                    sampled at the control rate ``metadata.ctrl_dt``.
``commands``        (N, T, 3) f32   velocity command (vx m/s, vy m/s, yaw rate rad/s), body
                                    frame, in force at each state.
``gait``            (N,) int        index into ``metadata.gaits`` (= ``envs.task.GAITS``).
``expert_actions``  (N, T, 12) f32  optional, held out: the expert's actions, used only to
                                    measure action recovery, never for training.
``phase``           (N, T) f32      optional: the gait clock's phase (cycles, in [0, 1)) at each
                                    state (``envs.task.foot_phases``), where the data has one
                                    (the kinematic gaits); a model conditioned on the gait
                                    clock (``FlowConfig.gait_clock``) trains on it.
``episode``         (N,) int        optional: trajectories with the same id come from one
                                    episode (ids >= 0, one gait each), e.g. the recovery
                                    windows of one closed-loop run; train / held-out splits
                                    keep an episode's trajectories on one side.
``metadata``        0-d str         JSON object, see :class:`DatasetMetadata`.
==================  ==============  =========================================================

Action indexing: ``expert_actions[n, k]`` is the action applied at
``states[n, k]``; one control step with it leads to ``states[n, k + 1]``. The
actions share the states' time axis (T entries, as in docs/design.md) so that
index k means the same instant in every field; the last entry
``expert_actions[n, T - 1]`` was chosen at the last recorded state, whose
successor is not stored, so no transition uses it. It must still be finite.
A window of H + 1 states ``states[s : s + H + 1]`` pairs with the H actions
``expert_actions[s : s + H]``.

Every violation raises :class:`DatasetError`, which names the file, the field,
what was expected and what was found.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any, Mapping

import numpy as np

from envs.physics import ACTION_DIM, BASE_QUAT, PHYSICS, STATE_DIM, PhysicsConfig
from envs.task import COMMAND_DIM, GAITS

SCHEMA_VERSION = 1
"""Version of this schema, stored in every file; files from a newer schema are refused."""

ARRAY_FIELDS: tuple[str, ...] = ("states", "commands", "gait", "expert_actions", "phase", "episode")
REQUIRED_FIELDS: tuple[str, ...] = ("states", "commands", "gait", "metadata")
OPTIONAL_FIELDS: tuple[str, ...] = ("expert_actions", "phase", "episode")
METADATA_KEYS: tuple[str, ...] = ("source", "physics_hash", "ctrl_dt", "gaits", "schema_version")

IN_MEMORY = "<in-memory dataset>"
"""The 'file' named by errors about a :class:`Dataset` built in memory."""


QUAT_NORM_TOLERANCE = 1e-3
"""Largest |norm - 1| of a stored base quaternion: float32 storage of a valid rotation is ~1e-7 off;
a non-unit x0 would be renormalised by the first physics step and bias row 0 against the rest."""


class DatasetError(ValueError):
    """A dataset file or array violates the schema.

    Attributes:
      file: the file (or :data:`IN_MEMORY`).
      field: the offending field, e.g. ``"states"`` or ``"metadata.physics_hash"``.
      expected: what the schema requires.
      found: what the data holds.
      hint: optional extra explanation.
    """

    def __init__(self, file: str, field: str, expected: Any, found: Any, hint: str = ""):
        self.file, self.field, self.expected, self.found, self.hint = str(file), field, expected, found, hint
        msg = f"{self.file}: field '{field}': expected {expected}, found {found}"
        super().__init__(msg + (f". {hint}" if hint else ""))


@dataclasses.dataclass(frozen=True)
class DatasetMetadata:
    """The metadata record, stored as a JSON string in the ``metadata`` field.

    Attributes:
      source: where the data comes from, e.g. ``"kinematic"`` or ``"rl_expert"``.
      physics_hash: ``PhysicsConfig.hash()`` of the physics the data was made under.
      ctrl_dt: seconds between consecutive states.
      gaits: gait names; ``gait`` indexes into them. Must equal ``envs.task.GAITS``.
      schema_version: :data:`SCHEMA_VERSION` of the writer.
      extra: free-form JSON-serialisable details (generator settings, seeds, ...).
    """

    source: str
    physics_hash: str
    ctrl_dt: float
    gaits: tuple[str, ...] = GAITS
    schema_version: int = SCHEMA_VERSION
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_physics(cls, source: str, physics: PhysicsConfig = PHYSICS,
                    extra: Mapping[str, Any] | None = None) -> "DatasetMetadata":
        """Metadata for data made now under ``physics``."""
        return cls(source=source, physics_hash=physics.hash(), ctrl_dt=physics.ctrl_dt, gaits=GAITS,
                   schema_version=SCHEMA_VERSION, extra=dict(extra or {}))

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["gaits"] = list(self.gaits)
        d["extra"] = dict(self.extra)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, file: str = IN_MEMORY) -> "DatasetMetadata":
        """Parses and checks the JSON record; DatasetError names the bad key."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(file, "metadata", "a JSON object", f"invalid JSON ({e})") from None
        if not isinstance(d, dict):
            raise DatasetError(file, "metadata", "a JSON object", type(d).__name__)
        missing = [k for k in METADATA_KEYS if k not in d]
        if missing:
            raise DatasetError(file, f"metadata.{missing[0]}", f"keys {list(METADATA_KEYS)}",
                               f"keys {sorted(d)} (missing {missing})")
        unknown = sorted(set(d) - set(METADATA_KEYS) - {"extra"})
        if unknown:
            raise DatasetError(file, "metadata", f"keys {list(METADATA_KEYS)} (+ 'extra')", f"unknown keys {unknown}")
        types = {"source": str, "physics_hash": str, "ctrl_dt": (int, float), "gaits": list,
                 "schema_version": int, "extra": dict}
        for k, t in types.items():
            if k in d and (not isinstance(d[k], t) or isinstance(d[k], bool)):
                raise DatasetError(file, f"metadata.{k}", _type_name(t), f"{type(d[k]).__name__} {d[k]!r}")
        if not all(isinstance(g, str) for g in d["gaits"]):
            raise DatasetError(file, "metadata.gaits", "a list of gait names", d["gaits"])
        return cls(source=d["source"], physics_hash=d["physics_hash"], ctrl_dt=float(d["ctrl_dt"]),
                   gaits=tuple(d["gaits"]), schema_version=d["schema_version"], extra=d.get("extra", {}))


def _type_name(t) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A validated set of N state trajectories of T steps (see the module docstring).

    Construction validates shapes, dtypes, finiteness and gait indices and
    converts the arrays to float32 / int64. The stored arrays are read-only
    views (not copies) of the inputs when those already have these dtypes.

    Attributes:
      states: (N, T, 37) float32.
      commands: (N, T, 3) float32.
      gait: (N,) int64, indices into ``metadata.gaits``.
      metadata: the metadata record.
      expert_actions: optional (N, T, 12) float32; entry k leads from state k to k + 1.
      phase: optional (N, T) float32 gait-clock phase in [0, 1) at each state.
      episode: optional (N,) int64 episode id of each trajectory (trajectories split together).
    """

    states: np.ndarray
    commands: np.ndarray
    gait: np.ndarray
    metadata: DatasetMetadata
    expert_actions: np.ndarray | None = None
    phase: np.ndarray | None = None
    episode: np.ndarray | None = None

    def __post_init__(self):
        _validate(self, IN_MEMORY)

    @property
    def n_trajectories(self) -> int:
        return self.states.shape[0]

    @property
    def n_steps(self) -> int:
        """T, the number of states per trajectory."""
        return self.states.shape[1]

    @property
    def nbytes(self) -> int:
        arrays = (self.states, self.commands, self.gait, self.expert_actions, self.phase, self.episode)
        return sum(a.nbytes for a in arrays if a is not None)

    def subset(self, trajectories) -> "Dataset":
        """A dataset of the given trajectory indices (same metadata)."""
        idx = np.asarray(trajectories)
        return Dataset(self.states[idx], self.commands[idx], self.gait[idx], self.metadata,
                       None if self.expert_actions is None else self.expert_actions[idx],
                       None if self.phase is None else self.phase[idx],
                       None if self.episode is None else self.episode[idx])


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _check_array(file: str, field: str, a: Any, kind: str, trailing: tuple[int, ...], ndim: int) -> np.ndarray:
    """Checks dtype kind ('f' float, 'i' integer), rank and trailing dims; returns the array."""
    a = np.asarray(a)
    if kind == "f" and a.dtype.kind != "f":
        raise DatasetError(file, field, "a floating-point array (float32)", f"dtype {a.dtype}")
    if kind == "i" and a.dtype.kind not in "iu":
        raise DatasetError(file, field, "an integer array", f"dtype {a.dtype}")
    expected = ("N", "T")[: ndim - len(trailing)] + trailing
    if a.ndim != ndim or a.shape[ndim - len(trailing):] != trailing:
        raise DatasetError(file, field, f"shape {_shape_str(expected)}", f"shape {_shape_str(a.shape)}")
    if kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise DatasetError(file, field, "finite values", f"{int(bad.sum())} NaN/inf values, first at index "
                               f"{where} = {a[where]}")
    return a


def _validate(ds: Dataset, file: str) -> None:
    """Validates ``ds`` in place (frozen dataclass: fields are set via object.__setattr__)."""
    if not isinstance(ds.metadata, DatasetMetadata):
        raise DatasetError(file, "metadata", "a DatasetMetadata", type(ds.metadata).__name__)
    md = ds.metadata
    if md.schema_version > SCHEMA_VERSION or md.schema_version < 1:
        raise DatasetError(file, "metadata.schema_version", f"1..{SCHEMA_VERSION}", md.schema_version,
                           "the file was written by a newer dynaflow-policy" if md.schema_version > 1 else "")
    if tuple(md.gaits) != GAITS:
        raise DatasetError(file, "metadata.gaits", list(GAITS), list(md.gaits),
                           "gait indices would mean other gaits")
    if not (md.ctrl_dt > 0 and np.isfinite(md.ctrl_dt)):
        raise DatasetError(file, "metadata.ctrl_dt", "a positive number of seconds", md.ctrl_dt)

    states = _check_array(file, "states", ds.states, "f", (STATE_DIM,), 3)
    n, t = states.shape[:2]
    if n < 1 or t < 1:
        raise DatasetError(file, "states", "at least one trajectory of at least one step",
                           f"shape {_shape_str(states.shape)}")
    quat_norm_error = np.abs(np.linalg.norm(states[..., BASE_QUAT], axis=-1) - 1.0)  # (N, T)
    if (quat_norm_error > QUAT_NORM_TOLERANCE).any():
        i = np.unravel_index(int(np.argmax(quat_norm_error)), quat_norm_error.shape)
        raise DatasetError(file, "states", f"unit base quaternions (|norm - 1| <= {QUAT_NORM_TOLERANCE:g})",
                           f"norm {1.0 + float(quat_norm_error[i]):.6g} at (trajectory, step) {tuple(map(int, i))}")
    commands = _check_array(file, "commands", ds.commands, "f", (COMMAND_DIM,), 3)
    if commands.shape[:2] != (n, t):
        raise DatasetError(file, "commands", f"shape ({n}, {t}, {COMMAND_DIM}) (N, T from 'states')",
                           f"shape {_shape_str(commands.shape)}")
    gait = _check_array(file, "gait", ds.gait, "i", (), 1)
    if gait.shape != (n,):
        raise DatasetError(file, "gait", f"shape ({n},) (N from 'states')", f"shape {_shape_str(gait.shape)}")
    out_of_range = (gait < 0) | (gait >= len(md.gaits))
    if out_of_range.any():
        i = int(np.argmax(out_of_range))
        raise DatasetError(file, "gait", f"indices in [0, {len(md.gaits) - 1}] (into {list(md.gaits)})",
                           f"gait[{i}] = {int(gait[i])}")
    arrays = {"states": states.astype(np.float32, copy=False), "commands": commands.astype(np.float32, copy=False),
              "gait": gait.astype(np.int64, copy=False)}
    if ds.expert_actions is not None:
        actions = _check_array(file, "expert_actions", ds.expert_actions, "f", (ACTION_DIM,), 3)
        if actions.shape[:2] != (n, t):
            raise DatasetError(file, "expert_actions", f"shape ({n}, {t}, {ACTION_DIM}) (N, T from 'states'; "
                               "entry k leads from state k to k+1, the last is unused)",
                               f"shape {_shape_str(actions.shape)}")
        arrays["expert_actions"] = actions.astype(np.float32, copy=False)
    if ds.phase is not None:
        phase = _check_array(file, "phase", ds.phase, "f", (), 2)
        if phase.shape != (n, t):
            raise DatasetError(file, "phase", f"shape ({n}, {t}) (N, T from 'states')",
                               f"shape {_shape_str(phase.shape)}")
        outside = (phase < 0) | (phase >= 1)
        if outside.any():
            i = tuple(int(k) for k in np.argwhere(outside)[0])
            raise DatasetError(file, "phase", "gait phases in [0, 1) (cycles)", f"phase{list(i)} = {phase[i]}")
        arrays["phase"] = phase.astype(np.float32, copy=False)
    if ds.episode is not None:
        arrays["episode"] = _check_episodes(file, ds.episode, arrays["gait"])
    for name, a in arrays.items():
        a = a.view()  # read-only view; no copy of arrays that already have the right dtype
        a.flags.writeable = False
        object.__setattr__(ds, name, a)


def _check_episodes(file: str, episode: Any, gait: np.ndarray) -> np.ndarray:
    """Checks the (N,) episode ids: integers >= 0, one gait per episode; returns them as int64."""
    episode = _check_array(file, "episode", episode, "i", (), 1)
    if episode.shape != gait.shape:
        raise DatasetError(file, "episode", f"shape ({gait.size},) (N from 'states')",
                           f"shape {_shape_str(episode.shape)}")
    if (episode < 0).any():
        i = int(np.argmax(episode < 0))
        raise DatasetError(file, "episode", "ids >= 0", f"episode[{i}] = {int(episode[i])}")
    episode = episode.astype(np.int64, copy=False)
    _, first, inverse = np.unique(episode, return_index=True, return_inverse=True)
    mixed = gait != gait[first][inverse]  # (N,) another gait than the episode's first trajectory
    if mixed.any():
        e = int(episode[np.argmax(mixed)])
        raise DatasetError(file, "episode", "one gait per episode",
                           f"episode {e} holds gait indices {sorted(set(gait[episode == e].tolist()))}")
    return episode


def _check_physics(file: str, md: DatasetMetadata, physics: PhysicsConfig) -> None:
    expected = physics.hash()
    if md.physics_hash != expected:
        raise DatasetError(
            file, "metadata.physics_hash", f"{expected} (current physics, ctrl_dt {physics.ctrl_dt:g} s)",
            f"{md.physics_hash} (ctrl_dt {md.ctrl_dt:g} s)",
            f"The dataset was made under another physics config (ctrl_dt {md.ctrl_dt:g} s); regenerate it, or "
            "pass allow_other_physics=True to load it anyway")
    if abs(md.ctrl_dt - physics.ctrl_dt) > 1e-9:
        raise DatasetError(file, "metadata.ctrl_dt", f"{physics.ctrl_dt:g} s", f"{md.ctrl_dt:g} s")


def save_dataset(path: str | os.PathLike, ds: Dataset, *, compress: bool = True) -> None:
    """Writes ``ds`` to ``path`` atomically.

    The file is written to a temporary file in the same directory, flushed to
    disk and then renamed over ``path`` (``os.replace``), so a crash or error
    during the write leaves any existing file at ``path`` untouched. ``path``
    is used as given (no ``.npz`` is appended).

    Args:
      path: destination file.
      ds: the dataset (already validated by construction).
      compress: zip-deflate the arrays (``np.savez_compressed``).
    """
    path = os.fspath(path)
    arrays = {"states": ds.states, "commands": ds.commands, "gait": ds.gait,
              "metadata": np.array(ds.metadata.to_json())}
    for name in OPTIONAL_FIELDS:
        if getattr(ds, name) is not None:
            arrays[name] = getattr(ds, name)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays, compress)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _write_npz(f, arrays: Mapping[str, np.ndarray], compress: bool) -> None:
    (np.savez_compressed if compress else np.savez)(f, **arrays)


def load_dataset(path: str | os.PathLike, *, horizon: int | None = None, physics: PhysicsConfig = PHYSICS,
                 allow_other_physics: bool = False) -> Dataset:
    """Loads and validates a dataset file.

    Args:
      path: the ``.npz`` file.
      horizon: if given, every trajectory must hold at least ``horizon + 1``
        states (one training window).
      physics: the physics the data must have been made under.
      allow_other_physics: load data whose ``metadata.physics_hash`` differs
        from ``physics.hash()`` (ctrl_dt must still match).

    Returns:
      The dataset, arrays float32 / int64 and read-only.

    Raises:
      FileNotFoundError: no file at ``path``.
      DatasetError: anything else: unreadable or truncated file, missing or
        unknown field, wrong dtype or shape, NaN/inf, gait index out of range,
        other physics, too few steps for ``horizon``.
    """
    file = os.fspath(path)
    if not os.path.exists(file):
        raise FileNotFoundError(f"no dataset at {file}")
    raw: dict[str, np.ndarray] = {}
    try:
        with np.load(file, allow_pickle=False) as npz:
            names = list(npz.files)
            for name in names:
                try:
                    raw[name] = npz[name]
                except ValueError as e:
                    if "allow_pickle" in str(e):
                        raise DatasetError(file, name, "a numeric array (or a string for 'metadata')",
                                           "a pickled object array") from None
                    raise
    except DatasetError:
        raise
    except Exception as e:  # zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError from a bad header, ...
        raise DatasetError(file, "<file>", "a readable .npz archive", f"{type(e).__name__}: {e}",
                           "The file is truncated, corrupt or not a dataset archive") from e

    for name in REQUIRED_FIELDS:
        if name not in raw:
            raise DatasetError(file, name, f"fields {list(REQUIRED_FIELDS)} (+ optional {list(OPTIONAL_FIELDS)})",
                               f"fields {sorted(raw)} (missing '{name}')")
    unknown = sorted(set(raw) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise DatasetError(file, unknown[0], f"only fields {list(REQUIRED_FIELDS) + list(OPTIONAL_FIELDS)}",
                           f"unknown fields {unknown}")
    md_raw = raw["metadata"]
    if md_raw.dtype.kind != "U" or md_raw.ndim != 0:
        raise DatasetError(file, "metadata", "a 0-d string array holding JSON",
                           f"dtype {md_raw.dtype}, shape {_shape_str(md_raw.shape)}")
    metadata = DatasetMetadata.from_json(str(md_raw), file)
    if not allow_other_physics:
        _check_physics(file, metadata, physics)
    elif abs(metadata.ctrl_dt - physics.ctrl_dt) > 1e-9:
        raise DatasetError(file, "metadata.ctrl_dt", f"{physics.ctrl_dt:g} s", f"{metadata.ctrl_dt:g} s",
                           "states are sampled at another control rate")

    ds = object.__new__(Dataset)
    for name, value in (("states", raw["states"]), ("commands", raw["commands"]), ("gait", raw["gait"]),
                        ("metadata", metadata), ("expert_actions", raw.get("expert_actions")),
                        ("phase", raw.get("phase")), ("episode", raw.get("episode"))):
        object.__setattr__(ds, name, value)
    _validate(ds, file)
    if horizon is not None:
        if ds.n_steps < horizon + 1:
            raise DatasetError(file, "states", f"T >= H + 1 = {horizon + 1} steps per trajectory (horizon {horizon})",
                               f"T = {ds.n_steps}")
    return ds
