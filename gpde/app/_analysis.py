"""Helpers for the analysis notebooks: make sure a result file exists (run it once, then reuse it),
read result files back, tabulate their errors, fit convergence rates, and draw figures.

Everything shown comes from the HDF5 files: the plotting functions take `RunFile`s (or rows made
from them) and an Axes, and never recompute a solve. A file is only computed when it is missing;
an existing file whose stored configuration differs from the one asked for is an error, so a
figure can never silently show a run made with other settings.
"""

from collections.abc import Iterable, Sequence
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from .._errors import ConfigError
from ..io import _store as store
from ._config import LearnConfig, SolveConfig, resolve
from ._learn_run import run_learn
from ._run import run_solve
from gpde.problems import get_problem_class

#: The error measures of a result file (attributes of its /errors group), in table order.
ERROR_KEYS = ("rms", "l2_relative", "linf")
#: How the error measures are named in tables and legends.
ERROR_LABELS = {"rms": "RMS", "l2_relative": "relative L2", "linf": "L∞"}
#: The history dataset of a learning run that holds log σ per outer iteration (Gaussian-type kernels).
LOG_LENGTHSCALE = "parameter.log_lengthscale"


def _plain(value):
    """`value` as it reads back from the JSON text in a result file (tuples become lists)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _check_matches(path: Path, stored: dict, wanted: dict, config_class=None) -> None:
    """ConfigError unless the stored configuration is the wanted one. Problem parameters are
    compared only where the wanted configuration sets them (the file also records the defaults).
    A setting the file does not record (it was written before the setting existed) counts as the
    `config_class` field's default, with which such a file was computed."""
    wanted, stored = _plain(wanted), dict(stored)
    if config_class is not None:
        for item in dataclasses.fields(config_class):
            if item.name in stored:
                continue
            if item.default is not dataclasses.MISSING:
                stored[item.name] = _plain(item.default)
            elif item.default_factory is not dataclasses.MISSING:
                stored[item.name] = _plain(item.default_factory())
    wanted_parameters = wanted.pop("parameters", {}) or {}
    stored_parameters = stored.pop("parameters", {}) or {}
    differences = [
        f"{key}: file has {stored.get(key)!r}, wanted {value!r}" for key, value in wanted.items() if stored.get(key) != value
    ]
    differences += [
        f"parameters.{key}: file has {stored_parameters.get(key)!r}, wanted {value!r}"
        for key, value in wanted_parameters.items()
        if stored_parameters.get(key) != value
    ]
    if differences:
        raise ConfigError(
            f"{path} exists but was made with other settings ({'; '.join(differences)}); "
            f"delete it to recompute, or choose another results folder"
        )


def _ensure(path, problem: str, overrides: dict, learn: bool) -> Path:
    # 64-bit mode is the caller's switch (the notebooks turn it on in their first cell); the
    # solver refuses float32 with a message that says how.


    path = Path(path)
    problem_class = get_problem_class(problem)
    if learn:
        config = resolve(problem, problem_class.learn_defaults, overrides, config_class=LearnConfig)
    else:
        config = resolve(problem, problem_class.defaults, overrides, config_class=SolveConfig)
    if path.exists():
        _check_matches(path, store.read_run(path).config, config.as_dict(), type(config))
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if learn:

        record = run_learn(problem_class, config).record
    else:

        record = run_solve(problem_class, config).record
    return store.write_run(path, record)


def ensure_solve(path: str | Path, problem: str, **overrides) -> Path:
    """The result file of `gpde solve` for `problem` with the problem's defaults updated by
    `overrides` (n_interior=…, steps=…, parameters={…}, …), at `path`. Solves and writes the file
    only if `path` does not exist; an existing file must hold the same configuration (else
    ConfigError). Turns on JAX's 64-bit mode."""
    return _ensure(path, problem, overrides, learn=False)


def ensure_learn(path: str | Path, problem: str, **overrides) -> Path:
    """The result file of `gpde learn` for `problem` with the problem's learning defaults
    (`learn_defaults`) updated by `overrides`, at `path`; computed only if missing, like
    `ensure_solve`."""
    return _ensure(path, problem, overrides, learn=True)


def load_runs(paths: Iterable[str | Path]) -> list[store.RunFile]:
    """The result files at `paths`, read back as RunFiles (plain numpy arrays), in order."""
    return [store.read_run(path) for path in paths]


def steps_taken(run: store.RunFile) -> int:
    """Gauss-Newton steps of a solve result, or outer iterations of a learning result."""
    history = run.groups.get(store.HISTORY, {})
    for column in ("step", "iteration"):
        if column in history:
            return int(np.size(history[column]))
    return 0


def error_table(runs: Sequence[store.RunFile], keys: Sequence[str] = ERROR_KEYS) -> list[dict]:
    """One row per run: problem, n_interior, n_boundary, n_points (their sum), the error measures
    in `keys` (from /errors), and steps (Gauss-Newton steps, or outer iterations when learning)."""
    rows = []
    for run in runs:
        errors = run.group_attrs.get(store.ERRORS, {})
        missing = [key for key in keys if key not in errors]
        if missing:
            raise ConfigError(f"result for '{run.problem}' ({run.created}) has no errors {missing}")
        n_interior, n_boundary = int(run.config["n_interior"]), int(run.config["n_boundary"])
        row = {"problem": run.problem, "n_interior": n_interior, "n_boundary": n_boundary,
               "n_points": n_interior + n_boundary}
        row.update({key: float(errors[key]) for key in keys})
        row["steps"] = steps_taken(run)
        rows.append(row)
    return rows


def before_after_columns(
    run: store.RunFile, keys: Sequence[str] = ERROR_KEYS, field: str | None = None
) -> dict[str, float]:
    """The error measures of a learning result's "before" and "after" re-solves as table columns
    ("before RMS", …, "after L∞"), of the primary field or of the other field `field` (e.g. v)."""
    errors_group = store.ERRORS if field is None else store.field_names(field, primary=False)[3]
    columns = {}
    for stage in ("before", "after"):
        errors = run.group_attrs[f"{stage}/{errors_group}"]
        columns.update({f"{stage} {ERROR_LABELS[key]}": float(errors[key]) for key in keys})
    return columns


def assert_finite_rows(rows: Sequence[dict], name: str) -> None:
    """Fail, naming the row (by its `name` column) and the column, if any float in `rows` is not
    finite: the notebooks' check that every number they display is a number."""
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise AssertionError(f"{row[name]}: {key} = {value}")


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """`rows` (dicts with the same keys) as a Markdown table; floats in 3-significant-digit
    scientific notation."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])

    def cell(value):
        if isinstance(value, float):
            return f"{value:.3e}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def convergence_rate(n_points: Sequence[float], errors: Sequence[float]) -> float:
    """The rate r in error ≈ C N^(−r): minus the least-squares slope of log(error) against
    log(N), for N of shape (k,) and errors of shape (k,), k ≥ 2. Positive r means the error
    decreases as N grows."""
    n_points, errors = np.asarray(n_points, dtype=float), np.asarray(errors, dtype=float)
    if n_points.shape != errors.shape or n_points.ndim != 1 or n_points.size < 2:
        raise ValueError(f"need two or more (N, error) pairs of equal length, got {n_points.shape} and {errors.shape}")
    if len(set(n_points.tolist())) < 2:
        raise ValueError("need at least two different numbers of points to fit a rate")
    if not (np.all(np.isfinite(errors)) and np.all(errors > 0) and np.all(n_points > 0)):
        raise ValueError(f"a rate needs positive finite errors and N, got N={n_points}, errors={errors}")
    slope, _ = np.polyfit(np.log(n_points), np.log(errors), 1)
    return float(-slope)


def plot_error_vs_points(ax, rows: Sequence[dict], problem: str, keys: Sequence[str] = ERROR_KEYS) -> dict[str, float]:
    """Log-log plot of each error measure in `keys` against N = n_interior + n_boundary for the
    rows of `problem`, with the fitted rate (`convergence_rate`) in the legend. Returns the
    rates by key (NaN where fewer than two sizes)."""
    selected = sorted((row for row in rows if row["problem"] == problem), key=lambda row: row["n_points"])
    if not selected:
        raise ValueError(f"no rows for problem '{problem}'")
    n_points = [row["n_points"] for row in selected]
    rates = {}
    for key, marker in zip(keys, "osd^v"):
        errors = [row[key] for row in selected]
        rates[key] = convergence_rate(n_points, errors) if len(set(n_points)) > 1 else math.nan
        ax.loglog(n_points, errors, marker=marker, label=f"{ERROR_LABELS.get(key, key)} (rate {rates[key]:.2f})")
    ax.set_xlabel("collocation points N (interior + boundary)")
    ax.set_ylabel("error on the evaluation grid")
    ax.set_title(problem)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return rates


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _grid(run: store.RunFile, group: str):
    fields = run.groups[store.FIELDS]
    shape = tuple(int(n) for n in run.group_attrs[store.FIELDS][store.GRID_SHAPE])
    if len(shape) != 2:
        raise ValueError(f"maps need a 2-D evaluation grid, this run has shape {shape}")
    points = fields[store.GRID_POINTS]
    return points[:, 0].reshape(shape), points[:, 1].reshape(shape), run.groups[group]


def plot_error_map(ax, run: store.RunFile, which: str = store.ERROR, group: str = store.FIELDS,
                   limit: float | None = None):
    """Map of the field `which` ('error', 'u', 'u_ref', or 'error_a', 'a', … of a further field) of `group` ('fields', or
    'before/fields' of a learning run) on the run's 2-D evaluation grid (shape (m, m)), with a
    colorbar. Errors use a symmetric diverging colour scale on [−limit, limit] (default: the
    largest |error|; pass one limit to compare maps). Returns the mesh."""
    x, y, fields = _grid(run, group)
    if which not in fields:
        raise ValueError(f"group '{group}' holds {sorted(fields)}, not '{which}'")
    values = fields[which]
    if which.startswith(store.ERROR):  # 'error', or 'error_a' of a further field
        limit = limit or float(np.max(np.abs(values))) or 1.0
        mesh = ax.pcolormesh(x, y, values, cmap="RdBu_r", vmin=-limit, vmax=limit, shading="auto")
    else:
        mesh = ax.pcolormesh(x, y, values, cmap="viridis", shading="auto")
    ax.figure.colorbar(mesh, ax=ax)
    n = int(run.config["n_interior"]) + int(run.config["n_boundary"])
    ax.set_title(f"{run.problem}, N = {n}: {which}" + ("" if group == store.FIELDS else f" ({group})"))
    ax.set_xlabel("coordinate 0")
    ax.set_ylabel("coordinate 1")
    return mesh


def plot_residual_history(ax, run: store.RunFile, label: str | None = None):
    """RMS of the PDE residual (history/residual_rms, shape (steps,)) against the Gauss-Newton
    step, on a log scale. Returns the line."""
    history = run.groups[store.HISTORY]
    if label is None:
        label = f"{run.problem}, N = {int(run.config['n_interior']) + int(run.config['n_boundary'])}"
    (line,) = ax.semilogy(history["step"], history["residual_rms"], marker="o", label=label)
    ax.set_xlabel("Gauss-Newton step")
    ax.set_ylabel("residual RMS")
    _integer_ticks(ax)
    ax.grid(True, which="both", alpha=0.3)
    return line


def plot_learning_history(ax, run: store.RunFile, label: str = ""):
    """Outer loss (history/loss) and the grid errors RMS, relative L2, L∞ (history/rms, …),
    each of shape (outer iterations,), against the outer iteration of a learning run, on a log
    scale. `label` prefixes the legend entries."""
    history = run.groups[store.HISTORY]
    iteration = history["iteration"]
    prefix = f"{label}: " if label else ""
    ax.semilogy(iteration, history["loss"], marker="o", label=f"{prefix}outer loss")
    for key, marker in zip(ERROR_KEYS, "sd^"):
        ax.semilogy(iteration, history[key], marker=marker, linestyle="--", label=f"{prefix}{ERROR_LABELS[key]} error")
    ax.set_xlabel("outer iteration")
    ax.grid(True, which="both", alpha=0.3)
    _integer_ticks(ax)


def learned_lengthscales(run: store.RunFile) -> np.ndarray | None:
    """σ after each outer iteration (shape (outer iterations,)) of a learning run whose kernel
    has a scalar log-lengthscale (exp of history/parameter.log_lengthscale), else None."""
    history = run.groups.get(store.HISTORY, {})
    if LOG_LENGTHSCALE not in history:
        return None
    return np.exp(np.asarray(history[LOG_LENGTHSCALE], dtype=float))


def plot_lengthscale_field(ax, run: store.RunFile, column: int = 0):
    """Map of the learned lengthscale field ℓ(x) (fields/lengthscale, shape (m, m, d); column
    `column`) of a Gibbs-kernel learning run. Returns the mesh, or None (and draws nothing) when
    the file holds no lengthscale field."""
    if "lengthscale" not in run.groups.get(store.FIELDS, {}):
        return None
    x, y, fields = _grid(run, store.FIELDS)
    mesh = ax.pcolormesh(x, y, fields["lengthscale"][..., column], cmap="viridis", shading="auto")
    ax.figure.colorbar(mesh, ax=ax)
    ax.set_title(f"{run.problem}: learned lengthscale ℓ_{column}(x)")
    ax.set_xlabel("coordinate 0")
    ax.set_ylabel("coordinate 1")
    return mesh
