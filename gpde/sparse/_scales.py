"""The coordinate scales in which the sparse solver measures distances between points.

Screening (the decay of the conditional correlations that makes the factor sparse) acts on the
kernel's own length scales, so the maximin ordering and the sparsity radii use coordinates divided
by the kernel's lengthscale in each dimension: with Burgers' anisotropic (t, x) lengthscales
(0.3, 0.05) a ball in raw coordinates would hold six times too few neighbours along x. Only the
ratios between dimensions matter (a common factor rescales every ℓ_i and ρ·ℓ_i alike).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..kernels import AbstractKernel, AbstractStationaryKernel, Gibbs, Product, Scaled, Sum


def coordinate_scales(kernel: AbstractKernel, points: Float[Array, "n d"]) -> Float[np.ndarray, " d"]:
    """Per-dimension lengthscale of the kernel: a stationary kernel's lengthscales; the shortest
    over the parts of a sum or product (the part that decorrelates fastest sets the screening
    scale); the median over the points of a Gibbs kernel's per-dimension lengthscale field; 1 for
    every other kernel."""
    dim = points.shape[1]
    if isinstance(kernel, AbstractStationaryKernel):
        return np.broadcast_to(np.asarray(jnp.exp(kernel.log_lengthscale), dtype=float), (dim,)).copy()
    if isinstance(kernel, Scaled):
        return coordinate_scales(kernel.kernel, points)
    if isinstance(kernel, (Sum, Product)):
        return np.min([coordinate_scales(part, points) for part in kernel.parts], axis=0)
    if isinstance(kernel, Gibbs) and not kernel.shared_lengthscale:
        sample = jnp.asarray(points)[:: max(1, points.shape[0] // 2000)]
        return np.median(np.asarray(jax.vmap(kernel.lengthscale)(sample)), axis=0)
    return np.ones(dim)

