"""Moments of a Gaussian with independent components truncated to a union of disjoint boxes.

One dimension: for Z ~ N(0, 1) restricted to [α, β], with Z_αβ = Φ(β) − Φ(α),
    E[Z]   = (φ(α) − φ(β)) / Z_αβ,
    Var[Z] = 1 + (α φ(α) − β φ(β)) / Z_αβ − E[Z]².
Numerically: intervals with α + β > 0 are mirrored to [−β, −α] (mean negated), so the interval
reaches at most into the lower tail, where log Φ is accurate (`log_ndtr`); log Z_αβ =
log Φ(β) + log1p(−Φ(α)/Φ(β)) and every ratio φ(·)/Z_αβ is an exp of a difference of logs, never
0/0. For the one-sided interval (−∞, β] far in the tail (β < −30) the variance 1 − r(r + β),
r = φ(β)/Φ(β), cancels catastrophically, so it comes from the asymptotic series of the Mills ratio:
with t = −β, r − t = 1/t − 2/t³ + 10/t⁵ − 74/t⁷ + …, so Var = 1 − r(r − t) = 1/t² − 6/t⁴ + 50/t⁶ −
518/t⁸ + 6354/t¹⁰ − …; everywhere else in the one-sided case r comes from erfcx (no log differences).
Two-sided intervals far in the tail lose some digits of the variance (relative 3e-4 at 60σ). Means are clipped
into [α, β] and variances into [0, min(1, (β − α)²/4)] (bounds of any distribution on the interval).

Several dimensions, boxes B_b = Π_d [α_bd, β_bd] (disjoint): mass w_b ∝ Π_d Z_bd (log space,
normalized by logsumexp), per-box means μ_bd and variances v_bd; the mixture has mean
μ_d = Σ_b w_b μ_bd and covariance Σ_de = Σ_b w_b (δ_de v_bd + (μ_bd − μ_d)(μ_be − μ_e)) — the moment-
matched Gaussian of the truncated distribution. The boxes' components are correlated through the
mixture even though the untruncated components are independent.
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr
from jaxtyping import Array, Float

_LOG_SQRT_2PI = 0.5 * jnp.log(2.0 * jnp.pi)
_TAIL = 30.0
_FAR = 1e100


def _log_pdf(z):
    return -0.5 * z**2 - _LOG_SQRT_2PI


def _log_mass(alpha, beta):
    """log(Φ(β) − Φ(α)) for α ≤ β with α + β ≤ 0 (β is then the endpoint nearer the centre)."""
    log_b = log_ndtr(beta)
    ratio = jnp.exp(log_ndtr(alpha) - log_b)
    return log_b + jnp.log1p(-jnp.minimum(ratio, 1.0))


def _tail_variance(t):
    """Var of N(0, 1) restricted to (−∞, −t], t ≥ _TAIL, from the Mills-ratio series (relative
    error below 1e-9 at t = 30)."""
    u = 1.0 / t**2
    return u * (1.0 - 6.0 * u + 50.0 * u**2 - 518.0 * u**3 + 6354.0 * u**4)


def standard_interval_moments(alpha: Float[Array, ""], beta: Float[Array, ""]):
    """(log Z, mean, variance) of N(0, 1) restricted to [α, β], α < β (±inf allowed)."""
    # Beyond 1e100 standard deviations every bound is as good as infinite (and z² still finite).
    alpha = jnp.clip(jnp.asarray(alpha, dtype=float), -_FAR, _FAR)
    beta = jnp.clip(jnp.asarray(beta, dtype=float), -_FAR, _FAR)
    mirror = alpha + beta > 0.0
    a = jnp.where(mirror, -beta, alpha)
    b = jnp.where(mirror, -alpha, beta)
    log_z = _log_mass(a, b)
    a_finite = a > -_FAR
    b_finite = b < _FAR
    ratio_a = jnp.where(a_finite, jnp.exp(_log_pdf(jnp.where(a_finite, a, 0.0)) - log_z), 0.0)
    ratio_b = jnp.where(b_finite, jnp.exp(_log_pdf(jnp.where(b_finite, b, 0.0)) - log_z), 0.0)
    mean = ratio_a - ratio_b
    variance = 1.0 + jnp.where(a_finite, a, 0.0) * ratio_a - jnp.where(b_finite, b, 0.0) * ratio_b - mean**2
    # One-sided (−∞, b]: r = φ(b)/Φ(b) from erfcx (exact to rounding, no log differences), and the
    # series of 1 − r(r + b) where it cancels.
    one_sided = ~a_finite
    r = jnp.sqrt(2.0 / jnp.pi) / jax.scipy.special.erfcx(-b / jnp.sqrt(2.0))
    tail = one_sided & (b < -_TAIL)
    one_sided_variance = jnp.where(tail, _tail_variance(jnp.where(tail, -b, _TAIL)), 1.0 - r * (r + b))
    mean = jnp.where(one_sided, -r, mean)
    variance = jnp.where(one_sided, one_sided_variance, variance)
    width = jnp.where(a_finite & b_finite, b - a, jnp.inf)
    mean = jnp.clip(jnp.where(jnp.isfinite(mean), mean, 0.5 * (a + b)), a, b)
    variance = jnp.clip(jnp.where(jnp.isfinite(variance), variance, 0.0), 0.0, jnp.minimum(1.0, 0.25 * width**2))
    return log_z, jnp.where(mirror, -mean, mean), variance


def truncated_moments(
    mean: Float[Array, " d"], std: Float[Array, " d"], lower: Float[Array, "b d"], upper: Float[Array, "b d"]
) -> tuple[Float[Array, " d"], Float[Array, "d d"], Float[Array, ""]]:
    """Mean, covariance and log mass of N(mean, diag(std²)) restricted to the union of the disjoint
    boxes [lower_b, upper_b] (entries may be ±inf)."""
    alpha = (lower - mean) / std
    beta = (upper - mean) / std
    log_z, z_mean, z_var = jax.vmap(jax.vmap(standard_interval_moments))(alpha, beta)
    log_box = jnp.sum(log_z, axis=1)
    log_total = jax.scipy.special.logsumexp(log_box)
    weights = jnp.exp(log_box - log_total)
    box_means = mean + std * z_mean
    box_vars = std**2 * z_var
    mixture_mean = weights @ box_means
    centred = box_means - mixture_mean
    covariance = jnp.diag(weights @ box_vars) + jnp.einsum("b,bd,be->de", weights, centred, centred)
    # No box has representable mass (bounds beyond 1e100 σ): keep the untruncated moments.
    empty = ~jnp.isfinite(log_total)
    mixture_mean = jnp.where(empty, mean, mixture_mean)
    covariance = jnp.where(empty, jnp.diag(std**2), covariance)
    return mixture_mean, covariance, log_total
