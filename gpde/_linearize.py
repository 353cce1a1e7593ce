"""The reduced Gauss-Newton linear algebra (REFERENCES.md §1), shared by the solver and the
bilevel learner.

Around an iterate with operator values z (z_g[j, a] = (L_j u)(x_a) for constraint g), each pointwise
equation r(x, z) = 0 becomes the linear functional φ_a = Σ_j w_j(x_a) L_j with target
b_a = w·z_a − r(x_a, z_a), w = ∂r/∂z. The next iterate is the minimum-norm interpolant of those
targets: u = K(·, φ) (K(φ, φ) + nugget)⁻¹ b. K(φ, φ) is a weighted sum of the per-operator Gram
blocks, which do not change between steps; so each step costs one weighted sum of stored blocks,
one Cholesky factorization and a few matrix-vector products.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from kernels import AbstractKernel

from ._constraint import Constraint
from ._gram import feature_jets, operator_gram

# Status codes of a step, returned from inside jit and turned into messages by the caller.
STEP_OK = 0
STEP_CHOLESKY_FAILED = 1
STEP_NONFINITE_ITERATE = 2
STEP_NONFINITE_LINEARIZATION = 3


class OperatorBlocks(eqx.Module):
    """Per-operator Gram blocks between all constraints, and k(x, x) at each constraint's points."""

    blocks: tuple[tuple[Float[Array, "mg mh ng nh"], ...], ...]
    value_diagonal: tuple[Float[Array, " ng"], ...]


def operator_blocks(kernel: AbstractKernel, constraints: Sequence[Constraint]) -> OperatorBlocks:
    """Assemble blocks[g][h][j, l, a, b] = L_{g,j}ˣ L_{h,l}ʸ k(x_{g,a}, x_{h,b})."""
    jets = [feature_jets(kernel, c.points) for c in constraints]
    blocks = []
    for g, cg in enumerate(constraints):
        row = []
        for h, ch in enumerate(constraints):
            if h < g:  # symmetric: K(L_g, L_h) = K(L_h, L_g)ᵀ
                row.append(jnp.transpose(blocks[h][g], (1, 0, 3, 2)))
            else:
                row.append(
                    operator_gram(kernel, cg.operators, cg.points, ch.operators, ch.points, jets[g], jets[h])
                )
        blocks.append(tuple(row))
    value_diagonal = tuple(jax.vmap(lambda x: kernel(x, x))(c.points) for c in constraints)
    return OperatorBlocks(tuple(blocks), value_diagonal)


class Linearization(eqx.Module):
    """Weights w_g[j, a] = ∂r/∂z_j at x_a, targets b_g[a] and residuals r_g[a] of every constraint."""

    weights: tuple[Float[Array, "mg ng"], ...]
    targets: tuple[Float[Array, " ng"], ...]
    residuals: tuple[Float[Array, " ng"], ...]


def linearize(constraints: Sequence[Constraint], values: Sequence[Float[Array, "mg ng"]]) -> Linearization:
    """Linearize every constraint around the operator values `values` of the current iterate."""
    weights, targets, residuals = [], [], []
    for constraint, z in zip(constraints, values):
        r, w = jax.vmap(jax.value_and_grad(constraint.residual, argnums=1))(constraint.points, z.T)
        weights.append(w.T)
        residuals.append(r)
        targets.append(jnp.sum(w * z.T, axis=1) - r)
    return Linearization(tuple(weights), tuple(targets), tuple(residuals))


def reduced_gram(blocks: OperatorBlocks, weights: Sequence[Float[Array, "mg ng"]]) -> Float[Array, "N N"]:
    """K(φ, φ) for φ_a = Σ_j w_j(x_a) L_j: one row and column per collocation point."""
    rows = []
    for g, wg in enumerate(weights):
        rows.append([_weighted_block(wg, blocks.blocks[g][h], wh) for h, wh in enumerate(weights)])
    return jnp.block(rows)


def _weighted_block(left, block, right):
    # Σ_jl left_j[a] B_jl[a, b] right_l[b] as a sum of elementwise products, which XLA fuses into
    # one pass over the stored blocks (an einsum here becomes batched dots and transposes).
    total = 0.0
    for j in range(block.shape[0]):
        for l in range(block.shape[1]):
            total = total + left[j][:, None] * block[j, l] * right[l][None, :]
    return total


def nugget_diagonal(
    blocks: OperatorBlocks,
    weights: Sequence[Float[Array, "mg ng"]],
    reduced: Float[Array, "N N"],
    nugget: float,
    adaptive: bool,
) -> Float[Array, " N"]:
    """The regularization added to K(φ, φ). The adaptive nugget (REFERENCES.md §1) scales η on the
    rows of constraint g by trace K(φ_g, φ_g) / trace K(δ_g, δ_g): derivative functionals have a
    variance orders of magnitude above point values, and one η for both either under-regularizes
    the former or swamps the latter. A pure point-value constraint gets ratio 1."""
    sizes = [w.shape[1] for w in weights]
    if not adaptive:
        return jnp.full(sum(sizes), nugget)
    diagonal = jnp.diagonal(reduced)
    parts, start = [], 0
    for g, size in enumerate(sizes):
        ratio = jnp.sum(diagonal[start : start + size]) / jnp.sum(blocks.value_diagonal[g])
        parts.append(jnp.full(size, nugget * ratio))
        start += size
    return jnp.concatenate(parts)


def split(vector: Float[Array, " N"], sizes: Sequence[int]) -> tuple[Float[Array, " n"], ...]:
    parts, start = [], 0
    for size in sizes:
        parts.append(vector[start : start + size])
        start += size
    return tuple(parts)


def operator_values(
    blocks: OperatorBlocks,
    weights: Sequence[Float[Array, "mg ng"]],
    coefficients: Sequence[Float[Array, " ng"]],
) -> tuple[Float[Array, "mg ng"], ...]:
    """z_g[j, a] = (L_{g,j} u)(x_{g,a}) for u = Σ_h Σ_b coefficients_h[b] φ_{h,b}."""
    values = []
    for g in range(len(weights)):
        # Multiply-and-sum reads the stored blocks in place; the equivalent einsum made XLA copy
        # every block into a transposed layout on each step.
        values.append(
            sum(
                jnp.sum(blocks.blocks[g][h] * (weights[h] * coefficients[h][None, :])[None, :, None, :], axis=(1, 3))
                for h in range(len(weights))
            )
        )
    return tuple(values)


def solve_linearized(
    blocks: OperatorBlocks, linear: Linearization, nugget: float, adaptive_nugget: bool
) -> tuple[Float[Array, "N N"], Float[Array, "N N"], tuple[Float[Array, " ng"], ...]]:
    """Gram matrix (with nugget), its Cholesky factor and the representer coefficients
    c = (K(φ, φ) + nugget)⁻¹ b, split per constraint. Differentiable in the blocks."""
    gram = reduced_gram(blocks, linear.weights)
    gram = gram + jnp.diag(nugget_diagonal(blocks, linear.weights, gram, nugget, adaptive_nugget))
    # The Gram matrix is symmetric, so factoring its transpose is the same factorization; the
    # transpose hands LAPACK its column-major layout without a copy, and skipping the
    # symmetrization saves another transposing pass (measured: 2-4x faster steps at N = 1200).
    factor = jax.lax.linalg.cholesky(gram.T, symmetrize_input=False)
    coefficients = _symmetric_solve(gram, jax.lax.stop_gradient(factor), jnp.concatenate(linear.targets))
    return gram, factor, split(coefficients, [t.shape[0] for t in linear.targets])


def _symmetric_solve(matrix, factor, rhs):
    """matrix⁻¹ rhs with the Cholesky factor, differentiated implicitly: the derivative of the
    solution costs one more solve with the same factor (O(N²)) and its cotangent for `matrix` is an
    outer product, instead of differentiating through the factorization (several O(N³) solves)."""
    return jax.lax.custom_linear_solve(
        lambda v: matrix @ v,
        rhs,
        solve=lambda _, r: jax.scipy.linalg.cho_solve((factor, True), r),
        symmetric=True,
    )


def values_at(
    kernel: AbstractKernel,
    targets: Sequence[Constraint],
    constraints: Sequence[Constraint],
    weights: Sequence[Float[Array, "mg ng"]],
    coefficients: Sequence[Float[Array, " ng"]],
) -> tuple[Float[Array, "mt nt"], ...]:
    """Operator values of u = Σ c φ at the points of other constraints (e.g. validation points):
    out_t[j, a] = (L_{t,j} u)(x_{t,a})."""
    jets = [feature_jets(kernel, c.points) for c in constraints]
    out = []
    for target in targets:
        target_jets = feature_jets(kernel, target.points)
        total = 0.0
        for constraint, jet, w, c in zip(constraints, jets, weights, coefficients):
            cross = operator_gram(
                kernel, target.operators, target.points, constraint.operators, constraint.points, target_jets, jet
            )
            total = total + jnp.einsum("jlab,lb->ja", cross, w * c[None, :])
        out.append(total)
    return tuple(out)


class StepOutcome(eqx.Module):
    """Everything one Gauss-Newton step produces."""

    weights: tuple[Float[Array, "mg ng"], ...]
    coefficients: tuple[Float[Array, " ng"], ...]
    values: tuple[Float[Array, "mg ng"], ...]
    residuals: tuple[Float[Array, " ng"], ...]
    status: Int[Array, ""]


def gauss_newton_step(
    blocks: OperatorBlocks,
    constraints: Sequence[Constraint],
    values: Sequence[Float[Array, "mg ng"]],
    nugget: float,
    adaptive_nugget: bool,
) -> StepOutcome:
    """One reduced Gauss-Newton step from the iterate whose operator values are `values`.

    Failures do not raise inside jit: the status code says which check failed (JAX's Cholesky
    returns NaNs instead of raising), and the caller reports it with the step number.
    """
    linear = linearize(constraints, values)
    gram, factor, coefficients = solve_linearized(blocks, linear, nugget, adaptive_nugget)
    targets = jnp.concatenate(linear.targets)
    new_values = operator_values(blocks, linear.weights, coefficients)
    new_residuals = tuple(
        jax.vmap(c.residual)(c.points, z.T) for c, z in zip(constraints, new_values)
    )
    # O(N) checks: a NaN anywhere in the Gram matrix reaches the factor's diagonal, and a failed
    # factorization fills the factor with NaN.
    linearization_finite = jnp.all(jnp.isfinite(jnp.diagonal(gram))) & jnp.all(jnp.isfinite(targets))
    cholesky_finite = jnp.all(jnp.isfinite(jnp.diagonal(factor)))
    iterate_finite = jnp.all(jnp.isfinite(jnp.concatenate([z.ravel() for z in new_values])))
    status = jnp.where(
        ~linearization_finite,
        STEP_NONFINITE_LINEARIZATION,
        jnp.where(~cholesky_finite, STEP_CHOLESKY_FAILED, jnp.where(~iterate_finite, STEP_NONFINITE_ITERATE, STEP_OK)),
    )
    return StepOutcome(linear.weights, coefficients, new_values, new_residuals, status)


def initial_values(constraints: Sequence[Constraint]) -> tuple[Float[Array, "mg ng"], ...]:
    """Operator values of the starting iterate u₀ = 0."""
    return tuple(jnp.zeros((len(c.operators), c.size)) for c in constraints)
