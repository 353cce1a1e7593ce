"""Writing run files, and the checks on an output path made before any computation.

The layout and the readers are in `_schema` (re-exported here). A run file is written through
`atomic_path`: into a temporary file beside the target, renamed over it only when complete, so an
interrupted or failed write never leaves a half-written file and never destroys an existing one.
HDF5 builds the file in memory and only Python writes to disk (`write_hdf5`); signals are held
back meanwhile (`deferred_interrupts`); an OSError (full disk, quota, I/O error) becomes a
GpdeError naming the file and the fix (exit code 1 at the command line).
"""

import contextlib
import datetime
import errno
import io
import json
import os
from pathlib import Path
import re
import stat
import tempfile

import h5py
import numpy as np

from .._errors import ConfigError, GpdeError
from .._version import __version__
from ._atomic import atomic_path
from ._interrupts import deferred_interrupts
from ._lock import locked
from ._schema import (  # noqa: F401  (the schema's names, re-exported for the writers and readers)
    AFTER,
    AFTER_FROM_ITERATE,
    BEFORE,
    CONFIG,
    CREATED,
    ERROR,
    ERROR_KEYS,
    ERRORS,
    FIELDS,
    GRID_POINTS,
    GRID_SHAPE,
    HISTORY,
    KERNEL,
    KIND,
    POINTS,
    PROBLEM,
    RUN_KIND,
    SEED,
    STUDY_KIND,
    U_REF,
    VERSION,
    RunFile,
    U,
    field_names,
    file_kind,
    learn_record,
    read_run,
    solve_record,
)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before any computation, if `path` cannot be written: the directory must exist
    and a file must be creatable in it (proven by creating and removing one: permission bits say
    nothing when running as root), and `path` must not be a directory or a special file."""
    if not str(path).strip():
        raise ConfigError("the output file name is empty; give a file name such as result.h5")
    path = Path(path)
    directory = path.resolve().parent
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a directory; give a file name ending in .h5")
    if not directory.is_dir():
        raise ConfigError(f"cannot write {path}: directory {directory} does not exist; create it or choose another --out")
    if path.exists() and not stat.S_ISREG(os.stat(path).st_mode):
        raise ConfigError(f"cannot write {path}: it is not a regular file (a pipe, socket or device); choose another --out")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=directory)
    except OSError as error:
        raise ConfigError(f"cannot write {path}: cannot create a file in {directory} ({error.strerror}); "
                          "choose another --out") from None
    os.close(handle)
    with contextlib.suppress(FileNotFoundError):  # a writer holding the lock may have removed it
        os.unlink(probe)
    return path


def check_output(path: str | os.PathLike, writes: str, overwrite: bool = False) -> Path:
    """`check_writable`, and refuse to replace a file of the other kind (a BLJES study by a run
    file, or anything but a study by a study) unless `overwrite`."""
    path = check_writable(path)
    if overwrite or not path.exists():
        return path
    kind = file_kind(path)
    if writes == RUN_KIND and kind == STUDY_KIND:
        raise ConfigError(f"{path} is a BLJES study file; choose another --out, or pass --overwrite to replace it")
    if writes == STUDY_KIND and kind != STUDY_KIND:
        what = "a solve/learn result" if kind == RUN_KIND else "not a BLJES study file"
        raise ConfigError(f"{path} is {what}; choose another --out, or pass --overwrite to replace it")
    return path


def write_failure(path: Path, error: OSError) -> GpdeError:
    """The one-line error for an OSError while writing `path`."""
    text = str(error)
    code = error.errno
    if code is None:  # HDF5 reports the system error inside its message: "errno = 28, …"
        found = re.search(r"errno = (\d+)", text)
        code = int(found.group(1)) if found else None
    reason = os.strerror(code) if code else (text.split("(")[0].strip() or "I/O error")
    advice = "free disk space" if code in (errno.ENOSPC, errno.EDQUOT) else "check the disk"
    return GpdeError(f"cannot write {path}: {reason}; the previous file (if any) is unchanged; {advice} or "
                     "choose another --out")


def write_hdf5(path: Path, fill, copy_of_existing: bool = False, lock: bool = True) -> Path:
    """Write `path` atomically: `fill(h5py.File)` fills a new file (or, with `copy_of_existing`,
    a copy of the existing one), under the write lock of `path` (`locked`; pass lock=False if the
    caller holds it).

    HDF5 builds the file in memory and Python writes its bytes to the temporary file: a full
    disk met inside HDF5 surfaces in object destructors, where it cannot be raised, and leaves
    the library in a state that ends in a segmentation fault; met by Python's write it is an
    OSError like any other, which becomes a GpdeError (`write_failure`)."""
    path = Path(path)
    try:
        with (locked(path) if lock else contextlib.nullcontext()), atomic_path(path) as temporary, \
                deferred_interrupts():
            existing = path.read_bytes() if copy_of_existing and path.exists() else None
            data = _render(fill, existing)
            with open(temporary, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
    except OSError as error:
        raise write_failure(path, error) from None
    return path


def _render(fill, existing: bytes | None) -> bytes:
    """The bytes of the HDF5 file that `fill` makes (from `existing`, if given), built in memory."""
    buffer = io.BytesIO(existing or b"")
    with h5py.File(buffer, "a" if existing else "w") as out:
        fill(out)
    return buffer.getvalue()


def write_run(path: str | os.PathLike, run: RunFile) -> Path:
    """Write `run` to `path` atomically (see `write_hdf5`)."""

    path = check_writable(path)
    config = json.dumps(run.config, sort_keys=True)  # fails (TypeError) before anything is written

    def fill(out: h5py.File):
        out.attrs[KIND] = RUN_KIND
        out.attrs[VERSION] = __version__
        out.attrs[PROBLEM] = run.problem
        out.attrs[SEED] = int(run.seed)
        out.attrs[CONFIG] = config
        out.attrs[CREATED] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        for name, datasets in run.groups.items():
            group = out.require_group(name)
            for key in datasets:
                group.create_dataset(key, data=np.asarray(datasets[key]))
        for name, attrs in run.group_attrs.items():
            group = out.require_group(name)
            for key, value in attrs.items():
                group.attrs[key] = value

    return write_hdf5(path, fill)
