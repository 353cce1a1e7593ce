"""Gram blocks of a kernel under linear operators: K(L₁, L₂)[a, b] = L₁ˣ L₂ʸ k(x_a, y_b).

Every operator acts by autodiff on the pointwise kernel, so every kernel gets every operator.
The per-point part of the kernel (its `features`: for the Gibbs kernel the network ℓ(x)) is
evaluated and differentiated ONCE PER POINT: each pair then differentiates the kernel through the
second-order Taylor polynomial of the features around its two points. Derivatives of order ≤ 2 in
each argument of the composition depend only on derivatives of order ≤ 2 of the features, so this is
exact for all operators in `_operators.py`, and no network runs per pair of points.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from kernels import AbstractKernel, AbstractPointKernel

from ._operators import AbstractOperator


class FeatureJets(eqx.Module):
    """Per-point features of a kernel and their first and second derivatives (flattened)."""

    value: Float[Array, "n p"]
    jacobian: Float[Array, "n p d"]
    hessian: Float[Array, "n p d d"]


def feature_jets(kernel: AbstractKernel, points: Float[Array, "n d"]) -> FeatureJets | None:
    """Second-order jets of the kernel features at each point; None when the features are the
    point itself (then the Taylor polynomial is the identity and nothing needs storing)."""
    if isinstance(kernel, AbstractPointKernel):
        return None

    def flat(x):
        return ravel_pytree(kernel.features(x))[0]

    value = jax.vmap(flat)(points)
    jacobian = jax.vmap(jax.jacfwd(flat))(points)
    hessian = jax.vmap(jax.jacfwd(jax.jacfwd(flat)))(points)
    return FeatureJets(value, jacobian, hessian)


def _local_features(kernel, jets, point, index):
    """x ↦ features(x) near `point`: exact for point kernels, the Taylor polynomial otherwise."""
    if jets is None:
        return kernel.features
    unravel = ravel_pytree(kernel.features(point))[1]
    value, jacobian, hessian = jets.value[index], jets.jacobian[index], jets.hessian[index]

    def taylor(x):
        step = x - point
        return unravel(value + jacobian @ step + 0.5 * jnp.einsum("pij,i,j->p", hessian, step, step))

    return taylor


def operator_gram(
    kernel: AbstractKernel,
    operators_x: Sequence[AbstractOperator],
    points_x: Float[Array, "nx d"],
    operators_y: Sequence[AbstractOperator],
    points_y: Float[Array, "ny d"],
    jets_x: FeatureJets | None = None,
    jets_y: FeatureJets | None = None,
) -> Float[Array, "mx my nx ny"]:
    """All Gram blocks between the operator lists: out[j, l, a, b] = L_jˣ L_lʸ k(x_a, y_b).

    Pass `jets_x`/`jets_y` (from `feature_jets`) to reuse per-point work across calls.
    """
    if jets_x is None:
        jets_x = feature_jets(kernel, points_x)
    if jets_y is None:
        jets_y = feature_jets(kernel, points_y)

    def one_pair(a, b):
        x0, y0 = points_x[a], points_y[b]
        features_x = _local_features(kernel, jets_x, x0, a)
        features_y = _local_features(kernel, jets_y, y0, b)

        def k(x, y):
            return kernel.pair(features_x(x), features_y(y))

        def along_y(x):
            return jnp.stack([op.apply(lambda y: k(x, y), y0) for op in operators_y])

        return jnp.stack([op.apply(along_y, x0) for op in operators_x])

    rows = jnp.arange(points_x.shape[0])
    cols = jnp.arange(points_y.shape[0])
    blocks = jax.vmap(jax.vmap(one_pair, (None, 0)), (0, None))(rows, cols)
    return jnp.moveaxis(blocks, (2, 3), (0, 1))
