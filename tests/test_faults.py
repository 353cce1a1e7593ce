"""Faults in real processes: kill -9 in the middle of a study append and of a result write,
SIGTERM during a solve and during its write, a full disk (a small tmpfs), concurrent study
writers, and the memory that `gpde show` needs for a file holding a huge compressed dataset.

After every fault: the previous file is intact, and once the next writer has run no temporary
or lock file is left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from gpde import GpdeError
from gpde.app import _study as study
from gpde.io import _store as store
from test_fuzz import _solve_record

GPDE = Path(sys.executable).with_name("gpde")
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
#: Seconds from "the write has started" to the kill, one trial each.
KILL_DELAYS = (0.0, 0.01, 0.03, 0.07, 0.15)

#: A child that writes slowly (each dataset announced on stdout, then 20 ms) so that a kill lands
#: inside the write.
SLOW_WRITES = textwrap.dedent("""
    import sys, time, h5py
    original = h5py.Group.create_dataset
    def announced(self, *args, **kwargs):
        print("writing", flush=True)
        time.sleep(0.02)
        return original(self, *args, **kwargs)
    h5py.Group.create_dataset = announced
""")


def _leftovers(directory: Path, name: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != name and name in p.name)


def _start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=Path(__file__).parent)


def _wait_for(process: subprocess.Popen, marker: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        if marker in line:
            return
        assert time.monotonic() < deadline, f"no '{marker}' within {timeout} s"
    raise AssertionError(f"the child ended before '{marker}': {process.stderr.read()}")


def _fake_result(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {name: rng.normal(size=(4, 1)) for name in ("x", "theta", "recommendation")}
    arrays.update(observed=np.ones((4, 2), bool), y_f=rng.normal(size=4), y_g=rng.normal(size=4),
                  y_c=np.zeros((4, 0)), regret=np.abs(rng.normal(size=4)))
    return {"arrays": arrays, "seconds": {"fit": np.zeros(4)}, "wall_seconds": 0.1, "optimum": 0.0}


def _spec(seed: int) -> study.RunSpec:
    return study.plan_study("smoke-1+1", "random", "coupled", seed + 1, evaluations=4, initial=3)[seed]


APPEND = SLOW_WRITES + textwrap.dedent("""
    from test_faults import _fake_result, _spec
    from gpde.app import _study as study
    study.append_run(sys.argv[1], _spec(int(sys.argv[2])), _fake_result(int(sys.argv[2])))
    print("done", flush=True)
""")


def _kill_while_writing(delay: float, code: str, *args: str):
    """Start `code`, SIGKILL it `delay` seconds after it says it is writing; the killed child."""
    child = _start(code, *args)
    _wait_for(child, "writing")
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    return child


def test_kill_during_study_append_loses_nothing(tmp_path):
    path = tmp_path / "study.h5"
    study.append_run(path, _spec(0), _fake_result(0))
    kept = 1
    for trial, delay in enumerate(KILL_DELAYS):
        before = path.read_bytes()
        child = _kill_while_writing(delay, APPEND, str(path), str(kept))
        assert path.read_bytes() == before, f"trial {trial}: the study changed under a killed append"
        assert len(study.read_study(path)) == kept
        # The next writer appends the same run and removes what the killed one left.
        assert study.append_run(path, _spec(kept), _fake_result(kept))
        kept += 1
        assert len(study.read_study(path)) == kept
        assert _leftovers(tmp_path, "study.h5") == [], f"trial {trial}"
        child.stdout.close()
        child.stderr.close()


WRITE = SLOW_WRITES + textwrap.dedent("""
    from test_fuzz import _solve_record
    from gpde.io import _store as store
    record = _solve_record()
    record.seed = int(sys.argv[2])
    store.write_run(sys.argv[1], record)
""")


def test_kill_during_result_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "run.h5"
    store.write_run(path, _solve_record())
    for trial, delay in enumerate(KILL_DELAYS):
        before = path.read_bytes()
        child = _kill_while_writing(delay, WRITE, str(path), str(trial + 1))
        assert path.read_bytes() == before, f"trial {trial}"
        record = _solve_record()
        record.seed = 100 + trial
        store.write_run(path, record)
        assert store.read_run(path).seed == 100 + trial
        assert _leftovers(tmp_path, "run.h5") == [], f"trial {trial}"
        child.stdout.close()
        child.stderr.close()


CONCURRENT = SLOW_WRITES + textwrap.dedent("""
    import pathlib
    from test_faults import _fake_result, _spec
    from gpde.app import _study as study
    print("ready", flush=True)
    while not pathlib.Path(sys.argv[2]).exists():  # all writers start together
        time.sleep(0.005)
    added = sum(study.append_run(sys.argv[1], _spec(seed), _fake_result(seed)) for seed in range(8))
    print(f"added {added}", flush=True)
""")


def test_concurrent_study_writers_count_each_run_once(tmp_path):
    path, go = tmp_path / "study.h5", tmp_path / "go"
    children = [_start(CONCURRENT, str(path), str(go)) for _ in range(3)]
    for child in children:
        _wait_for(child, "ready")
    go.touch()
    added = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        added.append(int(re.search(r"added (\d+)", out).group(1)))
    assert sum(added) == 8, added  # each run added by exactly one writer
    assert sorted(run.config["seed"] for run in study.read_study(path)) == list(range(8))
    go.unlink()
    assert _leftovers(tmp_path, "study.h5") == []


def _solve_argv(out: Path, *extra: str) -> list[str]:
    return [str(GPDE), "solve", "elliptic", "--n-interior", "100", "--n-boundary", "40", "--steps", "3",
            "--grid", "40", "--out", str(out), *extra]


def test_sigterm_during_a_solve_exits_130_and_writes_nothing(tmp_path):
    out = tmp_path / "r.h5"
    child = subprocess.Popen(_solve_argv(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    _wait_for(child, "gpde solve elliptic")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines() == ["gpde: interrupted; no result file was written"]
    assert list(tmp_path.iterdir()) == []


SOLVE_SLOW_WRITE = SLOW_WRITES + textwrap.dedent("""
    from gpde.app import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigterm_during_the_write_is_not_swallowed(tmp_path):
    out = tmp_path / "r.h5"
    store.write_run(out, _solve_record())
    before = out.read_bytes()
    child = _start(SOLVE_SLOW_WRITE, *_solve_argv(out)[1:])
    _wait_for(child, "writing")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130, err
    assert err.strip().splitlines() == ["gpde: interrupted; no result file was written"]
    assert out.read_bytes() == before
    assert _leftovers(tmp_path, "r.h5") == []


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (root only); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_exits_1_with_one_line_and_keeps_the_old_file(small_disk):
    out = small_disk / "r.h5"
    store.write_run(out, _solve_record())  # a small earlier result fits
    before = out.read_bytes()
    trials = 0
    for extra in (["--grid", "60"],):
        result = subprocess.run(_solve_argv(out, *extra), capture_output=True, text=True, env=ENV, timeout=300)
        trials += 1
        assert result.returncode == 1, (result.returncode, result.stderr)  # never 139 (segfault)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0] and "unchanged" in lines[0], result.stderr
        assert out.read_bytes() == before
        assert sorted(p.name for p in small_disk.iterdir()) == ["r.h5"]
    # A study append that does not fit: the study keeps its runs.
    path = small_disk / "study.h5"
    study.append_run(path, _spec(0), _fake_result(0))
    before = path.read_bytes()
    large = _fake_result(1)
    large["arrays"]["x"] = np.random.default_rng(1).normal(size=(8000, 1))  # 64 KB, does not compress
    with pytest.raises(GpdeError, match="No space left on device"):
        study.append_run(path, _spec(1), large)
    trials += 1
    assert path.read_bytes() == before and len(study.read_study(path)) == 1
    assert sorted(p.name for p in small_disk.iterdir()) == ["r.h5", "study.h5"]
    assert trials == 2


def _peak_kb(argv: list[str]) -> tuple[int, int]:
    result = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True, env=ENV, timeout=300)
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return result.returncode, peak


@pytest.mark.skipif(not Path("/usr/bin/time").exists(), reason="needs GNU time for the peak memory")
def test_show_reads_nothing_of_a_huge_compressed_dataset(tmp_path):
    small = store.write_run(tmp_path / "small.h5", _solve_record())
    bomb = tmp_path / "bomb.h5"
    bomb.write_bytes(small.read_bytes())
    with h5py.File(bomb, "a") as f:
        del f["history/residual_rms"]
        f.create_dataset("history/residual_rms", shape=(200_000, 10_000), dtype="f8", chunks=(1000, 1000),
                         compression="gzip")
    assert bomb.stat().st_size < 40_000  # 14.9 GiB of float64 in a file of a few KB
    code, baseline = _peak_kb([str(GPDE), "show", str(small)])
    assert code == 0
    code, peak = _peak_kb([str(GPDE), "show", str(bomb)])
    assert code == 2
    # Measured 2026-11-29: 216 MB either way, all of it the start-up (importing JAX alone: 189 MB).
    assert peak - baseline < 20_000, (peak, baseline)


def test_study_report_counts_only_its_own_runs_and_names_no_missing_file(tmp_path, monkeypatch):
    out = tmp_path / "study.h5"
    specs = study.plan_study("smoke-1+1", "random", "coupled", 2, evaluations=4, initial=3)

    def fail(spec):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(study, "run_one", fail)
    with pytest.raises(GpdeError, match="no run finished, so no study file was written") as error:
        study.run_study(specs, out, progress=False)
    assert "finished runs are in" not in str(error.value) and not out.exists()

    # A run that another invocation added first is reported as such, not as run here.
    monkeypatch.setattr(study, "run_one", lambda spec: _fake_result(spec.seed))
    real_append = study.append_run

    def other_was_first(path, spec, result, **options):
        if spec.seed == 1:
            real_append(path, spec, result, **options)  # "another invocation"
            return False
        return real_append(path, spec, result, **options)

    monkeypatch.setattr(study, "append_run", other_was_first)
    report = study.run_study(specs, out, progress=False)
    assert [spec.seed for spec in report.ran] == [0] and [spec.seed for spec in report.concurrent] == [1]
    assert len(study.read_study(out)) == 2
