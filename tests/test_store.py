"""The HDF5 result store (gpde/io/_store.py): round trip, layout, atomic writes, faults during a write,\nlocking, and clear errors."""

from __future__ import annotations

import datetime
import errno
import json
import os
import signal
import threading
import time

import h5py
import numpy as np
import pytest

import gpde
from gpde import io
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


def test_check_writable_proves_it_by_creating_a_file(tmp_path):
    # Permission bits do not stop root; creating a file does fail where nobody can write (/proc).
    with pytest.raises(gpde.ConfigError, match="cannot create a file in /proc"):
        store.check_writable("/proc/gpde-result.h5")
    with pytest.raises(gpde.ConfigError, match="empty"):
        store.check_writable("")
    os.mkfifo(tmp_path / "pipe.h5")
    with pytest.raises(gpde.ConfigError, match="not a regular file"):
        store.check_writable(tmp_path / "pipe.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.h5"], "the probe file was left behind"


def test_check_output_refuses_a_file_of_the_other_kind(tmp_path):
    run = store.write_run(tmp_path / "run.h5", _run_file())
    study = tmp_path / "study.h5"
    with h5py.File(study, "w") as out:
        out.attrs["kind"] = "gpde-bljes-study"
    with pytest.raises(gpde.ConfigError, match="is a BLJES study file.*--overwrite"):
        store.check_output(study, store.RUN_KIND)
    assert store.check_output(study, store.RUN_KIND, overwrite=True) == study
    with pytest.raises(gpde.ConfigError, match="is a solve/learn result.*--overwrite"):
        store.check_output(run, store.STUDY_KIND)
    assert store.check_output(run, store.RUN_KIND) == run  # a run replaces a run


def test_full_disk_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    path, before = _existing(tmp_path)
    original = h5py.Group.create_dataset
    calls = []

    def full(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", full)
    with pytest.raises(gpde.GpdeError, match="cannot write .*No space left on device.*unchanged.*free disk space") as error:
        store.write_run(path, _run_file())
    assert not isinstance(error.value, gpde.ConfigError)  # exit code 1 at the command line
    _assert_untouched(tmp_path, path, before)


def test_full_disk_met_by_the_file_write_keeps_the_old_file(tmp_path, monkeypatch):
    # HDF5 builds the file in memory; the disk is first touched by Python's write and fsync.
    path, before = _existing(tmp_path)

    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(gpde.GpdeError, match="No space left on device"):
        store.write_run(path, _run_file())
    _assert_untouched(tmp_path, path, before)


def test_interrupt_during_the_write_is_raised_after_it_and_nothing_is_replaced(tmp_path, monkeypatch):
    path, before = _existing(tmp_path)
    original = h5py.Group.create_dataset
    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # held back until HDF5 is done
        return original(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", interrupted)
    handler = signal.getsignal(signal.SIGTERM)
    with io.terminate_as_interrupt(), pytest.raises(KeyboardInterrupt):
        store.write_run(path, _run_file())
    assert len(calls) == sum(len(d) for d in _run_file().groups.values())  # the write ran to its end
    _assert_untouched(tmp_path, path, before)
    assert signal.getsignal(signal.SIGTERM) is handler


def test_what_a_killed_writer_left_is_removed_by_the_next_write(tmp_path):
    path, _ = _existing(tmp_path)
    (tmp_path / ".run.h5.x1y2z3.tmp").write_bytes(b"half a file")
    (tmp_path / ".run.h5.a1b2c3.probe").write_bytes(b"")
    (tmp_path / "run.h5.lock").write_bytes(b"")  # a dead writer's lock file (its lock is gone)
    (tmp_path / ".other.h5.q.tmp").write_bytes(b"another target's")
    store.write_run(path, _run_file())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.h5.q.tmp", "run.h5"]


def test_concurrent_writers_of_one_file_take_turns(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    original = h5py.Group.create_dataset
    writers = []  # the thread of every dataset written, in order

    def slow(self, *args, **kwargs):
        writers.append(threading.get_ident())
        time.sleep(0.002)
        return original(self, *args, **kwargs)

    def write(seed):
        run = _run_file()
        run.seed = seed
        store.write_run(path, run)

    monkeypatch.setattr(h5py.Group, "create_dataset", slow)
    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each writer's datasets form one block: no two writes interleaved.
    switches = sum(a != b for a, b in zip(writers, writers[1:]))
    assert len(set(writers)) == 4 and switches == 3, switches
    assert store.read_run(path).seed in range(4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def test_read_errors(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("this is not HDF5\n")
    with pytest.raises(gpde.ConfigError, match="not a readable HDF5 file"):
        store.read_run(text)
    with pytest.raises(gpde.ConfigError, match="no result file"):
        store.read_run(tmp_path / "missing.h5")
    with pytest.raises(gpde.ConfigError, match="is a directory"):
        store.read_run(tmp_path)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as out:
        out.create_dataset("x", data=np.arange(3))
    with pytest.raises(gpde.ConfigError, match="not a gpde result"):
        store.read_run(foreign)


def test_datasets_are_read_lazily_and_never_beyond_the_limit(tmp_path):
    path = store.write_run(tmp_path / "run.h5", _run_file())
    with h5py.File(path, "a") as out:
        # 200000 × 10000 float64 (14.9 GiB) in a file of a few KB: chunks are never written.
        out.create_dataset("fields/huge", shape=(200_000, 10_000), dtype="f8", chunks=(1000, 1000), compression="gzip")
    assert path.stat().st_size < 100_000
    run = store.read_run(path)  # lists shapes only
    assert run.groups["fields"].info("huge").shape == (200_000, 10_000)
    np.testing.assert_array_equal(run.groups["points"]["interior"], _run_file().groups["points"]["interior"])
    with pytest.raises(gpde.ConfigError, match=r"fields/huge has shape \(200000, 10000\) \(14.9 GiB\)"):
        run.groups["fields"]["huge"]


def test_readers_refuse_special_files_without_opening_them(tmp_path):
    os.mkfifo(tmp_path / "pipe.h5")  # opening it would block until a writer appears
    with pytest.raises(gpde.ConfigError, match="not a regular file"):
        store.read_run(tmp_path / "pipe.h5")
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(gpde.ConfigError, match="is empty"):
        store.read_run(tmp_path / "empty.h5")
    assert store.file_kind(tmp_path / "pipe.h5") is None
