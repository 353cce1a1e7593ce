"""BLJES studies: methods × benchmarks × settings × seeds, run on Dask, stored in one HDF5 file.

    gpde bljes smoke-1+1,smd1 --method random,bljes --seeds 10 --iters 60 --init 3 --out study.h5

Every run is independent, so the runner submits them to a `dask.distributed` client:
- default (`scheduler=None`): a client inside this process (one worker thread; no cluster),
- `"local"`: a LocalCluster of one single-threaded worker PROCESS per CPU core (`local_cluster`),
- an address (`"tcp://host:8786"`): an existing Dask cluster.
Workers receive only a `RunSpec` (names and numbers) and build the benchmark and the method
themselves, so nothing large or unpicklable travels. Only the driver writes the study file.

Study file (HDF5). Root attributes: `kind` = "gpde-bljes-study", gpde_version, created, config
(JSON). One group per run, `runs/<benchmark>/<method>/<setting>/seed<k>`, holding the arrays of
`BilevelRun` (x, theta, observed, y_f, y_g, y_c, recommendation, regret: one row per query) and a
subgroup `seconds` (one dataset per timed phase); its attributes hold the run's configuration
(JSON `config` and each field), the benchmark's F* and the run's wall time.

Durability. Each finished run is added by copying the study file to a temporary file in the same
directory, appending the group there and renaming it over the study (`gpde.io.write_hdf5`, under
the write lock of the study, so concurrent invocations with the same `--out` cannot lose each
other's runs; the lock file is removed when released). A study killed at any moment therefore
keeps every run finished before the kill, and the file is never half-written; what a SIGKILL
leaves (a temporary file) is removed by the next writer. On restart, runs whose group exists are skipped; several invocations with the same
`--out` add their runs to the same file. A group that exists with a different configuration
(other budget or noise) is an error, not silently mixed.
"""

import ast
from collections.abc import Callable, Iterable, Sequence
import contextlib
import dataclasses
import datetime
import logging
import os
from pathlib import Path
import sys
import time

import h5py
import numpy as np

from .._errors import ConfigError, GpdeError
from .._version import __version__
from ..bljes._loop import run_optimization
from ..bljes._methods import METHODS, make_method
from ..io import _schema as schema
from ..io import write_hdf5
from ..io._lock import locked
from ._validation import check_memory
from gpde.problems.bilevel import catalogue, get_benchmark

KIND = schema.KIND
STUDY_KIND = schema.STUDY_KIND
RUNS = schema.RUNS
SECONDS = schema.SECONDS
CONFIG = schema.CONFIG
ARRAYS = schema.STUDY_ARRAYS
SETTINGS = ("coupled", "decoupled")
DEFAULT_COSTS = (1.0, 1.0)
#: Bytes a planned run takes before it starts (its RunSpec, Dask future and bookkeeping), and the
#: surrogate's float64 Gram matrices per squared evaluation count (objective, constraint, factors).
RUN_BYTES = 4096
SURROGATE_MATRICES = 8


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a study: everything a worker needs, as plain values."""

    benchmark: str
    method: str
    setting: str
    seed: int
    evaluations: int
    initial: int
    noise: float
    #: Method options in canonical text form, "paths=10,tau=0.05" (sorted; "" for the defaults).
    #: Runs with options are separate cells of the study (the K and τ ablations).
    options: str = ""
    #: (cost of an f query, cost of a g query): the run records its cumulative cost, and decoupled
    #: BLJES divides each level's acquisition by its cost. Runs with other costs are separate cells.
    costs: tuple[float, float] = DEFAULT_COSTS

    @property
    def label(self) -> str:
        """The method with its options, e.g. 'bljes' or 'bljes[paths=10]'."""
        return method_label(self.config())

    @property
    def path(self) -> str:
        return f"{RUNS}/{self.benchmark}/{self.label}/{setting_label(self.config())}/seed{self.seed}"

    def config(self) -> dict:
        """The run's settings as plain (JSON) values; `costs` only when not the default, so that
        runs written before costs existed keep their configuration and path."""
        config = dataclasses.asdict(self)
        config["costs"] = [float(c) for c in self.costs]
        if tuple(config["costs"]) == DEFAULT_COSTS:
            del config["costs"]
        return config


@dataclasses.dataclass
class StudyRun:
    """One run read back from a study file."""

    config: dict
    arrays: dict[str, np.ndarray]
    seconds: dict[str, np.ndarray]
    attrs: dict


def setting_label(config: dict) -> str:
    """'coupled', 'decoupled' or, with costs other than 1:1, e.g. 'decoupled[f=1,g=0.1]'."""
    costs = config.get("costs")
    return f"{config['setting']}[f={costs[0]:g},g={costs[1]:g}]" if costs else config["setting"]


def parse_costs(text: str) -> tuple[float, float]:
    """'f=1,g=0.1' → (1.0, 0.1): the cost of an upper (f) and of a lower (g) query, both > 0."""
    costs = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, value = part.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or name.strip() not in ("f", "g") or name.strip() in costs or not (np.isfinite(number) and number > 0):
            raise ConfigError(f"--cost must be f=COST,g=COST with both costs > 0 (e.g. f=1,g=0.1), got '{text}'")
        costs[name.strip()] = number
    if set(costs) != {"f", "g"}:
        raise ConfigError(f"--cost must give both levels, f=COST,g=COST (e.g. f=1,g=0.1), got '{text}'")
    return costs["f"], costs["g"]


def method_label(config: dict) -> str:
    """'method' or 'method[options]' of a run configuration (files without options included)."""
    options = config.get("options", "")
    return f"{config['method']}[{options}]" if options else config["method"]


def parse_options(text: str) -> dict:
    """'paths=10,tau=0.05' → {'paths': 10, 'tau': 0.05} (numbers, booleans or strings)."""
    options = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"method options must be NAME=VALUE separated by commas, got '{part}'")
        try:
            options[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[name.strip()] = value.strip()
    return options


def canonical_options(text: str) -> str:
    """The options text in one spelling, so that equal options make equal run paths."""
    return ",".join(f"{name}={value!r}" for name, value in sorted(parse_options(text).items()))


def _names(text: str | Sequence[str], known: Iterable[str], what: str) -> list[str]:
    """A comma list (or 'all') of names, checked against `known`."""
    known = list(known)
    parts = text.split(",") if isinstance(text, str) else list(text)
    parts = [part.strip() for part in parts if part.strip()]
    if not parts:
        raise ConfigError(f"no {what} given; choose from: {', '.join(known)} (or 'all')")
    if parts == ["all"]:
        return known
    unknown = [part for part in parts if part not in known]
    if unknown:
        raise ConfigError(f"unknown {what} '{unknown[0]}'; choose from: {', '.join(known)} (or 'all')")
    return list(dict.fromkeys(parts))


def _benchmark_names(text: str | Sequence[str], known: Iterable[str]) -> list[str]:
    """Like `_names`, for benchmarks that may carry an option in brackets ('smd1[noise=0.05]'):
    commas inside brackets do not separate names; the base name is checked against `known`."""
    if isinstance(text, str):
        parts, depth, current = [], 0, ""
        for char in text:
            depth += {"[": 1, "]": -1}.get(char, 0)
            if char == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += char
        text = [*parts, current]
    names = list(text)
    bases = _names([name.split("[", 1)[0] for name in names], known, "benchmark")
    if [name.strip() for name in names if name.strip()] == ["all"]:
        return bases
    return list(dict.fromkeys(name.strip() for name in names if name.strip()))


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def parse_seeds(value: int | str) -> range:
    """The seeds of a study: N (an integer or its text) means 0 … N − 1, 'A-B' means A … B
    inclusive, so that more seeds can be added to a study file later (its finished runs are
    skipped). Raises ConfigError naming the accepted forms."""
    if isinstance(value, str):
        text = value.strip()
        first, dash, last = text.partition("-")
        if dash and first.strip().isdigit() and last.strip().isdigit():
            first, last = int(first), int(last)
            if first <= last:
                return range(first, last + 1)
        elif not dash and text.isdigit():
            value = int(text)
        if isinstance(value, str):
            raise ConfigError(f"--seeds must be a positive integer N (seeds 0 … N−1) or a range A-B with "
                              f"0 ≤ A ≤ B (seeds A … B), got {value!r}")
    return range(_positive("--seeds", value))


def plan_study(
    benchmarks: str | Sequence[str],
    methods: str | Sequence[str] = "bljes",
    settings: str | Sequence[str] = "coupled",
    seeds: int | str = 10,
    evaluations: int = 60,
    initial: int = 3,
    noise: float = 0.0,
    options: str = "",
    costs: str | tuple[float, float] = DEFAULT_COSTS,
) -> list[RunSpec]:
    """The runs of a study, checked: benchmark, method and setting names (comma lists or 'all';
    a benchmark may carry the option [noise=LEVEL], e.g. 'smd1[noise=0.05]'), seeds 0 … seeds − 1
    or, for a text 'A-B', A … B (`parse_seeds`), `evaluations` queries per run of which `initial`
    are the random initial design, `costs` of an f and a g query ('f=1,g=0.1' or a pair). Builds every benchmark and
    method once, so that a bad combination fails here, before any run starts. Raises ConfigError
    naming the problem and the fix."""


    benchmark_names = _benchmark_names(benchmarks, catalogue())
    costs = parse_costs(costs) if isinstance(costs, str) else tuple(float(c) for c in costs)
    if len(costs) != 2 or not all(np.isfinite(c) and c > 0 for c in costs):
        raise ConfigError(f"costs must be (cost of an f query, cost of a g query), both > 0, got {costs!r}")
    method_names = _names(methods, METHODS, "method")
    setting_names = _names(settings, SETTINGS, "setting")
    seeds = parse_seeds(seeds)
    evaluations = _positive("--iters (evaluations per run)", evaluations)
    initial = _positive("--init (initial random evaluations)", initial)
    if initial > evaluations:
        raise ConfigError(f"--init ({initial}) must not exceed --iters ({evaluations}): the initial "
                          "evaluations count toward the budget")
    if not (isinstance(noise, (int, float)) and np.isfinite(noise) and noise >= 0):
        raise ConfigError(f"--noise must be a finite standard deviation >= 0, got {noise!r}")
    runs = float(len(benchmark_names)) * len(method_names) * len(setting_names) * len(seeds)
    check_memory(runs * RUN_BYTES + SURROGATE_MATRICES * 8.0 * float(evaluations) ** 2,
                 f"a study of {runs:.0f} runs with {evaluations} evaluations each",
                 "use fewer --seeds, methods or benchmarks, or fewer --iters")
    for name in benchmark_names:
        get_benchmark(name)
    options = canonical_options(options)
    for name in method_names:
        make_method(name, **parse_options(options))
    return [RunSpec(b, m, s, seed, evaluations, initial, float(noise), options, costs)
            for b in benchmark_names for m in method_names for s in setting_names for seed in seeds]


def run_one(spec: RunSpec) -> dict:
    """Execute one run (on a worker): arrays of the `BilevelRun`, its phase timings and wall time."""
    import jax

    jax.config.update("jax_enable_x64", True)  # the surrogates need float64; workers start fresh



    benchmark = get_benchmark(spec.benchmark)
    start = time.perf_counter()
    run = run_optimization(benchmark, make_method(spec.method, **parse_options(spec.options)), coupled=spec.setting == "coupled",
                           evaluations=spec.evaluations, initial=spec.initial, noise=spec.noise, seed=spec.seed,
                           costs=spec.costs)
    return {
        "arrays": {name: np.asarray(getattr(run, name)) for name in ARRAYS},
        "seconds": {phase: np.asarray(values) for phase, values in run.seconds.items()},
        "wall_seconds": time.perf_counter() - start,
        "optimum": float(benchmark.optimum[1]),
    }


# --------------------------------------------------------------------------------------------
# The study file
# --------------------------------------------------------------------------------------------


def is_study(path: str | os.PathLike) -> bool:
    """Whether `path` is a BLJES study file (as opposed to a solve/learn result)."""
    return schema.file_kind(path) == STUDY_KIND


def _open_existing(path: Path):
    source = schema.open_hdf5(path, "BLJES study file")
    if schema.kind_of(source) != STUDY_KIND:
        source.close()
        raise ConfigError(f"{path} is not a BLJES study file (a solve/learn result?); choose another --out")
    return source


def _run_config(group, name: str, path: Path) -> dict:
    """The checked configuration of one run group."""
    config = schema.json_attr(schema.read_attrs(group, name, path), CONFIG, name, path)
    for key in schema.STUDY_RUN_KEYS:
        value = config.get(key)
        kind = int if key == "seed" else str
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigError(f"{path}: run /{name} needs {key} ({kind.__name__}) in its configuration, got "
                              f"{value!r}; the study file is damaged")
    if not isinstance(config.get("options", ""), str):
        raise ConfigError(f"{path}: run /{name} has options that are not text; the study file is damaged")
    return config


def _stored_runs(source, path: Path) -> dict[str, dict]:
    found, count = {}, 0
    if RUNS not in source:
        return found

    def visit(name, item):
        nonlocal count
        count += 1
        if count > schema.MAX_OBJECTS:
            raise ConfigError(f"{path} holds more than {schema.MAX_OBJECTS} HDF5 objects; it is not a gpde study")
        if isinstance(item, h5py.Group) and CONFIG in item.attrs:
            found[f"{RUNS}/{name}"] = _run_config(item, f"{RUNS}/{name}", path)

    try:
        source[RUNS].visititems(visit)
    except ConfigError:
        raise
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"{path}: cannot list its runs ({error}); the study file is damaged") from None
    return found


def finished_runs(path: str | os.PathLike) -> dict[str, dict]:
    """Run group path → stored configuration, for the runs already in the study file (none if
    the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return {}
    with _open_existing(path) as source:
        return _stored_runs(source, path)


def append_run(path: str | os.PathLike, spec: RunSpec, result: dict, replace: bool = False) -> bool:
    """Add one finished run to the study file atomically (copy, append, rename). False if the
    run was already there (written meanwhile by another invocation). With `replace`, a file at
    `path` that is not a study is replaced by a new study (the CLI's --overwrite)."""

    path = Path(path)
    with locked(path):
        fresh = not path.exists() or (replace and schema.file_kind(path) != STUDY_KIND)
        if not fresh:
            with _open_existing(path) as source:
                if spec.path in source:
                    return False

        def fill(out):
            if fresh:
                out.attrs.update(schema.study_root_attrs(__version__, _now()))
            group = out.create_group(spec.path)
            for name, values in result["arrays"].items():
                group.create_dataset(name, data=values)
            timings = group.create_group(SECONDS)
            for phase, values in result["seconds"].items():
                timings.create_dataset(phase, data=values)
            group.attrs.update(schema.study_run_attrs(spec.config(), result["optimum"], result["wall_seconds"],
                                                      _now(), __version__))

        write_hdf5(path, fill, copy_of_existing=not fresh, lock=False)
    return True


def read_study(path: str | os.PathLike) -> list[StudyRun]:
    """Every run of a study file, sorted by benchmark, method, setting, seed; each run's arrays
    checked (numeric, at most `schema.MAX_DATASET_BYTES`, a non-empty regret column)."""
    path = schema.check_regular_file(path, "BLJES study file")
    runs = []
    with _open_existing(path) as source:
        configs = _stored_runs(source, path)
    for name, config in configs.items():
        arrays = {}
        for key in ARRAYS:
            try:
                arrays[key] = schema.read_dataset(path, f"{name}/{key}")
            except ConfigError:
                if key == "regret":
                    raise
        regret = arrays["regret"]
        if regret.ndim != 1 or regret.size == 0:
            raise ConfigError(f"{path}: /{name}/regret must be a non-empty column, got shape {regret.shape}")
        with _open_existing(path) as source:
            group = source[name]
            attrs = schema.read_attrs(group, name, path)
            if "wall_seconds" in attrs:
                schema.float_attr(attrs, "wall_seconds", name, path)
            phases = list(group[SECONDS].keys()) if SECONDS in group else []
        seconds = {phase: schema.read_dataset(path, f"{name}/{SECONDS}/{phase}") for phase in phases}
        runs.append(StudyRun(config=config, arrays=arrays, seconds=seconds, attrs=attrs))
    return sorted(runs, key=lambda r: (str(r.config["benchmark"]), method_label(r.config), str(r.config["setting"]),
                                       str(r.config["seed"])))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def final_regret_table(runs: Sequence[StudyRun]) -> dict[tuple[str, str, str], dict]:
    """(benchmark, method, setting) → median, quartiles of the final regret over seeds, number of
    seeds and of evaluations (the smallest, if runs of one cell differ), and how many runs end on
    an infeasible recommendation (constrained benchmarks; 0 for runs stored without `feasible`)."""
    cells: dict[tuple[str, str, str], list[StudyRun]] = {}
    for run in runs:
        cells.setdefault((run.config["benchmark"], method_label(run.config), setting_label(run.config)), []).append(run)
    table = {}
    for key, members in sorted(cells.items()):
        final = np.array([run.arrays["regret"][-1] for run in members])
        q1, median, q3 = np.quantile(final, [0.25, 0.5, 0.75])
        table[key] = {"median": float(median), "q1": float(q1), "q3": float(q3), "seeds": len(members),
                      "evaluations": min(len(run.arrays["regret"]) for run in members),
                      "infeasible": sum(1 for run in members if "feasible" in run.arrays and not run.arrays["feasible"][-1]),
                      "seconds": float(np.median([run.attrs.get("wall_seconds", np.nan) for run in members]))}
    return table


# --------------------------------------------------------------------------------------------
# Running a study
# --------------------------------------------------------------------------------------------


def local_cluster(n_workers: int | None = None, **options):
    """A `distributed.LocalCluster` of `n_workers` (default: one per CPU core) single-threaded worker
    processes. Their BLAS and OpenMP run on one thread (distributed's default); XLA keeps the
    settings of this process (XLA_FLAGS is inherited), because XLA's CPU backend may sum in another
    order on another number of threads, and the runs must be bitwise those of the in-process client.
    `options` go to LocalCluster (e.g. `env` for the workers' environment)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, processes=True, **options)


@contextlib.contextmanager
def _client(scheduler: str | None):
    """A dask.distributed client for `scheduler` (None: in this process; "local": a LocalCluster
    of processes; otherwise the address of a running scheduler)."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("the study runner needs dask.distributed: pip install 'dask[distributed]'") from None
    # ":0": any free port (None still binds the HTTP server to the default 8787, warning if taken).
    quiet = {"silence_logs": logging.ERROR, "dashboard_address": ":0"}
    cluster = None
    if scheduler is None:
        client = Client(processes=False, n_workers=1, threads_per_worker=1, **quiet)
    elif scheduler == "local":
        cluster = local_cluster(**quiet)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as error:
            raise ConfigError(f"cannot reach the Dask scheduler at '{scheduler}' ({error}); start one "
                              "(`dask scheduler` + `dask worker ADDRESS`) or use --scheduler local") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class _Progress:
    """A one-line progress bar on stderr (a line per run when stderr is not a terminal)."""

    def __init__(self, total: int, skipped: int, stream=None):
        self.total, self.done, self.stream = total, 0, stream or sys.stderr
        self.start = time.perf_counter()
        self.interactive = getattr(self.stream, "isatty", lambda: False)()
        if skipped:
            print(f"bljes study: {skipped} run(s) already in the study file, skipped", file=self.stream, flush=True)
        self.show("")

    def show(self, last: str):
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        line = (f"bljes study [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} runs, "
                f"{time.perf_counter() - self.start:6.1f} s{'  ' + last if last else ''}")
        if self.interactive:
            print("\r" + line, end="\n" if self.done == self.total else "", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def advance(self, last: str):
        self.done += 1
        self.show(last)


@dataclasses.dataclass
class StudyReport:
    ran: list[RunSpec]
    skipped: list[RunSpec]
    out: Path
    #: Runs of this invocation that another invocation had added to `out` first.
    concurrent: list[RunSpec] = dataclasses.field(default_factory=list)


def run_study(
    specs: Sequence[RunSpec],
    out: str | os.PathLike,
    *,
    scheduler: str | None = None,
    progress: bool = True,
    stream=None,
    replace: bool = False,
) -> StudyReport:
    """Run every spec not yet in `out` on Dask and add each finished run to `out` as it completes.

    A run that raises is reported and left out of the file; after the others finish a GpdeError
    names the failed runs (rerunning the same command retries only those). A run that another
    invocation added meanwhile is counted in `concurrent`, not in `ran`. With `replace`, a file
    at `out` that is not a study is replaced (see `append_run`)."""
    out = Path(out)
    existing = {} if replace else finished_runs(out)
    for spec in specs:
        stored = existing.get(spec.path)
        if stored is not None and stored != spec.config():
            differing = ", ".join(f"{k}={stored.get(k)!r} (now {v!r})" for k, v in spec.config().items()
                                  if stored.get(k) != v)
            raise ConfigError(f"{out} already holds run {spec.path} with other settings: {differing}; "
                              "use the same settings or another --out")
    todo = [spec for spec in specs if spec.path not in existing]
    skipped = [spec for spec in specs if spec.path in existing]
    ran, concurrent, failed = [], [], []
    if not todo and progress:
        print(f"bljes study: all {len(skipped)} run(s) already in {out}; nothing to run", file=stream or sys.stderr)
    if todo:
        from distributed import as_completed

        with _client(scheduler) as client:
            bar = _Progress(len(todo), len(skipped), stream) if progress else None
            futures = {client.submit(run_one, spec, pure=False, key=f"bljes-{spec.path}-{time.time_ns()}"): spec
                       for spec in todo}
            for future in as_completed(futures):
                spec = futures[future]
                label = f"{spec.benchmark}/{spec.method}/{spec.setting}/seed{spec.seed}"
                if future.status == "error":
                    failed.append((spec, future.exception()))
                    if bar:
                        bar.advance(f"{label} FAILED: {failed[-1][1]}")
                    continue
                result = future.result()
                if append_run(out, spec, result, replace=replace and not ran):
                    ran.append(spec)
                else:
                    concurrent.append(spec)
                if bar:
                    bar.advance(f"{label}: final regret {result['arrays']['regret'][-1]:.3g}")
    if failed:
        spec, error = failed[0]
        kept = (f"the {len(ran) + len(concurrent)} finished runs are in {out}" if out.is_file() and (ran or concurrent)
                else "no run finished, so no study file was written")
        raise GpdeError(f"{len(failed)} of {len(todo)} runs failed (first: {spec.path}: {error}); {kept}; "
                        "rerun the same command to retry the failed ones")
    return StudyReport(ran=ran, skipped=skipped, out=out, concurrent=concurrent)


def format_table(table: dict, value: Callable[[dict], str] | None = None) -> str:
    """The final-regret table as text: one row per benchmark, one column per method/setting; a
    cell reads 'median (seeds)', with ', k infeasible' where k runs end infeasible."""
    value = value or (lambda cell: f"{cell['median']:.3g} ({cell['seeds']}"
                      + (f", {cell['infeasible']} infeasible)" if cell.get("infeasible") else ")"))
    columns = sorted({(m, s) for (_, m, s) in table})
    benchmarks = sorted({b for (b, _, _) in table})
    headers = ["benchmark"] + [f"{m}/{s}" for m, s in columns]
    rows = [[b] + [value(table[(b, m, s)]) if (b, m, s) in table else "—" for m, s in columns] for b in benchmarks]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [headers, *rows])
