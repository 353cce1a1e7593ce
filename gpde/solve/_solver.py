"""Gauss-Newton for GP collocation: the driver loop, its stopping rule and its history."""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..kernels import AbstractKernel

from ._constraint import Constraint, field_kernels, same_functionals
from .._errors import ConfigError, SolverError
from .._results import RESULTS, result_name
from ..sparse._gauss_newton import SparseSteps
from ..sparse._settings import Dense, Sparse
from ._linearize import (
    compiled_gauss_newton_step,
    compiled_operator_blocks,
    compiled_values_at,
    initial_values,
)
from ._precision import require_float64
from ._solution import CollocationSolution


@dataclass(frozen=True)
class StepRecord:
    """What one Gauss-Newton step did: the PDE residual of the new iterate at the collocation
    points (RMS and max over all constraints), the relative change of the operator values, and the
    wall time of the step."""

    step: int
    residual_rms: float
    residual_max: float
    update: float
    seconds: float
    #: Sparse solver only (None with the dense one): CG iterations of the step's linear solve, the
    #: relative residual ‖b − A c‖/‖b‖ of its answer, the preconditioner factor's nonzeros.
    cg_iterations: int | None = None
    cg_residual: float | None = None
    preconditioner_nnz: int | None = None


@dataclass
class SolveHistory:
    """The steps of a solve and how it ended: `result` is RESULTS.converged, stalled or
    max_steps_reached for a solve that returns (a failed one raises SolverError carrying the
    failure's member)."""

    steps: list[StepRecord] = field(default_factory=list)
    assembly_seconds: float = 0.0
    compile_seconds: float = 0.0
    result: RESULTS = field(default_factory=lambda: RESULTS.max_steps_reached)
    #: The residual RMS that the final one is judged against (GaussNewton's divergence rule): the
    #: larger of the starting iterate's and that of u = 0, at the collocation points.
    start_residual_rms: float = float("nan")
    #: The linear solver ("dense" or "sparse") and, for the sparse one, its sparsity radius, the
    #: functional ordering, the number of basis functionals and the nonzeros of their factor.
    solver: str = "dense"
    rho: float | None = None
    ordering: str | None = None
    functionals: int | None = None
    factor_nnz: int | None = None
    #: The steps of the continuation stages solved before the problem itself (GaussNewton.solve's
    #: `continuation`), in order; not part of `steps`.
    continuation_steps: list[StepRecord] = field(default_factory=list)
    #: Operator values of the final iterate at the constraints' points (values[g][j, a] =
    #: (L_{g,j} u)(x_{g,a})), which the last step computed anyway; set by the sparse solver, whose
    #: solution is expensive to re-evaluate at 10⁵ points.
    final_values: tuple | None = None

    @property
    def converged(self) -> bool:
        return result_name(self.result) == "converged"

    @property
    def stalled(self) -> bool:
        """True when the iteration stopped because it stalled (see GaussNewton.stall_steps)."""
        return result_name(self.result) == "stalled"

    @property
    def stop_reason(self) -> str:
        reasons = {"converged": "converged", "stalled": "stalled", "max_steps_reached": "stopped at the step limit"}
        return reasons.get(result_name(self.result), result_name(self.result))

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Per-step columns as numpy arrays (for the HDF5 history group); the sparse solver adds
        its CG iterations, CG residual and preconditioner nonzeros."""
        names = ("step", "residual_rms", "residual_max", "update", "seconds")
        if self.solver == "sparse":
            names += ("cg_iterations", "cg_residual", "preconditioner_nnz")
        return {name: np.array([getattr(s, name) for s in self.steps]) for name in names}

    def solver_attributes(self) -> dict[str, str | float | int]:
        """The linear solver's settings and sizes as scalars (for the HDF5 history attributes)."""
        if self.solver != "sparse":
            return {"solver": self.solver}
        return {"solver": self.solver, "rho": self.rho, "ordering": self.ordering,
                "functionals": self.functionals, "factor_nnz": self.factor_nnz}


class GaussNewton(eqx.Module):
    """Gauss-Newton settings: nugget η (scaled per constraint when `adaptive_nugget`), step limit,
    and the tolerance on the relative update of the operator values that stops the iteration.

    Stall rule: on the harder problems (Burgers, Eikonal) the update levels off near 1e-7 (the
    nugget and round-off floor) and the residual stops improving long before the 1e-8 tolerance;
    the iteration then stops when, for `stall_steps` consecutive steps, the update is below
    `stall_update` and the residual RMS has not improved by 1 % on the best earlier value.
    `stall_steps = 0` turns the rule off.

    Divergence rule: a solve whose final PDE residual RMS (at the collocation points) is not
    finite, or is above the reference — the larger of the residual RMS of the iterate it started
    from and that of u = 0 — diverged, whatever stopped it; it raises SolverError with
    `result = RESULTS.diverged`. Why this reference: such a result is worse than not solving at
    all. Why not the first step's residual: a step with an unsuitable kernel can land far away
    and the next steps then shrink the residual steadily (elliptic, 100 + 40 points, ℓ = 1e3:
    1.4e21 after step 1, falling about 7-fold per step to 3.3e12 after step 10, against 606 for
    u = 0), so "grew since the first step" misses the worst case. Why the final residual only:
    Gauss-Newton's residual need not fall monotonically, and a run that recovers is a result (the
    Eikonal default's residual is ~30× u = 0's after step 1). Margin, measured 2026-11-29 with the
    problems' default kernels and nuggets at 200 + 60 points: final / reference ≤ 3.4e-3 on
    elliptic, Burgers, Eikonal and Darcy (seed 0; Burgers and Eikonal also seeds 1, 2), 5.5e9 in
    the case above.
    The larger of the two starting residuals keeps a warm start from an already accurate
    solution (tiny starting residual) from counting as diverged when another kernel's solution
    ends at its own, higher, nugget floor."""

    nugget: float = 1e-10
    adaptive_nugget: bool = True
    max_steps: int = 10
    tolerance: float = 1e-8
    stall_steps: int = 3
    stall_update: float = 1e-5
    #: How each step solves its linear system: Dense() (exact, up to ~10⁴ points) or Sparse(rho=…)
    #: (sparse Cholesky factors and preconditioned CG, gpde/sparse; one unknown field).
    linear_solver: Dense | Sparse = Dense()

    def __check_init__(self):
        if not (np.isfinite(self.nugget) and self.nugget > 0):
            raise ConfigError(f"nugget must be > 0 (typical 1e-13 … 1e-5), got {self.nugget}")
        if not (isinstance(self.max_steps, int) and not isinstance(self.max_steps, bool) and self.max_steps >= 1):
            raise ConfigError(f"max_steps must be an integer >= 1, got {self.max_steps}")
        if not (np.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ConfigError(f"tolerance must be >= 0, got {self.tolerance}")
        if not isinstance(self.linear_solver, (Dense, Sparse)):
            raise ConfigError(f"linear_solver must be Dense() or Sparse(...), got {self.linear_solver!r}")
        if not (isinstance(self.stall_steps, int) and self.stall_steps >= 0):
            raise ConfigError(f"stall_steps must be an integer >= 0 (0: off), got {self.stall_steps}")

    def solve(
        self,
        kernel: AbstractKernel | Sequence[AbstractKernel],
        constraints: Sequence[Constraint],
        callback: Callable[[StepRecord], None] | None = None,
        initial: CollocationSolution | tuple[Float[Array, "m n"], ...] | None = None,
        continuation: Sequence[Sequence[Constraint]] = (),
        continuation_steps: int = 4,
    ) -> tuple[CollocationSolution, SolveHistory]:
        """Solve the constraints; return the solution and the per-step history.

        The iteration starts from u = 0, or from `initial` (any earlier solution with the same
        fields, e.g. one with another kernel or on other points): the first linearization is
        around its operator values at the constraints' points. `initial` may also be those operator
        values themselves, one (operators × points) array per constraint, for a starting iterate
        that is known only there (e.g. a solution minus a prior draw, `randomized_map`).
        Gauss-Newton's fixed point can depend on where it starts (the Eikonal problem with a
        learned Gibbs kernel is an example).

        `kernel` is one kernel, or a tuple with one kernel per unknown field (the fields that the
        constraints' OnField operators name). Raises SolverError (naming the step and the fix) if a
        step fails numerically or the solve diverged (see the class docstring), with the
        RESULTS member as the error's `result`; ConfigError if kernels and fields do not match.

        `continuation`: constraint sets solved first, in order, for `continuation_steps` steps each,
        each warm-starting the next and the last warm-starting `constraints` (a continuation in
        an equation parameter: Gauss-Newton from u = 0 does not find Burgers' steep front at
        small viscosity). The stages must have the same operators at the same points as
        `constraints`; the Gram blocks (dense) or the ordering, patterns and basis factor
        (sparse) are then built once for all of them, and each stage runs exactly
        `continuation_steps` steps. Their steps are `history.continuation_steps`.
        """
        require_float64()
        constraints = tuple(constraints)
        _check_dimensions(constraints)
        kernels = field_kernels(kernel, constraints)
        history = SolveHistory()
        continuation = tuple(tuple(stage) for stage in continuation)
        if continuation and not (isinstance(continuation_steps, int) and continuation_steps >= 1):
            raise ConfigError(f"continuation_steps must be an integer >= 1, got {continuation_steps!r}")
        for stage in continuation:
            _check_stage(stage, constraints)

        if isinstance(self.linear_solver, Sparse):
            run, values, finish, retarget = self._sparse_steps(kernels, constraints, initial, history)
        else:
            run, values, finish, retarget = self._dense_steps(kernels, constraints, initial, history)
        # The stages share the functionals, hence the Gram blocks (dense) or the ordering, patterns
        # and basis factor (sparse), and the operator values hand over from stage to stage.
        for index, stage in enumerate(continuation, start=1):
            retarget(stage)
            for number in range(1, continuation_steps + 1):
                outcome, record = _timed_step(run, values, number, f"continuation stage {index}, step {number}")
                history.continuation_steps.append(record)
                values = outcome.values
        if continuation:
            retarget(constraints)
        history.start_residual_rms = reference_residual_rms(constraints, values)

        outcome = None
        for number in range(1, self.max_steps + 1):
            outcome, record = _timed_step(run, values, number, f"Gauss-Newton step {number}")
            update = record.update
            history.steps.append(record)
            if callback is not None:
                callback(record)
            values = outcome.values
            if update <= self.tolerance:
                history.result = RESULTS.converged
                break
            if self._stalled(history.steps):
                history.result = RESULTS.stalled
                break
        final = history.steps[-1].residual_rms
        if not final <= history.start_residual_rms:  # NaN compares False: non-finite is divergence
            _, why = RESULTS[RESULTS.diverged].split(": ", 1)
            raise SolverError(
                f"Gauss-Newton diverged (residual RMS {final:.3g} after step {len(history.steps)}, "
                f"{history.start_residual_rms:.3g} at the start): {why}",
                RESULTS.diverged,
            )
        if history.solver == "sparse":
            history.final_values = tuple(outcome.values)
        return finish(outcome), history

    def _dense_steps(self, kernels, constraints, initial, history):
        """(step: values ↦ (outcome, None), starting values, outcome ↦ solution, retarget) of the
        dense solver: the per-operator Gram blocks assembled once, the step compiled once per
        set of equations (`retarget` switches to a continuation stage's, with the same blocks)."""
        start = time.perf_counter()
        blocks = jax.block_until_ready(compiled_operator_blocks(kernels, constraints))
        history.assembly_seconds = time.perf_counter() - start
        if initial is None or isinstance(initial, tuple):
            values = _starting_values(constraints, initial)
        else:
            values = compiled_values_at(initial.kernels, constraints, initial.constraints, initial.weights,
                                        initial.coefficients)
        compiled, current = {}, {}

        def retarget(equations):
            start = time.perf_counter()
            if id(equations) not in compiled:
                step = compiled_gauss_newton_step.lower(
                    blocks, equations, values, self.nugget, self.adaptive_nugget
                ).compile()
                compiled[id(equations)] = (equations, step)
            current["constraints"], current["step"] = compiled[id(equations)]
            history.compile_seconds += time.perf_counter() - start

        def run(values):
            outcome = current["step"](blocks, current["constraints"], values, self.nugget, self.adaptive_nugget)
            return jax.block_until_ready(outcome), None

        def finish(outcome):
            return CollocationSolution(kernels, constraints, outcome.weights, outcome.coefficients)

        retarget(constraints)
        return run, values, finish, retarget

    def _sparse_steps(self, kernels, constraints, initial, history):
        """(step: values ↦ (outcome, SparseStepInfo), starting values, outcome ↦ SparseSolution) of
        the sparse solver: ordering, patterns and the basis functionals' factor built once
        (assembly time, compilation included). A warm start evaluates `initial` at the points."""
        start = time.perf_counter()
        steps = SparseSteps(self.linear_solver, kernels, constraints, self.nugget, self.adaptive_nugget)
        history.assembly_seconds = time.perf_counter() - start
        history.solver, history.rho, history.ordering = "sparse", self.linear_solver.rho, self.linear_solver.ordering
        history.functionals, history.factor_nnz = steps.setup.functionals, steps.setup.factor_nnz
        if initial is None or isinstance(initial, tuple):
            values = _starting_values(constraints, initial)
        else:
            values = tuple(jnp.stack([initial.apply(op, c.points, f) for op, f in zip(c.operators, c.fields)])
                           for c in constraints)
        return steps.step, values, steps.solution, steps.retarget


    def _stalled(self, steps: list[StepRecord]) -> bool:
        recent, earlier = steps[-self.stall_steps :], steps[: -self.stall_steps]
        if self.stall_steps == 0 or not earlier:
            return False
        best_before = min(s.residual_rms for s in earlier)
        return all(s.update < self.stall_update and s.residual_rms > 0.99 * best_before for s in recent)


def _check_stage(stage, constraints) -> None:
    """ConfigError unless the continuation stage has the operators, points and noise of the
    final problem's constraints (only the equations may differ)."""
    if not same_functionals(stage, constraints):
        raise ConfigError(
            "a continuation stage must have the same constraints as the final problem (operators, points "
            "and noise) with other equation parameters; solve the stages separately instead"
        )


def _timed_step(run, values, number: int, name: str) -> tuple:
    """(outcome, StepRecord) of one step from `values`; SolverError naming the step if it failed."""
    start = time.perf_counter()
    outcome, info = run(values)
    seconds = time.perf_counter() - start
    if not outcome.result == RESULTS.successful:
        raise SolverError(f"{name} failed: {RESULTS[outcome.result]}", outcome.result)
    residuals = np.concatenate([np.asarray(r) for r in outcome.residuals])
    record = StepRecord(
        step=number,
        residual_rms=float(np.sqrt(np.mean(residuals**2))),
        residual_max=float(np.max(np.abs(residuals))),
        update=_relative_change(values, outcome.values),
        seconds=seconds,
        **({} if info is None else {"cg_iterations": info.cg_iterations, "cg_residual": info.cg_residual,
                                    "preconditioner_nnz": info.preconditioner_nnz}),
    )
    return outcome, record


def _starting_values(constraints, values) -> tuple:
    """The operator values of u = 0 (`values` None), or `values` checked against the constraints'
    shapes (one (operators × points) array per constraint)."""
    if values is None:
        return initial_values(constraints)
    if len(values) != len(constraints):
        raise ConfigError(f"initial operator values: one array per constraint ({len(constraints)}), got {len(values)}")
    for c, z in zip(constraints, values):
        if jnp.shape(z) != (len(c.operators), c.size):
            raise ConfigError(f"initial operator values for constraint '{c.name}' must have shape "
                              f"({len(c.operators)}, {c.size}) (operators × points), got {jnp.shape(z)}")
    return tuple(jnp.asarray(z, dtype=c.points.dtype) for c, z in zip(constraints, values))


def _residual_rms(constraints, values) -> float:
    """RMS of the residuals of all constraints at the operator values `values`."""
    residuals = np.concatenate([np.asarray(c.residuals(z)) for c, z in zip(constraints, values)])
    return float(np.sqrt(np.mean(residuals**2)))


def reference_residual_rms(constraints, values) -> float:
    """The divergence rule's reference (GaussNewton): the larger of the residual RMS at the
    starting operator values `values` and at those of u = 0 (non-finite ones ignored; inf if
    neither is finite, which turns the rule off)."""
    finite = [r for r in (_residual_rms(constraints, values), _residual_rms(constraints, initial_values(constraints)))
              if np.isfinite(r)]
    return max(finite, default=float("inf"))


def _relative_change(old, new) -> float:
    old = np.concatenate([np.asarray(z).ravel() for z in old])
    new = np.concatenate([np.asarray(z).ravel() for z in new])
    return float(np.linalg.norm(new - old) / max(np.linalg.norm(new), np.finfo(float).tiny))


def _check_dimensions(constraints):
    if not constraints:
        raise ConfigError("solve needs at least one constraint")
    dims = {c.points.shape[1] for c in constraints}
    if len(dims) != 1:
        raise ConfigError(f"all constraints must have points of one dimension, got {sorted(dims)}")
