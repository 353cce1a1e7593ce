"""Surrogate hyperparameter uncertainty: one hyperparameter draw per sample path (Laplace).

A surrogate fitted by maximum a posteriori to clustered queries can be confidently wrong away from
them: on gp-2+2-tied the lower-level GP fitted to BLJES's queries (clustered near x*) prefers
lengthscales twice the truth and is 2–3 posterior sd wrong about the other basin of g
(benchmarks/bljes-results.md), so all K sample paths agree on the wrong lower-level optimum. With
this option every path k gets its own hyperparameters ψ_k from an approximate posterior, so paths
drawn with shorter lengthscales can disagree.

Approximate posterior (Laplace, in the unconstrained space the surrogate is fitted in):
ψ = (log ℓ₁ … log ℓ_d, log σ), the noise variance held at its fitted value;
−log p(ψ | y) = ½ yᵀ(K_ψ + σ_n² I)⁻¹ y + ½ log det(K_ψ + σ_n² I) − log prior(ψ) + const, the same
objective and priors as the fit (`_surrogate.py`). Around the fitted ψ̂, p(ψ | y) ≈ N(ψ̂, H⁻¹) with H
the Hessian of that objective (autodiff). Eigenvalues of H below the prior's precision (1: the
priors have sd 1 in log ℓ and log σ) are raised to it, so that no direction is wider than the prior
(the fit stops after a fixed number of Adam steps, so H is not always positive definite there).
Draws of log ℓ are clipped to the fit's range. A temperature t multiplies the covariance,
N(ψ̂, t H⁻¹): the Laplace approximation of the tempered posterior p(ψ | y)^(1/t), an interpolation
between the fitted hyperparameters (t → 0) and the full Laplace spread (t = 1).

Each draw gives a GP on the same standardized data (same y_mean and y_scale, so the sample optima
f*_k of different paths are in the same units). The acquisition then uses, for path k, the
moments of GP_k: α(z) = (1/K) Σ_k [H(y | GP_k) − H(y | GP_k, Ω_k)], the average over
hyperparameter draws of the one-sample gain (as JES does with hyperparameter samples); with one
shared GP it is the usual α. Constraint surrogates keep their fitted hyperparameters.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._surrogate import (
    _LOG_LENGTHSCALE_RANGE,
    _PRIOR_LOG_AMPLITUDE,
    _PRIOR_LOG_LENGTHSCALE,
    GaussianProcess,
    _masked_gram,
)

#: Smallest eigenvalue of the Laplace precision: that of the log-normal priors (sd 1).
_MIN_PRECISION = 1.0


def _with(gp: GaussianProcess, psi: Float[Array, " p"]) -> GaussianProcess:
    """The GP on `gp`'s data with log ℓ = psi[:-1], log σ = psi[-1] (noise unchanged)."""
    kernel = eqx.tree_at(lambda k: k.log_lengthscale, gp.kernel, psi[:-1])
    amplitude = jnp.exp(2.0 * psi[-1])
    chol = jnp.linalg.cholesky(_masked_gram(kernel, amplitude, gp.noise, gp.inputs, gp.mask))
    coef = jax.scipy.linalg.cho_solve((chol, True), gp.targets) * gp.mask
    return GaussianProcess(kernel, amplitude, gp.noise, gp.inputs, gp.mask, chol, coef, gp.targets, gp.y_mean, gp.y_scale)


def _negative_log_posterior(psi, gp: GaussianProcess):
    conditioned = _with(gp, psi)
    fit = 0.5 * gp.targets @ conditioned.coef + jnp.sum(jnp.log(jnp.diag(conditioned.chol)))
    prior = 0.5 * jnp.sum(((psi[:-1] - _PRIOR_LOG_LENGTHSCALE[0]) / _PRIOR_LOG_LENGTHSCALE[1]) ** 2)
    prior = prior + 0.5 * ((psi[-1] - _PRIOR_LOG_AMPLITUDE[0]) / _PRIOR_LOG_AMPLITUDE[1]) ** 2
    return fit + prior


def fitted_psi(gp: GaussianProcess) -> Float[Array, " p"]:
    """ψ̂ = (log ℓ, log σ) of a fitted GP."""
    return jnp.concatenate([jnp.broadcast_to(gp.kernel.log_lengthscale, gp.inputs.shape[1:]),
                            0.5 * jnp.log(gp.amplitude)[None]])


def laplace_covariance(gp: GaussianProcess) -> Float[Array, "p p"]:
    """H⁻¹ at ψ̂ (eigenvalues of H raised to at least the prior precision)."""
    hessian = jax.hessian(_negative_log_posterior)(fitted_psi(gp), gp)
    values, vectors = jnp.linalg.eigh(0.5 * (hessian + hessian.T))
    values = jnp.maximum(jnp.where(jnp.isfinite(values), values, _MIN_PRECISION), _MIN_PRECISION)
    return (vectors / values) @ vectors.T


def hyperparameter_draws(gp: GaussianProcess, key: PRNGKeyArray, count: int,
                         temperature: float = 1.0) -> GaussianProcess:
    """`count` GPs on `gp`'s data, hyperparameters drawn from the Laplace posterior with its
    covariance multiplied by `temperature` (1: the Laplace approximation itself; below 1 the draws
    stay closer to the fit); batched along a leading axis of every leaf."""
    psi = fitted_psi(gp)
    covariance = temperature * laplace_covariance(gp)
    root = jnp.linalg.cholesky(covariance + 1e-12 * jnp.eye(psi.shape[0]))
    draws = psi + jax.random.normal(key, (count, psi.shape[0])) @ root.T
    draws = draws.at[:, :-1].set(jnp.clip(draws[:, :-1], *_LOG_LENGTHSCALE_RANGE))
    return jax.vmap(lambda p: _with(gp, p))(draws)
