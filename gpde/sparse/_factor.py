"""The numerical values of a sparse inverse-Cholesky factor, one small dense problem per supernode.

For a supernode with rows I (positions, ascending) and Gram block Θ_II = L Lᵀ, the KL-optimal
(Vecchia) column of a member c is U[I≤c, c] = Θ_ss⁻¹ e_c / √(e_cᵀ Θ_ss⁻¹ e_c) with s = I ∩ [0, c].
The Cholesky factor of a leading block is the leading block of L, so this column is the leading
part of L⁻ᵀ e_c: one Cholesky factorization and one triangular solve give every column of the
supernode (Schäfer, Katzfuss, Owhadi 2021).

Every functional is a weighted sum of the operators of one dictionary at one point,
φ = Σ_j w_j L_j δ_x (one-hot weights for the basis functionals, the linearization weights for the
reduced system), so a supernode's Gram block is Σ_jl w_j w_l K(L_j, L_l) from gpde's own
`functional_gram` (one fused closed-form pass for stationary kernels, `operator_gram`'s blocks
otherwise): every kernel (stationary, sums, products, Gibbs, any feature kernel) and every
operator works here. The blocks are computed in JAX, batched over the padded supernodes of a bucket
chunk (`_buckets.py`) with `vmap`; the results are scattered on the host into the factor's
compressed columns. Nothing of size N² is ever formed: the largest array is one chunk's blocks.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
from jaxtyping import Array, Bool, Float, Int

from ..kernels import AbstractKernel
from ..solve._gram import functional_gram, operator_gram
from ..solve._operators import AbstractOperator
from ._buckets import BucketLayout


def factor(
    kernel: AbstractKernel,
    operators: Sequence[AbstractOperator],
    points: Float[np.ndarray, "n d"],
    weights: Float[np.ndarray, "n m"],
    absolute_nugget: Float[np.ndarray, " n"],
    relative_nugget: float,
    layout: BucketLayout,
) -> scipy.sparse.csc_matrix:
    """U (sparse upper triangular, positions of the ordering) with (U Uᵀ)⁻¹ ≈ Θ + nugget.

    Functional p (position p) is Σ_j weights[p, j] operators[j] at points[p]. The Gram blocks get
    absolute_nugget[p] + relative_nugget · Θ_pp on their diagonal. A failed local factorization
    leaves NaN in the factor (the caller checks). Chunks are dispatched one ahead of the host-side
    scatter, so that JAX computes the next chunk while numpy stores the last one.
    """
    operators = tuple(operators)
    points, weights = jnp.asarray(points), jnp.asarray(weights)
    absolute_nugget = jnp.asarray(absolute_nugget)
    data = np.empty(layout.nnz)
    pending = None
    for chunk in layout.chunks:
        result = _chunk_columns(
            kernel, operators, points, weights, absolute_nugget, relative_nugget, chunk.rows, chunk.valid, chunk.slots
        )
        if pending is not None:
            _store(layout, data, *pending)
        pending = (chunk, result)
    if pending is not None:
        _store(layout, data, *pending)
    n = layout.indptr.shape[0] - 1
    return scipy.sparse.csc_matrix((data, layout.indices, layout.indptr), shape=(n, n))


def _store(layout, data, chunk, result):
    mask, dest = layout.destinations(chunk)
    data[dest] = np.asarray(result)[mask]


@eqx.filter_jit
def _chunk_columns(
    kernel: AbstractKernel,
    operators: tuple[AbstractOperator, ...],
    points: Float[Array, "n d"],
    weights: Float[Array, "n m"],
    absolute_nugget: Float[Array, " n"],
    relative_nugget: float,
    rows: Int[Array, "B S"],
    valid: Bool[Array, "B S"],
    slots: Int[Array, "B M"],
) -> Float[Array, "B M S"]:
    """out[b, k] = L_b⁻ᵀ e_{slots[b, k]} for the Cholesky factor L_b of supernode b's Gram block."""
    size = rows.shape[1]
    x = points[rows]
    w = jnp.where(valid[:, :, None], weights[rows], 0.0)

    def gram(xb, wb):
        return functional_gram(kernel, operators, wb, xb, wb, xb)

    gram_blocks = jax.vmap(gram)(x, w)
    diagonal = jnp.diagonal(gram_blocks, axis1=1, axis2=2)
    # Padding slots (zero weights, so zero rows and columns) get a unit diagonal: they come after
    # every real slot and so leave the real columns of L⁻ᵀ unchanged.
    shift = jnp.where(valid, relative_nugget * diagonal + absolute_nugget[rows], 1.0)
    gram_blocks = gram_blocks + shift[:, :, None] * jnp.eye(size)
    lower = jnp.linalg.cholesky(gram_blocks)
    unit = jax.nn.one_hot(slots, size, dtype=lower.dtype)  # (B, M, S)
    columns = jax.scipy.linalg.solve_triangular(lower, jnp.swapaxes(unit, 1, 2), lower=True, trans=1)
    return jnp.swapaxes(columns, 1, 2)


def pointwise_blocks(
    kernel: AbstractKernel, operators: Sequence[AbstractOperator], points: Float[Array, "n d"]
) -> Float[Array, "n m m"]:
    """K(L_j δ_x, L_l δ_x) at each point x: the variances and covariances of a point's functionals."""
    operators = tuple(operators)
    return _pointwise(kernel, operators, jnp.asarray(points))


@eqx.filter_jit
def _pointwise(kernel, operators, points):
    return jax.vmap(lambda x: operator_gram(kernel, operators, x[None], operators, x[None])[:, :, 0, 0])(points)
