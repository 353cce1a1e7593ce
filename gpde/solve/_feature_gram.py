"""Gram blocks of feature kernels as differential operators in feature space.

A kernel k(x, y) = P(F(x), F(y)) (`AbstractKernel.pair` of the `features` F, p entries flattened)
under an operator L = (c₀, c₁, C₂) of order ≤ 2 (`AbstractOperator.coefficients`), by the chain rule
with J, H the Jacobian and Hessian of F at x:

    Lˣ P = c₀ P + D_v P + Σ_k λ_k D²_{u_k} P,   v = J c₁ + H : C₂,   u_k = J e_k,

where C₂ = Σ_k λ_k e_k e_kᵀ (a small static eigendecomposition). So L is a differential operator of
order ≤ 2 IN FEATURE SPACE along per-point directions v, u_k ∈ R^p, computed once per point from the
feature jets. Each pair of points then takes directional derivatives (order ≤ 2 in each argument) of
the small function P only: no network and no Taylor polynomial runs per pair, the traced graph stays
small (fast compilation, also under reverse-mode differentiation for hyperparameter learning) and
gradients reach the network through the per-point directions.

Derivatives that several operators share (∂₀ and the first-order part of Δ along u₀ = J e₀, say)
are taken once per pair: each operator is reduced to a list of derivative "terms" over a shared,
deduplicated set of directions.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from ..kernels import AbstractKernel, AbstractPointKernel

from ._operators import AbstractOperator

# Eigenvalues of C₂ below this (relative to its largest) are dropped: C₂ entries are exact small
# rationals (0, ±1/2, 1), so anything smaller is rounding of the eigendecomposition.
_EIGEN_TOLERANCE = 1e-12
#: Point pairs whose derivatives are taken in one vectorized batch (`feature_gram`).
_PAIRS_PER_BATCH = 1 << 20


class FeatureJets(eqx.Module):
    """Per-point features of a kernel and their first and second derivatives (flattened)."""

    value: Float[Array, "n p"]
    jacobian: Float[Array, "n p d"]
    hessian: Float[Array, "n p d d"]


def feature_jets(kernel: AbstractKernel, points: Float[Array, "n d"]) -> FeatureJets | None:
    """Second-order jets of the kernel features at each point; None when the features are the
    point itself (then J = I and H = 0, and nothing needs storing)."""
    if isinstance(kernel, AbstractPointKernel):
        return None

    def flat(x):
        return ravel_pytree(kernel.features(x))[0]

    value = jax.vmap(flat)(points)
    jacobian = jax.vmap(jax.jacfwd(flat))(points)
    hessian = jax.vmap(jax.jacfwd(jax.jacfwd(flat)))(points)
    return FeatureJets(value, jacobian, hessian)


class Plan:
    """The operators of one side as derivative terms over shared per-point directions.

    Every direction is J a + H : B at each point for a static vector a and matrix B (`sources`).
    `terms[j]` lists (coefficient, direction indices) for operator j: () is the value, (i,) a first
    and (i, i) a second directional derivative along direction i.
    """

    def __init__(self, operators: Sequence[AbstractOperator], dim: int, curved: bool):
        self.sources: list[tuple[np.ndarray, np.ndarray]] = []
        self.terms: list[list[tuple[float, tuple[int, ...]]]] = []
        zero_matrix = np.zeros((dim, dim))
        for operator in operators:
            c0, c1, c2 = operator.coefficients(dim)
            c1, c2 = np.asarray(c1, float), np.asarray(c2, float)
            terms = []
            if c0:
                terms.append((float(c0), ()))
            # For point features (J = I, H = 0) the H : C₂ part vanishes.
            if np.any(c1) or (curved and np.any(c2)):
                terms.append((1.0, (self._direction(c1, c2 if curved else zero_matrix),)))
            if np.any(c2):
                eigenvalues, vectors = np.linalg.eigh(c2)
                scale = np.max(np.abs(eigenvalues))
                for lam, e in zip(eigenvalues, vectors.T):
                    if abs(lam) > _EIGEN_TOLERANCE * scale:
                        i = self._direction(_canonical(e), zero_matrix)
                        terms.append((float(lam), (i, i)))
            self.terms.append(terms)

    def _direction(self, a, b):
        # ∂_i (a = e_i) and the second-order part of Δ (eigenvector e_i) share the direction J e_i.
        for i, (known_a, known_b) in enumerate(self.sources):
            if np.array_equal(known_a, a) and np.array_equal(known_b, b):
                return i
        self.sources.append((a, b))
        return len(self.sources) - 1

    def directions(self, jets: FeatureJets | None, points: Float[Array, "n d"]) -> Float[Array, "n q p"]:
        """Every direction at every point: out[a, i] is direction i at point a (p = d for point
        features)."""
        if not self.sources:
            return jnp.zeros((points.shape[0], 0, points.shape[1] if jets is None else jets.value.shape[1]))
        if jets is None:
            columns = [jnp.broadcast_to(jnp.asarray(a, points.dtype), points.shape) for a, _ in self.sources]
        else:
            columns = [
                jets.jacobian @ jnp.asarray(a) + (jnp.einsum("npij,ij->np", jets.hessian, b) if np.any(b) else 0.0)
                for a, b in self.sources
            ]
        return jnp.stack(columns, axis=1)

    def apply(self, function, point, directions):
        """Every operator applied to `function` (R^p → R^m) at `point`: shape (operators, m).
        A direction differentiated to second order is differentiated once: the outer jvp's
        primal output is the first derivative."""
        order = {}
        for terms in self.terms:
            for _, index in terms:
                if index:
                    order[index[0]] = max(order.get(index[0], 0), len(index))
        derivatives = {(): function(point)}
        for i, highest in order.items():
            def first(f, i=i):
                return jax.jvp(function, (f,), (directions[i],))[1]

            if highest == 1:
                derivatives[(i,)] = first(point)
            else:
                derivatives[(i,)], derivatives[(i, i)] = jax.jvp(first, (point,), (directions[i],))
        zero = jnp.zeros_like(derivatives[()])
        return jnp.stack([sum((c * derivatives[index] for c, index in terms), zero) for terms in self.terms])


def _canonical(e):
    """A unit eigenvector with a fixed sign (first nonzero entry positive), with rounding noise
    removed, so that equal directions of different operators compare equal."""
    e = np.where(np.abs(e) < 1e-14, 0.0, e)
    e = e * np.sign(e[np.flatnonzero(e)[0]])
    return np.where(np.abs(e - np.round(e)) < 1e-14, np.round(e), e)


def feature_gram(kernel: AbstractKernel, operators_x, points_x, operators_y, points_y, jets_x=None, jets_y=None):
    """out[j, l, a, b] = L_jˣ L_lʸ k(x_a, y_b) for any kernel, by directional derivatives of
    `kernel.pair` in feature space along per-point directions (module docstring). `jets_x`/`jets_y`
    (from `feature_jets`) are computed here when not given; point kernels need none."""
    dim = points_x.shape[1]
    curved = not isinstance(kernel, AbstractPointKernel)
    if curved and jets_x is None:
        jets_x = feature_jets(kernel, points_x)
    if curved and jets_y is None:
        jets_y = feature_jets(kernel, points_y)
    plan_x, plan_y = Plan(operators_x, dim, curved), Plan(operators_y, dim, curved)
    directions_x, directions_y = plan_x.directions(jets_x, points_x), plan_y.directions(jets_y, points_y)
    values_x = points_x if jets_x is None else jets_x.value
    values_y = points_y if jets_y is None else jets_y.value
    # The feature pytree's structure, traced once (not inside every nested derivative).
    unravel = ravel_pytree(kernel.features(points_x[0]))[1]

    def pair(fx, dx, fy, dy):
        def along_y(f):
            return plan_y.apply(lambda g: kernel.pair(unravel(f), unravel(g)), fy, dy)

        return plan_x.apply(along_y, fx, dx)

    def row(fx, dx):
        return jax.vmap(pair, (None, None, 0, 0))(fx, dx, values_y, directions_y)

    # Rows in batches of at most _PAIRS_PER_BATCH pairs: the nested derivatives keep several
    # intermediates per pair, and one vmap over all pairs held them all at once (the Schrödinger
    # re-solve at 4000 + 500 points went past 22 GB). Each batch is rematerialized in the reverse
    # pass (jax.checkpoint): otherwise the scan stores every batch's intermediates for the
    # gradient, all pairs again (Schrödinger learning at 2000 + 500 points asked for 46 GB).
    rows_per_batch = max(1, _PAIRS_PER_BATCH // max(points_y.shape[0], 1))
    if rows_per_batch >= points_x.shape[0]:
        blocks = jax.vmap(row)(values_x, directions_x)
    else:
        batch = jax.checkpoint(lambda xs: row(*xs))
        blocks = jax.lax.map(batch, (values_x, directions_x), batch_size=rows_per_batch)
    return jnp.moveaxis(blocks, (0, 1), (2, 3))
