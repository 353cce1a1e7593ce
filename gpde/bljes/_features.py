"""Posterior sample paths of a GP surrogate from random Fourier features (pathwise update).

Prior: by Bochner's theorem a stationary kernel σ² κ(‖(z − z')/ℓ‖²) is σ² E_ω[cos(ωᵀ(z − z'))] with
ω = u / ℓ (componentwise) and u drawn from the kernel's spectral density: standard normal for the
Gaussian kernel, multivariate Student t with 2ν degrees of freedom for Matérn ν. With m draws,
φ(z) = σ / √m [cos(ωⱼᵀz), sin(ωⱼᵀz)]ⱼ gives φ(z)ᵀφ(z') → σ² k(z, z') and the prior path
f̃(z) = φ(z)ᵀw, w ~ N(0, I_{2m}).

Posterior (Matheron's rule, "pathwise conditioning"): with ε ~ N(0, σ_n² I),
    f̃(z | y) = φ(z)ᵀw + k(z, X) (K + σ_n² I)⁻¹ (y − Φ(X) w − ε),
which has exactly the GP posterior mean and, up to the Fourier error of the prior part, the GP
posterior covariance. A path is a closed-form function of z, differentiable to any order. The
posterior mean is the same object with w = 0 and ε = 0, so the bilevel solver treats "solve the
bilevel problem of path k" and "of the posterior means" (the recommendation) alike.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..kernels import AbstractStationaryKernel, Gaussian, Matern52, Matern72

from .._errors import ConfigError
from ._surrogate import GaussianProcess

_MATERN_NU = {Matern52: 2.5, Matern72: 3.5}


def spectral_draws(kernel: AbstractStationaryKernel, key: PRNGKeyArray, count: int, dim: int) -> Float[Array, "m d"]:
    """`count` frequencies ω from the spectral density of `kernel` (its lengthscales included)."""
    normal_key, chi_key = jax.random.split(key)
    u = jax.random.normal(normal_key, (count, dim))
    if isinstance(kernel, (Matern52, Matern72)):
        nu = _MATERN_NU[type(kernel)]
        chi2 = 2.0 * jax.random.gamma(chi_key, nu, (count, 1))  # χ² with 2ν degrees of freedom
        u = u * jnp.sqrt(2.0 * nu / chi2)
    elif not isinstance(kernel, Gaussian):
        raise ConfigError(
            f"random Fourier features need the spectral density of the kernel; {type(kernel).__name__} "
            "has none here: use Gaussian, Matern52 or Matern72"
        )
    return u / jnp.exp(kernel.log_lengthscale)


class SamplePath(eqx.Module):
    """z ↦ φ(z)ᵀw + Σᵢ vᵢ σ² k(z, Xᵢ): one posterior sample path (or, with w = 0, the mean)."""

    frequencies: Float[Array, "m d"]
    amplitude: Float[Array, ""]
    weights: Float[Array, " 2m"]
    kernel: AbstractStationaryKernel
    inputs: Float[Array, "n d"]
    coef: Float[Array, " n"]  # zero on padded rows

    def features(self, z: Float[Array, " d"]) -> Float[Array, " 2m"]:
        phase = self.frequencies @ z
        scale = jnp.sqrt(self.amplitude / self.frequencies.shape[0])
        return scale * jnp.concatenate([jnp.cos(phase), jnp.sin(phase)])

    def __call__(self, z: Float[Array, " d"]) -> Float[Array, ""]:
        cross = jax.vmap(self.kernel, in_axes=(None, 0))(z, self.inputs)
        return self.features(z) @ self.weights + self.amplitude * (cross @ self.coef)

    def jet(self, z: Float[Array, " d"]) -> tuple[Float[Array, ""], Float[Array, " d"], Float[Array, "d d"]]:
        """Value, gradient and Hessian at z in closed form: one cosine and sine per frequency
        (instead of a nested autodiff pass through them), and the kernel part through its
        profile κ(s): ∇ = 2κ'(s) q, ∇² = 2κ'(s) diag(ℓ⁻²) + 4κ''(s) q qᵀ with q = (z − Xᵢ)/ℓ²."""
        m = self.frequencies.shape[0]
        phase = self.frequencies @ z
        cos, sin = jnp.cos(phase), jnp.sin(phase)
        scale = jnp.sqrt(self.amplitude / m)
        w_cos, w_sin = self.weights[:m], self.weights[m:]
        even = scale * (w_cos * cos + w_sin * sin)
        odd = scale * (w_sin * cos - w_cos * sin)
        value = jnp.sum(even)
        grad = self.frequencies.T @ odd
        hessian = -(self.frequencies.T * even) @ self.frequencies
        inverse_square = jnp.exp(-2.0 * self.kernel.log_lengthscale) * jnp.ones_like(z)
        q = (z - self.inputs) * inverse_square  # (n, d)
        s = jnp.sum((z - self.inputs) * q, axis=1)
        profile = self.kernel.profile
        k0 = jax.vmap(profile)(s)
        k1 = jax.vmap(jax.grad(profile))(s)
        k2 = jax.vmap(jax.grad(jax.grad(profile)))(s)
        weight = self.amplitude * self.coef
        value = value + weight @ k0
        grad = grad + 2.0 * (weight * k1) @ q
        hessian = hessian + 2.0 * jnp.sum(weight * k1) * jnp.diag(inverse_square) + 4.0 * (q.T * (weight * k2)) @ q
        return value, grad, hessian

    def grid(self, xs: Float[Array, "a dx"], thetas: Float[Array, "b dt"]) -> Float[Array, "a b"]:
        """Values on all pairs (xs[i], thetas[j]): by cos(p + q) = cos p cos q − sin p sin q the
        Fourier part is two matrix products, with cosines and sines of a + b phases only."""
        m = self.frequencies.shape[0]
        x_dim = xs.shape[1]
        p = xs @ self.frequencies[:, :x_dim].T
        q = thetas @ self.frequencies[:, x_dim:].T
        scale = jnp.sqrt(self.amplitude / m)
        w_cos, w_sin = self.weights[:m], self.weights[m:]
        cos_p, sin_p = jnp.cos(p), jnp.sin(p)
        fourier = (cos_p * w_cos + sin_p * w_sin) @ jnp.cos(q).T + (cos_p * w_sin - sin_p * w_cos) @ jnp.sin(q).T
        pairs = jnp.concatenate(
            [jnp.broadcast_to(xs[:, None], (xs.shape[0], thetas.shape[0], x_dim)),
             jnp.broadcast_to(thetas[None], (xs.shape[0], *thetas.shape))], axis=2
        )
        cross = jax.vmap(jax.vmap(lambda z: jax.vmap(self.kernel, in_axes=(None, 0))(z, self.inputs)))(pairs)
        return scale * fourier + self.amplitude * (cross @ self.coef)


def posterior_path(gp: GaussianProcess, key: PRNGKeyArray, n_features: int) -> SamplePath:
    """One posterior sample path of `gp` with `n_features` random features (n_features / 2
    frequencies, a cosine and a sine each)."""
    frequency_key, weight_key, noise_key = jax.random.split(key, 3)
    half = n_features // 2
    frequencies = spectral_draws(gp.kernel, frequency_key, half, gp.inputs.shape[1])
    prior = SamplePath(frequencies, gp.amplitude, jax.random.normal(weight_key, (2 * half,)), gp.kernel, gp.inputs, jnp.zeros_like(gp.coef))
    noise = jnp.sqrt(gp.noise) * jax.random.normal(noise_key, gp.coef.shape)
    residual = (gp.targets - jax.vmap(prior)(gp.inputs) - noise) * gp.mask
    coef = jax.scipy.linalg.cho_solve((gp.chol, True), residual) * gp.mask
    return eqx.tree_at(lambda p: p.coef, prior, coef)


def posterior_paths(gp: GaussianProcess, key: PRNGKeyArray, n_paths: int, n_features: int) -> SamplePath:
    """`n_paths` independent sample paths, batched along a leading axis of every leaf."""
    return jax.vmap(lambda k: posterior_path(gp, k, n_features))(jax.random.split(key, n_paths))


def mean_path(gp: GaussianProcess, n_features: int) -> SamplePath:
    """The posterior mean as a SamplePath (zero weights), with the same shapes as the paths."""
    dim = gp.inputs.shape[1]
    half = n_features // 2
    return SamplePath(jnp.zeros((half, dim)), gp.amplitude, jnp.zeros((2 * half,)), gp.kernel, gp.inputs, gp.coef)
