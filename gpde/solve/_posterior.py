"""The Gaussian posterior of each solved field at the last Gauss-Newton linearization
(docs/references.md §9).

The last Gauss-Newton step replaced every equation by one linear functional per collocation point,
φ_a = Σ_j w_j(x_a) L_j, with target b_a, and returned the posterior mean of the GP prior
u_f ~ GP(0, s² k_f) given φ(u) = b observed with the nugget (or the observation noise) as noise:

    mean_f(x) = K_f(x, φ) (K(φ, φ) + η)⁻¹ b                 (the solution itself),
    var_f(x)  = s² [k_f(x, x) − K_f(x, φ) (K(φ, φ) + η)⁻¹ K_f(φ, x)].

K_f(x, φ_a) = Σ_{j on f} w_j(x_a) L_jʸ k_f(x, x_a) is the prior covariance of u_f(x) with φ_a
(fields are independent GPs, so only the operators on f contribute); K(φ, φ) and η are exactly the
solver's (`reduced_gram`, `nugget_diagonal`).

The amplitude s² scales the whole covariance s²(K + η), noise rows included: that is the one family
of models whose posterior mean is the computed solution for every s², so the amplitude changes the
variance and not the mean. Its maximum-likelihood value given b ~ N(0, s²(K + η)) is in closed form,
s² = bᵀ(K + η)⁻¹b / N = cᵀ(K + η)c / N with the solution's coefficients c and N functionals.
One s² is shared by all fields (separate amplitudes per field would change the mean).
`Posterior.held_out_amplitude` estimates s² instead from residuals that the solve did not see
(held-out PDE points, leave-one-out observations); `gpde solve` stores σ with that estimate, since
the maximum-likelihood s² is 6-120 times too large on the elliptic problem and too small on
Burgers and Eikonal (benchmarks/calibration-results.md).

This is the linearized (Gauss-Newton / Laplace-type) posterior: it quantifies what the collocation
data leave undetermined, given that the PDE holds exactly at the collocation points in its
linearized form; it does not see the error of a reference solution.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..kernels import AbstractKernel

from .._errors import ConfigError, SolverError
from ._constraint import Constraint
from ._gram import feature_jets, operator_gram
from ._linearize import (
    OperatorBlocks,
    _in_operator_order,
    compiled_operator_blocks,
    nugget_diagonal,
    reduced_gram,
)
from ._operators import AbstractOperator, Evaluation
from ._solution import CollocationSolution

# Evaluation points per batch: the (batch × N) cross-covariance and its triangular solve stay a few
# MB for N of a few thousand, however large the evaluation grid is.
_VARIANCE_BATCH = 256


class Posterior(eqx.Module):
    """The posterior of the fields of `solution` (its mean) at the solution's linearization.

    `factor` is the lower Cholesky factor of K(φ, φ) + η over all N functionals (in constraint
    order); `amplitude` the s² in use, `ml_amplitude` the maximum-likelihood s² (see the module
    docstring).
    """

    solution: CollocationSolution
    factor: Float[Array, "N N"]
    amplitude: Float[Array, ""]
    ml_amplitude: Float[Array, ""]
    nugget: float = eqx.field(static=True)
    adaptive_nugget: bool = eqx.field(static=True)

    @classmethod
    def at(cls, solution: CollocationSolution, nugget: float, adaptive_nugget: bool = True,
           held_out: Sequence[Constraint] = ()) -> "Posterior":
        """The posterior of `solution` for the solver settings that produced it (`nugget` and
        `adaptive_nugget` must be the GaussNewton's). Its amplitude is the maximum-likelihood s²,
        or with `held_out` constraints (equations the solve did not see) the s² fitted to their
        residuals (`held_out_amplitude`). One Gram assembly, the held-out functionals' covariance
        with the training ones (N × H) and their variances (H), and one Cholesky factorization,
        O(N³). SolverError if the factorization fails."""
        held_out = tuple(held_out)
        # The blocks program is the one the solve compiled: the posterior compiles only the
        # held-out covariances, the reduction and the factorization.
        blocks = compiled_operator_blocks(solution.kernels, solution.constraints)
        factor, ml_amplitude, held_out_amplitude = _assemble(
            solution, blocks, held_out, float(nugget), bool(adaptive_nugget)
        )
        if not (jnp.all(jnp.isfinite(jnp.diagonal(factor))) and jnp.isfinite(ml_amplitude)):
            raise SolverError(
                "the posterior's Cholesky factorization failed: pass the nugget that the solve used "
                "(a smaller one leaves K(φ, φ) + η numerically singular)"
            )
        amplitude = held_out_amplitude if held_out else ml_amplitude
        return cls(solution, factor, amplitude, ml_amplitude, float(nugget), bool(adaptive_nugget))

    def with_amplitude(self, amplitude: float | Float[Array, ""]) -> "Posterior":
        """The same posterior with another amplitude s² (the mean does not depend on it)."""
        if not (jnp.isfinite(amplitude) and amplitude > 0):
            raise ConfigError(f"the amplitude s² must be finite and > 0, got {amplitude}")
        return eqx.tree_at(lambda p: p.amplitude, self, jnp.asarray(amplitude, dtype=self.amplitude.dtype))

    def held_out_amplitude(self, constraints: Sequence[Constraint]) -> Float[Array, ""]:
        """s² re-estimated on data the solve did not see (no reference solution needed).

        Held-out equations (e.g. the interior PDE at fresh points): linearized at the solution,
        each functional φ_v has residual r_v = φ_v(mean) − b_v, which the posterior predicts as
        N(0, s² (var₁(φ_v) + η_v)), var₁ the unit-amplitude posterior variance and η_v the nugget
        (or noise) those rows would get. Noisy observations of the solve itself (Darcy's data)
        enter by leave-one-out: each observation's residual when the linearized GP is refitted
        without it, over its predictive variance (closed form, `_leave_one_out_ratios`): the PDE
        residual alone cannot see errors that the equation does not determine (Darcy's a).
        The estimate is the mean of all these ratios r² / var₁, the maximum-likelihood s² for the
        held-out residuals alone."""
        return _held_out_amplitude(self, tuple(constraints))

    def log_likelihood(self) -> Float[Array, ""]:
        """The log-likelihood of the last step's targets b ~ N(0, s²(K + η)) at the
        maximum-likelihood s² (the amplitude profiled out):

            −½ [N log(2π s²_ML) + log det(K + η) + N].

        It compares models of the same collocation data, e.g. kernels that differ in the prior
        variance of one field (each solve linearized around its own solution, so an approximate
        evidence). It does not depend on `amplitude`."""
        n = self.factor.shape[0]
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(self.factor)))
        return -0.5 * (n * jnp.log(2.0 * jnp.pi * self.ml_amplitude) + log_det + n)

    def mean(self, points: Float[Array, "n d"], field: int = 0,
             operator: AbstractOperator = Evaluation()) -> Float[Array, " n"]:
        """The posterior mean of (L u_f)(x) at each point: the solution itself."""
        return self.solution.apply(operator, points, field)

    def variance(self, points: Float[Array, "n d"], field: int = 0,
                 operator: AbstractOperator = Evaluation()) -> Float[Array, " n"]:
        """The posterior variance of (L u_f)(x) at each point (L = δ: of u_f itself), in batches of
        points so that no (points × N) matrix is formed at once. Rounding can make the exact
        difference k − kᵀK⁻¹k slightly negative where it is ~0; it is clipped at 0."""
        field = self._check_field(field)
        return _variance(self._for_evaluation(), operator, jnp.asarray(points), field)

    def std(self, points: Float[Array, "n d"], field: int = 0,
            operator: AbstractOperator = Evaluation()) -> Float[Array, " n"]:
        """The posterior standard deviation of (L u_f)(x) at each point."""
        return jnp.sqrt(self.variance(points, field, operator))

    def covariance(self, points: Float[Array, "n d"], field: int = 0,
                   operator: AbstractOperator = Evaluation()) -> Float[Array, "n n"]:
        """The joint posterior covariance of (L u_f) at the points: an (n × n) matrix, for a few
        thousand points at most (use `variance` for maps)."""
        field = self._check_field(field)
        return _covariance(self._for_evaluation(), operator, jnp.asarray(points), field)

    def sample(self, key: PRNGKeyArray, points: Float[Array, "n d"], count: int, field: int = 0,
               operator: AbstractOperator = Evaluation()) -> Float[Array, "count n"]:
        """`count` joint draws of (L u_f) at the points from the posterior. Uses the symmetric
        square root of `covariance` (an eigendecomposition, eigenvalues clipped at 0: the
        posterior covariance is rank-deficient up to rounding wherever the data pin u down)."""
        if not (isinstance(count, int) and count >= 1):
            raise ConfigError(f"count must be an integer >= 1, got {count!r}")
        points = jnp.asarray(points)
        covariance = self.covariance(points, field, operator)
        mean = self.mean(points, field, operator)
        return _draw(key, mean, covariance, count)

    def _for_evaluation(self) -> "Posterior":
        """This posterior with its solution's constraints reduced to their functionals: the
        variance needs no equation, so the compiled evaluation is shared by every posterior on the
        same functionals (`CollocationSolution.functionals_only`)."""
        return eqx.tree_at(lambda p: p.solution, self, self.solution.functionals_only())

    def _check_field(self, field) -> int:
        count = len(self.solution.kernels)
        if not (isinstance(field, int) and not isinstance(field, bool) and 0 <= field < count):
            raise ConfigError(f"field must be an integer in [0, {count}), got {field!r}")
        return field


def posterior(solution: CollocationSolution, nugget: float, adaptive_nugget: bool = True,
              held_out: Sequence[Constraint] = ()) -> Posterior:
    """The Gaussian posterior of the fields of `solution` at its linearization (`Posterior.at`):
    `.std(points, field)`, `.variance`, `.covariance`, `.sample(key, points, n, field)`.
    `nugget` and `adaptive_nugget` must be the settings of the GaussNewton that made the solution."""
    return Posterior.at(solution, nugget, adaptive_nugget, held_out)


@eqx.filter_jit
def _assemble(solution: CollocationSolution, blocks: OperatorBlocks, held_out: tuple[Constraint, ...],
              nugget: float, adaptive_nugget: bool):
    """The Cholesky factor of K(φ, φ) + η, the maximum-likelihood s², and the held-out s² (zero
    without held-out constraints)."""
    n = sum(c.size for c in solution.constraints)
    train = reduced_gram(blocks, solution.weights)
    train = train + jnp.diag(_nugget(solution.constraints, solution.weights, jnp.diagonal(train), nugget,
                                     adaptive_nugget))
    factor = jax.lax.linalg.cholesky(train.T, symmetrize_input=False)
    c = jnp.concatenate(solution.coefficients)
    # s² = bᵀ(K + η)⁻¹b / N with b = (K + η)c, the targets of the last step.
    ml_amplitude = c @ (train @ c) / n
    if not held_out:
        return factor, ml_amplitude, jnp.zeros(())
    ratios = _held_out_ratios(solution, factor, held_out, nugget, adaptive_nugget)
    return factor, ml_amplitude, jnp.mean(jnp.concatenate([ratios, _leave_one_out_ratios(factor, solution)]))


@eqx.filter_jit
def _held_out_amplitude(posterior: Posterior, held_out: tuple[Constraint, ...]):
    ratios = _held_out_ratios(posterior.solution, posterior.factor, held_out, posterior.nugget,
                              posterior.adaptive_nugget)
    return jnp.mean(jnp.concatenate([ratios, _leave_one_out_ratios(posterior.factor, posterior.solution)]))


def _nugget(constraints, weights, diagonal, nugget, adaptive_nugget):
    """The solver's nugget diagonal for these constraints from the diagonal of their K(φ, φ)
    (`nugget_diagonal` reads only the constraints' noise variances from the blocks)."""
    noise_only = OperatorBlocks((), (), tuple(c.noise_variance for c in constraints))
    return nugget_diagonal(noise_only, weights, diagonal, nugget, adaptive_nugget)


def _held_out_statistics(solution: CollocationSolution, constraint: Constraint):
    """The held-out constraint linearized at the solution, φ_v = Σ_j w_j(x_v) L_j with residual
    r_v = φ_v(mean) − b_v, and (r: n, K(φ_v, φ): n × N, var₀(φ_v): n). One set of cross blocks
    K(L_j x_v, φ) serves twice: times the coefficients it gives the operator values (L_j mean)(x_v)
    that the linearization needs, weighted by w it gives the covariance. The prior variance is
    computed one point at a time (the diagonal of K(φ_v, φ_v) only). Summed over the fields."""
    coefficients = jnp.concatenate(solution.coefficients)
    per_field = []
    for f, kernel in enumerate(solution.kernels):
        rows = constraint.rows(f)
        if rows:
            operators = tuple(constraint.operators[j] for j in rows)
            per_field.append((kernel, rows, operators, _operator_cross_covariances(kernel, operators, constraint.points,
                                                                                   solution, f)))
    values = _in_operator_order([(rows, cross @ coefficients) for _, rows, _, cross in per_field],
                                len(constraint.operators))
    residuals, weights = constraint.residuals_and_weights(values)  # weights: n × operators
    covariance, variance = 0.0, 0.0
    for kernel, rows, operators, cross in per_field:
        w = weights[:, np.asarray(rows)]
        covariance = covariance + jnp.einsum("aj,jab->ab", w, cross)
        variance = variance + jax.vmap(
            lambda x, wx: wx @ operator_gram(kernel, operators, x[None], operators, x[None])[:, :, 0, 0] @ wx
        )(constraint.points, w)
    return residuals, weights.T, covariance, variance


def _operator_cross_covariances(kernel: AbstractKernel, operators, points, solution: CollocationSolution,
                                field: int, jets=None) -> Float[Array, "m n N"]:
    """K_f(L_j x, φ) for each operator L_j on field f and point x: (operators × points × N), zero
    columns for constraints that do not act on field f. `jets`: the constraints' feature jets
    (`_jets`), when the caller reuses them over batches of points."""
    jets = _jets(kernel, solution.constraints, field) if jets is None else jets
    parts = []
    for constraint, w, jet in zip(solution.constraints, solution.weights, jets):
        rows = constraint.rows(field)
        if not rows:
            parts.append(jnp.zeros((len(operators), points.shape[0], constraint.size)))
            continue
        block = operator_gram(kernel, operators, points, tuple(constraint.operators[j] for j in rows),
                              constraint.points, None, jet)
        parts.append(jnp.einsum("jlab,lb->jab", block, jnp.stack([w[j] for j in rows])))
    return jnp.concatenate(parts, axis=2)


def _held_out_ratios(solution, factor, held_out, nugget, adaptive_nugget):
    """r_v² / (var₁(φ_v) + η_v) for each held-out functional, linearized at the solution:
    var₁ = var₀ − K(φ_v, φ)(K + η)⁻¹K(φ, φ_v)."""
    residuals, weights, covariances, variances = zip(*(_held_out_statistics(solution, c) for c in held_out))
    v = jax.scipy.linalg.solve_triangular(factor, jnp.concatenate(covariances).T, lower=True)
    prior = jnp.concatenate(variances)
    variance = prior - jnp.sum(v * v, axis=0) + _nugget(held_out, weights, prior, nugget, adaptive_nugget)
    return jnp.concatenate(residuals) ** 2 / variance


def noisy_rows(constraints: Sequence[Constraint]) -> np.ndarray:
    """Indices, among all functionals in constraint order, of the rows of noisy observation
    constraints (those with a noise variance)."""
    sizes = np.array([c.size for c in constraints], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    noisy = [np.arange(a, a + n) for a, n, c in zip(starts, sizes, constraints) if c.noise_variance is not None]
    return np.concatenate(noisy) if noisy else np.zeros(0, dtype=np.int64)


def _leave_one_out_ratios(factor, solution: CollocationSolution):
    """c_i² / [(K + η)⁻¹]_ii for every row i of a noisy observation constraint: the squared
    leave-one-out residual of observation i, c_i / [(K + η)⁻¹]_ii, over its leave-one-out
    predictive variance at unit amplitude, 1 / [(K + η)⁻¹]_ii (the closed form of refitting the
    linearized GP without row i). [(K + η)⁻¹]_ii = ‖L⁻¹e_i‖² with the Cholesky factor L."""
    rows = noisy_rows(solution.constraints)
    if not rows.size:
        return jnp.zeros(0)
    unit = jnp.zeros((factor.shape[0], rows.size)).at[rows, np.arange(rows.size)].set(1.0)
    inverse_diagonal = jnp.sum(jax.scipy.linalg.solve_triangular(factor, unit, lower=True) ** 2, axis=0)
    return jnp.concatenate(solution.coefficients)[rows] ** 2 / inverse_diagonal


def _jets(kernel, constraints, field):
    return [feature_jets(kernel, c.points) if c.rows(field) else None for c in constraints]


def _prior_variance(kernel, operator, points):
    """Lˣ Lʸ k(x, x) at each point, one point at a time (the diagonal only)."""
    return jax.vmap(lambda x: operator_gram(kernel, (operator,), x[None], (operator,), x[None])[0, 0, 0, 0])(points)


@eqx.filter_jit
def _variance(posterior: Posterior, operator, points, field: int):
    solution = posterior.solution
    kernel = solution.kernels[field]
    jets = _jets(kernel, solution.constraints, field)

    def batch(xs):
        cross = _operator_cross_covariances(kernel, (operator,), xs, solution, field, jets)[0]
        v = jax.scipy.linalg.solve_triangular(posterior.factor, cross.T, lower=True)
        return _prior_variance(kernel, operator, xs) - jnp.sum(v * v, axis=0)

    count = points.shape[0]
    padded = -(-count // _VARIANCE_BATCH) * _VARIANCE_BATCH
    # Padding repeats the last point; its values are dropped below.
    points = jnp.concatenate([points, jnp.broadcast_to(points[-1:], (padded - count, points.shape[1]))])
    variance = jax.lax.map(batch, points.reshape(-1, _VARIANCE_BATCH, points.shape[1])).reshape(-1)[:count]
    return posterior.amplitude * jnp.maximum(variance, 0.0)


@eqx.filter_jit
def _covariance(posterior: Posterior, operator, points, field: int):
    solution = posterior.solution
    kernel = solution.kernels[field]
    jets = _jets(kernel, solution.constraints, field)
    cross = _operator_cross_covariances(kernel, (operator,), points, solution, field, jets)[0]
    v = jax.scipy.linalg.solve_triangular(posterior.factor, cross.T, lower=True)
    prior = operator_gram(kernel, (operator,), points, (operator,), points)[0, 0]
    return posterior.amplitude * (prior - v.T @ v)


@eqx.filter_jit
def _draw(key, mean, covariance, count: int):
    values, vectors = jnp.linalg.eigh(0.5 * (covariance + covariance.T))
    root = vectors * jnp.sqrt(jnp.maximum(values, 0.0))[None, :]
    normal = jax.random.normal(key, (count, mean.shape[0]), dtype=mean.dtype)
    return mean[None, :] + normal @ root.T
