"""One HDF5 file per run: configuration and provenance in root attributes, arrays in groups.

Layout (names are the constants below):
    /                 attrs: gpde_version, problem, seed, config (JSON text), created
    /points/          interior (n_i, d), boundary (n_b, d), …
    /fields/          points (n, d) of the evaluation grid (attr grid_shape); u, u_ref, error
                      shaped like the grid
    /errors/          attrs rms, l2_relative, linf
    Multi-field problems (e.g. Darcy's u and a) store each further field f as fields/f,
    fields/f_ref, fields/error_f and its errors in /errors_f (`field_names`); the first field keeps
    the names above. Point sets that the problem carries (observations) go to /points/.
    /history/         one dataset per column, one entry per Gauss-Newton step
                      (step, residual_rms, residual_max, update, seconds); attrs with timings
Files are written to a temporary file in the target directory and renamed, so an interrupted or
failed run never leaves a half-written file and never destroys an existing one.
"""

import datetime
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .._errors import ConfigError

VERSION = "gpde_version"
PROBLEM = "problem"
SEED = "seed"
CONFIG = "config"
CREATED = "created"

POINTS = "points"
FIELDS = "fields"
ERRORS = "errors"
HISTORY = "history"

GRID_POINTS = "points"
GRID_SHAPE = "grid_shape"
U = "u"
U_REF = "u_ref"
ERROR = "error"


def field_names(field: str, primary: bool) -> tuple[str, str, str, str]:
    """(value, reference, error) dataset names in /fields and the errors group of a field: the
    legacy names u, u_ref, error, errors for the primary (first) field; f, f_ref, error_f,
    errors_f for another field f."""
    if primary:
        return U, U_REF, ERROR, ERRORS
    return field, f"{field}_ref", f"{ERROR}_{field}", f"{ERRORS}_{field}"


@dataclass
class RunFile:
    """The contents of a result file as plain Python and numpy values.

    `groups` maps a group path ("points", "history", "before/errors", …) to its datasets;
    `group_attrs` maps a group path to its scalar attributes. `config` is the resolved
    configuration of the run.
    """

    problem: str
    seed: int
    config: dict
    groups: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    group_attrs: dict[str, dict[str, float | int | str]] = field(default_factory=dict)
    gpde_version: str = ""
    created: str = ""


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before any computation, if `path` cannot be written."""
    path = Path(path)
    directory = path.resolve().parent
    if not directory.is_dir():
        raise ConfigError(f"cannot write {path}: directory {directory} does not exist; create it or choose another --out")
    if not os.access(directory, os.W_OK):
        raise ConfigError(f"cannot write {path}: directory {directory} is not writable; choose another --out")
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a directory; give a file name ending in .h5")
    return path


def write_run(path: str | os.PathLike, run: RunFile) -> Path:
    """Write `run` to `path` atomically (temporary file in the same directory, then rename)."""
    from .. import __version__

    path = check_writable(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    os.close(handle)
    try:
        with h5py.File(temporary, "w") as out:
            out.attrs[VERSION] = __version__
            out.attrs[PROBLEM] = run.problem
            out.attrs[SEED] = int(run.seed)
            out.attrs[CONFIG] = json.dumps(run.config, sort_keys=True)
            out.attrs[CREATED] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            for name, datasets in run.groups.items():
                group = out.require_group(name)
                for key, value in datasets.items():
                    group.create_dataset(key, data=np.asarray(value))
            for name, attrs in run.group_attrs.items():
                group = out.require_group(name)
                for key, value in attrs.items():
                    group.attrs[key] = value
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_run(path: str | os.PathLike) -> RunFile:
    """Read a result file back into plain numpy arrays and Python values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no result file at {path}")
    try:
        source = h5py.File(path, "r")
    except OSError as error:
        raise ConfigError(f"{path} is not a readable HDF5 file ({error})") from None
    with source:
        if CONFIG not in source.attrs:
            raise ConfigError(f"{path} is an HDF5 file but not a gpde result (no '{CONFIG}' attribute)")
        groups, group_attrs = {}, {}

        def visit(name, item):
            if isinstance(item, h5py.Dataset):
                parent, _, key = name.rpartition("/")
                groups.setdefault(parent, {})[key] = item[()]
            elif len(item.attrs):
                group_attrs[name] = {key: _plain(value) for key, value in item.attrs.items()}

        source.visititems(visit)
        return RunFile(
            problem=str(source.attrs[PROBLEM]),
            seed=int(source.attrs[SEED]),
            config=json.loads(source.attrs[CONFIG]),
            groups=groups,
            group_attrs=group_attrs,
            gpde_version=str(source.attrs[VERSION]),
            created=str(source.attrs.get(CREATED, "")),
        )


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
