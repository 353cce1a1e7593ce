"""Exact GP regression surrogates of the black boxes f, g (and c) on the unit box.

Each surrogate is a zero-mean GP on standardized outputs, y_std = (y − mean(y)) / std(y), with the
kernel σ² k_ℓ(z, z') (k_ℓ a stationary kernel of `kernels/` with one lengthscale per input
dimension) and Gaussian noise of variance σ_n² = floor + exp(raw). The hyperparameters
(log ℓ, log σ, raw) maximize the log marginal likelihood plus weak log-normal priors (log ℓ ~
N(log 0.5, 1), log σ ~ N(0, 1), log σ_n² ~ N(log 1e-3, 3²)) which keep a fit on three points
well posed; optax Adam, several restarts vmapped (the previous fit, and fixed defaults), the best
kept. log ℓ is clipped to [log 0.01, log 20].

Constraint surrogates are scaled but not centred, y_std = y / rms(y) (`centred=False`): every user
of c̃ (the penalty of the bilevel solver, the feasible boxes of the acquisition, the trusted-random
feasibility mask) tests c̃ ≥ 0, and only without the shift is that the constraint c ≥ 0 itself.
Centred, it would test c ≥ mean of the observed c, which on SMD12 is off by hundreds.

Shapes never change during a run: the data are padded to the budget and masked. A padded row is
decoupled from the rest (its Gram row and column are zero, its diagonal 1, its target 0), so the
posterior equals the one of the unpadded data exactly, and fitting and prediction compile once.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float

from ..kernels import AbstractStationaryKernel, Gaussian, Matern52, Matern72

from .._errors import ConfigError

#: Kernel names accepted by the BLJES surrogates (stationary, with a known spectral density).
KERNELS = {"matern52": Matern52, "matern72": Matern72, "gaussian": Gaussian}

_LOG_LENGTHSCALE_RANGE = (float(np.log(0.01)), float(np.log(20.0)))
_PRIOR_LOG_LENGTHSCALE = (float(np.log(0.5)), 1.0)
_PRIOR_LOG_AMPLITUDE = (0.0, 1.0)
_PRIOR_LOG_NOISE = (float(np.log(1e-3)), 3.0)


class Hyperparameters(eqx.Module):
    """Unconstrained GP hyperparameters (what the optimizer sees)."""

    log_lengthscale: Float[Array, " d"]
    log_amplitude: Float[Array, ""]
    raw_noise: Float[Array, ""]


def default_hyperparameters(dim: int, lengthscale: float = 0.3, noise: float = 1e-3) -> Hyperparameters:
    return Hyperparameters(
        jnp.full((dim,), np.log(lengthscale)), jnp.zeros(()), jnp.asarray(np.log(noise))
    )


class GaussianProcess(eqx.Module):
    """The posterior of a GP on padded data; mean and variance are in standardized units.

    `coef` = (K + σ_n² I)⁻¹ y_std on the valid rows (zero on padded rows); `chol` the Cholesky
    factor of the padded, masked K + σ_n² I.
    """

    kernel: AbstractStationaryKernel
    amplitude: Float[Array, ""]  # σ², prior variance
    noise: Float[Array, ""]  # σ_n², observation noise variance
    inputs: Float[Array, "n d"]
    mask: Float[Array, " n"]
    chol: Float[Array, "n n"]
    coef: Float[Array, " n"]
    targets: Float[Array, " n"]  # the standardized observations, zero on padded rows
    y_mean: Float[Array, ""]
    y_scale: Float[Array, ""]

    def prior(self, a: Float[Array, " d"], b: Float[Array, " d"]) -> Float[Array, ""]:
        return self.amplitude * self.kernel(a, b)

    def cross(self, z: Float[Array, " d"]) -> Float[Array, " n"]:
        """k(z, X) with the padded rows zeroed."""
        return jax.vmap(self.prior, in_axes=(None, 0))(z, self.inputs) * self.mask

    def mean(self, z: Float[Array, " d"]) -> Float[Array, ""]:
        return self.cross(z) @ self.coef

    def whitened(self, z: Float[Array, " d"]) -> Float[Array, " n"]:
        """L⁻¹ k(X, z): posterior covariances are prior minus inner products of these."""
        return jax.scipy.linalg.solve_triangular(self.chol, self.cross(z), lower=True)

    def mean_and_variance(self, z: Float[Array, " d"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        v = self.whitened(z)
        variance = self.amplitude - v @ v
        return self.mean(z), jnp.maximum(variance, 1e-12 * self.amplitude)

    def to_standard(self, y):
        return (y - self.y_mean) / self.y_scale

    def from_standard(self, y):
        return self.y_mean + self.y_scale * y


def _kernel(name: str, log_lengthscale) -> AbstractStationaryKernel:
    kernel = KERNELS[name](1.0)
    return eqx.tree_at(lambda k: k.log_lengthscale, kernel, log_lengthscale)


def _unpack(params: Hyperparameters, noise_floor: float):
    log_lengthscale = jnp.clip(params.log_lengthscale, *_LOG_LENGTHSCALE_RANGE)
    return log_lengthscale, jnp.exp(2.0 * params.log_amplitude), noise_floor + jnp.exp(params.raw_noise)


def _masked_gram(kernel, amplitude, noise, inputs, mask):
    gram = amplitude * jax.vmap(jax.vmap(kernel, in_axes=(None, 0)), in_axes=(0, None))(inputs, inputs)
    outer = mask[:, None] * mask[None, :]
    return gram * outer + jnp.diag(noise * mask + (1.0 - mask))


def _standardize(values, mask, centred: bool = True):
    count = jnp.maximum(jnp.sum(mask), 1.0)
    mean = jnp.sum(values * mask) / count if centred else jnp.zeros(())
    spread = jnp.sqrt(jnp.sum(((values - mean) * mask) ** 2) / count)
    # One point, or all equal: no scale to learn from; keep the units.
    scale = jnp.where(spread > 1e-12 * (1.0 + jnp.abs(mean)), spread, 1.0)
    return (values - mean) * mask / scale, mean, scale


def _log_prior(params: Hyperparameters) -> Float[Array, ""]:
    def normal(value, mean_sd):
        return jnp.sum(-0.5 * ((value - mean_sd[0]) / mean_sd[1]) ** 2)

    return (
        normal(params.log_lengthscale, _PRIOR_LOG_LENGTHSCALE)
        + normal(params.log_amplitude, _PRIOR_LOG_AMPLITUDE)
        + normal(params.raw_noise, _PRIOR_LOG_NOISE)
    )


def _posterior(kernel_name, params, noise_floor, inputs, standardized, mask, y_mean, y_scale):
    log_lengthscale, amplitude, noise = _unpack(params, noise_floor)
    kernel = _kernel(kernel_name, log_lengthscale)
    chol = jnp.linalg.cholesky(_masked_gram(kernel, amplitude, noise, inputs, mask))
    coef = jax.scipy.linalg.cho_solve((chol, True), standardized) * mask
    return GaussianProcess(kernel, amplitude, noise, inputs, mask, chol, coef, standardized, y_mean, y_scale)


def _objective(params, kernel_name, noise_floor, inputs, standardized, mask):
    """Negative log marginal likelihood (constants dropped) minus the log prior."""
    gp = _posterior(kernel_name, params, noise_floor, inputs, standardized, mask, 0.0, 1.0)
    fit = 0.5 * standardized @ gp.coef + jnp.sum(jnp.log(jnp.diag(gp.chol)))
    value = fit - _log_prior(params)
    return jnp.where(jnp.isfinite(value), value, jnp.inf)


@eqx.filter_jit
def _fit(starts, inputs, values, mask, kernel_name, noise_floor, steps, learning_rate, centred):
    standardized, y_mean, y_scale = _standardize(values, mask, centred)
    optimizer = optax.adam(learning_rate)

    def descend(params):
        def step(carry, _):
            params, state, best, best_value = carry
            value, grads = jax.value_and_grad(_objective)(params, kernel_name, noise_floor, inputs, standardized, mask)
            better = value < best_value
            best = jax.tree.map(lambda new, old: jnp.where(better, new, old), params, best)
            best_value = jnp.where(better, value, best_value)
            grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)
            updates, state = optimizer.update(grads, state)
            return (optax.apply_updates(params, updates), state, best, best_value), None

        carry = (params, optimizer.init(params), params, jnp.inf)
        (_, _, best, best_value), _ = jax.lax.scan(step, carry, None, length=steps)
        return best, best_value

    best, best_values = jax.vmap(descend)(starts)
    index = jnp.argmin(best_values)
    params = jax.tree.map(lambda leaf: leaf[index], best)
    params = eqx.error_if(
        params,
        ~jnp.isfinite(best_values[index]),
        "GP surrogate fit failed: no restart reached a finite marginal likelihood (duplicate "
        "inputs with a tiny noise floor?); raise noise_floor",
    )
    gp = _posterior(kernel_name, params, noise_floor, inputs, standardized, mask, y_mean, y_scale)
    return gp, params


def fit_gp(
    inputs: Float[np.ndarray, "n d"],
    values: Float[np.ndarray, " n"],
    mask: Bool[np.ndarray, " n"],
    *,
    kernel: str = "matern52",
    noise_floor: float = 1e-6,
    warm_start: Hyperparameters | None = None,
    steps: int = 150,
    learning_rate: float = 0.05,
    centred: bool = True,
) -> tuple[GaussianProcess, Hyperparameters]:
    """Fit a GP to the rows of (inputs, values) where `mask` is true; the other rows are padding
    (their values are ignored, NaN allowed). Inputs in the unit box. Returns the posterior and the
    fitted hyperparameters (pass them as `warm_start` to the next fit). `centred=False` for a
    constraint: standardized zero stays the constraint's zero (module docstring)."""
    if kernel not in KERNELS:
        raise ConfigError(f"unknown surrogate kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    if not noise_floor > 0:
        raise ConfigError(f"noise_floor must be > 0, got {noise_floor}")
    inputs = jnp.asarray(inputs, dtype=float)
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ConfigError("cannot fit a GP surrogate without any observation")
    values = jnp.asarray(np.where(mask, values, 0.0), dtype=float)
    dim = inputs.shape[1]
    # Three restarts always (the warm start takes the place of a third default), so that the
    # compiled shapes do not change between iterations.
    first = warm_start if warm_start is not None else default_hyperparameters(dim, lengthscale=0.1)
    candidates = [first, default_hyperparameters(dim), default_hyperparameters(dim, lengthscale=1.0, noise=1e-2)]
    starts = jax.tree.map(lambda *leaves: jnp.stack(leaves), *candidates)
    return _fit(starts, inputs, values, jnp.asarray(mask, dtype=float), kernel, float(noise_floor), int(steps), float(learning_rate),
                bool(centred))
