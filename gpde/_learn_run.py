"""A whole bilevel learning run with the published evaluation protocol (REFERENCES.md §3):
learn θ on training + validation points, then freeze θ and re-solve by plain Gauss-Newton on
training ∪ validation points; the same re-solve with the initial θ gives the "before" row."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from kernels import AbstractKernel, Gibbs

from . import _store as store
from ._bilevel import BilevelLearner, LearnResult, OuterRecord
from ._config import LearnConfig
from ._kernel_choice import kernel_arrays, make_kernel
from ._metrics import error_metrics
from ._precision import require_float64
from ._problem import AbstractProblem
from ._run import LEARNED_KERNEL, build_problem
from ._solver import GaussNewton

KERNEL = LEARNED_KERNEL
BEFORE = "before"
AFTER = "after"


def trainable_filter(kernel: AbstractKernel, which: str):
    """The Equinox filter spec for `which` ('all' inexact arrays, or 'lengthscale' leaves only)."""
    if which == "all":
        return eqx.is_inexact_array
    paths = jax.tree_util.tree_flatten_with_path(kernel)[0]
    flags = [("log_lengthscale" in jax.tree_util.keystr(p)) and eqx.is_inexact_array(leaf) for p, leaf in paths]
    if not any(flags):
        from ._errors import ConfigError

        raise ConfigError(f"the {type(kernel).__name__} kernel has no lengthscale parameter; use --trainable all")
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(kernel), flags)


@dataclass
class LearnRun:
    result: LearnResult
    before: dict[str, float]
    after: dict[str, float]
    record: store.RunFile


def learning_points(problem: AbstractProblem, config: LearnConfig):
    """Training interior, boundary and validation points, reproducible from the seed."""
    keys = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    interior = problem.domain.interior_points(config.n_interior, config.layout, keys[0])
    boundary = problem.domain.boundary_points(config.n_boundary, config.layout, keys[1], problem.boundary_faces)
    validation = problem.domain.interior_points(config.n_validation, "random", keys[2])
    return interior, boundary, validation


def evaluate_kernel(problem, kernel, interior, boundary, validation, config, grid_points):
    """The protocol's re-solve: plain Gauss-Newton on training ∪ validation points."""
    solver = GaussNewton(nugget=config.nugget, adaptive_nugget=config.adaptive_nugget, max_steps=config.eval_steps,
                         tolerance=config.tolerance)
    solution, history = solver.solve(kernel, problem.constraints(jnp.concatenate([interior, validation]), boundary))
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
    dim = problem.domain.dim
    initial = make_kernel(config.kernel, config.lengthscale, dim, config.seed)
    grid_points, grid_shape = problem.domain.grid(config.grid)
    u_ref = np.asarray(problem.reference(np.asarray(grid_points)))

    u_before, _ = evaluate_kernel(problem, initial, interior, boundary, validation, config, grid_points)
    before = error_metrics(u_before, u_ref)

    learner = BilevelLearner(
        optimizer=optax.adam(config.learning_rate), gn_steps=config.gn_steps, inner_steps=config.inner_steps,
        nugget=config.nugget, adaptive_nugget=config.adaptive_nugget, batch_size=config.batch_size,
        loss_tolerance=config.loss_tolerance,
    )
    per_iteration = {"rms": [], "l2_relative": [], "linf": [], "lengthscale_field": []}

    def on_iteration(record: OuterRecord, solution):
        errors = error_metrics(np.asarray(solution(grid_points)), u_ref)
        for key, value in errors.items():
            per_iteration[key].append(value)
        field = lengthscale_field(solution.kernel, grid_points)
        if field is not None:
            per_iteration["lengthscale_field"].append(field.reshape(*grid_shape, -1))
        if progress is not None:
            progress(record, errors)

    start = time.perf_counter()
    result = learner.learn(
        initial, problem.constraints(interior, boundary), problem.validation_constraints(validation, boundary),
        trainable=trainable_filter(initial, config.trainable), seed=config.seed, callback=on_iteration,
    )
    learn_seconds = time.perf_counter() - start

    u_after, _ = evaluate_kernel(problem, result.kernel, interior, boundary, validation, config, grid_points)
    after = error_metrics(u_after, u_ref)

    history = {
        "iteration": np.array([r.iteration for r in result.records]),
        "loss": np.array([r.loss for r in result.records]),
        "optimizer_steps": np.array([r.optimizer_steps for r in result.records]),
        "seconds": np.array([r.seconds for r in result.records]),
        "rms": np.array(per_iteration["rms"]),
        "l2_relative": np.array(per_iteration["l2_relative"]),
        "linf": np.array(per_iteration["linf"]),
        "optimizer_loss": np.array(result.losses),
    }
    for name in (result.records[0].hyperparameters if result.records else {}):
        history[f"parameter{name}"] = np.array([r.hyperparameters[name] for r in result.records])
    if per_iteration["lengthscale_field"]:
        history["lengthscale_field"] = np.stack(per_iteration["lengthscale_field"])

    resolved = config.as_dict()
    resolved["parameters"] = problem.parameters()
    fields = {
        store.GRID_POINTS: np.asarray(grid_points),
        store.U: u_after.reshape(grid_shape),
        store.U_REF: u_ref.reshape(grid_shape),
        store.ERROR: (u_after - u_ref).reshape(grid_shape),
    }
    groups = {
        store.POINTS: {"interior": np.asarray(interior), "boundary": np.asarray(boundary),
                       "validation": np.asarray(validation)},
        store.FIELDS: fields,
        store.HISTORY: history,
        f"{BEFORE}/{store.FIELDS}": {store.U: u_before.reshape(grid_shape),
                                     store.ERROR: (u_before - u_ref).reshape(grid_shape)},
        KERNEL: kernel_arrays(result.kernel),
    }
    field = lengthscale_field(result.kernel, grid_points)
    if field is not None:
        fields["lengthscale"] = field.reshape(*grid_shape, -1)
    record = store.RunFile(
        problem=config.problem,
        seed=config.seed,
        config=resolved,
        groups=groups,
        group_attrs={
            store.FIELDS: {store.GRID_SHAPE: np.asarray(grid_shape)},
            store.ERRORS: after,
            f"{BEFORE}/{store.ERRORS}": before,
            f"{AFTER}/{store.ERRORS}": after,
            store.HISTORY: {"learn_seconds": learn_seconds, "compile_seconds": result.compile_seconds,
                            "stopped_because": result.stopped_because},
            KERNEL: {"name": config.kernel, "lengthscale": np.asarray(config.lengthscale), "dim": dim,
                     "seed": config.seed},
        },
    )
    return LearnRun(result, before, after, record)
