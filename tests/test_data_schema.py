"""Tests of dynaflow_policy.data.schema: the .npz dataset format and its validation on load."""

import json
import os

import numpy as np
import pytest

from dynaflow_policy.data import schema
from dynaflow_policy.data.schema import (SCHEMA_VERSION, Dataset, DatasetError, DatasetMetadata, load_dataset,
                                         save_dataset)
from envs.physics import PHYSICS
from envs.task import GAITS

N, T = 3, 20


def _arrays(seed: int = 0, actions: bool = True) -> dict:
    """Raw fields of a small valid dataset (random numbers: the schema does not check physics)."""
    rng = np.random.default_rng(seed)
    d = {
        "states": rng.standard_normal((N, T, 37)).astype(np.float32),
        "commands": rng.uniform(-1, 1, (N, T, 3)).astype(np.float32),
        "gait": np.array([0, 2, 3]),
        "metadata": np.array(DatasetMetadata.for_physics("test").to_json()),
    }
    quat = d["states"][..., 3:7]
    d["states"][..., 3:7] = quat / np.linalg.norm(quat, axis=-1, keepdims=True)  # valid rotations
    if actions:
        d["expert_actions"] = rng.uniform(-1, 1, (N, T, 12)).astype(np.float32)
    return d


def _dataset(**kw) -> Dataset:
    a = _arrays(**kw)
    return Dataset(a["states"], a["commands"], a["gait"], DatasetMetadata.for_physics("test"),
                   a.get("expert_actions"))


def _write_raw(path, **fields) -> str:
    with open(path, "wb") as f:
        np.savez(f, **fields)
    return str(path)


def _expect_error(path, field: str, expected: str, found: str, **load_kw) -> DatasetError:
    """Loads `path`, asserts a DatasetError that names the file, field, expected and found values."""
    with pytest.raises(DatasetError) as info:
        load_dataset(path, **load_kw)
    e = info.value
    msg = str(e)
    assert isinstance(e, ValueError)
    assert e.file == str(path) and str(path) in msg
    assert e.field == field and f"'{field}'" in msg
    assert expected in str(e.expected) and expected in msg, msg
    assert found in str(e.found) and found in msg, msg
    return e


def test_round_trip(tmp_path):
    for actions in (True, False):
        for compress in (True, False):
            ds = _dataset(actions=actions)
            path = tmp_path / f"d_{actions}_{compress}.npz"
            save_dataset(path, ds, compress=compress)
            back = load_dataset(path, horizon=T - 1)
            np.testing.assert_array_equal(back.states, ds.states)
            np.testing.assert_array_equal(back.commands, ds.commands)
            np.testing.assert_array_equal(back.gait, ds.gait)
            assert back.states.dtype == np.float32 and back.gait.dtype == np.int64
            assert back.metadata == ds.metadata
            assert back.metadata.physics_hash == PHYSICS.hash() and back.metadata.ctrl_dt == PHYSICS.ctrl_dt
            assert back.metadata.gaits == GAITS and back.metadata.schema_version == SCHEMA_VERSION
            if actions:
                np.testing.assert_array_equal(back.expert_actions, ds.expert_actions)
            else:
                assert back.expert_actions is None
            assert (back.n_trajectories, back.n_steps) == (N, T)


def test_metadata_is_a_json_string_field(tmp_path):
    path = tmp_path / "d.npz"
    save_dataset(path, _dataset())
    with np.load(path, allow_pickle=False) as f:
        md = json.loads(str(f["metadata"]))
    assert md["source"] == "test" and md["physics_hash"] == PHYSICS.hash()
    assert md["ctrl_dt"] == PHYSICS.ctrl_dt and md["gaits"] == list(GAITS) and md["schema_version"] == 1


def test_arrays_are_read_only_and_cast():
    a = _arrays()
    ds = Dataset(a["states"].astype(np.float64), a["commands"], a["gait"].astype(np.int32),
                 DatasetMetadata.for_physics("test"))
    assert ds.states.dtype == np.float32 and ds.gait.dtype == np.int64
    with pytest.raises(ValueError):
        ds.states[0, 0, 0] = 1.0


def test_wrong_state_width(tmp_path):
    a = _arrays()
    a["states"] = a["states"][..., :36]
    _expect_error(_write_raw(tmp_path / "w.npz", **a), "states", "(N, T, 37)", "(3, 20, 36)")


def test_non_unit_quaternion(tmp_path):
    a = _arrays()
    a["states"][2, 5, 3:7] *= 1.1
    _expect_error(_write_raw(tmp_path / "q.npz", **a), "states", "unit base quaternions", "(2, 5)")


@pytest.mark.parametrize("field", ["states", "commands", "expert_actions"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite(tmp_path, field, value):
    a = _arrays()
    a[field][1, 4, 2] = value
    _expect_error(_write_raw(tmp_path / "n.npz", **a), field, "finite", "(1, 4, 2)")


def test_too_short_for_horizon(tmp_path):
    path = tmp_path / "d.npz"
    save_dataset(path, _dataset())
    load_dataset(path, horizon=T - 1)
    _expect_error(path, "states", f"H + 1 = {T + 1}", f"T = {T}", horizon=T)


@pytest.mark.parametrize("missing", ["states", "commands", "gait", "metadata"])
def test_missing_field(tmp_path, missing):
    a = _arrays()
    del a[missing]
    _expect_error(_write_raw(tmp_path / "m.npz", **a), missing, "fields", f"missing '{missing}'")


def test_unknown_field(tmp_path):
    a = _arrays()
    a["expert_action"] = a.pop("expert_actions")  # a typo must not be dropped silently
    _expect_error(_write_raw(tmp_path / "u.npz", **a), "expert_action", "only fields", "expert_action")


@pytest.mark.parametrize("field, value, expected, found", [
    ("states", np.full((N, T, 37), "a"), "floating-point", "<U1"),
    ("commands", np.zeros((N, T, 3), bool), "floating-point", "bool"),
    ("gait", np.array([0.0, 1.0, 2.0]), "integer", "float64"),
    ("gait", np.array(["trot", "pace", "bound"]), "integer", "<U5"),
])
def test_wrong_dtype(tmp_path, field, value, expected, found):
    a = _arrays()
    a[field] = value
    _expect_error(_write_raw(tmp_path / "t.npz", **a), field, expected, found)


@pytest.mark.parametrize("bad", [-1, len(GAITS)])
def test_gait_out_of_range(tmp_path, bad):
    a = _arrays()
    a["gait"][1] = bad
    _expect_error(_write_raw(tmp_path / "g.npz", **a), "gait", f"[0, {len(GAITS) - 1}]", f"gait[1] = {bad}")


@pytest.mark.parametrize("field, shape", [
    ("commands", (N, T - 1, 3)),
    ("commands", (N + 1, T, 3)),
    ("gait", (N - 1,)),
    ("expert_actions", (N, T - 1, 12)),  # actions share the states' time axis (see the schema docstring)
])
def test_mismatched_n_or_t(tmp_path, field, shape):
    a = _arrays()
    a[field] = np.zeros(shape, a[field].dtype)
    found = "(" + ", ".join(map(str, shape)) + ")"
    _expect_error(_write_raw(tmp_path / "s.npz", **a), field, f"({N}", found)


def test_other_physics(tmp_path):
    a = _arrays()
    md = json.loads(str(a["metadata"]))
    md.update(physics_hash="0123456789abcdef")
    a["metadata"] = np.array(json.dumps(md))
    path = _write_raw(tmp_path / "p.npz", **a)
    e = _expect_error(path, "metadata.physics_hash", PHYSICS.hash(), "0123456789abcdef")
    assert "another physics config" in str(e) and "ctrl_dt 0.02 s" in str(e)
    assert load_dataset(path, allow_other_physics=True).metadata.physics_hash == "0123456789abcdef"
    md.update(ctrl_dt=0.01)
    a["metadata"] = np.array(json.dumps(md))
    path = _write_raw(tmp_path / "p2.npz", **a)
    e = _expect_error(path, "metadata.physics_hash", "ctrl_dt 0.02 s", "ctrl_dt 0.01 s")
    assert "ctrl_dt 0.01 s" in e.hint
    _expect_error(path, "metadata.ctrl_dt", "0.02 s", "0.01 s", allow_other_physics=True)


@pytest.mark.parametrize("change, field, expected, found", [
    ({"gaits": ["walk"]}, "metadata.gaits", "trot", "walk"),
    ({"schema_version": SCHEMA_VERSION + 1}, "metadata.schema_version", f"1..{SCHEMA_VERSION}",
     str(SCHEMA_VERSION + 1)),
    ({"ctrl_dt": "fast"}, "metadata.ctrl_dt", "int or float", "fast"),
    ({"source": None}, "metadata.source", "str", "None"),
])
def test_bad_metadata(tmp_path, change, field, expected, found):
    a = _arrays()
    md = json.loads(str(a["metadata"]))
    md.update(change)
    a["metadata"] = np.array(json.dumps(md))
    _expect_error(_write_raw(tmp_path / "md.npz", **a), field, expected, found)


def test_metadata_missing_key_and_bad_json(tmp_path):
    a = _arrays()
    md = json.loads(str(a["metadata"]))
    del md["physics_hash"]
    a["metadata"] = np.array(json.dumps(md))
    _expect_error(_write_raw(tmp_path / "k.npz", **a), "metadata.physics_hash", "keys", "missing ['physics_hash']")
    a["metadata"] = np.array("{not json")
    _expect_error(_write_raw(tmp_path / "j.npz", **a), "metadata", "JSON object", "invalid JSON")
    a["metadata"] = np.zeros(3)
    _expect_error(_write_raw(tmp_path / "z.npz", **a), "metadata", "0-d string", "float64")


def test_unreadable_files(tmp_path):
    good = tmp_path / "good.npz"
    save_dataset(good, _dataset(), compress=True)
    data = good.read_bytes()
    middle = len(data) // 2
    corrupt = data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]
    for name, content in [("truncated.npz", data[:middle]), ("corrupt.npz", corrupt),
                          ("garbage.npz", b"not a zip file at all"), ("empty.npz", b"")]:
        path = tmp_path / name
        path.write_bytes(content)
        e = _expect_error(path, "<file>", "readable .npz", "")
        assert e.found  # the underlying error, e.g. "BadZipFile: File is not a zip file"
    # A pickled object array is refused (allow_pickle=False) and named.
    a = _arrays()
    a["gait"] = np.array([0, 1, None], dtype=object)
    _expect_error(_write_raw(tmp_path / "obj.npz", **a), "gait", "numeric array", "pickled object array")
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "absent.npz")


def test_in_memory_validation():
    a = _arrays()
    with pytest.raises(DatasetError, match=r"<in-memory dataset>: field 'states': expected shape \(N, T, 37\)"):
        Dataset(a["states"][..., :36], a["commands"], a["gait"], DatasetMetadata.for_physics("test"))


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    save_dataset(path, _dataset(seed=0))
    before = path.read_bytes()

    def failing_write(f, arrays, compress):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(schema, "_write_npz", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_dataset(path, _dataset(seed=1))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["d.npz"]  # no temporary file left behind
    np.testing.assert_array_equal(load_dataset(path).states, _dataset(seed=0).states)
    monkeypatch.undo()
    save_dataset(path, _dataset(seed=1))  # a successful save replaces the file
    np.testing.assert_array_equal(load_dataset(path).states, _dataset(seed=1).states)


def test_save_writes_exact_path(tmp_path):
    path = tmp_path / "sub" / "data.bin"
    save_dataset(path, _dataset())
    assert os.listdir(tmp_path / "sub") == ["data.bin"]
    assert load_dataset(path).n_trajectories == N


def test_episode_ids_round_trip_subset_and_are_checked(tmp_path):
    a = _arrays()  # gaits 0, 2, 3: one episode each, or two trajectories of one gait in one episode
    ds = Dataset(a["states"], a["commands"], a["gait"], DatasetMetadata.for_physics("test"), episode=[5, 0, 7])
    save_dataset(tmp_path / "e.npz", ds)
    loaded = load_dataset(tmp_path / "e.npz")
    assert loaded.episode.dtype == np.int64 and loaded.episode.tolist() == [5, 0, 7]
    assert loaded.subset([2, 0]).episode.tolist() == [7, 5]
    assert load_dataset(_write_raw(tmp_path / "none.npz", **a)).episode is None
    _expect_error(_write_raw(tmp_path / "mixed.npz", **a, episode=np.array([4, 4, 1])), "episode",
                  "one gait per episode", "episode 4 holds gait indices [0, 2]")
    _expect_error(_write_raw(tmp_path / "neg.npz", **a, episode=np.array([0, -1, 1])), "episode",
                  "ids >= 0", "episode[1] = -1")
    _expect_error(_write_raw(tmp_path / "float.npz", **a, episode=np.zeros(N)), "episode", "integer", "float64")
    _expect_error(_write_raw(tmp_path / "short.npz", **a, episode=np.arange(N - 1)), "episode",
                  f"shape ({N},)", f"shape ({N - 1})")


def test_gait_phase_round_trips_and_is_checked(tmp_path):
    a = _arrays()
    phase = np.random.default_rng(1).uniform(0, 1, (N, T)).astype(np.float32)
    ds = Dataset(a["states"], a["commands"], a["gait"], DatasetMetadata.for_physics("test"), phase=phase)
    save_dataset(tmp_path / "p.npz", ds)
    np.testing.assert_array_equal(load_dataset(tmp_path / "p.npz").phase, phase)
    assert load_dataset(_write_raw(tmp_path / "none.npz", **a)).phase is None
    _expect_error(_write_raw(tmp_path / "one.npz", **a, phase=np.ones((N, T), np.float32)), "phase",
                  "[0, 1)", "= 1.0")
    _expect_error(_write_raw(tmp_path / "short.npz", **a, phase=phase[:, :-1]), "phase",
                  f"shape ({N}, {T})", f"shape ({N}, {T - 1})")
