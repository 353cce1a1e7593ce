"""Randomized-MAP draws of every field: posterior samples that see the nonlinearity of the equations.

`Posterior` is Gaussian around one Gauss-Newton linearization. For a nonlinear problem whose data
leave much undetermined (the Darcy inverse problem), the solutions the data allow lie farther from
the estimate than that linearization says. A randomized-MAP draw (randomized maximum likelihood)
re-solves the full nonlinear problem with the prior and the data perturbed by one random draw:

    (u_p, ε) ~ GP(0, s² k) × N(0, s² σ²),    u* = argmin ‖u − u_p‖²  subject to the constraints,
                                                  with the observations y + ε in the noisy ones.

For a linear problem u* is an exact posterior sample (Matheron's rule: u_p corrected by the
posterior mean of the residual data), so the draws' spread equals `Posterior.std`; for a nonlinear
one each draw is a full solve and the ensemble keeps what one linearization loses.

The prior draw u_p is needed at the evaluation points and at every functional of the constraints
(the operator values of u_p there), jointly: one Gram matrix per field over all of them, and its
eigendecomposition (negative round-off eigenvalues clipped), O((n + M_f)³) once for all draws. The
re-solve writes u = u_p + w and solves for w with each constraint's operator values shifted by
u_p's (`Constraint.shifted`); shifts and data are traced, so the solver compiles once for all draws.
Each re-solve starts from w = 0 (u = u_p, `start="prior"`) or from the solution û of the
unperturbed problem (`start="solution"`: w₀ = û − u_p, whose operator values at the constraints
are û's minus the shift). For a unique minimizer that Gauss-Newton reaches, both give the same
draw. Where the perturbed problem is nearly flat (Darcy's a: the ends from the two starts have
objectives within 1.5 % and differ in a by an RMS of 0.3–4) the draw ends where the iteration
stops, and from the prior draw it keeps more of the prior's spread in the directions the data
barely determine: with a's prior variance × 16 the spread from the prior covers Darcy's a, the
one from the solution does not (benchmarks/calibration-results.md). From u = u_p the iteration starts a prior draw's distance
away, which a strongly nonlinear equation need not recover from (the Schrödinger equation with
learned kernels diverged on the first draw): given `solution`, a draw whose solve from the prior
fails is solved again from the solution, and `RandomizedMap.starts` says where each draw started.
Dense path only: the joint Gram matrix is (n + M_f)².
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..kernels import AbstractKernel

from .._errors import ConfigError, SolverError
from .._results import RESULTS
from ._constraint import Constraint, field_kernels
from ._gram import operator_gram
from ._linearize import compiled_values_at
from ._operators import Evaluation
from ._solution import CollocationSolution
from ._solver import GaussNewton


class RandomizedMap(eqx.Module):
    """`draws[i, f]`: draw i of field f at the evaluation points; `results[i]`: how its solve ended
    (a RESULTS message: converged, stalled or the step limit; failed solves raise instead);
    `starts[i]`: "prior" or "solution", where its solve started."""

    draws: Float[Array, "count fields n"]
    results: tuple[str, ...] = eqx.field(static=True)
    starts: tuple[str, ...] = eqx.field(static=True, default=())

    def mean(self, field: int = 0) -> Float[Array, " n"]:
        return jnp.mean(self.draws[:, field], axis=0)

    def std(self, field: int = 0) -> Float[Array, " n"]:
        """The draws' standard deviation (with Bessel's correction) at each evaluation point."""
        return jnp.std(self.draws[:, field], axis=0, ddof=1)


def randomized_map(
    solver: GaussNewton,
    kernel: AbstractKernel | Sequence[AbstractKernel],
    constraints: Sequence[Constraint],
    points: Float[Array, "n d"],
    key: PRNGKeyArray,
    count: int,
    amplitude: float = 1.0,
    start: str = "prior",
    solution: CollocationSolution | None = None,
) -> RandomizedMap:
    """`count` randomized-MAP draws of every field at `points` (see the module docstring), each a
    full `solver.solve` of the perturbed problem from w = 0 (`start="prior"`) or from
    w₀ = solution − u_p (`start="solution"`, which needs `solution`, the solve of the unperturbed
    problem). With `solution` given, a draw whose solve from the prior fails is solved again from
    the solution. `amplitude` is s²: the prior draws are scaled by s and the observation noise by s
    (s² = 1 is the model the solve itself uses). Raises SolverError if a draw's solve fails (from
    where it last started); ConfigError for a count below 2, a non-positive amplitude, an unknown
    start, or constraints that already carry a shift."""
    if not (isinstance(count, int) and count >= 2):
        raise ConfigError(f"randomized MAP needs an integer count >= 2 (a spread needs two draws), got {count!r}")
    if not (np.isfinite(amplitude) and amplitude > 0):
        raise ConfigError(f"randomized MAP amplitude s² must be finite and > 0, got {amplitude}")
    constraints = tuple(constraints)
    if any(c.shift is not None for c in constraints):
        raise ConfigError("randomized MAP shifts the constraints itself: pass constraints without a shift")
    if start not in ("prior", "solution") or (start == "solution" and solution is None):
        raise ConfigError(f"randomized MAP start must be 'prior', or 'solution' with the solution given, got {start!r}")
    kernels = field_kernels(kernel, constraints)
    points = jnp.asarray(points)
    scale = float(np.sqrt(amplitude))
    roots = [_prior_root(k, f, constraints, points) for f, k in enumerate(kernels)]
    field_keys = jax.random.split(key, len(kernels) + 1)
    normals = [jax.random.normal(k, (count, root.shape[1]), dtype=points.dtype) for k, root in zip(field_keys, roots)]
    noise = jax.random.normal(field_keys[-1], (count, sum(c.size for c in constraints)), dtype=points.dtype)

    solution_values = None if solution is None else compiled_values_at(
        solution.kernels, constraints, solution.constraints, solution.weights, solution.coefficients)
    draws, results, starts = [], [], []
    for i in range(count):
        prior = [scale * (root @ normal[i]) for root, normal in zip(roots, normals)]
        shifted = _shifted_constraints(constraints, prior, points.shape[0], scale * noise[i])
        where = start
        try:
            draw, history = solver.solve(kernels, shifted, initial=_solution_start(solution_values, shifted)
                                         if start == "solution" else None)
        except SolverError:
            if start == "solution" or solution is None:
                raise
            where = "solution"
            draw, history = solver.solve(kernels, shifted, initial=_solution_start(solution_values, shifted))
        draws.append(jnp.stack([draw(points, f) + prior[f][: points.shape[0]] for f in range(len(kernels))]))
        results.append(RESULTS[history.result])
        starts.append(where)
    return RandomizedMap(jnp.stack(draws), tuple(results), tuple(starts))


def _solution_start(solution_values, shifted) -> tuple:
    """The operator values of w₀ = û − u_p at the shifted constraints: û's minus the shift."""
    return tuple(z - c.shift.T for z, c in zip(solution_values, shifted))


def _functionals(constraints: Sequence[Constraint], field: int, points) -> list[tuple[tuple, Array]]:
    """(operators, points) groups of field `field`: the evaluation points first, then each
    constraint's operators on that field at its points, in constraint order."""
    groups = [((Evaluation(),), points)]
    for c in constraints:
        rows = c.rows(field)
        if rows:
            groups.append((tuple(c.operators[j] for j in rows), c.points))
    return groups


def _prior_root(kernel: AbstractKernel, field: int, constraints, points) -> Float[Array, "M M"]:
    """R with R Rᵀ = the prior covariance of field `field` over all its functionals (`_functionals`,
    operator-major within each group), from the eigendecomposition with negative eigenvalues clipped."""
    groups = _functionals(constraints, field, points)
    blocks = {}  # each pair of groups once; the blocks below the diagonal are transposes
    for i, (operators_x, points_x) in enumerate(groups):
        for j in range(i, len(groups)):
            operators_y, points_y = groups[j]
            block = operator_gram(kernel, operators_x, points_x, operators_y, points_y)
            mx, my, nx, ny = block.shape
            blocks[i, j] = jnp.transpose(block, (0, 2, 1, 3)).reshape(mx * nx, my * ny)
    covariance = jnp.concatenate([
        jnp.concatenate([blocks[i, j] if i <= j else blocks[j, i].T for j in range(len(groups))], axis=1)
        for i in range(len(groups))
    ], axis=0)
    eigenvalues, vectors = jnp.linalg.eigh(0.5 * (covariance + covariance.T))
    return vectors * jnp.sqrt(jnp.clip(eigenvalues, 0.0, None))


def _shifted_constraints(constraints, prior, n_points: int, noise) -> tuple[Constraint, ...]:
    """Each constraint shifted by the prior draw's operator values (columns of the fields' draws in
    `_functionals` order) and, if noisy, with its observations perturbed by σ · noise."""
    offsets = [n_points] * len(prior)
    shifted, noise_offset = [], 0
    for c in constraints:
        columns = [None] * len(c.operators)
        for f, draw in enumerate(prior):
            rows = c.rows(f)
            if not rows:
                continue
            block = draw[offsets[f]: offsets[f] + len(rows) * c.size].reshape(len(rows), c.size)
            offsets[f] += len(rows) * c.size
            for j, values in zip(rows, block):
                columns[j] = values
        observations = None
        if c.noise_variance is not None:
            data = jnp.zeros(c.size, noise.dtype) if c.observations is None else c.observations
            observations = data + np.sqrt(c.noise_variance) * noise[noise_offset: noise_offset + c.size]
        noise_offset += c.size
        shifted.append(c.shifted(jnp.stack(columns, axis=1), observations))
    return tuple(shifted)
