"""The coordinate scales in which the sparse solver measures distances between points.

Screening (the decay of the conditional correlations that makes the factor sparse) acts on the
kernel's own length scales, so the maximin ordering and the sparsity radii use coordinates divided
by the kernel's lengthscale in each dimension: with Burgers' anisotropic (t, x) lengthscales
(0.3, 0.05) a ball in raw coordinates would hold six times too few neighbours along x. Only the
ratios between dimensions matter (a common factor rescales every ℓ_i and ρ·ℓ_i alike). A warped
kernel k₀(w(x), w(y)) is screened in k₀'s coordinates at the mapped points w(x): there a stretched
layer holds as many neighbours per ball as the rest of the domain.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..kernels import AbstractKernel, AbstractStationaryKernel, Gibbs, Product, Scaled, Sum, Warped


def coordinate_scales(kernel: AbstractKernel, points: Float[Array, "n d"]) -> Float[np.ndarray, " d"]:
    """Per-dimension lengthscale of the kernel: a stationary kernel's lengthscales; the shortest
    over the parts of a sum or product (the part that decorrelates fastest sets the screening
    scale); the median over the points of a Gibbs kernel's per-dimension lengthscale field; a warped
    kernel's inner kernel's at the mapped points; 1 for every other kernel."""
    dim = points.shape[1]
    if isinstance(kernel, Warped):
        return coordinate_scales(kernel.kernel, _mapped(kernel.warp, points))
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



def screening_coordinates(kernel: AbstractKernel, points: Float[Array, "n d"],
                          scales: Float[np.ndarray, " d"]) -> Float[np.ndarray, "n d"]:
    """The points where the sparse solver measures distances: mapped by the kernel's input warps
    (through scalings and nested warps; sums and products are not looked into) and divided by
    `scales` (`coordinate_scales` of the same kernel)."""
    mapped = np.asarray(points, dtype=np.float64)
    while isinstance(kernel, (Scaled, Warped)):
        if isinstance(kernel, Warped):
            mapped = _mapped(kernel.warp, mapped)
        kernel = kernel.kernel
    return mapped / scales


def _mapped(warp, points) -> Float[np.ndarray, "n d"]:
    return np.asarray(jax.vmap(warp)(jnp.asarray(points, dtype=jnp.float64)))
