"""The result-file schema: every name gpde writes into or reads from an HDF5 file, the builders
of the solve and learn records, and readers that check what they read.

Two kinds of file:

Run file (`gpde solve`, `gpde learn`)::

    /                 attrs: kind = "gpde-run", gpde_version, problem, seed, config (JSON), created
    /points/          interior (n_i, d), boundary (n_b, d), validation, observations, …
    /fields/          points (n, d) of the evaluation grid (attr grid_shape, product n); u, u_ref,
                      error shaped like the grid; a further field f of a multi-field problem as
                      f, f_ref, error_f (`field_names`); learned Gibbs lengthscale (*grid, d)
    /errors/          attrs rms, l2_relative, linf (a further field f: /errors_f)
    /history/         one dataset per column; solve: step, residual_rms, residual_max, update,
                      seconds (one entry per Gauss-Newton step); attrs: timings and outcome
    learn only:       /before/fields, /before/errors*, /after/errors*, /after_from_iterate/errors*,
                      /kernel (learned arrays; attrs: how to rebuild the kernel)

Study file (`gpde bljes`)::

    /                 attrs: kind = "gpde-bljes-study", gpde_version, created, config (JSON)
    /runs/<benchmark>/<method>/<setting>/seed<k>
                      datasets `STUDY_ARRAYS` (one row per query), subgroup seconds; attrs: config
                      (JSON of the run's settings), each setting, optimum, wall_seconds, finished

Files written before the `kind` attribute existed are run files if they hold a `config`.

Readers never trust a file: a path that is not a regular file is refused before it is opened
(a named pipe would block), and every attribute and dataset a command uses is checked for
presence, type and shape when it is read. Datasets are read lazily, one at a time, and never
beyond `MAX_DATASET_BYTES`, so a small file holding a huge compressed dataset cannot exhaust
memory. Every problem is a ConfigError naming the file, the object and what is wrong.
"""

import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .._errors import ConfigError

# Root attributes.
KIND = "kind"
VERSION = "gpde_version"
PROBLEM = "problem"
SEED = "seed"
CONFIG = "config"
CREATED = "created"
RUN_KIND = "gpde-run"
STUDY_KIND = "gpde-bljes-study"

# Run file groups and datasets.
POINTS = "points"
FIELDS = "fields"
ERRORS = "errors"
HISTORY = "history"
GRID_POINTS = "points"
GRID_SHAPE = "grid_shape"
U = "u"
U_REF = "u_ref"
ERROR = "error"
LENGTHSCALE = "lengthscale"
ERROR_KEYS = ("rms", "l2_relative", "linf")
#: Learn runs: the re-solves with the initial and the learned kernel, and the learned kernel.
BEFORE = "before"
AFTER = "after"
AFTER_FROM_ITERATE = "after_from_iterate"
KERNEL = "kernel"

# Study file.
RUNS = "runs"
SECONDS = "seconds"
STUDY_ARRAYS = ("x", "theta", "observed", "y_f", "y_g", "y_c", "recommendation", "regret", "feasible", "cost")
STUDY_RUN_KEYS = ("benchmark", "method", "setting", "seed")

#: Largest dataset a reader loads into memory (bytes). Results of the published setups hold
#: datasets of a few MB; anything near this limit is not a gpde result.
MAX_DATASET_BYTES = 256 * 2**20
#: Largest attribute a reader loads (elements); gpde writes scalars and short vectors.
MAX_ATTRIBUTE_ELEMENTS = 100_000
#: Most HDF5 objects a reader visits in one file.
MAX_OBJECTS = 100_000


def field_names(field: str, primary: bool) -> tuple[str, str, str, str]:
    """(value, reference, error) dataset names in /fields and the errors group of a field: u,
    u_ref, error, errors for the primary (first) field; f, f_ref, error_f, errors_f for another
    field f."""
    if primary:
        return U, U_REF, ERROR, ERRORS
    return field, f"{field}_ref", f"{ERROR}_{field}", f"{ERRORS}_{field}"


@dataclass
class RunFile:
    """The contents of a run file as plain Python and numpy values.

    `groups` maps a group path ("points", "history", "before/fields", …) to its datasets (read
    from the file on access when the RunFile came from `read_run`); `group_attrs` maps a group
    path to its attributes. `config` is the resolved configuration of the run.
    """

    problem: str
    seed: int
    config: dict
    groups: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    group_attrs: dict[str, dict[str, float | int | str]] = field(default_factory=dict)
    gpde_version: str = ""
    created: str = ""
    #: Where it was read from (None for a record built in memory).
    path: Path | None = None


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def solve_record(*, problem: str, seed: int, config: dict, points: dict, grid_points, grid_shape,
                 fields: dict, field_errors: dict, history: dict, history_attrs: dict) -> RunFile:
    """The run file of a solve: `fields` and `field_errors` keyed as `field_names` says,
    `history` the per-step columns, `history_attrs` the timings and outcome."""
    return RunFile(
        problem=problem, seed=seed, config=config,
        groups={POINTS: dict(points), FIELDS: {GRID_POINTS: np.asarray(grid_points), **fields}, HISTORY: dict(history)},
        group_attrs={FIELDS: {GRID_SHAPE: np.asarray(grid_shape)}, **field_errors, HISTORY: dict(history_attrs)},
    )


def learn_record(*, problem: str, seed: int, config: dict, points: dict, grid_points, grid_shape,
                 fields_after: dict, fields_before: dict, errors_before: dict, errors_after: dict,
                 errors_from_iterate: dict, history: dict, history_attrs: dict, kernel_arrays: dict,
                 kernel_attrs: dict) -> RunFile:
    """The run file of a learning run: the solve layout for the re-solve with the learned kernel,
    plus the re-solve with the initial kernel (`BEFORE`, without the references, which are the
    same), error rows of every re-solve, and the learned kernel (`KERNEL`)."""
    record = solve_record(problem=problem, seed=seed, config=config, points=points, grid_points=grid_points,
                          grid_shape=grid_shape, fields=fields_after, field_errors=errors_after, history=history,
                          history_attrs=history_attrs)
    record.groups[f"{BEFORE}/{FIELDS}"] = {k: v for k, v in fields_before.items() if not k.endswith("_ref")}
    record.groups[KERNEL] = dict(kernel_arrays)
    for label, rows in ((BEFORE, errors_before), (AFTER, errors_after), (AFTER_FROM_ITERATE, errors_from_iterate)):
        record.group_attrs.update({f"{label}/{group}": metrics for group, metrics in rows.items()})
    record.group_attrs[KERNEL] = dict(kernel_attrs)
    return record


def study_root_attrs(version: str, created: str) -> dict:
    """Root attributes of a new study file."""
    return {KIND: STUDY_KIND, VERSION: version, CONFIG: json.dumps({"kind": STUDY_KIND}), CREATED: created}


def study_run_attrs(config: dict, optimum: float, wall_seconds: float, finished: str, version: str) -> dict:
    """Attributes of one study run group."""
    return {CONFIG: json.dumps(config, sort_keys=True), **config, "optimum": optimum, "wall_seconds": wall_seconds,
            "finished": finished, VERSION: version}


# --------------------------------------------------------------------------------------------
# Opening and recognizing files
# --------------------------------------------------------------------------------------------


def check_regular_file(path: str | os.PathLike, what: str = "result file") -> Path:
    """`path` as a Path if it is an existing, non-empty regular file; ConfigError otherwise
    (checked without opening it: opening a named pipe blocks)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"no {what} at {path}; check the path") from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}; check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path} is a directory, not a {what}; give the .h5 file inside it")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file (a pipe, socket or device); give a {what} on disk")
    if info.st_size == 0:
        raise ConfigError(f"{path} is empty, not a {what}; it was not written by gpde")
    return path


def open_hdf5(path: str | os.PathLike, what: str = "result file") -> h5py.File:
    """The HDF5 file at `path` opened read-only; ConfigError if it is not a regular, readable
    HDF5 file."""
    path = check_regular_file(path, what)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        reason = str(error).split(";")[0].split("(")[0].strip() or "unreadable"
        raise ConfigError(f"{path} is not a readable HDF5 file ({reason}); give a {what} written by gpde") from None


def kind_of(source: h5py.File) -> str | None:
    """RUN_KIND, STUDY_KIND or None (foreign) for an open file."""
    try:
        kind = _plain(source.attrs[KIND]) if KIND in source.attrs else None
        if kind == STUDY_KIND:
            return STUDY_KIND
        if kind == RUN_KIND or (kind is None and CONFIG in source.attrs):
            return RUN_KIND
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return None


def file_kind(path: str | os.PathLike) -> str | None:
    """RUN_KIND, STUDY_KIND, or None for anything else (no file, not HDF5, foreign HDF5)."""
    try:
        with open_hdf5(path) as source:
            return kind_of(source)
    except ConfigError:
        return None


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(item, where: str, path: Path) -> dict:
    """All attributes of an HDF5 object as plain values, each checked for size first."""
    values = {}
    try:
        names = list(item.attrs.keys())
        for name in names:
            shape = item.attrs.get_id(name).shape
            if shape is not None and int(np.prod(shape, dtype=np.float64)) > MAX_ATTRIBUTE_ELEMENTS:
                raise ConfigError(f"{path}: attribute '{name}' of /{where} has shape {shape}, too large for a gpde "
                                  "result; the file was not written by gpde")
            values[name] = _plain(item.attrs[name])
    except ConfigError:
        raise
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"{path}: cannot read the attributes of /{where} ({error}); the file is damaged") from None
    return values


def text_attr(attrs: dict, name: str, where: str, path: Path, default: str | None = None) -> str:
    value = attrs.get(name, default)
    if not isinstance(value, str):
        raise ConfigError(f"{path}: attribute '{name}' of /{where} must be text, got {_describe(value)}; "
                          "the file was not written by gpde")
    return value


def int_attr(attrs: dict, name: str, where: str, path: Path) -> int:
    value = attrs.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}: attribute '{name}' of /{where} must be an integer, got {_describe(value)}; "
                          "the file was not written by gpde")
    return value


def float_attr(attrs: dict, name: str, where: str, path: Path) -> float:
    value = attrs.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}: attribute '{name}' of /{where} must be a number, got {_describe(value)}; "
                          "the file was not written by gpde")
    return float(value)


def json_attr(attrs: dict, name: str, where: str, path: Path, expect: type = dict, default: str | None = None):
    text = text_attr(attrs, name, where, path, default)
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path}: attribute '{name}' of /{where} is not JSON text; the file was not written "
                          "by gpde or is damaged") from None
    if not isinstance(value, expect):
        raise ConfigError(f"{path}: attribute '{name}' of /{where} must be a JSON {expect.__name__}, got "
                          f"{_describe(value)}; the file was not written by gpde")
    return value


def _describe(value) -> str:
    if value is None:
        return "nothing (missing)"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'…' if len(text) > 40 else ''}"


# --------------------------------------------------------------------------------------------
# Reading datasets lazily
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def read_dataset(path: Path, name: str) -> np.ndarray:
    """One dataset of the file at `path`, checked: numeric, at most MAX_DATASET_BYTES."""
    with open_hdf5(path) as source:
        try:
            item = source[name]
        except (KeyError, OSError, ValueError):
            raise ConfigError(f"{path} has no dataset /{name}; the file is incomplete or not a gpde result") from None
        if not isinstance(item, h5py.Dataset):
            raise ConfigError(f"{path}: /{name} is a group, expected a dataset; the file was not written by gpde")
        info = _info(item)
        _check_info(path, name, info)
        try:
            return item[()]
        except (OSError, ValueError, TypeError, RuntimeError) as error:
            raise ConfigError(f"{path}: cannot read /{name} ({error}); the file is damaged") from None


def _info(item: h5py.Dataset) -> DatasetInfo:
    shape = tuple(int(n) for n in (item.shape or ()))
    nbytes = int(np.prod(shape, dtype=np.float64) * item.dtype.itemsize)
    return DatasetInfo(shape, item.dtype, nbytes)


def _check_info(path: Path, name: str, info: DatasetInfo):
    if info.dtype.kind not in "biuf":
        raise ConfigError(f"{path}: /{name} holds {info.dtype} values, expected numbers; the file was not written "
                          "by gpde")
    if info.nbytes > MAX_DATASET_BYTES:
        raise ConfigError(f"{path}: /{name} has shape {info.shape} ({info.nbytes / 2**30:.1f} GiB), more than the "
                          f"{MAX_DATASET_BYTES / 2**20:.0f} MiB a gpde result dataset can hold; the file was not "
                          "written by gpde")


class LazyDatasets(Mapping):
    """The datasets of one group of a run file: names and shapes known up front, values read
    from the file (checked) when first accessed."""

    def __init__(self, path: Path, group: str, infos: dict[str, DatasetInfo]):
        self.path, self.group, self.infos, self._cache = path, group, infos, {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.infos:
            raise KeyError(key)
        if key not in self._cache:
            self._cache[key] = read_dataset(self.path, f"{self.group}/{key}" if self.group else key)
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.infos)

    def __len__(self) -> int:
        return len(self.infos)

    def info(self, key: str) -> DatasetInfo:
        return self.infos[key]


def _index(source: h5py.File, path: Path) -> tuple[dict[str, dict[str, DatasetInfo]], dict[str, dict]]:
    """Dataset shapes by group and attributes by group, without reading any dataset."""
    infos, attrs, count = {}, {}, 0
    too_many = object()

    def visit(name, item):
        nonlocal count
        count += 1
        if count > MAX_OBJECTS:
            return too_many
        if isinstance(item, h5py.Dataset):
            parent, _, key = name.rpartition("/")
            infos.setdefault(parent, {})[key] = _info(item)
        elif isinstance(item, h5py.Group) and len(item.attrs):
            attrs[name] = read_attrs(item, name, path)
        return None

    try:
        if source.visititems(visit) is too_many:
            raise ConfigError(f"{path} holds more than {MAX_OBJECTS} HDF5 objects; it is not a gpde result")
    except ConfigError:
        raise
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"{path}: cannot list its contents ({error}); the file is damaged") from None
    return infos, attrs


def read_run(path: str | os.PathLike) -> RunFile:
    """A run file, its root attributes checked, its datasets read lazily (`LazyDatasets`).
    ConfigError (one line) for anything that is not a readable gpde run file."""
    path = check_regular_file(path)
    with open_hdf5(path) as source:
        kind = kind_of(source)
        if kind == STUDY_KIND:
            raise ConfigError(f"{path} is a BLJES study file, not a solve/learn result; use `gpde show` on it")
        root = read_attrs(source, "", path)
        if kind is None:
            raise ConfigError(f"{path} is an HDF5 file but not a gpde result (no '{CONFIG}' attribute)")
        config = json_attr(root, CONFIG, "", path)
        problem = text_attr(root, PROBLEM, "", path)
        seed = int_attr(root, SEED, "", path)
        version = text_attr(root, VERSION, "", path, default="")
        created = text_attr(root, CREATED, "", path, default="")
        infos, group_attrs = _index(source, path)
    groups = {group: LazyDatasets(path, group, found) for group, found in infos.items()}
    return RunFile(problem, seed, config, groups, group_attrs, version, created, path)


# --------------------------------------------------------------------------------------------
# Checked access to what the commands use
# --------------------------------------------------------------------------------------------


def _where(run: RunFile) -> str:
    return str(run.path) if run.path is not None else "the result"


def error_row(run: RunFile, group: str) -> dict[str, float]:
    """The error metrics (ERROR_KEYS) of an errors group, each a number."""
    attrs = run.group_attrs.get(group)
    if attrs is None:
        raise ConfigError(f"{_where(run)} has no /{group} group; the file is incomplete or not a gpde result")
    return {key: float_attr(attrs, key, group, _where(run)) for key in ERROR_KEYS}


def error_groups(run: RunFile, prefix: str = "") -> list[str]:
    """The errors groups under `prefix` ('' or 'before/' …): errors first, then errors_f sorted."""
    found = [g[len(prefix):] for g in run.group_attrs if g.startswith(prefix) and "/" not in g[len(prefix):]]
    rows = sorted(g for g in found if g == ERRORS or g.startswith(f"{ERRORS}_"))
    return [prefix + g for g in rows]


def dataset(run: RunFile, group: str, name: str, ndim: int | None = None, rows: int | None = None) -> np.ndarray:
    """A dataset that must exist, with `ndim` dimensions and `rows` rows when given, finite or not."""
    datasets = run.groups.get(group, {})
    if name not in datasets:
        raise ConfigError(f"{_where(run)} has no dataset /{group}/{name}; the file is incomplete or not a gpde result")
    value = np.asarray(datasets[name])
    if value.dtype.kind not in "biuf":
        raise ConfigError(f"{_where(run)}: /{group}/{name} holds {value.dtype} values, expected numbers")
    if ndim is not None and value.ndim != ndim:
        raise ConfigError(f"{_where(run)}: /{group}/{name} has shape {value.shape}, expected {ndim} dimensions; "
                          "the file was not written by gpde")
    if rows is not None and value.shape[0] != rows:
        raise ConfigError(f"{_where(run)}: /{group}/{name} has {value.shape[0]} rows, expected {rows}; "
                          "the file was not written by gpde")
    return value


def history_summary(run: RunFile) -> tuple[int, float, float] | None:
    """(number of Gauss-Newton steps, final residual RMS, final update) of a solve's history, read
    without loading the columns; None if the file has no per-step history."""
    history = run.groups.get(HISTORY, {})
    if "step" not in history:
        return None
    lengths = []
    for name in ("step", "residual_rms", "update"):
        info = history.info(name) if isinstance(history, LazyDatasets) and name in history else None
        value = None if info is not None else history.get(name)
        shape = info.shape if info is not None else (np.shape(value) if value is not None else None)
        if shape is None or len(shape) != 1 or shape[0] < 1:
            raise ConfigError(f"{_where(run)}: /{HISTORY}/{name} must be a non-empty 1-D column, got "
                              f"{'nothing' if shape is None else f'shape {shape}'}")
        lengths.append(shape[0])
    if len(set(lengths)) != 1:
        raise ConfigError(f"{_where(run)}: the /{HISTORY} columns have different lengths {lengths}; the file is damaged")
    last = [_last(run, name) for name in ("residual_rms", "update")]
    return lengths[0], last[0], last[1]


def _last(run: RunFile, name: str) -> float:
    history = run.groups[HISTORY]
    if isinstance(history, LazyDatasets):
        info = history.info(name)
        _check_info(run.path, f"{HISTORY}/{name}", DatasetInfo(info.shape, info.dtype, 0))
        with open_hdf5(run.path) as source:
            try:
                return float(source[f"{HISTORY}/{name}"][-1])
            except (OSError, ValueError, TypeError, RuntimeError) as error:
                raise ConfigError(f"{run.path}: cannot read /{HISTORY}/{name} ({error}); the file is damaged") from None
    return float(np.asarray(history[name])[-1])


def grid(run: RunFile) -> tuple[np.ndarray, tuple[int, ...]]:
    """The evaluation grid: points (n, d) and grid shape (product n, one entry per dimension)."""
    attrs = run.group_attrs.get(FIELDS, {})
    shape = _plain(attrs.get(GRID_SHAPE))
    if isinstance(shape, int):
        shape = [shape]
    if not (isinstance(shape, list) and shape and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                                                       for n in shape)):
        raise ConfigError(f"{_where(run)}: attribute '{GRID_SHAPE}' of /{FIELDS} must list the grid size per "
                          f"dimension, got {_describe(shape)}; the file was not written by gpde")
    shape = tuple(shape)
    points = dataset(run, FIELDS, GRID_POINTS, ndim=2, rows=int(np.prod(shape)))
    if points.shape[1] != len(shape):
        raise ConfigError(f"{_where(run)}: /{FIELDS}/{GRID_POINTS} has {points.shape[1]} coordinates for a "
                          f"{len(shape)}-D grid; the file is damaged")
    return points, shape


def grid_field(run: RunFile, name: str, shape: tuple[int, ...], group: str = FIELDS, extra: int = 0) -> np.ndarray:
    """A field on the grid, shaped `shape` (plus `extra` trailing dimensions)."""
    value = dataset(run, group, name)
    if value.shape[:len(shape)] != shape or value.ndim != len(shape) + extra:
        raise ConfigError(f"{_where(run)}: /{group}/{name} has shape {value.shape}, expected the grid's {shape}"
                          f"{' + one more axis' if extra else ''}; the file was not written by gpde")
    return value


def learned_kernel_settings(run: RunFile) -> dict:
    """How to rebuild the learned kernel of a learn run: name, lengthscale, field lengthscales,
    fields, dim, seed (checked); its arrays are run.groups[KERNEL]."""
    where = _where(run)
    if KERNEL not in run.group_attrs or KERNEL not in run.groups:
        raise ConfigError(f"{where} holds no learned kernel (it was not written by `gpde learn`); give a learn result")
    attrs = run.group_attrs[KERNEL]
    lengthscale = attrs.get("lengthscale")
    values = lengthscale if isinstance(lengthscale, list) else [lengthscale]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0
                             for v in values):
        raise ConfigError(f"{where}: attribute 'lengthscale' of /{KERNEL} must be positive numbers, got "
                          f"{_describe(lengthscale)}; the file was not written by gpde")
    fields = json_attr(attrs, "fields", KERNEL, where, expect=list, default='["u"]')
    field_lengthscales = json_attr(attrs, "field_lengthscales", KERNEL, where, expect=dict, default="{}")
    if not all(isinstance(f, str) for f in fields) or not fields:
        raise ConfigError(f"{where}: attribute 'fields' of /{KERNEL} must list field names; the file is damaged")
    for name, ls in field_lengthscales.items():
        if not (isinstance(ls, list) and ls and all(isinstance(v, (int, float)) and v > 0 for v in ls)):
            raise ConfigError(f"{where}: lengthscale of field '{name}' in /{KERNEL} must be positive numbers; "
                              "the file is damaged")
    dim = int_attr(attrs, "dim", KERNEL, where)
    if not 1 <= dim <= 10:
        raise ConfigError(f"{where}: attribute 'dim' of /{KERNEL} must be a dimension 1 … 10, got {dim}")
    seed = int_attr(attrs, "seed", KERNEL, where)
    return {"name": text_attr(attrs, "name", KERNEL, where), "lengthscale": tuple(float(v) for v in values),
            "field_lengthscales": {k: tuple(v) for k, v in field_lengthscales.items()}, "fields": tuple(fields),
            "dim": dim, "seed": seed}
