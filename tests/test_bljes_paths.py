"""BLJES surrogates and sample paths: RFF covariance vs the exact kernel, pathwise posterior vs
the exact GP posterior, closed-form jets and grids vs autodiff and pointwise evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import ConfigError
from gpde.bljes._features import SamplePath, posterior_paths, spectral_draws
from gpde.bljes._surrogate import fit_gp
from gpde.kernels import Gaussian, Matern52, RationalQuadratic

POINTS = jnp.array([[0.1, 0.2, 0.3], [0.15, 0.25, 0.3], [0.5, 0.4, 0.1], [0.9, 0.9, 0.8]])


def _prior_path(kernel, key, n_features, amplitude):
    frequency_key, weight_key = jax.random.split(key)
    frequencies = spectral_draws(kernel, frequency_key, n_features // 2, POINTS.shape[1])
    weights = jax.random.normal(weight_key, (n_features,))
    return SamplePath(frequencies, jnp.asarray(amplitude), weights, kernel, jnp.zeros((1, 3)), jnp.zeros(1))


@pytest.mark.parametrize("kernel", [Gaussian(jnp.array([0.3, 0.5, 1.0])), Matern52(jnp.array([0.2, 0.6, 0.4]))])
def test_fourier_prior_paths_reproduce_the_kernel_covariance(kernel):
    amplitude = 1.7
    paths = 4000
    values = jax.vmap(lambda k: jax.vmap(_prior_path(kernel, k, 100, amplitude))(POINTS))(
        jax.random.split(jax.random.PRNGKey(0), paths)
    )
    empirical = np.cov(np.asarray(values), rowvar=False)
    exact = amplitude * np.asarray(jax.vmap(jax.vmap(kernel, in_axes=(None, 0)), in_axes=(0, None))(POINTS, POINTS))
    # Monte Carlo standard error of a covariance entry ≈ amplitude · √2 / √paths ≈ 0.04.
    np.testing.assert_allclose(empirical, exact, atol=0.15)
    assert np.max(np.abs(empirical - exact)) > 0  # a real estimate, not the formula itself


def test_spectral_draws_reject_kernels_without_a_density():
    with pytest.raises(ConfigError, match="spectral density"):
        spectral_draws(RationalQuadratic(0.5), jax.random.PRNGKey(0), 10, 3)


def _fitted(n=12, noise_floor=1e-6):
    rng = np.random.default_rng(3)
    inputs = rng.uniform(size=(n + 4, 3))
    values = np.sin(3 * inputs[:, 0]) + inputs[:, 1] * inputs[:, 2]
    mask = np.arange(n + 4) < n  # four padded rows
    values[~mask] = np.nan
    gp, _ = fit_gp(inputs, values, mask, noise_floor=noise_floor)
    return gp, inputs, values, mask


def test_padding_does_not_change_the_posterior():
    gp, inputs, values, mask = _fitted()
    rng = np.random.default_rng(5)
    z = jnp.asarray(rng.uniform(size=3))
    # Exact posterior from the valid rows only, with the fitted hyperparameters.
    x = inputs[mask]
    k = np.asarray(jax.vmap(jax.vmap(gp.prior, in_axes=(None, 0)), in_axes=(0, None))(x, x))
    k_z = np.asarray(jax.vmap(gp.prior, in_axes=(None, 0))(z, x))
    y = np.asarray(gp.to_standard(values[mask]))
    solve = np.linalg.solve(k + float(gp.noise) * np.eye(len(x)), np.column_stack([y, k_z]))
    mean, variance = gp.mean_and_variance(z)
    np.testing.assert_allclose(mean, k_z @ solve[:, 0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(variance, float(gp.amplitude) - k_z @ solve[:, 1], rtol=1e-6, atol=1e-10)


def test_pathwise_posterior_matches_the_gp_posterior():
    gp, *_ = _fitted(noise_floor=1e-4)
    paths = posterior_paths(gp, jax.random.PRNGKey(1), 3000, 400)
    values = np.asarray(jax.vmap(lambda p: jax.vmap(p)(POINTS))(paths))
    means, variances = jax.vmap(gp.mean_and_variance)(POINTS)
    whitened = jax.vmap(gp.whitened)(POINTS)
    prior = jax.vmap(jax.vmap(gp.prior, in_axes=(None, 0)), in_axes=(0, None))(POINTS, POINTS)
    covariance = np.asarray(prior - whitened @ whitened.T)
    sd = np.sqrt(np.asarray(variances))
    np.testing.assert_allclose(values.mean(axis=0), means, atol=5 * sd.max() / np.sqrt(3000) + 1e-6)
    np.testing.assert_allclose(np.cov(values, rowvar=False), covariance, atol=0.1 * float(gp.amplitude))


def test_closed_form_jet_and_grid_match_autodiff():
    gp, *_ = _fitted()
    path = jax.tree.map(lambda leaf: leaf[0], posterior_paths(gp, jax.random.PRNGKey(2), 1, 200))
    z = jnp.array([0.31, 0.62, 0.17])
    value, grad, hessian = path.jet(z)
    np.testing.assert_allclose(value, path(z), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(path)(z), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(hessian, jax.hessian(path)(z), rtol=1e-8, atol=1e-8)
    xs = jnp.array([[0.1], [0.7]])
    thetas = jnp.array([[0.2, 0.3], [0.9, 0.1], [0.5, 0.5]])
    pointwise = jax.vmap(lambda x: jax.vmap(lambda t: path(jnp.concatenate([x, t])))(thetas))(xs)
    np.testing.assert_allclose(path.grid(xs, thetas), pointwise, rtol=1e-10, atol=1e-12)


def test_fit_rejects_bad_input():
    inputs = np.zeros((3, 2))
    with pytest.raises(ConfigError, match="without any observation"):
        fit_gp(inputs, np.zeros(3), np.zeros(3, dtype=bool))
    with pytest.raises(ConfigError, match="unknown surrogate kernel"):
        fit_gp(inputs, np.zeros(3), np.ones(3, dtype=bool), kernel="laplace")
