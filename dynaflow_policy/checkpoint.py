"""Checkpoints as plain data: one directory per step, written atomically, checked on load.

Layout (nothing is pickled)::

    <directory>/
      100/
        state.msgpack   arrays: flax.serialization.msgpack_serialize of a nested dict of arrays
        config.json     metadata: step, configs, normaliser, physics hash, and the
                        sha256 and byte size of state.msgpack
      200/
      .tmp-300-<random>/    a save in progress (or one killed mid-write): never read

Writing. Both files go to a fresh temporary directory next to the step
directories; each file is flushed and fsync'ed, then the temporary directory is
renamed to ``<step>`` (an atomic rename on POSIX file systems) and the parent
directory is fsync'ed. A process killed at any point of a save therefore
leaves either the complete new checkpoint or no trace of it besides a
``.tmp-*`` directory, which readers ignore and the next save deletes; the
previous checkpoints stay loadable. After a save, all but the newest ``keep``
step directories are deleted.

Reading. ``config.json`` must parse and name the current format; its physics
hash must equal ``envs.PHYSICS.hash()`` (unless explicitly allowed);
``state.msgpack`` must have the recorded size and sha256. Every failure raises
:class:`CheckpointError` saying which file is wrong and how (truncated, corrupt,
other physics, ...).

Shipped checkpoints (:func:`save_single`, e.g. ``checkpoints/dynaflow_go1_expert/``)
hold the two files directly, written the same way; :func:`restore` and
:func:`resolve` read both layouts.

Kinds. ``config.json`` names what a checkpoint holds in :data:`KIND_KEY`
(:data:`KINDS`; :func:`checkpoint_kind` also reads the markers of older checkpoints).

This module knows nothing about what the arrays are; ``dynaflow_policy.train_state``,
``dynaflow_policy.baselines.train`` and ``dynaflow_policy.experts.ppo`` store their
state in it and rebuild it on load. :func:`check_resumable` is the one test every
trainer applies before it continues a run from a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import dataclasses
import shutil
import tempfile
from typing import Any, Sequence

import flax.serialization
import jax
import numpy as np

from envs.physics import PHYSICS, PhysicsConfig

FORMAT = "dynaflow-policy-checkpoint"
FORMAT_VERSION = 1
STATE_FILE = "state.msgpack"
META_FILE = "config.json"
_TMP_PREFIX = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt, of another format or made under other physics."""


def step_dirs(directory: str | os.PathLike) -> list[tuple[int, str]]:
    """Complete checkpoints under ``directory``: ``[(step, path), ...]`` sorted by step.

    A step directory counts once it holds both files (temporary directories
    never do, since they only get their final name when complete).
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    out = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.isdigit() and os.path.isfile(os.path.join(path, META_FILE)) \
                and os.path.isfile(os.path.join(path, STATE_FILE)):
            out.append((int(name), path))
    return sorted(out)


def latest_checkpoint(directory: str | os.PathLike) -> str | None:
    """Path of the newest complete checkpoint under ``directory``, or None."""
    dirs = step_dirs(directory)
    return dirs[-1][1] if dirs else None


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: str, data: bytes) -> None:
    """Writes ``data`` to a new file and forces it to disk."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _to_numpy(tree: Any) -> Any:
    """Nested dict/list of arrays -> the same with numpy leaves (jax.Array, scalars and numpy accepted)."""
    if isinstance(tree, dict):
        return {str(k): _to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_to_numpy(v) for v in tree]
    return np.asarray(tree)


def _encode(arrays: dict[str, Any], meta: dict[str, Any], step: int, physics: PhysicsConfig) -> tuple[bytes, bytes]:
    """(state.msgpack bytes, config.json bytes) with the format, step, physics hash and checksum added."""
    data = flax.serialization.msgpack_serialize(_to_numpy(arrays))
    meta = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION, "step": int(step),
            "physics_hash": physics.hash(), "state_file": STATE_FILE,
            "state_sha256": hashlib.sha256(data).hexdigest(), "state_bytes": len(data)}
    return data, json.dumps(meta, indent=1, sort_keys=True).encode()


def _write_directory(final: str, parent: str, tmp_name: str, data: bytes, text: bytes) -> None:
    """Writes both files to a fresh temporary directory in ``parent`` and renames it to ``final`` (replacing it)."""
    for name in os.listdir(parent):  # leftovers of saves that were killed
        if name.startswith(_TMP_PREFIX):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{tmp_name}-", dir=parent)
    try:
        _write_file(os.path.join(tmp, STATE_FILE), data)
        _write_file(os.path.join(tmp, META_FILE), text)
        _fsync_dir(tmp)
        old = None
        if os.path.exists(final):  # replacing: move the old copy aside, then swap
            old = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}old-{tmp_name}-", dir=parent)
            os.replace(final, os.path.join(old, "ckpt"))
        os.rename(tmp, final)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save(directory: str | os.PathLike, step: int, arrays: dict[str, Any], meta: dict[str, Any], keep: int = 3,
         physics: PhysicsConfig = PHYSICS) -> str:
    """Writes checkpoint ``<directory>/<step>/`` atomically and prunes old ones.

    Args:
      directory: parent of the step directories (created if missing).
      step: training step, >= 0; an existing checkpoint of this step is replaced.
      arrays: nested dict of arrays (numpy, JAX or scalars), e.g.
        ``flax.serialization.to_state_dict(train_state)``; must be fully
        addressable on this process (fetch sharded arrays first).
      meta: JSON-serialisable metadata; keys ``format``, ``format_version``,
        ``step``, ``physics_hash``, ``state_sha256`` and ``state_bytes`` are added.
      keep: number of newest step directories kept (>= 1).
      physics: the physics whose hash is recorded.

    Returns:
      The path of the new step directory.
    """
    if step < 0 or keep < 1:
        raise ValueError(f"need step >= 0 and keep >= 1, got step={step}, keep={keep}")
    directory = os.path.abspath(os.fspath(directory))
    os.makedirs(directory, exist_ok=True)
    data, text = _encode(arrays, meta, step, physics)
    final = os.path.join(directory, str(int(step)))
    _write_directory(final, directory, str(int(step)), data, text)
    for _, path in step_dirs(directory)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def save_single(path: str | os.PathLike, step: int, arrays: dict[str, Any], meta: dict[str, Any],
                physics: PhysicsConfig = PHYSICS) -> str:
    """Writes one checkpoint directly into ``path`` (no step directories), atomically.

    This is the layout of shipped checkpoints (``checkpoints/<name>/config.json``);
    :func:`restore` reads it like a step directory. An existing checkpoint at
    ``path`` is replaced as a whole; other files in ``path`` are not kept.

    Returns:
      ``path`` as an absolute path.
    """
    if step < 0:
        raise ValueError(f"need step >= 0, got step={step}")
    final = os.path.abspath(os.fspath(path))
    if os.path.exists(final) and not os.path.isfile(os.path.join(final, META_FILE)) and os.listdir(final):
        raise FileExistsError(f"{final} exists and is not a checkpoint; refusing to replace it")
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    data, text = _encode(arrays, meta, step, physics)
    _write_directory(final, parent, os.path.basename(final), data, text)
    return final


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Parses and checks ``<path>/config.json`` (format, version, keys); no physics check."""
    file = os.path.join(os.fspath(path), META_FILE)
    if not os.path.isfile(file):
        raise CheckpointError(f"{file}: missing; {os.fspath(path)} is not a complete checkpoint directory")
    try:
        with open(file, "rb") as f:
            meta = json.loads(f.read().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e}); the file is truncated or corrupt") from None
    found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
    if found != FORMAT:
        raise CheckpointError(f"{file}: not a {FORMAT} file (format {found!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{file}: format version {meta.get('format_version')!r}, this code reads "
                              f"version {FORMAT_VERSION}")
    missing = [k for k in ("step", "physics_hash", "state_sha256", "state_bytes") if k not in meta]
    if missing:
        raise CheckpointError(f"{file}: missing keys {missing}; the file is corrupt")
    return meta


def restore(path: str | os.PathLike, physics: PhysicsConfig = PHYSICS,
            allow_other_physics: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads a checkpoint written by :func:`save`.

    Args:
      path: a step directory, or a directory of step directories (then the newest
        complete one is read).
      physics: the physics the checkpoint must have been made under.
      allow_other_physics: skip the physics-hash check.

    Returns:
      (arrays, meta): the nested dict of numpy arrays that was saved, and the metadata.

    Raises:
      CheckpointError: no checkpoint at ``path``; unreadable, truncated or corrupt
        files (size or sha256 differ from ``config.json``); other format; other physics.
    """
    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, META_FILE)):
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"no checkpoint at {path} (expected {META_FILE} and {STATE_FILE} in it or in a "
                                  "numbered step directory under it)")
        path = latest
    meta = read_meta(path)
    if not allow_other_physics and meta["physics_hash"] != physics.hash():
        raise CheckpointError(
            f"{path}: made under physics hash {meta['physics_hash']}, but the current physics config "
            f"(envs.PHYSICS) has hash {physics.hash()}; the model was trained on other dynamics. Retrain, or pass "
            "allow_other_physics=True to load it anyway")
    file = os.path.join(path, STATE_FILE)
    try:
        with open(file, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    if len(data) != meta["state_bytes"]:
        raise CheckpointError(f"{file}: truncated or corrupt: {len(data)} bytes, {META_FILE} records "
                              f"{meta['state_bytes']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["state_sha256"]:
        raise CheckpointError(f"{file}: corrupt: sha256 {digest[:16]}..., {META_FILE} records "
                              f"{meta['state_sha256'][:16]}...")
    try:
        arrays = flax.serialization.msgpack_restore(data)
    except Exception as e:  # the checksum matched, so this is a writer bug, not a damaged file
        raise CheckpointError(f"{file}: checksum matches but msgpack decoding failed ({type(e).__name__}: {e})") \
            from e
    return arrays, meta


def restore_tree(target: Any, arrays: Any, path: str, what: str) -> Any:
    """``arrays`` (nested dicts) in the structure of ``target`` (shape-only), every shape and dtype checked.

    Raises:
      CheckpointError: missing or extra entries, or a shape or dtype that differs from ``target``'s.
    """
    try:
        tree = flax.serialization.from_state_dict(target, arrays)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the stored {what} arrays do not match the stored config: {e}") from e
    for (key, want), got in zip(jax.tree_util.tree_leaves_with_path(target), jax.tree.leaves(tree)):
        if np.shape(got) != want.shape or np.asarray(got).dtype != want.dtype:
            raise CheckpointError(f"{path}: {what} array {jax.tree_util.keystr(key)} has shape {np.shape(got)} "
                                  f"{np.asarray(got).dtype}, the config needs {want.shape} {want.dtype}")
    return tree


def resolve(path: str | os.PathLike) -> str:
    """The checkpoint ``path`` names: itself, its newest step, or the newest step under ``path/checkpoints``.

    Returns ``path`` unchanged when none of these exists (:func:`restore` then says so).
    """
    path = os.fspath(path)
    for candidate in (path, os.path.join(path, "checkpoints")):
        if os.path.isfile(os.path.join(candidate, META_FILE)):
            return candidate
        latest = latest_checkpoint(candidate)
        if latest is not None:
            return latest
    return path


KIND_KEY = "kind"
"""``config.json`` key naming what a checkpoint holds; its value is one of :data:`KINDS`."""

KINDS = ("dynaflow", "state_flow", "ppo")
"""Checkpoint kinds: a DynaFlow model (training state or exported EMA weights), the state-flow +
inverse-dynamics baseline, and the Brax PPO expert."""

_LEGACY_KINDS = (("model", "state_flow_inverse_dynamics", "state_flow"), ("kind", "ppo-expert", "ppo"))
"""(key, value, kind) markers of checkpoints written before :data:`KIND_KEY`; DynaFlow wrote none."""


def kind_of_meta(meta: dict[str, Any], path: str | os.PathLike = "<meta>") -> str:
    """The kind (one of :data:`KINDS`) of a checkpoint's parsed ``config.json``, old markers included.

    Raises:
      CheckpointError: an unknown kind, naming ``path`` and the kinds this code knows.
    """
    for key, value, kind in _LEGACY_KINDS:
        if meta.get(key) == value:
            return kind
    kind = meta.get(KIND_KEY, "dynaflow" if "train_config" in meta else None)
    if kind not in KINDS:
        raise CheckpointError(f"{os.fspath(path)}: unknown checkpoint kind {kind!r} in {META_FILE}; "
                              f"this code knows {list(KINDS)}")
    return kind


def checkpoint_kind(path: str | os.PathLike) -> str:
    """The kind of the checkpoint :func:`resolve` finds at ``path`` (one of :data:`KINDS`).

    Raises:
      CheckpointError: no checkpoint there (naming what was looked for), an unreadable
        ``config.json``, or an unknown kind.
    """
    resolved = resolve(path)
    if not os.path.isfile(os.path.join(resolved, META_FILE)):
        raise CheckpointError(f"no checkpoint at {os.fspath(path)}: looked for {META_FILE} and {STATE_FILE} in it, "
                              "in a numbered step directory under it, and under its checkpoints/ directory")
    return kind_of_meta(read_meta(resolved), resolved)


def checkpoint_to_resume(workdir: str | os.PathLike, resume: bool) -> str | None:
    """The newest checkpoint under ``<workdir>/checkpoints`` to continue from, or None for a fresh run.

    Raises:
      FileExistsError: there is one and ``resume`` is False (a fresh run must not mix with an old one).
    """
    existing = latest_checkpoint(os.path.join(os.fspath(workdir), "checkpoints"))
    if existing is not None and not resume:
        raise FileExistsError(f"{os.fspath(workdir)} already holds checkpoints (newest {existing}); pass "
                              "resume=True (--resume) to continue that run, or use another work directory")
    return existing


def changed_fields(saved: Any, config: Any, resumable: Sequence[str] = ()) -> list[str]:
    """Names of the fields in which two configs (dataclasses of one type) differ, except ``resumable`` ones.

    A nested dataclass field is compared field by field when ``resumable`` names any of
    its fields with a dotted path (``"train.lr"``); the names returned are dotted alike.
    """
    out = []
    for field in dataclasses.fields(config):
        name = field.name
        a, b = getattr(saved, name), getattr(config, name)
        nested = tuple(r[len(name) + 1:] for r in resumable if r.startswith(name + "."))
        if nested and dataclasses.is_dataclass(b) and type(a) is type(b):
            out += [f"{name}.{n}" for n in changed_fields(a, b, nested)]
        elif name not in resumable and a != b:
            out.append(name)
    return out


def check_resumable(saved: Any, config: Any, path: str | os.PathLike, resumable: Sequence[str]) -> None:
    """Refuses to continue the run of checkpoint ``path`` (config ``saved``) with ``config`` when they differ
    in a field that changes the training, i.e. any field not in ``resumable`` (dotted names reach into
    nested configs, as in :func:`changed_fields`).

    Raises:
      ValueError: naming the checkpoint, each changed field with its saved and new value, and the
        fields that may change.
    """
    differ = changed_fields(saved, config, resumable)
    if differ:
        details = ", ".join(f"{k}: {_dotted(saved, k)!r} -> {_dotted(config, k)!r}" for k in differ)
        raise ValueError(f"cannot resume {os.fspath(path)}: the config differs in fields that change the training "
                         f"({details}); only {list(resumable)} may change")


def _dotted(obj: Any, name: str) -> Any:
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj
