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

from ._base import AbstractSeparableKernel
from ._positive import log_of_positive


class PeriodicGaussian(AbstractSeparableKernel):
    """k(x, y) = exp(−½ Σ_i d_i² / ℓ_i²) with d_i = x_i − y_i in the ordinary dimensions and
    d_i = (P/π) sin(π (x_i − y_i) / P) in the periodic ones (period P).

    (P/π) sin(πh/P) = h + O(h³), so ℓ_i means locally what a Gaussian lengthscale means, in every
    dimension. The kernel is the Gaussian kernel of the embedding x_i ↦ (P/2π)(cos 2πx_i/P,
    sin 2πx_i/P) in the periodic dimensions, hence positive definite. The published bilevel code
    (docs/references.md §8) writes it as exp(−Σ_t (h_t/ℓ'_t)² − Σ_x 2 sin²(πh_x/P)/ℓ'_x²); its
    lengthscales correspond to ℓ_t = ℓ'_t/√2 and ℓ_x = P ℓ'_x/(2π).

    The lengthscales are stored as logarithms; the period and the periodic dimensions are fixed
    (static), so kernel learning never moves them. The kernel is a product of one-dimensional
    factors (Gaussian in the ordinary dimensions, exp(−d_i²/2ℓ_i²) in the periodic ones), whose
    derivatives `factor_derivatives` gives in closed form for Gram assembly.
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

    def factor_derivatives(self, h: Float[Array, "d *n"], order: int) -> list[list[Float[Array, "*n"]]]:
        """Closed forms. Ordinary dimension: φ = exp(−u²/2), u = h/ℓ, φ⁽ᵐ⁾ = (−1/ℓ)ᵐ Heₘ(u) φ
        (probabilists' Hermite polynomials). Periodic dimension: φ = exp(ψ) with
        ψ = −sin²(ωh)/(2ℓ²ω²) = a (cos βh − 1), ω = π/P, β = 2ω, a = 1/(4ℓ²ω²), so
        ψ′ = −a β sin βh, ψ″ = −a β² cos βh, ψ‴ = a β³ sin βh, ψ⁗ = a β⁴ cos βh, and
        φ⁽ᵐ⁾ = φ Bₘ(ψ′, …, ψ⁽ᵐ⁾) with the complete Bell polynomials Bₘ."""
        if not 0 <= order <= 4:
            raise ValueError(f"PeriodicGaussian.factor_derivatives: order must be 0..4, got {order}")
        dim = h.shape[0]
        if max(self.periodic_dims) >= dim:
            raise ValueError(f"PeriodicGaussian periodic_dims {self.periodic_dims} do not fit {dim}-D points")
        lengthscale = jnp.broadcast_to(jnp.exp(self.log_lengthscale), (dim,))
        factors = []
        for i in range(dim):
            ell = lengthscale[i]
            if i in self.periodic_dims:
                omega = jnp.pi / self.period
                beta = 2.0 * omega
                a = 1.0 / (4.0 * ell**2 * omega**2)
                s, c = jnp.sin(beta * h[i]), jnp.cos(beta * h[i])
                value = jnp.exp(-2.0 * a * jnp.sin(omega * h[i]) ** 2)
                d1, d2, d3, d4 = -a * beta * s, -a * beta**2 * c, a * beta**3 * s, a * beta**4 * c
                bell = [1.0, d1, d2 + d1**2, d3 + 3.0 * d1 * d2 + d1**3,
                        d4 + 4.0 * d1 * d3 + 3.0 * d2**2 + 6.0 * d1**2 * d2 + d1**4]
            else:
                u = h[i] / ell
                value = jnp.exp(-0.5 * u**2)
                hermite = [1.0, u, u**2 - 1.0, u**3 - 3.0 * u, u**4 - 6.0 * u**2 + 3.0]
                bell = [(-1.0 / ell) ** m * hermite[m] for m in range(5)]
            factors.append([value * bell[m] for m in range(order + 1)])
        return factors

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
