"""A whole bilevel learning run with the published evaluation protocol (docs/references.md §3):
learn θ on training + validation points, then freeze θ and re-solve by plain Gauss-Newton on
training ∪ validation points; the same re-solve with the initial θ gives the "before" row."""

from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._errors import ConfigError, SolverError
from .._kernel_choice import kernel_arrays
from ..io import _schema as schema
from ..io import _store as store
from ..kernels import AbstractKernel, Gibbs
from ..learn._learner import BilevelLearner, LearnResult, OuterRecord, scalar_hyperparameters
from ..solve._precision import require_float64
from ..solve._problem import AbstractProblem
from ..solve._solver import GaussNewton
from ._config import LearnConfig
from ._run import (
    CONTINUATION_STEPS,
    LEARNED_KERNEL,
    build_problem,
    continuation_stages,
    evaluate_fields,
    evaluate_uncertainty,
    kernel_settings,
    problem_kernel,
)

KERNEL = LEARNED_KERNEL
BEFORE = schema.BEFORE
AFTER = schema.AFTER
#: The same re-solve as AFTER, started from the learner's last Gauss-Newton iterate instead of
#: u = 0. Gauss-Newton's fixed point can depend on its start: with a learned Eikonal Gibbs kernel
#: the start from zero ends ~2x less accurate than the learner's own iterate. AFTER stays the
#: protocol's row (it is what `gpde solve --kernel-from` reproduces); this one is reported beside it.
AFTER_FROM_ITERATE = schema.AFTER_FROM_ITERATE


def trainable_filter(kernel: AbstractKernel, which: str):
    """The Equinox filter spec for `which` ('all' inexact arrays, or 'lengthscale' leaves only)."""
    if which == "all":
        return eqx.is_inexact_array
    paths = jax.tree_util.tree_flatten_with_path(kernel)[0]
    flags = [("log_lengthscale" in jax.tree_util.keystr(p)) and eqx.is_inexact_array(leaf) for p, leaf in paths]
    if not any(flags):

        raise ConfigError(f"the {type(kernel).__name__} kernel has no lengthscale parameter; use --trainable all")
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(kernel), flags)


@dataclass
class LearnRun:
    result: LearnResult
    before: dict[str, float]
    after: dict[str, float]
    record: store.RunFile
    #: Errors of every field before and after learning, by errors group (errors, errors_a, …).
    before_fields: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    after_fields: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    #: Errors of the re-solve started from the learner's last iterate (AFTER_FROM_ITERATE); empty
    #: if that re-solve failed (`from_iterate_note` says why).
    after_from_iterate_fields: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    from_iterate_note: str = ""
    #: Set if the re-solve from u = 0 failed and the after row is the re-solve from the iterate.
    after_note: str = ""


def learning_points(problem: AbstractProblem, config: LearnConfig):
    """Training interior, boundary and validation points, reproducible from the seed."""
    keys = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    interior = problem.domain.interior_points(config.n_interior, config.layout, keys[0])
    boundary = problem.domain.boundary_points(config.n_boundary, config.layout, keys[1], problem.boundary_faces)
    # Only the faces that carry boundary data are kept at a distance (Burgers: not t = 1).
    inset = problem.domain.shrunk(config.validation_margin, problem.boundary_faces)
    validation = inset.interior_points(config.n_validation, "random", keys[2])
    return interior, boundary, validation


def _gauss_newton(config: LearnConfig, steps: int) -> GaussNewton:
    """Plain Gauss-Newton with the run's nugget and tolerance."""
    return GaussNewton(nugget=config.nugget, adaptive_nugget=config.adaptive_nugget, max_steps=steps,
                       tolerance=config.tolerance)


def resolve(problem, kernel, interior, boundary, validation, config, initial=None):
    """The protocol's re-solve: Gauss-Newton on training ∪ validation points (and all the
    problem's data), from u = 0 through the config's continuation stages (if any), or from the
    solution `initial` directly; returns the solution and its history."""
    points = jnp.concatenate([interior, validation])
    constraints = problem.constraints(points, boundary)
    stages = continuation_stages(type(problem), config, points, boundary) if initial is None else []
    return _gauss_newton(config, config.eval_steps).solve(kernel, constraints, initial=initial, continuation=stages,
                                                          continuation_steps=CONTINUATION_STEPS)


def evaluate_kernel(problem, kernel, interior, boundary, validation, config, grid_points):
    """The protocol's re-solve (`resolve`): u (field 0) on the grid points, and the history."""
    solution, history = resolve(problem, kernel, interior, boundary, validation, config)
    return np.asarray(solution(grid_points)), history


def lengthscale_field(kernel: AbstractKernel, grid_points) -> np.ndarray | None:
    """ℓ(x) on the grid for a Gibbs kernel (one column per dimension), else None."""
    if not isinstance(kernel, Gibbs):
        return None
    return np.asarray(jax.vmap(kernel.lengthscale)(grid_points))


def run_learn(
    problem_class: type[AbstractProblem],
    config: LearnConfig,
    progress: Callable[[OuterRecord, dict], None] | None = None,
) -> LearnRun:
    require_float64()
    problem = build_problem(problem_class, config.parameters)
    interior, boundary, validation = learning_points(problem, config)
    initial = problem_kernel(problem, config)
    grid_points, grid_shape = problem.domain.grid(config.grid)

    fields_before, errors_before = evaluate_fields(
        problem, resolve(problem, initial, interior, boundary, validation, config)[0], grid_points, grid_shape
    )
    before = errors_before[store.ERRORS]

    learner = BilevelLearner(
        optimizer=optax.adam(config.learning_rate), gn_steps=config.gn_steps, inner_steps=config.inner_steps,
        nugget=config.nugget, adaptive_nugget=config.adaptive_nugget, batch_size=config.batch_size,
        loss_tolerance=config.loss_tolerance, scale_search=config.scale_search, axis_search=config.axis_search,
        lengthscale_scan=config.lengthscale_scan, outer_loss=config.outer_loss, batch_redraw=config.batch_redraw,
        update_steps=config.update_steps,
    )
    per_iteration = {"lengthscale_field": []}

    def on_iteration(record: OuterRecord, solution):
        _, field_errors = evaluate_fields(problem, solution, grid_points, grid_shape)
        for group, metrics in field_errors.items():
            suffix = group[len(store.ERRORS):]  # "" for the first field, "_a" for field a, …
            for key, value in metrics.items():
                per_iteration.setdefault(key + suffix, []).append(value)
        errors = field_errors[store.ERRORS]
        field = lengthscale_field(solution.kernel, grid_points)
        if field is not None:
            per_iteration["lengthscale_field"].append(field.reshape(*grid_shape, -1))
        if progress is not None:
            progress(record, errors)

    train = problem.training_constraints(interior, boundary)
    start = time.perf_counter()
    first_iterate = None
    if config.start_steps:
        first_iterate = _gauss_newton(config, config.start_steps).solve(initial, train)[0]
    result = learner.learn(
        initial, train, problem.validation_constraints(validation, boundary),
        trainable=trainable_filter(initial, config.trainable), seed=config.seed, callback=on_iteration,
        initial=first_iterate,
    )
    learn_seconds = time.perf_counter() - start

    after_note = ""
    try:
        resolved_after = resolve(problem, result.kernel, interior, boundary, validation, config)[0]
    except SolverError as error:
        # The learned θ was only ever factorized on the training points, and only ever solved from
        # the learner's iterates: from u = 0 on train ∪ validation Gauss-Newton can fail or diverge
        # for it (short lengthscales of the Schrödinger problem). The learning run is kept: the
        # after row is then the re-solve from the learner's last iterate, and the note says so.
        learned = ", ".join(f"{key} = {value:.4g}" for key, value in scalar_hyperparameters(result.kernel).items())
        failure = SolverError(
            f"the re-solve with the learned kernel failed ({error}). Learned (log-)hyperparameters: "
            f"{learned or 'the kernel arrays (no scalar ones)'}. Raise the nugget, or learn the lengthscales only "
            "(trainable = 'lengthscale')"
        )
        if result.solution is None:
            raise failure from None
        try:
            resolved_after = resolve(problem, result.kernel, interior, boundary, validation, config, result.solution)[0]
        except SolverError:
            raise failure from None
        after_note = (f"the re-solve from u = 0 with the learned kernel failed ({error}); the after row, its fields "
                      "and σ are the re-solve from the learner's last iterate (after*)")
    fields_after, errors_after = evaluate_fields(problem, resolved_after, grid_points, grid_shape)
    after = errors_after[store.ERRORS]
    # σ of the re-solve with the learned kernel and its calibration, as `gpde solve` stores them.
    start = time.perf_counter()
    std_fields, calibrations = evaluate_uncertainty(problem, resolved_after, config, boundary, grid_points, grid_shape,
                                                    fields_after)
    for attrs in calibrations.values():
        attrs["seconds"] = time.perf_counter() - start
    errors_from_iterate, from_iterate_note = {}, ""
    if after_note:
        errors_from_iterate = errors_after
    elif result.solution is not None:
        try:
            from_iterate = resolve(problem, result.kernel, interior, boundary, validation, config, result.solution)[0]
            errors_from_iterate = evaluate_fields(problem, from_iterate, grid_points, grid_shape)[1]
        except SolverError as error:  # the protocol's row above is complete; keep it
            from_iterate_note = f"the re-solve from the learner's iterate failed: {error}"

    history = {
        "iteration": np.array([r.iteration for r in result.records]),
        "loss": np.array([r.loss for r in result.records]),
        "optimizer_steps": np.array([r.optimizer_steps for r in result.records]),
        "seconds": np.array([r.seconds for r in result.records]),
        "scale_factor": np.array([r.scale_factor for r in result.records]),
        "optimizer_loss": np.array(result.losses),
        **{key: np.array(values) for key, values in per_iteration.items() if key != "lengthscale_field"},
    }
    for name in (result.records[0].hyperparameters if result.records else {}):
        history[f"parameter{name}"] = np.array([r.hyperparameters[name] for r in result.records])
    if per_iteration["lengthscale_field"]:
        history["lengthscale_field"] = np.stack(per_iteration["lengthscale_field"])

    resolved = config.as_dict()
    resolved["parameters"] = problem.parameters()
    field = lengthscale_field(result.kernel, grid_points)
    if field is not None:
        fields_after = {**fields_after, "lengthscale": field.reshape(*grid_shape, -1)}
    record = schema.learn_record(
        problem=config.problem, seed=config.seed, config=resolved,
        points={"interior": np.asarray(interior), "boundary": np.asarray(boundary),
                "validation": np.asarray(validation), **problem.data_points()},
        grid_points=grid_points, grid_shape=grid_shape, fields_after=fields_after, fields_before=fields_before,
        errors_before=errors_before, errors_after=errors_after, errors_from_iterate=errors_from_iterate,
        history=history,
        history_attrs={"learn_seconds": learn_seconds, "compile_seconds": result.compile_seconds,
                       "stopped_because": result.stopped_because, "start_note": result.start_note,
                       "from_iterate_note": from_iterate_note, "after_note": after_note},
        kernel_arrays=kernel_arrays(result.kernel), kernel_attrs=kernel_settings(config, problem),
    )
    record.groups[store.FIELDS].update(std_fields)
    record.group_attrs.update(calibrations)
    return LearnRun(result, before, after, record, errors_before, errors_after, errors_from_iterate, from_iterate_note,
                    after_note)
