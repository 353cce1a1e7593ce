"""The `gpde` command: solve, learn, bljes, show, plot, list.

Exit codes: 0 success; 1 numerical failure (failed Cholesky, diverged or non-finite solve) or a
failed write (full disk); 2 bad input (flags, TOML, parameters, sizes, files); 130 interrupted
(Ctrl-C or SIGTERM). Errors are one line on stderr, without traceback. Every input is checked
(`_validation`, the configuration classes, the schema's readers) before any computation starts.
"""

import argparse
import dataclasses
import json
from pathlib import Path
import sys

import jax
import numpy as np

from . import _study as study
from . import _validation as validation
from .._errors import ConfigError, GpdeError, SolverError
from .._kernel_choice import KERNELS
from .._results import RESULTS, is_failure, result_name
from .._version import __version__
from ..io import _schema as schema
from ..io import _store as store
from ..io import terminate_as_interrupt
from ._config import LearnConfig, SolveConfig, load_toml, resolve
from ..learn import BATCH_REDRAWS, OUTER_LOSSES
from ._learn_run import learning_points, run_learn
from ._plotting import check_figure_path, plot_fields
from ._run import CALIBRATION, build_problem, collocation_points, continuation_stages, learned_kernel, run_solve
from ._study import final_regret_table, format_table, read_study
from ._study_plots import plot_study
from ._validation import ArgumentParser
from ..sparse import AUTO_SPARSE_FROM, SOLVER_NAMES
from ..solve import COVERAGE_2_GOAL, coverage_verdict
from gpde.problems import DEFAULT_PROBLEM, catalogue, get_problem_class
from gpde.problems.bilevel import catalogue as bilevel_catalogue


def _lengthscales(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got '{text}'") from None


def _parameter(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got '{text}'")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"parameter {name} needs a number, got '{value}'") from None


def _stretch(text: str) -> dict:
    parts = text.split(",")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"expected AXIS,CENTRE,WIDTH,RATIO (e.g. 1,0,0.03,10), got '{text}'")
    if not values[0].is_integer():
        raise argparse.ArgumentTypeError(f"the stretch's AXIS is an input index (0, 1, …), got '{parts[0]}'")
    return dict(zip(("axis", "centre", "width", "ratio"), [int(values[0]), *values[1:]]))


def _continuation(text: str) -> dict:
    if text.strip().lower() == "none":
        return {}  # no continuation, also where the problem's defaults have one
    name, sep, values = text.partition("=")
    try:
        numbers = [float(part) for part in values.split(",")] if sep else []
    except ValueError:
        numbers = []
    if not name.strip() or not numbers:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,… (e.g. viscosity=0.02,0.01) or none, got '{text}'")
    return {name.strip(): numbers}


def _field_lengthscale(text: str) -> tuple[str, tuple[float, ...]]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=LENGTHSCALE(S), e.g. a=0.14, got '{text}'")
    return name.strip(), _lengthscales(value)


def _field_variance(text: str) -> tuple[str, float | str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=FACTOR or FIELD=auto, e.g. a=16, got '{text}'")
    value = value.strip()
    if value == "auto":
        return name.strip(), value
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FIELD=FACTOR or FIELD=auto, e.g. a=16, got '{text}'") from None


def _parser() -> argparse.ArgumentParser:

    parser = ArgumentParser(prog="gpde", description="Gaussian-process collocation for nonlinear PDEs.")
    parser.add_argument("--version", action="version", version=f"gpde {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    solve = commands.add_parser("solve", help="solve a problem by GP collocation and write an HDF5 result")
    solve.add_argument("problem", nargs="?", help="problem name (default: eikonal); see `gpde list`")
    solve.add_argument("--kernel", help="kernel name; see `gpde list`")
    solve.add_argument("--lengthscale", type=_lengthscales, help="one value, or one per dimension: 0.3,0.05")
    solve.add_argument("--n-interior", type=int, dest="n_interior", help="number of interior points")
    solve.add_argument("--n-boundary", type=int, dest="n_boundary", help="number of boundary points")
    solve.add_argument("--layout", help="collocation points: grid or random")
    solve.add_argument("--nugget", type=float, help="nugget η (scaled per constraint, adaptive)")
    solve.add_argument("--solver", choices=SOLVER_NAMES,
                       help=f"linear solver per Gauss-Newton step: dense, sparse (sparse Cholesky + CG) or auto "
                            f"(sparse from {AUTO_SPARSE_FROM} points)")
    solve.add_argument("--rho", type=float, help="sparsity radius ρ of the sparse solver (default 5)")
    solve.add_argument("--stretch", type=_stretch, metavar="AXIS,CENTRE,WIDTH,RATIO",
                       help="magnify the kernel's input AXIS by RATIO within about WIDTH of CENTRE (a front or "
                            "layer; points follow), e.g. 1,0,0.03,10 for Burgers' shock at x = 0")
    solve.add_argument("--continuation", type=_continuation, metavar="NAME=V1,V2,…",
                       help="first solve with the problem parameter NAME at V1, V2, … (4 steps each, warm-starting), "
                            "e.g. viscosity=0.02,0.011,0.006; none: no continuation (eikonal has one by default)")
    solve.add_argument("--sparse-std", action="store_true", default=None, dest="sparse_std",
                       help="sparse solver: also store the posterior σ (a CG solve per grid point), docs/sparse-posterior.md")
    solve.add_argument("--std-draws", type=int, dest="std_draws", metavar="N",
                       help="store σ from N randomized-MAP draws (each a full re-solve; N >= 2, e.g. 100) instead of "
                            "the linearized posterior; dense solver only")
    solve.add_argument("--steps", type=int, help="maximum number of Gauss-Newton steps")
    solve.add_argument("--tolerance", type=float, help="stop when the relative update is below this")
    solve.add_argument("--seed", type=int, help="random seed of the point sets (and network weights)")
    solve.add_argument("--grid", type=int, help="evaluation grid nodes per side (default 100)")
    solve.add_argument("--param", type=_parameter, action="append", default=[], metavar="NAME=VALUE",
                       help="problem parameter, e.g. epsilon=0.1 or viscosity=0.01")
    solve.add_argument("--field-lengthscale", type=_field_lengthscale, action="append", default=[],
                       dest="field_lengthscales", metavar="FIELD=VALUES",
                       help="lengthscale of another unknown field of a multi-field problem, e.g. a=0.14 (darcy)")
    solve.add_argument("--field-variance", type=_field_variance, action="append", default=[],
                       dest="field_variances", metavar="FIELD=FACTOR|auto",
                       help="prior variance factor of a field, e.g. a=16 (changes the solution); auto: the factor "
                            "of largest likelihood among 0.25 … 256 (one solve each)")
    solve.add_argument("--kernel-from", dest="kernel_from", metavar="RESULT.h5",
                       help="re-solve with the kernel learned by `gpde learn` (stored in RESULT.h5)")
    solve.add_argument("--config", help="TOML file with any of the settings above")
    solve.add_argument("--out", help="result file (default gpde-PROBLEM.h5)")
    solve.add_argument("--overwrite", action="store_true", help="replace --out even if it is a BLJES study file")

    learn = commands.add_parser("learn", help="learn kernel hyperparameters by bilevel optimization")
    learn.add_argument("problem", nargs="?", help="problem name (default: eikonal)")
    learn.add_argument("--kernel", help="kernel to learn: gaussian, additive, gibbs, …")
    learn.add_argument("--lengthscale", type=_lengthscales,
                       help="initial lengthscale(s); for gibbs the output scale of the field (two values: per dimension)")
    learn.add_argument("--field-lengthscale", type=_field_lengthscale, action="append", default=[],
                       dest="field_lengthscales", metavar="FIELD=VALUES",
                       help="initial lengthscale of another field of a multi-field problem, e.g. a=1.0")
    learn.add_argument("--gn-steps", type=int, dest="gn_steps", help="outer Gauss-Newton iterations")
    learn.add_argument("--inner-steps", type=int, dest="inner_steps", help="optimizer steps per outer iteration")
    learn.add_argument("--lr", type=float, dest="learning_rate", help="Adam learning rate")
    learn.add_argument("--trainable", help="which hyperparameters: all or lengthscale")
    learn.add_argument("--n-interior", type=int, dest="n_interior")
    learn.add_argument("--n-boundary", type=int, dest="n_boundary")
    learn.add_argument("--n-validation", type=int, dest="n_validation")
    learn.add_argument("--batch-size", type=int, dest="batch_size", help="validation minibatch (default: all)")
    learn.add_argument("--batch-redraw", dest="batch_redraw", choices=BATCH_REDRAWS,
                       help="with --batch-size: a new batch before every optimizer step (default) or once per "
                            "outer iteration (as the published codes)")
    learn.add_argument("--validation-margin", type=float, dest="validation_margin",
                       help="draw validation points at least this far from the boundary")
    learn.add_argument("--update-steps", type=int, dest="update_steps",
                       help="Gauss-Newton steps with the new hyperparameters per outer iteration (default 1, as published)")
    learn.add_argument("--axis-search", action="store_true", default=None, dest="axis_search",
                       help="start every outer iteration with a grid search over one lengthscale factor per input "
                            "axis (config axis_search; with --inner-steps 0 the searches alone move the lengthscales)")
    learn.add_argument("--start-steps", type=int, dest="start_steps",
                       help="Gauss-Newton steps with the initial kernel before learning (default 0: start from u = 0)")
    learn.add_argument("--outer-loss", dest="outer_loss", choices=OUTER_LOSSES,
                       help="how the squared validation residuals are averaged (default: the problem's, "
                            "mean-square as published)")
    learn.add_argument("--nugget", type=float)
    learn.add_argument("--continuation", type=_continuation, metavar="NAME=V1,V2,…",
                       help="continuation stages of the re-solves from u = 0 (before, after), as for solve; "
                            "none: plain Gauss-Newton from u = 0")
    learn.add_argument("--eval-steps", type=int, dest="eval_steps", help="Gauss-Newton steps of the re-solve")
    learn.add_argument("--seed", type=int)
    learn.add_argument("--grid", type=int)
    learn.add_argument("--param", type=_parameter, action="append", default=[], metavar="NAME=VALUE")
    learn.add_argument("--config", help="TOML file with any of the settings above")
    learn.add_argument("--out", help="result file (default gpde-learn-PROBLEM.h5)")
    learn.add_argument("--overwrite", action="store_true", help="replace --out even if it is a BLJES study file")

    show = commands.add_parser("show", help="summarize a result file")
    show.add_argument("file")
    show.add_argument("--json", action="store_true", help="print the config and errors as JSON")

    plot = commands.add_parser("plot", help="draw solution, reference and error maps")
    plot.add_argument("file")
    plot.add_argument("--out", required=True, help="figure file, e.g. fig.png")

    bljes = commands.add_parser(
        "bljes", help="bilevel Bayesian optimization study: methods × benchmarks × seeds, on Dask")
    bljes.add_argument("benchmark", help="benchmark name(s), comma separated, or 'all'; see `gpde list`")
    bljes.add_argument("--method", default="bljes",
                       help="method(s), comma separated, or 'all': bljes, random, trusted-random, bilbo")
    bljes.add_argument("--setting", default="coupled", help="coupled, decoupled, comma separated, or 'all'")
    bljes.add_argument("--iters", type=int, default=60, help="evaluations per run, the initial ones included")
    bljes.add_argument("--init", type=int, default=3, help="initial uniform random evaluations")
    bljes.add_argument("--seeds", default="10", help="N: seeds 0 … N−1 per method and benchmark; A-B: seeds A … B "
                       "(e.g. 10-19 to add seeds to an existing --out)")
    bljes.add_argument("--noise", type=float, default=0.0, help="observation noise standard deviation "
                       "(for noise relative to each output's range use a benchmark option: smd1[noise=0.05])")
    bljes.add_argument("--cost", default="f=1,g=1", metavar="f=COST,g=COST",
                       help="cost of an upper (f) and of a lower (g) query: decoupled BLJES divides each "
                            "level's acquisition by it, every run records its cumulative cost")
    bljes.add_argument("--options", default="", metavar="NAME=VALUE,…",
                       help="method options, e.g. paths=10,tau=0.05 for bljes (the K and τ ablations); "
                            "runs with options are separate cells of the study")
    bljes.add_argument("--out", default="bljes-study.h5", help="study file; finished runs in it are skipped")
    bljes.add_argument("--overwrite", action="store_true",
                       help="replace --out even if it is not a BLJES study file (e.g. a solve result)")
    bljes.add_argument("--scheduler", help="Dask: none (this process), 'local' (a LocalCluster of processes) "
                                           "or a scheduler address such as tcp://host:8786")

    commands.add_parser("list", help="list problems and kernels")
    return parser


def _configured(args, config_class, defaults: str, prefix: str):
    """Problem class, resolved configuration (problem defaults < TOML file < flags) and checked
    output path, shared by `solve` and `learn`. Everything is validated here, before any work:
    the configuration's values, the problem's parameters (by building the problem), the kernel's
    lengthscales against the dimension, the memory the sizes need, a `--kernel-from` file, and
    the output. Turns on 64-bit mode first: the solver needs it."""

    import jax

    jax.config.update("jax_enable_x64", True)



    file_settings = load_toml(args.config, config_class) if args.config else {}
    if "problem" in file_settings:
        validation.check_problem_name(file_settings["problem"])
    name = validation.check_problem_name(args.problem or file_settings.pop("problem", None) or DEFAULT_PROBLEM)
    file_settings.pop("problem", None)  # a flag's problem wins over the file's
    problem_class = get_problem_class(name)
    # Every flag that names a configuration field (flags left out are None and do not override).
    given = vars(args)
    flags = {f.name: given[f.name] for f in dataclasses.fields(config_class)
             if f.name not in ("problem", "parameters") and f.name in given}
    flags["parameters"] = dict(args.param) or None
    flags["field_lengthscales"] = dict(args.field_lengthscales) or None
    if "field_variances" in given:
        flags["field_variances"] = dict(args.field_variances) or None
    config = resolve(name, getattr(problem_class, defaults), file_settings, flags, config_class=config_class)
    problem = build_problem(problem_class, config.parameters)
    dim = problem.domain.dim
    for key in ("field_lengthscales", "field_variances"):
        unknown = sorted(set(getattr(config, key, {})) - set(problem.fields))
        if unknown:
            raise ConfigError(f"{key.replace('_', ' ')} name unknown field(s) {unknown}; the fields of {name} are: "
                              f"{', '.join(problem.fields)}")
    validation.check_lengthscale_count(config.kernel, config.lengthscale, dim)
    for field, values in config.field_lengthscales.items():
        validation.check_lengthscale_count(config.kernel, values, dim, f"lengthscale of field {field}")
    validation.check_sizes(config, dim)
    # The point sets (cheap; they check the layout's own rules, e.g. a perfect square for a grid).
    if config_class is LearnConfig:
        interior, boundary, _ = learning_points(problem, config)
    else:
        interior, boundary = collocation_points(problem, config)
    continuation_stages(problem_class, config, interior, boundary)  # its parameter name and values
    if getattr(config, "kernel_from", None):
        learned_kernel(config.kernel_from)
    out = store.check_output(args.out if args.out is not None else f"{prefix}{name}.h5", store.RUN_KIND,
                             args.overwrite)
    return name, problem_class, config, out


def _solve(args) -> int:

    name, problem_class, config, out = _configured(args, SolveConfig, "defaults", "gpde-")

    others = "".join(f", ℓ_{f}={list(v)}" for f, v in config.field_lengthscales.items())
    print(f"gpde solve {name}: kernel {config.kernel} ℓ={list(config.lengthscale)}{others}, "
          f"{config.n_interior} interior + {config.n_boundary} boundary points ({config.layout}), "
          f"nugget {config.nugget:g}, ≤ {config.steps} Gauss-Newton steps, seed {config.seed}", flush=True)
    if "auto" in config.field_variances.values():
        print("  choosing the prior variance factor of field(s) "
              f"{', '.join(f for f, v in config.field_variances.items() if v == 'auto')} by likelihood "
              "(one solve per candidate) …", flush=True)

    def progress(record):
        print(f"  step {record.step:3d}  residual rms {record.residual_rms:10.3e}  max {record.residual_max:10.3e}"
              f"  update {record.update:10.3e}  {record.seconds * 1e3:8.1f} ms", flush=True)

    run = run_solve(problem_class, config, progress)
    store.write_run(out, run.record)
    history = run.history
    step_times = sorted(s.seconds for s in history.steps)
    for field, scan in run.record.config.get("field_variance_log_likelihoods", {}).items():
        table = ", ".join(f"×{factor} {value:.1f}" for factor, value in scan.items())
        print(f"  prior variance of {field}: ×{run.record.config['field_variances'][field]:g} (log-likelihood {table})")
    print(f"{history.stop_reason} after {len(history.steps)} steps")
    print(f"  {'RMS error':<22}{run.errors['rms']:.3e}")
    print(f"  {'relative L2 error':<22}{run.errors['l2_relative']:.3e}")
    print(f"  {'L∞ error':<22}{run.errors['linf']:.3e}")
    for field in problem_class.fields[1:]:
        errors = run.record.group_attrs[store.field_names(field, False)[3]]
        print(f"  {'field ' + field + ':':<22}RMS {errors['rms']:.3e}, rel. L2 {errors['l2_relative']:.3e}, "
              f"L∞ {errors['linf']:.3e}")
    print(f"  {'assembly':<22}{history.assembly_seconds:.3f} s")
    print(f"  {'compile':<22}{history.compile_seconds:.3f} s")
    print(f"  {'median step':<22}{step_times[len(step_times) // 2]:.3f} s")
    print(f"  {'evaluation':<22}{run.evaluation_seconds:.3f} s ({config.grid}^{len(run.record.groups['fields']['u'].shape)} points)")
    print(f"wrote {out}")
    return 0


def _learn(args) -> int:

    name, problem_class, config, out = _configured(args, LearnConfig, "learn_defaults", "gpde-learn-")
    print(f"gpde learn {name}: kernel {config.kernel} (trainable: {config.trainable}), "
          f"{config.n_interior}+{config.n_boundary} training + {config.n_validation} validation points, "
          f"{config.gn_steps} × {config.inner_steps} Adam steps (lr {config.learning_rate:g}), nugget {config.nugget:g}",
          flush=True)
    print("  re-solving with the initial kernel for the 'before' row …", flush=True)
    if config.start_steps:
        print(f"  then {config.start_steps} Gauss-Newton steps with it for the learner's first iterate …", flush=True)

    def progress(record, errors):
        done = record.iteration / config.gn_steps
        bar = "#" * int(24 * done) + "." * (24 - int(24 * done))
        print(f"  [{bar}] {record.iteration:3d}/{config.gn_steps}  loss {record.loss:10.3e}  "
              f"RMS {errors['rms']:9.3e}  L∞ {errors['linf']:9.3e}  {record.seconds:6.1f} s", flush=True)

    run = run_learn(problem_class, config, progress)
    outcome = result_name(run.result.result)
    if is_failure(run.result.result):  # e.g. the learner's iterate diverged: no result to keep
        raise SolverError(f"learning ended {RESULTS[run.result.result]}; no result file was written",
                          run.result.result)
    store.write_run(out, run.record)
    if run.result.start_note:
        print(f"note: {run.result.start_note}")
    print(f"stopped: {run.result.stopped_because}")
    print(f"  {'':<10}{'RMS':>11}{'rel. L2':>11}{'L∞':>11}")
    for index, field in enumerate(problem_class.fields):
        group = store.field_names(field, index == 0)[3]
        rows = [("before", run.before_fields[group]), ("after", run.after_fields[group])]
        if group in run.after_from_iterate_fields:
            rows.append(("after*", run.after_from_iterate_fields[group]))
        for label, errors in rows:
            label = label if len(problem_class.fields) == 1 else f"{field} {label}"
            print(f"  {label:<10}{errors['rms']:11.3e}{errors['l2_relative']:11.3e}{errors['linf']:11.3e}")
    print("  (before/after: re-solves from u = 0; after*: the same re-solve started from the learner's last iterate)")
    for note in (run.from_iterate_note, run.after_note):
        if note:
            print(f"note: {note}")
    for key, value in (run.result.records[-1].hyperparameters.items() if run.result.records else []):
        if "log_" in key:
            print(f"  learned {_parameter_name(key, problem_class.fields)}: {float(np.exp(value)):.6g}")
    print(f"  learning time {run.record.group_attrs['history']['learn_seconds']:.1f} s")
    print(f"wrote {out}")
    if outcome == "interrupted":  # Ctrl-C kept what was learned (written above); still say so
        print(f"gpde: interrupted; the hyperparameters learned so far are in {out}", file=sys.stderr)
        return 130
    return 0


def _parameter_name(key: str, fields) -> str:
    """'.log_lengthscale' → 'lengthscale'; '[1].log_lengthscale' → 'lengthscale of a' (multi-field)."""
    name = key.replace("log_", "")
    if name.startswith("[") and "]" in name:
        index, _, rest = name[1:].partition("]")
        if index.isdigit() and int(index) < len(fields):
            return f"{rest.lstrip('.')} of {fields[int(index)]}"
    return name.lstrip(".")


def _show(args) -> int:

    with schema.open_hdf5(args.file) as source:
        kind = schema.kind_of(source)
    if kind == schema.STUDY_KIND:
        return _show_study(args)
    run = schema.read_run(args.file)
    rows = {group: schema.error_row(run, group) for group in schema.error_groups(run)}
    staged = {label: {group: schema.error_row(run, group) for group in schema.error_groups(run, f"{label}/")}
              for label in (schema.BEFORE, schema.AFTER)}
    if args.json:
        summary = {"problem": run.problem, "seed": run.seed, "gpde_version": run.gpde_version,
                   "config": run.config, "errors": rows.get(schema.ERRORS, {})}
        # Further fields of a multi-field problem (errors_a, …) and the learning stages.
        summary.update({group: row for group, row in rows.items() if group != schema.ERRORS})
        for label, stage in staged.items():
            for group, row in stage.items():
                name = group.split("/", 1)[1]
                summary[f"errors_{label}" if name == schema.ERRORS else f"{label}_{name}"] = row
        summary.update(_calibration_groups(run))
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    print(f"{args.file}: problem {run.problem}, seed {run.seed}, gpde {run.gpde_version}, created {run.created}")
    for key, value in sorted(run.config.items()):
        print(f"  {key:<19} {value}")
    summary = schema.history_summary(run)
    if summary is not None:
        steps, residual, update = summary
        print(f"  Gauss-Newton steps: {steps}, final residual rms {residual:.3e}, final update {update:.3e}")
    errors = rows.get(schema.ERRORS, {})
    for key in schema.ERROR_KEYS:
        if key in errors:
            print(f"  error {key:<12}{errors[key]:.3e}")
    for group, row in rows.items():
        if group != schema.ERRORS:
            print(f"  field {group[len(schema.ERRORS) + 1:]}: RMS {row['rms']:.3e}, rel. L2 {row['l2_relative']:.3e}, "
                  f"L∞ {row['linf']:.3e}")
    for label, stage in staged.items():
        for group, row in stage.items():
            field = group[len(f"{label}/{schema.ERRORS}") + 1:]
            what = f"{label:<7} learning" + (f" ({field})" if field else "")
            print(f"  {what}: RMS {row['rms']:.3e}, rel. L2 {row['l2_relative']:.3e}, L∞ {row['linf']:.3e}")
    for group, row in _calibration_groups(run).items():
        field = group[len(CALIBRATION) + 1:] or "u"
        coverage = " / ".join(f"{100 * row[f'coverage_{z}']:.1f}" for z in (1, 2, 3))
        ml_coverage = " / ".join(f"{100 * row[f'ml_coverage_{z}']:.1f}" for z in (1, 2, 3))
        print(f"  calibration {field}: |error| ≤ 1/2/3σ at {coverage} % (ideal 68.3 / 95.4 / 99.7), error/σ mean "
              f"{row['z_mean']:+.2f} spread {row['z_std']:.2f}, NLL {row['nll']:.2f} (s² {row['amplitude']:.3g}, "
              f"{row['amplitude_source']}): {_verdict_text(row['coverage_2'])}")
        print(f"  {'':<{len(field) + 13}}with the maximum-likelihood s² {row['ml_amplitude']:.3g}: {ml_coverage} %, "
              f"NLL {row['ml_nll']:.2f}")
    return 0


def _verdict_text(coverage_2: float) -> str:
    """The calibration verdict of a 2σ coverage, with what it means."""
    low, high = COVERAGE_2_GOAL
    meaning = {"over-confident": "σ too small", "under-confident": "σ too large", "calibrated": "σ fits the error"}
    verdict = coverage_verdict(coverage_2)
    return f"{verdict}, {meaning[verdict]} (2σ goal {100 * low:.0f}–{100 * high:.0f} %)"


def _calibration_groups(run) -> dict[str, dict]:
    """The calibration attribute groups of a run file (`calibration`, `calibration_a`, …), as plain
    numbers and text."""

    groups = {group: {key: value.item() if isinstance(value, np.generic) else value for key, value in attrs.items()}
              for group, attrs in run.group_attrs.items()
              if group == CALIBRATION or group.startswith(f"{CALIBRATION}_")}
    for group, row in groups.items():  # what `show` prints, checked (a foreign file may hold anything)
        for key in (*(f"{p}coverage_{z}" for p in ("", "ml_") for z in (1, 2, 3)), "z_mean", "z_std", "nll",
                    "amplitude", "ml_amplitude", "ml_nll"):
            schema.float_attr(row, key, group, run.path)
        schema.text_attr(row, "amplitude_source", group, run.path)
    return groups


def _plot(args) -> int:

    out = check_figure_path(args.out)
    with schema.open_hdf5(args.file) as source:
        kind = schema.kind_of(source)
    if kind == schema.STUDY_KIND:

        if not read_study(args.file):
            raise ConfigError(f"{args.file} holds no finished runs yet; nothing to plot")
        store.check_writable(out)
        print(f"wrote {plot_study(args.file, out)}")
        return 0

    run = schema.read_run(args.file)
    store.check_writable(out)
    print(f"wrote {plot_fields(run, out)}")
    return 0


def _bljes(args) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)


    specs = study.plan_study(args.benchmark, args.method, args.setting, args.seeds, args.iters, args.init, args.noise,
                             args.options, args.cost)
    out = store.check_output(args.out, store.STUDY_KIND, args.overwrite)
    replace = out.exists() and store.file_kind(out) != store.STUDY_KIND  # allowed by --overwrite
    if out.exists() and not replace:
        study.read_study(out)  # every stored run is checked before new ones are added
    print(f"gpde bljes: {len(specs)} runs ({args.iters} evaluations, {args.init} initial, noise {args.noise:g}) "
          f"on {args.scheduler or 'this process'} → {out}", flush=True)
    report = study.run_study(specs, out, scheduler=args.scheduler, replace=replace)
    wanted = [spec.config() for spec in specs]
    runs = [run for run in study.read_study(out) if run.config in wanted] if out.exists() else []
    others = f", {len(report.concurrent)} added meanwhile by another invocation" if report.concurrent else ""
    print(f"ran {len(report.ran)}, skipped {len(report.skipped)} already finished{others}")
    print("median final regret (seeds):")
    print(study.format_table(study.final_regret_table(runs)))
    print(f"wrote {out}")
    return 0


def _show_study(args) -> int:

    runs = read_study(args.file)
    table = final_regret_table(runs)
    if args.json:
        print(json.dumps([{"benchmark": b, "method": m, "setting": s, **cell} for (b, m, s), cell in table.items()],
                         indent=2))
        return 0
    print(f"{args.file}: BLJES study, {len(runs)} runs")
    print("median final regret (seeds):")
    print(format_table(table))
    return 0


def _list(args) -> int:


    print("problems:")
    problems = catalogue()
    width = max(len(name) for name in problems) + 2
    for name, problem in problems.items():
        d = problem.defaults
        print(f"  {name:<{width}}{problem.summary}")
        others = "".join(f", ℓ_{f}={list(v)}" for f, v in d.field_lengthscales.items())
        print(f"  {'':<{width}}defaults: {d.kernel} ℓ={list(d.lengthscale)}{others}, {d.n_interior}+{d.n_boundary} points "
              f"({d.layout}), nugget {d.nugget:g}, {d.steps} steps")
    print("kernels:")
    print("  " + ", ".join(KERNELS))

    print("bilevel benchmarks (gpde bljes):")
    for name, factory in bilevel_catalogue().items():
        benchmark = factory()
        print(f"  {name:<12}{benchmark.x_dim} + {benchmark.theta_dim}  {benchmark.summary}")
    return 0


def _interrupted(args) -> str:
    """What an interrupt leaves behind, for the message."""
    if getattr(args, "command", None) == "bljes" and args.out and Path(args.out).is_file():
        return f"the runs finished before are in {args.out}; rerun the same command to continue"
    return "no result file was written"


_OUT_OF_MEMORY = "out of memory; use fewer points, a smaller --grid or --batch-size, or fewer runs"


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script: the exit code (see the module docstring)."""
    handlers = {"solve": _solve, "learn": _learn, "show": _show, "plot": _plot, "list": _list,
                "bljes": _bljes}
    args = None
    with terminate_as_interrupt():
        try:
            args, extras = _parser().parse_known_args(argv)
            if extras:
                raise ConfigError(f"unrecognized arguments: {' '.join(extras)}; see gpde {args.command} --help")
            return handlers[args.command](args)
        except ConfigError as error:
            print(f"gpde: error: {error}", file=sys.stderr)
            return 2
        except SolverError as error:
            print(f"gpde: solver failed: {error}", file=sys.stderr)
            return 1
        except GpdeError as error:
            print(f"gpde: error: {error}", file=sys.stderr)
            return 1
        except MemoryError:
            print(f"gpde: error: {_OUT_OF_MEMORY}", file=sys.stderr)
            return 1
        except jax.errors.JaxRuntimeError as error:
            if "RESOURCE_EXHAUSTED" not in str(error):
                raise
            print(f"gpde: error: {_OUT_OF_MEMORY} ({_first_line(error)})", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"gpde: interrupted; {_interrupted(args)}", file=sys.stderr)
            return 130
        except SystemExit as exit:  # --help and --version
            return exit.code if isinstance(exit.code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
