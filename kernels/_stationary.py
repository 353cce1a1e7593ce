"""Stationary kernels k(x, y) = κ(s), with s = Σ_i ((x_i − y_i) / ℓ_i)² the scaled squared distance.

Each kernel takes one lengthscale (isotropic) or one per input dimension (anisotropic). All of
them are written in terms of s, not r = √s, wherever the formula allows, so that derivatives of
any order stay finite at x = y; the Matérn kernels, which need r, switch to their Taylor series
in s near r = 0 (the first odd power of r is r⁵ resp. r⁷, so the series is exact to the orders that
the PDE operators need).
"""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._base import AbstractPointKernel, AbstractStationaryKernel
from ._positive import log_of_positive

# Below this scaled squared distance (r < 1e-3) the Matérn kernels use their series in r: the
# closed form differentiates through √s, and its fourth derivatives lose digits to cancellation
# like eps/r² near r = 0. The series is exact up to O(r⁷), so at the switch both branches agree to
# ~1e-9 relative in every derivative up to fourth order.
_MATERN_SERIES_BELOW = 1e-6
def _safe_sqrt(s):
    """√s whose derivatives are finite at s = 0 (the s = 0 branch is discarded by the caller)."""
    positive = s > _MATERN_SERIES_BELOW
    return jnp.sqrt(jnp.where(positive, s, 1.0))


def _scaled_distance(a2, s):
    """(x, 1/x, e^{−x}) for x = a·√s, with 1/x = 0 at s = 0 (where every use multiplies it by
    zero) and derivatives finite everywhere (the s = 0 branch never sees √0)."""
    positive = s > 0
    root = jnp.sqrt(jnp.where(positive, s, 1.0))
    x = jnp.where(positive, jnp.sqrt(a2) * root, 0.0)
    inverse_x = jnp.where(positive, 1.0 / (jnp.sqrt(a2) * root), 0.0)
    return x, inverse_x, jnp.exp(-x)


class Gaussian(AbstractStationaryKernel):
    """k(x, y) = exp(−Σ_i (x_i − y_i)² / (2 ℓ_i²)): the squared-exponential kernel."""

    log_lengthscale: Float[Array, "*d"]

    def __init__(self, lengthscale: ArrayLike = 1.0):
        self.log_lengthscale = log_of_positive(lengthscale, "Gaussian lengthscale")

    def profile(self, s):
        return jnp.exp(-0.5 * s)

    def profile_derivatives(self, s, order):
        value = jnp.exp(-0.5 * s)
        return [(-0.5) ** m * value for m in range(order + 1)]


class Matern52(AbstractStationaryKernel):
    """Matérn ν = 5/2: k = (1 + a r + a² r²/3) e^{−a r}, a = √5, r the scaled distance."""

    log_lengthscale: Float[Array, "*d"]

    def __init__(self, lengthscale: ArrayLike = 1.0):
        self.log_lengthscale = log_of_positive(lengthscale, "Matern52 lengthscale")

    def profile(self, s):
        a2 = 5.0
        r = _safe_sqrt(s)
        a_r = jnp.sqrt(a2) * r
        closed_form = (1.0 + a_r + a2 * s / 3.0) * jnp.exp(-a_r)
        # Series of (1 + ar + a²r²/3)e^{−ar}: the r¹ and r³ terms cancel; r⁵ is the first odd one.
        odd = jnp.sqrt(jnp.where(s > 0, s, 1.0)) * (s > 0)  # r, with zero derivative at r = 0
        series = 1.0 - a2 * s / 6.0 + a2**2 * s**2 / 24.0 - a2**2 * jnp.sqrt(a2) * s**2 * odd / 45.0 + a2**3 * s**3 / 144.0
        return jnp.where(s > _MATERN_SERIES_BELOW, closed_form, series)

    def profile_derivatives(self, s, order):
        # With x = a r and D = d/ds = (a²/2x) d/dx, each derivative of P(x) e^{−x} is again a
        # polynomial times e^{−x} until P runs out: κ′ = −(a²/6)(1 + x)e^{−x}, κ″ = (a⁴/12)e^{−x};
        # κ‴ and κ⁗ carry 1/x and 1/x³, and every Gram entry multiplies them by s² or more.
        a2 = 5.0
        x, inverse_x, exponential = _scaled_distance(a2, s)
        values = [
            (1.0 + x + a2 * s / 3.0) * exponential,
            -(a2 / 6.0) * (1.0 + x) * exponential,
            (a2**2 / 12.0) * exponential,
            -(a2**3 / 24.0) * exponential * inverse_x,
            (a2**4 / 48.0) * (1.0 + x) * exponential * inverse_x**3,
        ]
        return values[: order + 1] if order <= 4 else super().profile_derivatives(s, order)


class Matern72(AbstractStationaryKernel):
    """Matérn ν = 7/2: k = (1 + a r + 2a² r²/5 + a³ r³/15) e^{−a r}, a = √7."""

    log_lengthscale: Float[Array, "*d"]

    def __init__(self, lengthscale: ArrayLike = 1.0):
        self.log_lengthscale = log_of_positive(lengthscale, "Matern72 lengthscale")

    def profile(self, s):
        a2 = 7.0
        r = _safe_sqrt(s)
        a_r = jnp.sqrt(a2) * r
        closed_form = (1.0 + a_r + 2.0 * a2 * s / 5.0 + a_r * a2 * s / 15.0) * jnp.exp(-a_r)
        series = 1.0 - a2 * s / 10.0 + a2**2 * s**2 / 120.0 - a2**3 * s**3 / 720.0
        return jnp.where(s > _MATERN_SERIES_BELOW, closed_form, series)

    def profile_derivatives(self, s, order):
        # As for Matern52: κ′ = −(a²/30)(3 + 3x + x²)e^{−x}, κ″ = (a⁴/60)(1 + x)e^{−x},
        # κ‴ = −(a⁶/120)e^{−x}, κ⁗ = (a⁸/240)e^{−x}/x (finite in every entry, which multiplies it by s²).
        a2 = 7.0
        x, inverse_x, exponential = _scaled_distance(a2, s)
        values = [
            (1.0 + x + 2.0 * a2 * s / 5.0 + a2 * s * x / 15.0) * exponential,
            -(a2 / 30.0) * (3.0 + 3.0 * x + a2 * s) * exponential,
            (a2**2 / 60.0) * (1.0 + x) * exponential,
            -(a2**3 / 120.0) * exponential,
            (a2**4 / 240.0) * exponential * inverse_x,
        ]
        return values[: order + 1] if order <= 4 else super().profile_derivatives(s, order)


class RationalQuadratic(AbstractStationaryKernel):
    """k = (1 + s / (2α))^{−α}: a scale mixture of Gaussians; α → ∞ gives the Gaussian."""

    log_lengthscale: Float[Array, "*d"]
    log_alpha: Float[Array, ""]

    def __init__(self, lengthscale: ArrayLike = 1.0, alpha: ArrayLike = 1.0):
        self.log_lengthscale = log_of_positive(lengthscale, "RationalQuadratic lengthscale")
        self.log_alpha = log_of_positive(alpha, "RationalQuadratic alpha")

    def profile(self, s):
        alpha = jnp.exp(self.log_alpha)
        return (1.0 + s / (2.0 * alpha)) ** (-alpha)


class Polynomial(AbstractPointKernel):
    """k(x, y) = (α x·y + c)^p, α > 0, c > 0: the non-stationary part of the published additive
    kernel σ²·Gaussian + (α x·y + c)²."""

    log_alpha: Float[Array, ""]
    log_offset: Float[Array, ""]
    degree: int = 2

    def __init__(self, alpha: ArrayLike = 1.0, offset: ArrayLike = 1.0, degree: int = 2):
        if not isinstance(degree, int) or degree < 1:
            raise ValueError(f"Polynomial degree must be an integer >= 1, got {degree!r}")
        self.log_alpha = log_of_positive(alpha, "Polynomial alpha")
        self.log_offset = log_of_positive(offset, "Polynomial offset")
        self.degree = degree

    def pair(self, fx, fy):
        return (jnp.exp(self.log_alpha) * jnp.dot(fx, fy) + jnp.exp(self.log_offset)) ** self.degree
