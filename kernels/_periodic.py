"""A Gaussian kernel that is periodic in some input dimensions (the "periodic kernel" of MacKay).

For inputs on a periodic domain (the nonlinear Schrödinger equation on x ∈ [−5, 5] with periodic
boundary conditions) a kernel periodic in x makes every sample path, and so the collocation
solution, periodic: the boundary condition holds exactly and needs no boundary points.
"""

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._base import AbstractPointKernel
from ._positive import log_of_positive


class PeriodicGaussian(AbstractPointKernel):
    """k(x, y) = exp(−½ Σ_i d_i² / ℓ_i²) with d_i = x_i − y_i in the ordinary dimensions and
    d_i = (P/π) sin(π (x_i − y_i) / P) in the periodic ones (period P).

    (P/π) sin(πh/P) = h + O(h³), so ℓ_i means locally what a Gaussian lengthscale means, in every
    dimension. The kernel is the Gaussian kernel of the embedding x_i ↦ (P/2π)(cos 2πx_i/P,
    sin 2πx_i/P) in the periodic dimensions, hence positive definite. The published bilevel code
    (docs/references.md §8) writes it as exp(−Σ_t (h_t/ℓ'_t)² − Σ_x 2 sin²(πh_x/P)/ℓ'_x²); its
    lengthscales correspond to ℓ_t = ℓ'_t/√2 and ℓ_x = P ℓ'_x/(2π).

    The lengthscales are stored as logarithms; the period and the periodic dimensions are fixed
    (static), so kernel learning never moves them. The kernel has no closed-form Gram assembly: Gram
    blocks come from autodiff of `pair` (gpde's feature-space assembly), so every operator applies.
    """

    log_lengthscale: Float[Array, "*d"]
    period: float = eqx.field(static=True)
    periodic_dims: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, lengthscale: ArrayLike = 1.0, period: float = 1.0, periodic_dims: Sequence[int] = (0,)):
        period = float(period)
        if not (np.isfinite(period) and period > 0):
            raise ValueError(f"PeriodicGaussian period must be finite and > 0, got {period}")
        dims = tuple(periodic_dims)
        if not dims or any(not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 0 for i in dims):
            raise ValueError(f"PeriodicGaussian periodic_dims must be non-empty indices >= 0, got {periodic_dims!r}")
        if len(set(dims)) != len(dims):
            raise ValueError(f"PeriodicGaussian periodic_dims repeats an index: {periodic_dims!r}")
        self.log_lengthscale = log_of_positive(lengthscale, "PeriodicGaussian lengthscale")
        self.period = period
        self.periodic_dims = tuple(int(i) for i in dims)

    @property
    def lengthscale(self) -> Float[Array, "*d"]:
        return jnp.exp(self.log_lengthscale)

    def pair(self, fx: Float[Array, " d"], fy: Float[Array, " d"]) -> Float[Array, ""]:
        dim = fx.shape[0]
        if max(self.periodic_dims) >= dim:
            raise ValueError(f"PeriodicGaussian periodic_dims {self.periodic_dims} do not fit {dim}-D points")
        h = fx - fy
        periodic = np.zeros(dim, dtype=bool)
        periodic[list(self.periodic_dims)] = True
        chord = (self.period / jnp.pi) * jnp.sin(jnp.pi * h / self.period)
        d = jnp.where(periodic, chord, h)
        return jnp.exp(-0.5 * jnp.sum((d / jnp.exp(self.log_lengthscale)) ** 2))
