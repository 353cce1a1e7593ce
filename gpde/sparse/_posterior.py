"""The posterior standard deviation of the sparse solver's solution (docs/sparse-posterior.md).

Two methods. 'factor' (the default) conditions on every reduced functional through the solve's
own factors: the variance of the solution's kriging from the basis values plus the posterior
covariance of those values in the step's Gaussian model (`_basis_posterior.py`); it matches the
dense posterior up to the factor's approximation error. 'local' (below) conditions on the k nearest
sites only: cheaper, no conjugate-gradient solves, but an upper bound that can be far above the
posterior variance where the functionals screen weakly.

The dense `Posterior` (gpde/solve/_posterior.py) is the GP posterior at the last Gauss-Newton
linearization, u ~ GP(0, s² k) given the reduced functionals φ_a(u) = b_a (one per collocation
point, φ_a = Σ_j w_j(x_a) L_j δ_{x_a}) observed with the solver's nugget η_a as noise:

    var(x) = s² [k(x, x) − K(x, φ) (K(φ, φ) + η)⁻¹ K(φ, x)].

It needs the exact factor of the N × N reduced system, which the sparse path never forms. The local
method conditions instead on the reduced functionals of the k collocation sites nearest
x only (nearest in the kernel's screening coordinates, `SparseSolution.screening`), with the same
kernel, weights and per-functional nugget:

    var_k(x) = s² [k(x, x) − K(x, φ_S) (K(φ_S, φ_S) + η_S)⁻¹ K(φ_S, x)],   S = the k sites.

The noise of the functionals is independent, so conditioning on a subset of them can only leave
more variance: var_k ≥ var for every k (a conservative σ), with equality at k = N. By the
screening effect the far functionals add little once the near ones are known, so var_k approaches
var as k grows. Every point costs one dense (k+1) × (k+1) Gram block and a Cholesky factorization,
batched in JAX: O(k³) per point and O(N) memory, no N × N or N × points array.

The nugget of functional a is the sparse solver's (`SparseSteps._reduced_system`): the dense
solver's D_a (`_linearize.nugget_diagonal`: η times the mean prior variance of the functionals of
a's constraint, η, or a noisy constraint's noise variance) or, where larger, the part the basis
factor's own nugget already puts on a, Σ_j w_j(x_a)² S_j. Both are computed once over all N
functionals and only then restricted to S, so that a functional's nugget does not depend on which
neighbourhood it is in.

The amplitude s² has the dense `Posterior`'s meaning: the maximum-likelihood s² = bᵀc / N of the
last step (b = W t + η∘c with the step's basis-functional values t, no extra solve), or the
held-out s² fitted to residuals the solve did not see (`SparsePosterior.held_out_amplitude`), whose
predicted variances come from the same method.
"""

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

from .._errors import ConfigError, SolverError
from ..kernels import AbstractKernel
from ..solve._constraint import Constraint, OnField
from ..solve._gram import functional_gram, operator_gram
from ..solve._linearize import linearize
from ..solve._operators import AbstractOperator, Evaluation
from ..solve._posterior import noisy_rows
from ._solution import SparseSolution, padded_batches

# Points per batched call: a batch holds batch × (k + 1)² Gram entries and the kernel's
# intermediates of the same size (k = 75: about 1.5 M entries).
_BATCH = 256
#: Default neighbourhood of the local method: this many times the solution's kriging
#: neighbourhood (3 ρ^d sites).
NEIGHBOUR_FACTOR = 4
#: The methods: conditioning on every functional through the solve's factors, or on the k nearest.
FACTOR, LOCAL = "factor", "local"
#: Entries of one batch's columns in the factor method (basis functionals × points of the batch).
_COLUMN_ENTRIES = 1 << 22


class SparsePosterior(eqx.Module):
    """The local posterior of the sparse solver's `solution` (see the module docstring).

    `reduced_weights[a, j]` is the weight of `solution.operators[j]` in the reduced functional of
    site a, `nugget[a]` its regularization in the solver's reduced system, `neighbours` the k of
    the local conditioning, `amplitude` the s² in use and `ml_amplitude` the maximum-likelihood
    s². `relative_nugget` and `adaptive_nugget` are the solver's η and adaptive flag,
    `factor_nugget` the basis factor's relative nugget (S_j = factor_nugget · Θ_jj): they give
    held-out functionals the nugget the solver would give them."""

    solution: SparseSolution
    reduced_weights: Float[np.ndarray, "N m"]
    nugget: Float[np.ndarray, " N"]
    amplitude: Float[Array, ""]
    ml_amplitude: Float[Array, ""]
    neighbours: int = eqx.field(static=True)
    relative_nugget: float = eqx.field(static=True)
    adaptive_nugget: bool = eqx.field(static=True)
    factor_nugget: float = eqx.field(static=True)
    method: str = eqx.field(static=True, default=FACTOR)

    def __check_init__(self):
        if not (isinstance(self.neighbours, int) and self.neighbours >= 1):
            raise ConfigError(f"neighbours must be an integer >= 1, got {self.neighbours!r}")
        if self.method not in (FACTOR, LOCAL):
            raise ConfigError(f"the sparse posterior's method is '{FACTOR}' or '{LOCAL}', got {self.method!r}")
        if self.method == FACTOR and self.solution.basis_posterior is None:
            raise ConfigError(f"the '{FACTOR}' sparse posterior needs the solve's factors, which a failed last "
                              f"step does not leave; use method='{LOCAL}'")

    @classmethod
    def at(cls, solution: SparseSolution, nugget: float, adaptive_nugget: bool = True,
           held_out: Sequence[Constraint] = (), neighbours: int | None = None,
           method: str = FACTOR) -> "SparsePosterior":
        """The posterior of `solution` for the solver settings that produced it (`nugget` and
        `adaptive_nugget` must be the GaussNewton's). `method`: 'factor' (every functional, through
        the solve's factors) or 'local' (the k nearest sites); `neighbours`: the k of the local
        method (at most the number of sites; default NEIGHBOUR_FACTOR times the solution's
        kriging neighbourhood). The amplitude is the maximum-likelihood s², or with
        `held_out` constraints the held-out one (`held_out_amplitude`). O(N) memory; SolverError
        if the reduced functionals or the amplitude are not finite."""
        if not isinstance(solution, SparseSolution):
            raise ConfigError(f"SparsePosterior needs the sparse solver's SparseSolution, got {type(solution).__name__}")
        sites = solution.sites.shape[0]
        if neighbours is None:
            neighbours = NEIGHBOUR_FACTOR * solution.neighbours
        if not (isinstance(neighbours, int) and not isinstance(neighbours, bool) and neighbours >= 1):
            raise ConfigError(f"neighbours must be an integer >= 1, got {neighbours!r}")
        neighbours = min(neighbours, sites)
        with _one_blas_thread():
            weights = _reduced_weights(solution)
            factor_nugget = _factor_nugget(solution)
            diagonal = _functional_variances(solution.kernel, solution.operators, weights, solution.sites)
            regularization = np.maximum(
                _dense_nugget(solution.constraints, diagonal, float(nugget), bool(adaptive_nugget)),
                _covered(solution, weights),
            )
            ml_amplitude = _ml_amplitude(solution, weights, regularization)
        if not (np.all(np.isfinite(regularization)) and np.isfinite(ml_amplitude)):
            raise SolverError("the sparse posterior's reduced functionals or its amplitude are not finite: "
                              "the solve did not converge to a finite solution")
        posterior = cls(solution, weights, regularization, jnp.asarray(ml_amplitude), jnp.asarray(ml_amplitude),
                        neighbours, float(nugget), bool(adaptive_nugget), factor_nugget, method)
        if held_out:
            posterior = eqx.tree_at(lambda p: p.amplitude, posterior, posterior.held_out_amplitude(held_out))
        if not (jnp.isfinite(posterior.amplitude) and posterior.amplitude > 0):
            raise SolverError(f"the sparse posterior's amplitude s² is {float(posterior.amplitude)}, not finite "
                              "and > 0: increase the nugget or the number of neighbours")
        return posterior

    def with_amplitude(self, amplitude: float | Float[Array, ""]) -> "SparsePosterior":
        """The same posterior with another amplitude s² (the mean does not depend on it)."""
        if not (jnp.isfinite(amplitude) and amplitude > 0):
            raise ConfigError(f"the amplitude s² must be finite and > 0, got {amplitude}")
        return eqx.tree_at(lambda p: p.amplitude, self, jnp.asarray(amplitude, dtype=self.amplitude.dtype))

    def with_neighbours(self, neighbours: int) -> "SparsePosterior":
        """The same posterior by the local method, conditioned on `neighbours` sites per point
        (at most all)."""
        if not (isinstance(neighbours, int) and not isinstance(neighbours, bool) and neighbours >= 1):
            raise ConfigError(f"neighbours must be an integer >= 1, got {neighbours!r}")
        return dataclasses.replace(self, neighbours=min(neighbours, self.solution.sites.shape[0]), method=LOCAL)

    def with_method(self, method: str) -> "SparsePosterior":
        """The same posterior by another method ('factor' or 'local'; the amplitude is kept)."""
        return dataclasses.replace(self, method=method)

    def held_out_amplitude(self, constraints: Sequence[Constraint]) -> Float[Array, ""]:
        """s² re-estimated on data the solve did not see, as `Posterior.held_out_amplitude`: the
        mean of r_v² / (var₁(φ_v) + η_v) over held-out functionals φ_v (linearized at the
        solution, residual r_v) and of the leave-one-out ratios of the solve's noisy
        observations. var₁ is the local conditional variance at unit amplitude (on the k sites
        nearest the held-out point; for an observation, on the k nearest other sites), η_v the
        nugget the solver would give the row. The local variances are ≥ the full ones, so this s²
        is at most slightly below the dense path's."""
        constraints = tuple(constraints)
        with _one_blas_thread():
            ratios = [_held_out_ratios(self, c) for c in constraints] + [_leave_one_out_ratios(self)]
        ratios = np.concatenate(ratios)
        if ratios.size == 0:
            raise ConfigError("held_out_amplitude needs held-out constraints or noisy observations")
        return jnp.asarray(np.mean(ratios))

    def mean(self, points: Float[Array, "n d"], field: int = 0,
             operator: AbstractOperator = Evaluation()) -> Float[Array, " n"]:
        """The posterior mean of (L u)(x) at each point: the solution itself."""
        return self.solution.apply(operator, points, self._check_field(field))

    def variance(self, points: Float[Array, "n d"], field: int = 0,
                 operator: AbstractOperator = Evaluation()) -> Float[Array, " n"]:
        """The posterior variance of (L u)(x) at each point (L = δ: of u itself) by the
        posterior's method, clipped at 0 where rounding leaves the difference slightly negative."""
        self._check_field(field)
        if isinstance(operator, OnField):
            operator = operator.operator
        points = np.asarray(points, dtype=np.float64)
        operators, column = _with_operator(self.solution.operators, operator)
        target = np.zeros((points.shape[0], len(operators)))
        target[:, column] = 1.0
        with _one_blas_thread():
            variance = _unit_variances(self, operators, target, points)
        return self.amplitude * jnp.maximum(jnp.asarray(variance), 0.0)

    def std(self, points: Float[Array, "n d"], field: int = 0,
            operator: AbstractOperator = Evaluation()) -> Float[Array, " n"]:
        """The posterior standard deviation of (L u)(x) at each point."""
        return jnp.sqrt(self.variance(points, field, operator))

    def _nearest(self, points, count: int) -> Int[np.ndarray, "n k"]:
        """The `count` sites nearest each point in screening coordinates, nearest first."""
        tree = cKDTree(self.solution.screening(self.solution.sites))
        _, near = tree.query(self.solution.screening(points), k=count)
        return np.asarray(near).reshape(points.shape[0], count)

    def _check_field(self, field) -> int:
        if not (isinstance(field, int) and not isinstance(field, bool) and field == 0):
            raise ConfigError(f"the sparse solver's solution has one field (0), got field {field!r}")
        return field


def sparse_posterior(solution: SparseSolution, nugget: float, adaptive_nugget: bool = True,
                     held_out: Sequence[Constraint] = (), neighbours: int | None = None,
                     method: str = FACTOR) -> SparsePosterior:
    """The posterior of the sparse solver's solution (`SparsePosterior.at`): `.std(points)`,
    `.variance(points)`, `.amplitude`. `nugget` and `adaptive_nugget` must be the settings of the
    GaussNewton that made the solution."""
    return SparsePosterior.at(solution, nugget, adaptive_nugget, held_out, neighbours, method)


# --- the reduced functionals and their nugget ------------------------------------------------


def _reduced_weights(solution: SparseSolution) -> Float[np.ndarray, "N m"]:
    """W[a, j]: the weight of solution.operators[j] in the reduced functional of site a (sites are
    the constraints' points in constraint order)."""
    weights = np.zeros((solution.sites.shape[0], len(solution.operators)))
    start = 0
    for constraint, w in zip(solution.constraints, solution.weights):
        w = np.asarray(w)
        for j, operator in enumerate(constraint.operators):
            weights[start : start + constraint.size, _index(solution.operators, _plain(operator))] += w[j]
        start += constraint.size
    return weights


def _factor_nugget(solution: SparseSolution) -> float:
    """The basis factor's relative nugget: its shift S_i over the prior variance Θ_ii of basis
    functional i (one ratio for all i by construction; read off functional 0)."""
    site = int(np.argmax(np.any(solution.site_functionals == 0, axis=1)))
    operator = solution.operators[int(solution.functional_operator[0])]
    point = jnp.asarray(solution.sites[site : site + 1])
    prior = float(operator_gram(solution.kernel, (operator,), point, (operator,), point)[0, 0, 0, 0])
    return float(solution.shift[0]) / prior


def _dense_nugget(constraints: Sequence[Constraint], diagonal, nugget: float, adaptive: bool):
    """The dense solver's nugget D of each functional (`_linearize.nugget_diagonal`) from the
    diagonal of K(φ, φ): per constraint, its noise variance, η times the mean of its functionals'
    prior variances (adaptive), or η."""
    parts, start = [], 0
    for constraint in constraints:
        size = constraint.size
        if constraint.noise_variance is not None:
            parts.append(np.full(size, float(constraint.noise_variance)))
        elif adaptive:
            parts.append(np.full(size, nugget * np.mean(diagonal[start : start + size])))
        else:
            parts.append(np.full(size, nugget))
        start += size
    return np.concatenate(parts) if parts else np.zeros(0)


def _covered(solution: SparseSolution, weights) -> Float[np.ndarray, " N"]:
    """(W S Wᵀ)_aa = Σ_j W[a, j]² S_j over the basis functionals j at site a: the regularization
    that the basis factor's nugget S puts on reduced functional a."""
    table = solution.site_functionals
    valid = table >= 0
    functionals = np.where(valid, table, 0)
    columns = solution.functional_operator[functionals]
    w = np.take_along_axis(weights, columns, axis=1)
    return np.sum(np.where(valid, w**2 * solution.shift[functionals], 0.0), axis=1)


def _ml_amplitude(solution: SparseSolution, weights, regularization) -> float:
    """s² = bᵀc / N for the last step's system (W Θ̃ Wᵀ + top-up) c = b. With its
    basis-functional values t = Θ̃Wᵀc − SWᵀc (`iterate_values`), b = W t + η∘c, η the
    regularization max(D, WSWᵀ)."""
    table = solution.site_functionals
    valid = table >= 0
    functionals = np.where(valid, table, 0)
    w = np.take_along_axis(weights, solution.functional_operator[functionals], axis=1)
    values = np.sum(np.where(valid, w * solution.iterate_values[functionals], 0.0), axis=1)
    c = np.concatenate([np.asarray(c) for c in solution.coefficients])
    return float(c @ (values + regularization * c) / c.size)


@eqx.filter_jit
def _pointwise_variances(kernel, operators, weights, points):
    return jax.vmap(lambda w, x: functional_gram(kernel, operators, w[None], x[None], w[None], x[None])[0, 0])(
        weights, points
    )


def _functional_variances(kernel, operators, weights, points) -> Float[np.ndarray, " n"]:
    """K(φ_a, φ_a) for functionals with `weights` (n × m) over `operators` at `points`."""
    out = []
    for start in range(0, points.shape[0], 16 * _BATCH):
        part = slice(start, start + 16 * _BATCH)
        out.append(np.asarray(_pointwise_variances(kernel, tuple(operators), jnp.asarray(weights[part]),
                                                   jnp.asarray(points[part]))))
    return np.concatenate(out) if out else np.zeros(0)


# --- local conditional variances ---------------------------------------------------------------


def _unit_variances(posterior: SparsePosterior, operators, target, points) -> Float[np.ndarray, " n"]:
    """Unit-amplitude posterior variance of each target functional (weights `target` over
    `operators` at `points`) by the posterior's method."""
    if posterior.method == FACTOR:
        return _factor_variances(posterior.solution, operators, target, points)
    return _local_variances(posterior, operators, target, points, posterior._nearest(points, posterior.neighbours))


def _factor_variances(solution: SparseSolution, operators, target, points) -> Float[np.ndarray, " n"]:
    """r_x + g_xᵀ Cov(t | b) g_x for each target functional (`_basis_posterior.py`): g_x and r_x
    from kriging on the solution's own neighbourhood of x, Cov(t | b) through the solve's
    factors. Batches of at most _BATCH points, fewer where the basis is large, so that the
    batch's columns (basis functionals × batch, a few per CG) stay near _COLUMN_ENTRIES entries."""
    basis = solution.values.shape[0]
    batch = int(max(8, min(_BATCH, 2 ** np.floor(np.log2(max(_COLUMN_ENTRIES // basis, 1))))))
    functionals, valid = solution.neighbourhood_functionals(solution.nearest_sites(points)[1])
    site_of = solution._site_of()
    columns = np.eye(len(operators))[: len(solution.operators)]
    out = []
    for count, (rows, mask, x, t) in padded_batches(batch, functionals, valid, points, target):
        one_hot = columns[solution.functional_operator[rows]] * mask[:, :, None]
        g, r, finite = _kriging_weights(
            solution.kernel, tuple(operators), jnp.asarray(t), jnp.asarray(x), jnp.asarray(one_hot),
            jnp.asarray(solution.sites[site_of[rows]]), jnp.asarray(np.where(mask, solution.shift[rows], 1.0)),
        )
        if not bool(finite):
            raise SolverError("a kriging factorization of the sparse posterior failed (the basis functionals of "
                              "a neighbourhood are numerically singular): increase the nugget")
        spread = np.zeros((basis, count))
        g = np.where(mask, np.asarray(g), 0.0)[:count]
        np.add.at(spread, (rows[:count], np.arange(count)[:, None]), g)
        out.append(np.asarray(r)[:count] + solution.basis_posterior.quadratic(spread))
    return np.concatenate(out) if out else np.zeros(0)


@eqx.filter_jit
def _kriging_weights(kernel: AbstractKernel, operators, target, x, weights, sites, diagonal):
    """For each b: the kriging weights g_b = (Θ_s + diag_b)⁻¹ K(φ_s, ψ_b) of the functional ψ_b
    (target[b] at x[b]) on the basis functionals φ_s (weights[b] at sites[b]; padding rows have
    zero weights and a unit diagonal), the kriging variance K(ψ_b, ψ_b) − K(ψ_b, φ_s) g_b, and
    whether every factor is finite."""
    def one(tb, xb, wb, sb, db):
        gram = functional_gram(kernel, operators, wb, sb, wb, sb) + jnp.diag(db)
        cross = functional_gram(kernel, operators, wb, sb, tb[None], xb[None])[:, 0]
        prior = functional_gram(kernel, operators, tb[None], xb[None], tb[None], xb[None])[0, 0]
        lower = jnp.linalg.cholesky(gram)
        g = jax.scipy.linalg.cho_solve((lower, True), cross)
        return g, prior - cross @ g, jnp.all(jnp.isfinite(jnp.diagonal(lower)))

    g, variance, finite = jax.vmap(one)(target, x, weights, sites, diagonal)
    return g, variance, jnp.all(finite) & jnp.all(jnp.isfinite(variance))


def _local_variances(posterior: SparsePosterior, operators, target, points, near) -> Float[np.ndarray, " n"]:
    """Unit-amplitude variance of each target functional (weights `target` over `operators` at
    `points`) given the reduced functionals of its sites `near` (n × k) with their nugget, in
    batches of _BATCH points. SolverError if a local factorization fails."""
    solution = posterior.solution
    weights = np.zeros((posterior.reduced_weights.shape[0], len(operators)))
    weights[:, : posterior.reduced_weights.shape[1]] = posterior.reduced_weights
    out = []
    for count, (rows, x, t) in padded_batches(_BATCH, near, points, target):
        variance, ok = _conditional_variance(
            solution.kernel, tuple(operators), jnp.asarray(t), jnp.asarray(x), jnp.asarray(weights[rows]),
            jnp.asarray(solution.sites[rows]), jnp.asarray(posterior.nugget[rows]),
        )
        if not bool(ok):
            raise SolverError(
                "a local factorization of the sparse posterior failed (the reduced functionals of a "
                "neighbourhood are numerically singular): increase the nugget"
            )
        out.append(np.asarray(variance)[:count])
    return np.concatenate(out) if out else np.zeros(0)


@eqx.filter_jit
def _conditional_variance(kernel: AbstractKernel, operators, target, x, weights, sites, nugget):
    """For each b: K(ψ_b, ψ_b) − K(ψ_b, φ_S) (K(φ_S, φ_S) + diag nugget_b)⁻¹ K(φ_S, ψ_b), with ψ_b the
    functional target[b] at x[b] and φ_S the functionals weights[b] at sites[b]; and whether every
    local Cholesky factor is finite."""
    def one(tb, xb, wb, sb, nb):
        w = jnp.concatenate([tb[None], wb])
        p = jnp.concatenate([xb[None], sb])
        gram = functional_gram(kernel, operators, w, p, w, p)
        lower = jnp.linalg.cholesky(gram[1:, 1:] + jnp.diag(nb))
        v = jax.scipy.linalg.solve_triangular(lower, gram[1:, 0], lower=True)
        return gram[0, 0] - v @ v, jnp.all(jnp.isfinite(jnp.diagonal(lower)))

    variance, finite = jax.vmap(one)(target, x, weights, sites, nugget)
    return variance, jnp.all(finite) & jnp.all(jnp.isfinite(variance))


# --- held-out amplitude ---------------------------------------------------------------------------


def _held_out_ratios(posterior: SparsePosterior, constraint: Constraint) -> Float[np.ndarray, " n"]:
    """r_v² / (var₁(φ_v) + η_v) for every held-out functional of `constraint`, linearized at the
    solution (its operator values from `solution.apply`)."""
    solution = posterior.solution
    if any(f != 0 for f in constraint.fields):
        raise ConfigError("held-out constraints of the sparse posterior must act on field 0 only")
    points = np.asarray(constraint.points, dtype=np.float64)
    values = jnp.stack([solution.apply(op, points) for op in constraint.operators])
    linear = linearize((constraint,), (values,))
    held_weights, residuals = np.asarray(linear.weights[0]), np.asarray(linear.residuals[0])
    operators = tuple(solution.operators)
    for op in constraint.operators:
        operators, _ = _with_operator(operators, _plain(op))
    target = np.zeros((constraint.size, len(operators)))
    for j, op in enumerate(constraint.operators):
        target[:, _index(operators, _plain(op))] += held_weights[j]
    variance = _unit_variances(posterior, operators, target, points)
    prior = _functional_variances(solution.kernel, operators, target, points)
    dense = _dense_nugget((constraint,), prior, posterior.relative_nugget, posterior.adaptive_nugget)
    # What the basis factor's nugget would put on the row: S_j = factor_nugget · Θ_jj(x_v).
    covered = np.zeros(constraint.size)
    for j, op in enumerate(constraint.operators):
        one = np.zeros((constraint.size, len(operators)))
        one[:, _index(operators, _plain(op))] = 1.0
        covered += held_weights[j] ** 2 * posterior.factor_nugget * _functional_variances(solution.kernel, operators,
                                                                                           one, points)
    return residuals**2 / (variance + np.maximum(dense, covered))


def _leave_one_out_ratios(posterior: SparsePosterior) -> Float[np.ndarray, " n"]:
    """c_i² (var₁(φ_i | the k nearest other sites) + η_i) for every row i of a noisy observation
    constraint: the dense path's c_i² / [(K + η)⁻¹]_ii with the Schur complement
    1 / [(K + η)⁻¹]_ii = var(φ_i | all others) + η_i taken locally."""
    solution = posterior.solution
    rows = noisy_rows(solution.constraints)
    if not rows.size:
        return np.zeros(0)
    c = np.concatenate([np.asarray(c) for c in solution.coefficients])[rows]
    if posterior.method == FACTOR:
        return c**2 / solution.basis_posterior.inverse_diagonal(rows)
    sites = solution.sites.shape[0]
    count = min(posterior.neighbours + 1, sites)
    near = posterior._nearest(solution.sites[rows], count)
    # Drop the site itself (not necessarily first: another site may share its coordinates).
    keep = near != rows[:, None]
    drop_last = np.all(keep, axis=1)
    keep[drop_last, -1] = False
    near = near[keep].reshape(rows.size, count - 1)
    operators = tuple(solution.operators)
    variance = _local_variances(posterior, operators, posterior.reduced_weights[rows], solution.sites[rows], near)
    return c**2 * (variance + posterior.nugget[rows])


# --- helpers ------------------------------------------------------------------------------------------


def _plain(operator: AbstractOperator | OnField) -> AbstractOperator:
    """The operator itself (the sparse path has one field, so OnField(L, 0) is L)."""
    return operator.operator if isinstance(operator, OnField) else operator


def _index(operators: Sequence[AbstractOperator], operator: AbstractOperator) -> int:
    for i, known in enumerate(operators):
        if known == operator:
            return i
    raise ConfigError(f"operator {operator!r} is not among the solution's basis operators")


def _with_operator(operators, operator) -> tuple[tuple[AbstractOperator, ...], int]:
    """`operators` with `operator` appended if it is not among them, and its position."""
    operators = tuple(operators)
    for i, known in enumerate(operators):
        if known == operator:
            return operators, i
    return operators + (operator,), len(operators)


def _one_blas_thread():
    """BLAS/LAPACK on one thread: the local factorizations are (k+1)-row blocks, far too small
    for a threaded BLAS, whose idle threads spin."""
    return threadpool_limits(limits=1, user_api="blas")
