"""Truncated-Gaussian moments against quadrature and Monte Carlo; finiteness in the far tails, of
the moments and of the whole acquisition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from gpde.bljes._acquisition import (
    allowed_boxes,
    condition_on,
    conditioned_moments,
    information_gain,
)
from gpde.bljes._sample_optimum import BilevelOptimum
from gpde.bljes._surrogate import fit_gp
from gpde.bljes._truncation import standard_interval_moments, truncated_moments


def _quadrature(a, b):
    """log mass, mean and variance of N(0, 1) on [a, b] by adaptive quadrature of the density
    rescaled at the interval point nearest 0 (so far tails do not underflow)."""
    c = float(np.clip(0.0, a, b))

    def weight(z):
        return np.exp(-(z * z - c * c) / 2)

    lo, hi = max(a, c - 40), min(b, c + 40)
    options = {"epsabs": 0, "epsrel": 1e-13, "limit": 200}
    mass = quad(weight, lo, hi, **options)[0]
    mean = quad(lambda z: z * weight(z), lo, hi, **options)[0] / mass
    variance = quad(lambda z: (z - mean) ** 2 * weight(z), lo, hi, **options)[0] / mass
    return np.log(mass) - c * c / 2 - 0.5 * np.log(2 * np.pi), mean, variance


@pytest.mark.parametrize(
    ("a", "b", "rtol"),
    [
        (-1.0, 2.0, 1e-12),
        (0.5, np.inf, 1e-12),
        (-np.inf, -3.0, 1e-12),
        (3.0, np.inf, 1e-12),
        (29.0, np.inf, 1e-8),
        (45.0, np.inf, 1e-8),
        (-np.inf, -300.0, 1e-8),
        (5.0, 5.01, 1e-6),
        (40.0, 41.0, 1e-3),  # two-sided, far in the tail: documented loss of digits
    ],
)
def test_interval_moments_match_quadrature(a, b, rtol):
    log_z, mean, variance = (float(v) for v in standard_interval_moments(a, b))
    ref_log_z, ref_mean, ref_variance = _quadrature(a, b)
    np.testing.assert_allclose(log_z, ref_log_z, rtol=1e-10)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-9)
    np.testing.assert_allclose(variance, ref_variance, rtol=rtol)


@pytest.mark.parametrize("value_bound", [False, True])
def test_union_of_boxes_matches_monte_carlo(value_bound):
    rng = np.random.default_rng(0)
    mean = np.array([0.3, -0.2])
    std = np.array([1.2, 0.7])
    f_star, a, tau = 0.1, -0.5, 0.4
    lower, upper = allowed_boxes(jnp.asarray(a), tau, jnp.asarray(f_star), 0, value_bound)
    got_mean, got_cov, log_mass = truncated_moments(jnp.asarray(mean), jnp.asarray(std), lower, upper)
    samples = mean + std * rng.standard_normal((2_000_000, 2))
    f, g = samples[:, 0], samples[:, 1]
    optimal = ((g >= a) if value_bound else True) & (g < a + tau)
    keep = (g >= a + tau) | (optimal & (f >= f_star))
    kept = samples[keep]
    np.testing.assert_allclose(np.exp(float(log_mass)), keep.mean(), atol=2e-3)
    np.testing.assert_allclose(got_mean, kept.mean(axis=0), atol=3e-3)
    np.testing.assert_allclose(got_cov, np.cov(kept, rowvar=False), atol=5e-3)
    assert abs(float(got_cov[0, 1])) > 1e-3  # the mixture correlates f and g


@pytest.mark.parametrize("value_bound", [False, True])
def test_constrained_boxes_match_monte_carlo(value_bound):
    rng = np.random.default_rng(1)
    mean = np.array([0.0, 0.2, 0.1, -0.3])
    std = np.array([1.0, 0.5, 0.8, 1.1])
    f_star, a, tau = -0.4, 0.0, 0.3
    lower, upper = allowed_boxes(jnp.asarray(a), tau, jnp.asarray(f_star), 2, value_bound)
    got_mean, got_cov, _ = truncated_moments(jnp.asarray(mean), jnp.asarray(std), lower, upper)
    s = mean + std * rng.standard_normal((2_000_000, 4))
    f, g, c1, c2 = s.T
    optimal = ((g >= a) if value_bound else True) & (g < a + tau)
    keep = (g >= a + tau) | (optimal & (f >= f_star)) | (optimal & (f < f_star) & ((c1 < 0) | (c2 < 0)))
    np.testing.assert_allclose(got_mean, s[keep].mean(axis=0), atol=3e-3)
    np.testing.assert_allclose(got_cov, np.cov(s[keep], rowvar=False), atol=5e-3)


@pytest.mark.parametrize("offset", [1e3, 1e8, -1e3, -1e8, 1e150])
def test_moments_are_finite_far_in_the_tails(offset):
    lower, upper = allowed_boxes(jnp.asarray(offset), 0.01, jnp.asarray(-offset), 0)
    mean, cov, _ = truncated_moments(jnp.zeros(2), jnp.ones(2), lower, upper)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))
    assert np.all(np.linalg.eigvalsh(np.asarray(cov)) >= -1e-12)


def test_acquisition_is_finite_everywhere_including_the_tails():
    rng = np.random.default_rng(2)
    inputs = rng.uniform(size=(10, 2))
    mask = np.ones(10, dtype=bool)
    upper, _ = fit_gp(inputs, np.sin(4 * inputs[:, 0]) + inputs[:, 1], mask)
    lower, _ = fit_gp(inputs, (inputs[:, 0] - inputs[:, 1]) ** 2, mask)
    k = 5
    optima = BilevelOptimum(
        x=jnp.asarray(rng.uniform(size=(k, 1))),
        theta=jnp.asarray(rng.uniform(size=(k, 1))),
        f=jnp.array([-1e6, -3.0, 0.0, 3.0, 1e6]),
        g=jnp.array([-1e6, -3.0, 0.0, 3.0, 1e6]),
        c=jnp.zeros((k, 0)),
    )
    anchors = condition_on(upper, lower, None, optima)
    grid = jnp.stack(jnp.meshgrid(jnp.linspace(0, 1, 15), jnp.linspace(0, 1, 15)), -1).reshape(-1, 2)
    grid = jnp.concatenate([grid, jnp.concatenate([optima.x, optima.theta], axis=1)])  # at the anchors too
    def gains(z, bounds):
        return information_gain(upper, lower, None, anchors, optima.f, z, bounds, jnp.asarray(0.01))

    for bounds in ([-1e8] * k, [1e8] * k, [-2.0, 0.0, 1.0, 40.0, -40.0]):
        values = jax.vmap(gains, in_axes=(0, None))(grid, jnp.asarray(bounds))
        for part in (values.coupled, values.upper, values.lower):
            assert np.all(np.isfinite(np.asarray(part)))


def _one_plus_one_surrogates(rng):
    inputs = rng.uniform(size=(10, 2))
    mask = np.ones(10, dtype=bool)
    upper, _ = fit_gp(inputs, np.sin(4 * inputs[:, 0]) + inputs[:, 1], mask)
    lower, _ = fit_gp(inputs, (inputs[:, 0] - inputs[:, 1]) ** 2, mask)
    return upper, lower


def test_no_gain_from_the_lower_level_where_nothing_can_beat_f_star():
    """Where no outcome at z can beat any f*_k, observing z says nothing about Ω through the
    truncation: the gain must be exactly that of the pseudo-observations (Gaussian conditioning,
    computed here from the conditioned variances). The former acquisition (value_bound: g ≥ a_k(x)
    at every x) found a large gain there, from learning min_θ g(x, θ) at x irrelevant to Ω."""
    rng = np.random.default_rng(3)
    upper, lower = _one_plus_one_surrogates(rng)
    k = 4
    optima = BilevelOptimum(
        x=jnp.asarray(rng.uniform(size=(k, 1))),
        theta=jnp.asarray(rng.uniform(size=(k, 1))),
        f=jnp.full(k, -60.0),  # 60 standard units below anything the surrogate allows
        g=jnp.zeros(k),
        c=jnp.zeros((k, 0)),
    )
    anchors = condition_on(upper, lower, None, optima)
    z = jnp.array([0.8, 0.3])
    variances = []
    for gp, anchor in ((upper, anchors[0]), (lower, anchors[1])):
        _, var, _, var_k = conditioned_moments(gp, z, anchor)
        variances.append((float(var), np.asarray(var_k), float(gp.noise)))
    expected = [0.5 * np.log(v + n) - np.mean(0.5 * np.log(vk + n)) for v, vk, n in variances]
    g_mean = float(lower.mean(z))
    bounds = jnp.full(k, g_mean)  # a_k(x) at the predictive mean of g: half its mass below a
    tau = jnp.asarray(0.05)

    fixed = information_gain(upper, lower, None, anchors, optima.f, z, bounds, tau)
    np.testing.assert_allclose(float(fixed.upper), expected[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(fixed.lower), expected[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(fixed.coupled), sum(expected), rtol=1e-9, atol=1e-12)
    former = information_gain(upper, lower, None, anchors, optima.f, z, bounds, tau, value_bound=True)
    assert float(former.lower) > expected[1] + 0.3


def test_gain_where_a_lower_optimal_point_may_beat_f_star():
    """Where g may be lower-optimal and f may beat f*, the truncation carries information: the
    gain exceeds that of the pseudo-observations alone (f_star = −60 above)."""
    rng = np.random.default_rng(3)
    upper, lower = _one_plus_one_surrogates(rng)
    k = 4
    z = jnp.array([0.8, 0.3])
    optima = BilevelOptimum(
        x=jnp.asarray(rng.uniform(size=(k, 1))),
        theta=jnp.asarray(rng.uniform(size=(k, 1))),
        f=jnp.full(k, float(upper.mean(z))),
        g=jnp.zeros(k),
        c=jnp.zeros((k, 0)),
    )
    anchors = condition_on(upper, lower, None, optima)
    bounds = jnp.full(k, float(lower.mean(z)))
    hopeless = optima.f - 60.0
    with_hope = information_gain(upper, lower, None, anchors, optima.f, z, bounds, jnp.asarray(0.05))
    without = information_gain(upper, lower, None, anchors, hopeless, z, bounds, jnp.asarray(0.05))
    assert float(with_hope.coupled) > float(without.coupled) + 0.05
    assert float(with_hope.lower) > float(without.lower) + 0.01
