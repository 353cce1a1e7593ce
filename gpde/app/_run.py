"""A whole solve run: points from the seed, kernel, Gauss-Newton, evaluation grid, errors, and the
result file contents. The CLI, the benchmarks and the notebooks all go through here."""

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..kernels import AbstractKernel, LayerStretch, Scaled, Warped

from ..io import _schema as schema
from ..io import _store as store
from ._config import FIELD_VARIANCE_CANDIDATES, LearnConfig, SolveConfig, layer_stretch
from .._errors import ConfigError, SolverError
from .._results import RESULTS
from .._kernel_choice import kernel_with_arrays, make_field_kernels
from ..solve._metrics import error_metrics
from ..solve._precision import require_float64
from ..solve._problem import AbstractProblem
from ..solve._solution import CollocationSolution
from ..solve._calibration import calibration
from ..solve._posterior import Posterior
from ..solve._randomized_map import randomized_map
from ..solve._solver import GaussNewton, SolveHistory, StepRecord
from ..sparse import Sparse, SparsePosterior, linear_solver
from ..sparse._solution import SparseSolution

#: Group of a learning result that holds the learned kernel's arrays (attrs: how to rebuild it).
LEARNED_KERNEL = schema.KERNEL
#: At most this many held-out points for the posterior's amplitude: on the sparse path each costs
#: a conjugate-gradient solve (docs/sparse-posterior.md), and the amplitude is a mean of their ratios.
MAX_HELD_OUT = 1024
#: Gauss-Newton steps of each continuation stage (`SolveConfig.continuation`).
CONTINUATION_STEPS = 4


@dataclass
class SolveRun:
    """A finished run: the solution object, its history, errors and the file contents."""

    solution: CollocationSolution
    history: SolveHistory
    errors: dict[str, float]
    evaluation_seconds: float
    record: store.RunFile


def build_problem(problem_class: type[AbstractProblem], parameters: dict) -> AbstractProblem:
    """Instantiate a problem with its parameters (ε, ν, …); ConfigError on unknown or bad ones."""
    try:
        return problem_class(**parameters)
    except TypeError as error:
        raise ConfigError(f"bad parameters {parameters} for problem '{problem_class.name}': {error}") from None
    except ValueError as error:
        raise ConfigError(str(error)) from None


def learned_kernel(path) -> AbstractKernel | tuple[AbstractKernel, ...]:
    """The kernel (a tuple of per-field kernels for a multi-field problem) stored by `gpde learn`
    in a result file; ConfigError if the file holds none or a damaged one."""
    run = store.read_run(path)
    settings = schema.learned_kernel_settings(run)
    skeleton = make_field_kernels(settings["name"], settings["lengthscale"], settings["field_lengthscales"],
                                  settings["fields"], settings["dim"], settings["seed"])
    arrays = run.groups[LEARNED_KERNEL]
    return kernel_with_arrays(skeleton, {key: schema.dataset(run, LEARNED_KERNEL, key) for key in arrays})


def kernel_settings(config, problem: AbstractProblem) -> dict:
    """Attributes of the stored learned kernel: how `learned_kernel` rebuilds its skeleton."""
    return {"name": config.kernel, "lengthscale": np.asarray(config.lengthscale), "dim": problem.domain.dim,
            "seed": config.seed, "fields": json.dumps(list(problem.fields)),
            "field_lengthscales": json.dumps({k: list(v) for k, v in config.field_lengthscales.items()})}


def problem_kernel(problem: AbstractProblem, config) -> AbstractKernel | tuple[AbstractKernel, ...]:
    """The configured kernel of each of the problem's fields (one kernel for one field)."""
    return make_field_kernels(config.kernel, config.lengthscale, config.field_lengthscales, problem.fields,
                              problem.domain.dim, config.seed)


def evaluate_fields(problem: AbstractProblem, solution: CollocationSolution, grid_points, grid_shape):
    """Every field of the solution and its reference on the grid: ({dataset: array shaped like the
    grid} in /fields naming, {errors group: error metrics})."""
    grid = np.asarray(grid_points)
    fields, errors = {}, {}
    for index, name in enumerate(problem.fields):
        value_key, reference_key, error_key, errors_key = store.field_names(name, index == 0)
        value = np.asarray(solution(grid_points, field=index))
        reference = np.asarray(problem.field_reference(name, grid))
        fields[value_key] = value.reshape(grid_shape)
        fields[reference_key] = reference.reshape(grid_shape)
        fields[error_key] = (value - reference).reshape(grid_shape)
        errors[errors_key] = error_metrics(value, reference)
    return fields, errors


#: Attribute group of the calibration numbers of the primary field u (`calibration_f` for a
#: further field f); each field's posterior standard deviation is the /fields dataset `f_std`.
CALIBRATION = "calibration"


def uncertainty_names(field: str, primary: bool) -> tuple[str, str]:
    """(/fields dataset of the standard deviation, calibration attribute group) of a field."""
    value_key = store.field_names(field, primary)[0]
    return f"{value_key}_std", CALIBRATION if primary else f"{CALIBRATION}_{field}"


def held_out_points(problem: AbstractProblem, config: SolveConfig):
    """Interior points the solve does not see (a quarter as many as the interior points, between
    16 and MAX_HELD_OUT, uniform random from the seed's own stream), for the held-out amplitude of
    the posterior."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
    return problem.domain.interior_points(min(max(config.n_interior // 4, 16), MAX_HELD_OUT), "random", key)


def evaluate_uncertainty(problem: AbstractProblem, solution: CollocationSolution, config: SolveConfig | LearnConfig,
                         boundary, grid_points, grid_shape, fields: dict) -> tuple[dict, dict]:
    """Posterior standard deviation of every field on the grid and its calibration against the
    reference (in `fields`, from `evaluate_fields`): ({f_std dataset: array}, {calibration group:
    attributes}). `config` gives the solve's nugget and the seed and count of the held-out points. The amplitude s² is fitted to the PDE residual at held-out interior points
    (`Posterior.held_out_amplitude`; the maximum-likelihood s² on the collocation system is stored
    beside it, with the calibration it would give under `ml_`): with the maximum-likelihood s²
    the elliptic problem's σ is 2.5-11 times larger and covers 100 % of the errors at 2σ, with the
    held-out s² 94-99 % (benchmarks/calibration-results.md). A sparse solve's σ is the posterior
    of the solve's own factors (`SparsePosterior`, method 'factor', docs/sparse-posterior.md;
    attribute `posterior` = "factor")."""
    held_out = problem.constraints(held_out_points(problem, config), boundary)[:1]
    if isinstance(solution, SparseSolution):
        posterior = SparsePosterior.at(solution, config.nugget, config.adaptive_nugget, held_out)
        extra = {"posterior": posterior.method}
    else:
        posterior = Posterior.at(solution, config.nugget, config.adaptive_nugget, held_out)
        extra = {}
    amplitude, ml_amplitude = float(posterior.amplitude), float(posterior.ml_amplitude)
    std_fields, groups = {}, {}
    for index, name in enumerate(problem.fields):
        value_key, reference_key, _, _ = store.field_names(name, index == 0)
        std_key, group = uncertainty_names(name, index == 0)
        std = np.asarray(posterior.std(grid_points, field=index))
        std_fields[std_key] = std.reshape(grid_shape)
        numbers = calibration(fields[value_key], std, fields[reference_key]).as_dict()
        ml = calibration(fields[value_key], std * np.sqrt(ml_amplitude / amplitude), fields[reference_key]).as_dict()
        groups[group] = {"amplitude": amplitude, "amplitude_source": "held-out", "ml_amplitude": ml_amplitude,
                         "held_out_points": int(held_out[0].size), "mean_std": float(np.mean(std)), **numbers,
                         **{f"ml_{key}": value for key, value in ml.items()}, **extra}
    return std_fields, groups


def randomized_map_uncertainty(problem: AbstractProblem, solver: GaussNewton, kernel, constraints,
                               solution: CollocationSolution, config: SolveConfig, grid_points, grid_shape,
                               fields: dict, linearized: dict) -> tuple[dict, dict]:
    """Like `evaluate_uncertainty`, with each field's σ the spread of `config.std_draws`
    randomized-MAP draws (`randomized_map`: full re-solves by `solver` with the prior draw and the
    data perturbed, at the prior's own amplitude s² = 1; key from the seed's own stream; each
    re-solve starts from its prior draw, or from the solve's `solution` if that fails). The
    `linearized` calibration groups (from `evaluate_uncertainty`) supply the maximum-likelihood s²,
    whose `ml_` numbers scale the spread by s (exact for a linear problem, where the draws are
    posterior samples; a first-order guide otherwise), and are kept under `linearized_` keys.
    On the Darcy problem the draws' σ covers the errors of u and a better than the linearized one
    (benchmarks/calibration-results.md)."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
    ensemble = randomized_map(solver, kernel, constraints, grid_points, key, config.std_draws, solution=solution)
    converged = sum(result == RESULTS[RESULTS.converged] for result in ensemble.results)
    from_solution = sum(where == "solution" for where in ensemble.starts)
    std_fields, groups = {}, {}
    for index, name in enumerate(problem.fields):
        value_key, reference_key, _, _ = store.field_names(name, index == 0)
        std_key, group = uncertainty_names(name, index == 0)
        std = np.asarray(ensemble.std(index))
        std_fields[std_key] = std.reshape(grid_shape)
        ml_amplitude = float(linearized[group]["ml_amplitude"])
        numbers = calibration(fields[value_key], std, fields[reference_key]).as_dict()
        ml = calibration(fields[value_key], std * np.sqrt(ml_amplitude), fields[reference_key]).as_dict()
        kept = {f"linearized_{metric}": value for metric, value in linearized[group].items()
                if metric in numbers or metric in ("amplitude", "mean_std")}
        restarted = f", {from_solution} of them re-solved from the solution" if from_solution else ""
        groups[group] = {"amplitude": 1.0,
                         "amplitude_source": f"prior; σ of {config.std_draws} randomized-MAP draws{restarted}",
                         "ml_amplitude": ml_amplitude, "posterior": "randomized-map", "draws": config.std_draws,
                         "draws_converged": converged, "draws_from_solution": from_solution,
                         "mean_std": float(np.mean(std)), **numbers,
                         **{f"ml_{metric}": value for metric, value in ml.items()}, **kept}
    return std_fields, groups


def collocation_points(problem: AbstractProblem, config: SolveConfig):
    """Interior and boundary points, reproducible from the seed; with a `stretch`, the stretched
    coordinate of every point moved so that the layout is uniform in the stretched coordinate."""
    interior_key, boundary_key = jax.random.split(jax.random.PRNGKey(config.seed))
    interior = problem.domain.interior_points(config.n_interior, config.layout, interior_key)
    boundary = problem.domain.boundary_points(config.n_boundary, config.layout, boundary_key, problem.boundary_faces)
    stretch = getattr(config, "stretch", None)
    if stretch is not None:
        interior, boundary = (stretched_points(problem, layer_stretch(stretch), p) for p in (interior, boundary))
    return interior, boundary


def stretched_points(problem: AbstractProblem, stretch: LayerStretch, points):
    """The points with their coordinate along the stretch's axis mapped by x ↦ w⁻¹(affine(x)), the
    affine map taking the domain's interval [a, b] onto [w(a), w(b)]: a layout uniform in x becomes
    uniform in w(x) (`stretch` points per unit length in the layer), and the ends stay where they are."""
    axis = stretch.axis
    if axis >= problem.domain.dim:
        raise ConfigError(f"stretch axis {axis} does not exist: {problem.name}'s inputs are 0 … {problem.domain.dim - 1}")
    lower, upper = float(problem.domain.lower[axis]), float(problem.domain.upper[axis])
    low, high = float(stretch.stretch(lower)), float(stretch.stretch(upper))
    moved = np.array(points, dtype=np.float64)
    column = moved[:, axis]
    mapped = stretch.inverse(low + (column - lower) * (high - low) / (upper - lower))
    moved[:, axis] = np.where(column == lower, lower, np.where(column == upper, upper, mapped))
    return jnp.asarray(moved)


def configured_kernel(problem: AbstractProblem, config, field_variances: dict | None = None):
    """The solve's kernel(s): the learned one of `kernel_from` or the configured one, warped by the
    `stretch` if there is one, each field named in `field_variances` (default: the numbers of
    `config.field_variances`; 'auto' entries are resolved by `choose_field_variances`) scaled by its
    prior variance factor."""
    kernel = learned_kernel(config.kernel_from) if config.kernel_from else problem_kernel(problem, config)
    stretch = getattr(config, "stretch", None)
    if stretch is not None:
        warp = layer_stretch(stretch)
        kernel = tuple(Warped(k, warp) for k in kernel) if isinstance(kernel, tuple) else Warped(kernel, warp)
    if field_variances is None:
        field_variances = {f: v for f, v in getattr(config, "field_variances", {}).items() if v != "auto"}
    return with_field_variances(problem, kernel, field_variances)


def with_field_variances(problem: AbstractProblem, kernel, field_variances: dict):
    """`kernel` (one per field for a multi-field problem) with the kernel of each field named in
    `field_variances` wrapped in Scaled(kernel, factor)."""
    kernels = list(kernel) if isinstance(kernel, tuple) else [kernel]
    for name, factor in field_variances.items():
        index = list(problem.fields).index(name)
        kernels[index] = Scaled(kernels[index], float(factor))
    return tuple(kernels) if isinstance(kernel, tuple) else kernels[0]


def choose_field_variances(problem: AbstractProblem, config: SolveConfig, solver: GaussNewton, kernel,
                           constraints, continuation) -> tuple[dict, dict]:
    """The prior variance factor of every field in `config.field_variances`: the given number, or
    for 'auto' the factor of FIELD_VARIANCE_CANDIDATES whose solve has the largest profile
    log-likelihood (`Posterior.log_likelihood`; one full solve per candidate, the other fields at
    their given factors or 1; 'auto' fields are chosen one after another in the order given).
    `kernel`: the configured kernel(s) before any factor. Returns ({field: factor},
    {field: {factor: log-likelihood}} for the 'auto' fields)."""
    chosen = {f: v for f, v in config.field_variances.items() if v != "auto"}
    scans = {}
    for name in [f for f, v in config.field_variances.items() if v == "auto"]:
        scan = {}
        for factor in FIELD_VARIANCE_CANDIDATES:
            trial = with_field_variances(problem, kernel, {**chosen, name: factor})
            solution, _ = solver.solve(trial, constraints, continuation=continuation,
                                       continuation_steps=CONTINUATION_STEPS)
            try:
                scan[factor] = float(Posterior.at(solution, config.nugget, config.adaptive_nugget).log_likelihood())
            except SolverError:  # a candidate whose collocation system cannot be factorized
                scan[factor] = -math.inf
        finite = {factor: value for factor, value in scan.items() if math.isfinite(value)}
        if not finite:
            raise SolverError(f"no prior variance factor of field '{name}' gave a finite likelihood "
                              f"(tried {', '.join(f'{c:g}' for c in FIELD_VARIANCE_CANDIDATES)}); give one, e.g. "
                              f"--field-variance {name}=1")
        chosen[name] = max(finite, key=finite.get)
        scans[name] = scan
    return chosen, scans


def continuation_stages(problem_class: type[AbstractProblem], config, interior, boundary) -> list:
    """The constraints of the continuation stages (`continuation`): the problem with its parameter
    at each value in turn."""
    if not getattr(config, "continuation", None):
        return []
    (name, values), = config.continuation.items()
    return [build_problem(problem_class, {**config.parameters, name: value}).constraints(interior, boundary)
            for value in values]


def run_solve(
    problem_class: type[AbstractProblem],
    config: SolveConfig,
    callback: Callable[[StepRecord], None] | None = None,
) -> SolveRun:
    require_float64()
    problem = build_problem(problem_class, config.parameters)
    interior, boundary = collocation_points(problem, config)
    constraints = problem.constraints(interior, boundary)
    solver = GaussNewton(
        nugget=config.nugget, adaptive_nugget=config.adaptive_nugget, max_steps=config.steps, tolerance=config.tolerance,
        linear_solver=linear_solver(config.solver, sum(c.size for c in constraints), config.rho),
    )
    if config.std_draws and isinstance(solver.linear_solver, Sparse):
        raise ConfigError("std_draws (randomized-MAP σ) needs the dense solver: --solver auto chose the sparse one "
                          "at this size; use --solver dense")
    if "auto" in config.field_variances.values() and isinstance(solver.linear_solver, Sparse):
        raise ConfigError("field_variances 'auto' compares likelihoods of the dense collocation system: use --solver "
                          "dense, or give the factor, e.g. --field-variance a=16")
    continuation = continuation_stages(problem_class, config, interior, boundary)
    unscaled = configured_kernel(problem, config, {})
    field_variances, variance_scans = choose_field_variances(problem, config, solver, unscaled, constraints,
                                                             continuation)
    kernel = with_field_variances(problem, unscaled, field_variances)
    solution, history = solver.solve(kernel, constraints, callback, continuation=continuation,
                                     continuation_steps=CONTINUATION_STEPS)

    grid_points, grid_shape = problem.domain.grid(config.grid)
    start = time.perf_counter()
    fields, field_errors = evaluate_fields(problem, solution, grid_points, grid_shape)
    evaluation_seconds = time.perf_counter() - start
    errors = field_errors[store.ERRORS]
    start = time.perf_counter()
    if isinstance(solver.linear_solver, Sparse) and not config.sparse_std:
        # σ on the sparse path costs a conjugate-gradient solve per grid point (batched; often more
        # than the solve itself, docs/sparse-posterior.md), so it is computed only when asked for.
        std_fields, calibrations = {}, {}
    else:
        std_fields, calibrations = evaluate_uncertainty(problem, solution, config, boundary, grid_points, grid_shape,
                                                        fields)
        if config.std_draws:
            std_fields, calibrations = randomized_map_uncertainty(problem, solver, kernel, constraints, solution,
                                                                  config, grid_points, grid_shape, fields, calibrations)
    for attrs in calibrations.values():
        attrs["seconds"] = time.perf_counter() - start

    resolved = config.as_dict()
    resolved["parameters"] = problem.parameters()
    resolved["field_variances"] = field_variances
    if variance_scans:
        resolved["field_variance_log_likelihoods"] = {
            name: {f"{factor:g}": value for factor, value in scan.items()} for name, scan in variance_scans.items()}
    record = schema.solve_record(
        problem=config.problem, seed=config.seed, config=resolved,
        points={"interior": np.asarray(interior), "boundary": np.asarray(boundary), **problem.data_points()},
        grid_points=grid_points, grid_shape=grid_shape, fields=fields, field_errors=field_errors,
        history=history.as_arrays(),
        history_attrs={
            "assembly_seconds": history.assembly_seconds,
            "compile_seconds": history.compile_seconds,
            "evaluation_seconds": evaluation_seconds,
            "converged": int(history.converged),
            "stalled": int(history.stalled),
            **history.solver_attributes(),
        },
    )
    record.groups[store.FIELDS].update(std_fields)
    record.group_attrs.update(calibrations)
    return SolveRun(solution, history, errors, evaluation_seconds, record)
