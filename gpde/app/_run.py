"""A whole solve run: points from the seed, kernel, Gauss-Newton, evaluation grid, errors, and the
result file contents. The CLI, the benchmarks and the notebooks all go through here."""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np

from ..kernels import AbstractKernel

from ..io import _schema as schema
from ..io import _store as store
from ._config import SolveConfig
from .._errors import ConfigError
from .._kernel_choice import kernel_with_arrays, make_field_kernels
from ..solve._metrics import error_metrics
from ..solve._precision import require_float64
from ..solve._problem import AbstractProblem
from ..solve._solution import CollocationSolution
from ..solve._solver import GaussNewton, SolveHistory, StepRecord

#: Group of a learning result that holds the learned kernel's arrays (attrs: how to rebuild it).
LEARNED_KERNEL = schema.KERNEL


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


def collocation_points(problem: AbstractProblem, config: SolveConfig):
    """Interior and boundary points, reproducible from the seed."""
    interior_key, boundary_key = jax.random.split(jax.random.PRNGKey(config.seed))
    interior = problem.domain.interior_points(config.n_interior, config.layout, interior_key)
    boundary = problem.domain.boundary_points(config.n_boundary, config.layout, boundary_key, problem.boundary_faces)
    return interior, boundary


def run_solve(
    problem_class: type[AbstractProblem],
    config: SolveConfig,
    callback: Callable[[StepRecord], None] | None = None,
) -> SolveRun:
    require_float64()
    problem = build_problem(problem_class, config.parameters)
    interior, boundary = collocation_points(problem, config)
    kernel = learned_kernel(config.kernel_from) if config.kernel_from else problem_kernel(problem, config)
    solver = GaussNewton(
        nugget=config.nugget, adaptive_nugget=config.adaptive_nugget, max_steps=config.steps, tolerance=config.tolerance
    )
    solution, history = solver.solve(kernel, problem.constraints(interior, boundary), callback)

    grid_points, grid_shape = problem.domain.grid(config.grid)
    start = time.perf_counter()
    fields, field_errors = evaluate_fields(problem, solution, grid_points, grid_shape)
    evaluation_seconds = time.perf_counter() - start
    errors = field_errors[store.ERRORS]

    resolved = config.as_dict()
    resolved["parameters"] = problem.parameters()
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
        },
    )
    return SolveRun(solution, history, errors, evaluation_seconds, record)
