"""The reduced Gauss-Newton linear algebra (docs/references.md §1), shared by the solver and the
bilevel learner.

Around an iterate with operator values z (z_g[j, a] = (L_j u)(x_a) for constraint g), each pointwise
equation r(x, z) = 0 becomes the linear functional φ_a = Σ_j w_j(x_a) L_j with target
b_a = w·z_a − r(x_a, z_a), w = ∂r/∂z. The next iterate is the minimum-norm interpolant of those
targets: u = K(·, φ) (K(φ, φ) + nugget)⁻¹ b. K(φ, φ) is a weighted sum of the per-operator Gram
blocks, which do not change between steps; so each step costs one weighted sum of stored blocks,
one Cholesky factorization and a few matrix-vector products.

Several unknown fields (one kernel each, independent GPs): the blocks are stored per field, only
between operators on that field; K(φ, φ) is the sum over fields of the per-field weighted sums, the
zero cross-field blocks are never formed. Noisy observation constraints get their noise variance
on the diagonal instead of the nugget.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..kernels import AbstractKernel

from .._results import RESULTS
from ._constraint import Constraint
from ._gram import feature_jets, operator_gram


class OperatorBlocks(eqx.Module):
    """Per-field, per-operator Gram blocks between all constraints.

    blocks[f][g][h][j, l, a, b] = L_jˣ L_lʸ k_f(x_{g,a}, x_{h,b}) over the operators of constraint g
    and h that act on field f (rows[f][g] and rows[f][h]); None where either has none. Blocks
    between different fields are zero (independent GPs) and are never stored.
    """

    blocks: tuple[tuple[tuple[Float[Array, "mgf mhf ng nh"] | None, ...], ...], ...]
    rows: tuple[tuple[tuple[int, ...], ...], ...] = eqx.field(static=True)
    noise: tuple[float | None, ...] = eqx.field(static=True)


def operator_blocks(kernels: tuple[AbstractKernel, ...], constraints: Sequence[Constraint]) -> OperatorBlocks:
    """Assemble the blocks of every field (`kernels`: one kernel per field, see `kernel_tuple`)."""
    rows = tuple(tuple(c.rows(f) for c in constraints) for f in range(len(kernels)))
    blocks = []
    for f, k in enumerate(kernels):
        operators = [tuple(c.operators[j] for j in r) for c, r in zip(constraints, rows[f])]
        jets = [feature_jets(k, c.points) if r else None for c, r in zip(constraints, rows[f])]
        field_blocks = []
        for g, cg in enumerate(constraints):
            row = []
            for h, ch in enumerate(constraints):
                if not (rows[f][g] and rows[f][h]):
                    row.append(None)
                elif h < g:  # symmetric: K(L_g, L_h) = K(L_h, L_g)ᵀ
                    row.append(jnp.transpose(field_blocks[h][g], (1, 0, 3, 2)))
                else:
                    row.append(operator_gram(k, operators[g], cg.points, operators[h], ch.points, jets[g], jets[h]))
            field_blocks.append(tuple(row))
        blocks.append(tuple(field_blocks))
    noise = tuple(c.noise_variance for c in constraints)
    return OperatorBlocks(tuple(blocks), rows, noise)


class Linearization(eqx.Module):
    """Weights w_g[j, a] = ∂r/∂z_j at x_a, targets b_g[a] and residuals r_g[a] of every constraint."""

    weights: tuple[Float[Array, "mg ng"], ...]
    targets: tuple[Float[Array, " ng"], ...]
    residuals: tuple[Float[Array, " ng"], ...]


def linearize(constraints: Sequence[Constraint], values: Sequence[Float[Array, "mg ng"]]) -> Linearization:
    """Linearize every constraint around the operator values `values` of the current iterate."""
    weights, targets, residuals = [], [], []
    for constraint, z in zip(constraints, values):
        r, w = constraint.residuals_and_weights(z)
        weights.append(w.T)
        residuals.append(r)
        targets.append(jnp.sum(w * z.T, axis=1) - r)
    return Linearization(tuple(weights), tuple(targets), tuple(residuals))


def reduced_gram(blocks: OperatorBlocks, weights: Sequence[Float[Array, "mg ng"]]) -> Float[Array, "N N"]:
    """K(φ, φ) for φ_a = Σ_j w_j(x_a) L_j: one row and column per collocation point. With several
    fields it is the sum over fields of each field's weighted block sum (the cross-field blocks
    are zero)."""
    rows = []
    for g, wg in enumerate(weights):
        row = []
        for h, wh in enumerate(weights):
            total = 0.0
            for field_blocks, field_rows in zip(blocks.blocks, blocks.rows):
                block = field_blocks[g][h]
                if block is not None:
                    left = [wg[j] for j in field_rows[g]]
                    right = [wh[j] for j in field_rows[h]]
                    total = total + _weighted_block(left, block, right)
            row.append(jnp.broadcast_to(total, (wg.shape[1], wh.shape[1])))
        rows.append(row)
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
    diagonal: Float[Array, " N"],
    nugget: float,
    adaptive: bool,
) -> Float[Array, " N"]:
    """The regularization added to K(φ, φ), from its diagonal `diagonal`. The adaptive nugget (docs/references.md §1) scales η on the
    rows of constraint g by the mean variance of its functionals, trace K(φ_g, φ_g) / n_g:
    derivative functionals have a variance orders of magnitude above point values, and one η for
    both either under-regularizes the former or swamps the latter. For a kernel with k(x, x) = 1
    (Gaussian, Matérn, Gibbs) this is the published trace ratio trace K(φ_g, φ_g) / trace K(δ_g, δ_g),
    with ratio 1 on point-value rows. Unlike that ratio it also scales with the kernel's amplitude,
    so that σ²·k is the same model at every σ²: with the ratio, the amplitude acted as an inverse
    nugget, and learning the additive kernel's variance drove it to ~490 until the re-solve's
    Cholesky failed (elliptic, published size). The rows of a noisy observation constraint get its
    noise variance σ² instead (the misfit penalty /σ²)."""
    sizes = [w.shape[1] for w in weights]
    parts, start = [], 0
    for g, size in enumerate(sizes):
        if blocks.noise[g] is not None:
            parts.append(jnp.full(size, blocks.noise[g]))
        elif adaptive:
            parts.append(jnp.full(size, nugget * jnp.mean(diagonal[start : start + size])))
        else:
            parts.append(jnp.full(size, nugget))
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
    """z_g[j, a] = (L_{g,j} u)(x_{g,a}) for u = Σ_h Σ_b coefficients_h[b] φ_{h,b} (each operator
    applied to its own field)."""
    values = []
    for g in range(len(weights)):
        per_field = []
        for field_blocks, field_rows in zip(blocks.blocks, blocks.rows):
            if not field_rows[g]:
                continue
            # Multiply-and-sum reads the stored blocks in place; the equivalent einsum made XLA
            # copy every block into a transposed layout on each step.
            total = sum(
                jnp.sum(
                    field_blocks[g][h]
                    * (_select(weights[h], field_rows[h]) * coefficients[h][None, :])[None, :, None, :],
                    axis=(1, 3),
                )
                for h in range(len(weights))
                if field_blocks[g][h] is not None
            )
            per_field.append((field_rows[g], total))
        values.append(_in_operator_order(per_field, weights[g].shape[0]))
    return tuple(values)


def _select(w, rows):
    """The rows `rows` of w (w itself when that is all of them: the single-field case)."""
    return w if tuple(rows) == tuple(range(w.shape[0])) else w[np.asarray(rows)]


def _in_operator_order(per_field, count):
    """Stack per-field operator values [(rows, values (len(rows), n)), …] back into the order of
    the constraint's operators."""
    if len(per_field) == 1 and per_field[0][0] == tuple(range(count)):
        return per_field[0][1]
    by_row = {j: part[i] for rows, part in per_field for i, j in enumerate(rows)}
    return jnp.stack([by_row[j] for j in range(count)])


def solve_linearized(
    blocks: OperatorBlocks, linear: Linearization, nugget: float, adaptive_nugget: bool
) -> tuple[Float[Array, "N N"], Float[Array, "N N"], tuple[Float[Array, " ng"], ...]]:
    """Gram matrix (with nugget), its Cholesky factor and the representer coefficients
    c = (K(φ, φ) + nugget)⁻¹ b, split per constraint. Differentiable in the blocks."""
    gram = reduced_gram(blocks, linear.weights)
    gram = gram + jnp.diag(nugget_diagonal(blocks, linear.weights, jnp.diagonal(gram), nugget, adaptive_nugget))
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
    kernels: tuple[AbstractKernel, ...],
    targets: Sequence[Constraint],
    constraints: Sequence[Constraint],
    weights: Sequence[Float[Array, "mg ng"]],
    coefficients: Sequence[Float[Array, " ng"]],
) -> tuple[Float[Array, "mt nt"], ...]:
    """Operator values of u = Σ c φ at the points of other constraints (e.g. validation points):
    out_t[j, a] = (L_{t,j} u)(x_{t,a}), each operator applied to its own field (`kernels`: one
    per field)."""
    per_target = [[] for _ in targets]
    for f, k in enumerate(kernels):
        sources = [(c, c.rows(f), w, coefficient) for c, w, coefficient in zip(constraints, weights, coefficients)]
        sources = [(c, rows, feature_jets(k, c.points), _select(w, rows) * coefficient[None, :])
                   for c, rows, w, coefficient in sources if rows]
        for t, target in enumerate(targets):
            target_rows = target.rows(f)
            if not target_rows:
                continue
            target_operators = tuple(target.operators[j] for j in target_rows)
            target_jets = feature_jets(k, target.points)
            total = jnp.zeros((len(target_rows), target.size))
            for constraint, rows, jet, weighted in sources:
                cross = operator_gram(
                    k, target_operators, target.points, tuple(constraint.operators[j] for j in rows),
                    constraint.points, target_jets, jet,
                )
                total = total + jnp.einsum("jlab,lb->ja", cross, weighted)
            per_target[t].append((target_rows, total))
    return tuple(_in_operator_order(parts, len(t.operators)) for parts, t in zip(per_target, targets))


_compiled_values_at = eqx.filter_jit(values_at)


def compiled_values_at(
    kernels: tuple[AbstractKernel, ...],
    targets: Sequence[Constraint],
    constraints: Sequence[Constraint],
    weights: Sequence[Float[Array, "mg ng"]],
    coefficients: Sequence[Float[Array, " ng"]],
) -> tuple[Float[Array, "mt nt"], ...]:
    """`values_at` compiled once per kernel, set of functionals and shapes (the warm starts of the
    solver and the learner): it reads only the functionals of both constraint sets, so it is
    called with `Constraint.functionals`, and equations given as new closures share the program."""
    return _compiled_values_at(kernels, tuple(c.functionals() for c in targets),
                               tuple(c.functionals() for c in constraints), weights, coefficients)

_compiled_operator_blocks = eqx.filter_jit(operator_blocks)


def compiled_operator_blocks(kernels: tuple[AbstractKernel, ...], constraints: Sequence[Constraint]) -> OperatorBlocks:
    """`operator_blocks` compiled on its own, once per kernel and set of functionals: the blocks
    depend only on the operators, points and noise (`Constraint.functionals`), so the solver's
    assembly, every continuation stage and the posterior run one program."""
    return _compiled_operator_blocks(kernels, tuple(c.functionals() for c in constraints))


class StepOutcome(eqx.Module):
    """Everything one Gauss-Newton step produces."""

    weights: tuple[Float[Array, "mg ng"], ...]
    coefficients: tuple[Float[Array, " ng"], ...]
    values: tuple[Float[Array, "mg ng"], ...]
    residuals: tuple[Float[Array, " ng"], ...]
    #: RESULTS.successful, or the failed check: cholesky_failed, nonfinite_iterate or
    #: nonfinite_linearization.
    result: RESULTS


def gauss_newton_step(
    blocks: OperatorBlocks,
    constraints: Sequence[Constraint],
    values: Sequence[Float[Array, "mg ng"]],
    nugget: float,
    adaptive_nugget: bool,
) -> StepOutcome:
    """One reduced Gauss-Newton step from the iterate whose operator values are `values`.

    Failures do not raise inside jit: the outcome's `result` says which check failed (JAX's
    Cholesky returns NaNs instead of raising), and the caller reports its message with the step
    number.
    """
    linear = linearize(constraints, values)
    gram, factor, coefficients = solve_linearized(blocks, linear, nugget, adaptive_nugget)
    targets = jnp.concatenate(linear.targets)
    new_values = operator_values(blocks, linear.weights, coefficients)
    new_residuals = tuple(c.residuals(z) for c, z in zip(constraints, new_values))
    # O(N) checks: a NaN anywhere in the Gram matrix reaches the factor's diagonal, and a failed
    # factorization fills the factor with NaN.
    linearization_finite = jnp.all(jnp.isfinite(jnp.diagonal(gram))) & jnp.all(jnp.isfinite(targets))
    cholesky_finite = jnp.all(jnp.isfinite(jnp.diagonal(factor)))
    iterate_finite = jnp.all(jnp.isfinite(jnp.concatenate([z.ravel() for z in new_values])))
    # The first failed check names the cause: a non-finite linearization makes the factor and the
    # iterate non-finite too, a failed factorization the iterate.
    result = RESULTS.where(iterate_finite, RESULTS.successful, RESULTS.nonfinite_iterate)
    result = RESULTS.where(cholesky_finite, result, RESULTS.cholesky_failed)
    result = RESULTS.where(linearization_finite, result, RESULTS.nonfinite_linearization)
    return StepOutcome(linear.weights, coefficients, new_values, new_residuals, result)


#: One Gauss-Newton step compiled (once per set of shapes): the solver's steps and the learner's
#: update steps run the same program.
compiled_gauss_newton_step = eqx.filter_jit(gauss_newton_step)


def initial_values(constraints: Sequence[Constraint]) -> tuple[Float[Array, "mg ng"], ...]:
    """Operator values of the starting iterate u₀ = 0."""
    return tuple(jnp.zeros((len(c.operators), c.size)) for c in constraints)
