"""The HDF5 result store (gpde/_store.py): round trip, layout, atomic writes and clear errors."""

from __future__ import annotations

import datetime
import json
import os

import h5py
import numpy as np
import pytest

import gpde
from gpde.io import _store as store


def _run_file() -> store.RunFile:
    rng = np.random.default_rng(0)
    return store.RunFile(
        problem="elliptic",
        seed=7,
        config={"kernel": "gaussian", "lengthscale": [0.2], "nugget": 1e-12, "steps": 4, "parameters": {"amplitude": 4.0}},
        groups={
            "points": {"interior": rng.uniform(size=(9, 2)), "boundary": rng.uniform(size=(8, 2))},
            "fields": {"points": rng.uniform(size=(12, 2)), "u": rng.normal(size=(3, 4))},
            "history": {"step": np.arange(1, 5), "residual_rms": np.array([1.0, 0.1, 1e-3, 1e-6])},
            "before/errors": {"trace": np.linspace(0.0, 1.0, 5, dtype=np.float32)},
        },
        group_attrs={
            "fields": {"grid_shape": np.array([3, 4])},
            "errors": {"rms": 1.5e-3, "l2_relative": 2e-4, "linf": 4.25e-2},
            "history": {"converged": 1, "note": "stopped at the step limit"},
        },
    )


def test_round_trip(tmp_path):
    original = _run_file()
    path = store.write_run(tmp_path / "run.h5", original)
    assert path == tmp_path / "run.h5"
    back = store.read_run(path)
    assert back.problem == "elliptic"
    assert back.seed == 7 and isinstance(back.seed, int)
    assert back.config == original.config
    assert back.gpde_version == gpde.__version__
    created = datetime.datetime.fromisoformat(back.created)
    assert created.tzinfo is not None
    assert abs((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()) < 600
    assert set(back.groups) == set(original.groups)
    for group, datasets in original.groups.items():
        assert set(back.groups[group]) == set(datasets)
        for name, value in datasets.items():
            np.testing.assert_array_equal(back.groups[group][name], value)
            assert back.groups[group][name].dtype == value.dtype
    assert back.group_attrs["fields"] == {"grid_shape": [3, 4]}
    assert back.group_attrs["errors"] == {"rms": 1.5e-3, "l2_relative": 2e-4, "linf": 4.25e-2}
    assert back.group_attrs["history"] == {"converged": 1, "note": "stopped at the step limit"}


def test_file_layout(tmp_path):
    path = store.write_run(tmp_path / "run.h5", _run_file())
    with h5py.File(path, "r") as source:
        assert {store.VERSION, store.PROBLEM, store.SEED, store.CONFIG, store.CREATED} <= set(source.attrs)
        assert json.loads(source.attrs[store.CONFIG])["parameters"] == {"amplitude": 4.0}
        assert source.attrs[store.SEED] == 7
        assert source["points/interior"].shape == (9, 2)
        assert source["before/errors/trace"].shape == (5,)
        assert list(source["fields"].attrs[store.GRID_SHAPE]) == [3, 4]
        assert source["errors"].attrs["linf"] == 4.25e-2
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def test_overwrite_replaces_the_file(tmp_path):
    path = tmp_path / "run.h5"
    store.write_run(path, _run_file())
    second = _run_file()
    second.seed = 11
    store.write_run(path, second)
    assert store.read_run(path).seed == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def _existing(tmp_path):
    """A previous result at the target path, and its bytes."""
    path = tmp_path / "run.h5"
    store.write_run(path, _run_file())
    return path, path.read_bytes()


def _assert_untouched(tmp_path, path, before):
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"], "a temporary file was left behind"
    assert store.read_run(path).seed == 7


@pytest.mark.parametrize("exception", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_while_writing_datasets_keeps_the_old_file(tmp_path, monkeypatch, exception):
    path, before = _existing(tmp_path)
    original = h5py.Group.create_dataset
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 3:  # some datasets are already in the temporary file
            raise exception
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(type(exception)):
        store.write_run(path, _run_file())
    assert len(calls) == 3
    _assert_untouched(tmp_path, path, before)


def test_unconvertible_dataset_keeps_the_old_file(tmp_path):
    path, before = _existing(tmp_path)
    bad = _run_file()
    bad.groups["history"]["residual_rms"] = np.array([object(), object()])
    with pytest.raises(TypeError):
        store.write_run(path, bad)
    _assert_untouched(tmp_path, path, before)


def test_unconvertible_attribute_keeps_the_old_file(tmp_path):
    path, before = _existing(tmp_path)
    bad = _run_file()
    bad.group_attrs["errors"]["rms"] = {"not": "a scalar"}
    with pytest.raises(TypeError):
        store.write_run(path, bad)
    _assert_untouched(tmp_path, path, before)


def test_unserializable_config_keeps_the_old_file(tmp_path):
    path, before = _existing(tmp_path)
    bad = _run_file()
    bad.config["kernel"] = object()
    with pytest.raises(TypeError):
        store.write_run(path, bad)
    _assert_untouched(tmp_path, path, before)


def test_check_writable(tmp_path):
    assert store.check_writable(tmp_path / "new.h5") == tmp_path / "new.h5"
    with pytest.raises(gpde.ConfigError, match="does not exist"):
        store.check_writable(tmp_path / "missing" / "run.h5")
    with pytest.raises(gpde.ConfigError, match="is a directory"):
        store.check_writable(tmp_path)
    (tmp_path / "plain").write_text("a file, not a directory")
    with pytest.raises(gpde.ConfigError, match="does not exist"):
        store.check_writable(tmp_path / "plain" / "run.h5")
    with pytest.raises(gpde.ConfigError, match="does not exist"):
        store.write_run(tmp_path / "missing" / "run.h5", _run_file())
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_check_writable_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(gpde.ConfigError, match="not writable"):
            store.check_writable(locked / "run.h5")
    finally:
        locked.chmod(0o755)


def test_read_errors(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("this is not HDF5\n")
    with pytest.raises(gpde.ConfigError, match="not a readable HDF5 file"):
        store.read_run(text)
    with pytest.raises(gpde.ConfigError, match="no result file"):
        store.read_run(tmp_path / "missing.h5")
    with pytest.raises(gpde.ConfigError, match="no result file"):
        store.read_run(tmp_path)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as out:
        out.create_dataset("x", data=np.arange(3))
    with pytest.raises(gpde.ConfigError, match="not a gpde result"):
        store.read_run(foreign)
