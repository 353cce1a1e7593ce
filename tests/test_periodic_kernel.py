"""The periodic Gaussian kernel (gpde.kernels.PeriodicGaussian): its value against the Gaussian
kernel of the circle embedding, periodicity of the kernel and of its operator Gram blocks, and
every operator Gram block against nested finite differences of the plain kernel function.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import Evaluation, Laplacian, Partial, SecondPartial, operator_gram
from gpde.kernels import PeriodicGaussian
from helpers import finite_difference_gram

PERIOD = 2.0
T, X = 0, 1
OPERATORS = (Evaluation(), Partial(T), Partial(X), SecondPartial(X, X), SecondPartial(T, X), Laplacian())


def _kernel():
    return PeriodicGaussian(jnp.array([0.4, 0.3]), period=PERIOD, periodic_dims=(X,))


def _points(seed, n):
    rng = np.random.default_rng(seed)
    return jnp.asarray(np.column_stack([rng.uniform(0.0, 1.0, n), rng.uniform(-1.0, 1.0, n)]))


_gram = eqx.filter_jit(operator_gram)


def test_value_is_the_gaussian_of_the_circle_embedding():
    # x ↦ (t, R cos(2πx/P), R sin(2πx/P)) with R = P/(2π); |chord|² = (2R sin(πh/P))², so the
    # Gaussian kernel of the embedded points is the periodic kernel (written out here from that
    # definition, not from the module's formula).
    kernel, ell = _kernel(), np.array([0.4, 0.3])
    x, y = np.asarray(_points(0, 6)), np.asarray(_points(1, 6))
    radius = PERIOD / (2 * np.pi)

    def embed(p):
        angle = 2 * np.pi * p[:, X] / PERIOD
        return np.column_stack([p[:, T] / ell[0], radius * np.cos(angle) / ell[1], radius * np.sin(angle) / ell[1]])

    ex, ey = embed(x), embed(y)
    expected = np.exp(-0.5 * ((ex[:, None, :] - ey[None, :, :]) ** 2).sum(-1))
    got = np.asarray(jax.vmap(lambda a: jax.vmap(lambda b: kernel(a, b))(jnp.asarray(y)))(jnp.asarray(x)))
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
    # Positive definite on distinct points: the Gram matrix has a Cholesky factor.
    gram = np.asarray(_gram(kernel, (Evaluation(),), _points(2, 30), (Evaluation(),), _points(2, 30)))[0, 0]
    assert np.min(np.linalg.eigvalsh(gram)) > 0


def test_gram_blocks_are_periodic_in_x_only():
    kernel = _kernel()
    x, y = _points(3, 5), _points(4, 4)
    base = np.asarray(_gram(kernel, OPERATORS, x, OPERATORS, y))
    shift = jnp.array([0.0, PERIOD])
    for sx, sy in ((1, 0), (0, -1), (2, 1)):
        shifted = np.asarray(_gram(kernel, OPERATORS, x + sx * shift, OPERATORS, y + sy * shift))
        np.testing.assert_allclose(shifted, base, rtol=1e-11, atol=1e-11)
    # Not periodic in t: shifting t by the period changes the blocks.
    moved = np.asarray(_gram(kernel, OPERATORS, x + jnp.array([PERIOD, 0.0]), OPERATORS, y))
    assert np.max(np.abs(moved - base)) > 1e-2 * np.max(np.abs(base))


def _fd_gram(kernel, x, y, h):
    """Nested central differences on the 3×3 stencil {−h, 0, h}² in each argument."""
    return finite_difference_gram(kernel, OPERATORS, x, y, h)


def test_every_operator_block_matches_finite_differences():
    # Central differences are second order: Richardson extrapolation of steps h and h/2 leaves
    # O(h⁴) ~ (h/ℓ)⁴ ≈ 2e-7 relative at h = 8e-3, ℓ = 0.3, plus rounding ~ 64 ε/(h/2)⁴ / |block|
    # (|Δₓ Δᵧ k| ~ 3/ℓ⁴ ≈ 400) ≈ 5e-7. Measured worst deviation (2026-11-29), relative to each
    # block's largest entry: 3.2e-7 at h = 8e-3 and at 4e-3 (rounding-dominated), while the plain
    # second-order differences deviate 1.5e-3 and 3.7e-4 (4× per halving, as they should). The
    # bound 1e-5 is 30× above; a wrong factor (a missing ½, a sign) is off by O(1).
    kernel = _kernel()
    x = _points(5, 4)
    y = jnp.concatenate([x[:2], _points(6, 3)])  # coincident pairs (r = 0) included
    y = y.at[3].set(x[2] + jnp.array([0.1, PERIOD - 0.05]))  # a pair that sees the period
    h = 8e-3
    fd = (4 * _fd_gram(kernel, x, y, h / 2) - _fd_gram(kernel, x, y, h)) / 3
    gram = np.asarray(_gram(kernel, OPERATORS, x, OPERATORS, y))
    scale = np.max(np.abs(gram), axis=(2, 3), keepdims=True)
    worst = np.max(np.abs(gram - fd) / scale)
    assert worst < 1e-5, worst


@pytest.mark.parametrize(
    "arguments",
    [dict(lengthscale=-1.0), dict(period=0.0), dict(periodic_dims=()), dict(periodic_dims=(1, 1)), dict(periodic_dims=(-1,))],
)
def test_invalid_settings_are_rejected(arguments):
    with pytest.raises(ValueError):
        PeriodicGaussian(**{"lengthscale": 1.0, "period": 1.0, "periodic_dims": (0,), **arguments})


def test_row_batches_of_the_feature_gram_equal_one_vmap(monkeypatch):
    """Large Gram blocks are built in batches of rows (bounded memory, each batch recomputed in
    the reverse pass); values and lengthscale gradients equal the one-vmap result, remainder
    batch included."""
    import gpde.solve._feature_gram as feature_gram_module

    kernel = PeriodicGaussian(jnp.array([0.5, 0.7]), period=10.0, periodic_dims=(1,))
    x = jax.random.uniform(jax.random.PRNGKey(0), (15, 2))
    y = jax.random.uniform(jax.random.PRNGKey(1), (10, 2))
    operators = (Evaluation(), SecondPartial(1, 1))

    whole = feature_gram_module.feature_gram(kernel, operators, x, operators, y)
    first_order = (Evaluation(), Partial(1))  # the gradient check: batching is the same, compiling cheaper
    weights = jax.random.normal(jax.random.PRNGKey(2), (2, 2, 15, 10))

    def weighted_sum(lengthscale):
        k = PeriodicGaussian(lengthscale, period=10.0, periodic_dims=(1,))
        return jnp.sum(weights * feature_gram_module.feature_gram(k, first_order, x, first_order, y))

    gradient = jax.grad(weighted_sum)(kernel.lengthscale)
    monkeypatch.setattr(feature_gram_module, "_PAIRS_PER_BATCH", 4 * 10)  # 4 rows per batch, 3 left over
    np.testing.assert_allclose(feature_gram_module.feature_gram(kernel, operators, x, operators, y), whole,
                               rtol=1e-12, atol=1e-12 * float(jnp.max(jnp.abs(whole))))
    np.testing.assert_allclose(jax.grad(weighted_sum)(kernel.lengthscale), gradient, rtol=1e-10)


@pytest.mark.parametrize("periodic_dims, lengthscale", [((X,), [0.4, 0.3]), ((T, X), [0.25, 0.6]), ((X,), 0.5)])
def test_closed_form_blocks_and_gradients_equal_autodiff_of_the_kernel(periodic_dims, lengthscale):
    """The separable closed form (products of the factors' derivatives) against the generic
    assembly by nested autodiff of `pair` (feature_gram), every operator pair, values and the
    gradient of a weighted sum with respect to the lengthscales."""
    from gpde.solve._feature_gram import feature_gram
    from gpde.solve._separable_gram import separable_gram

    x, y = _points(3, 9), _points(4, 7)
    weights = jax.random.normal(jax.random.PRNGKey(5), (len(OPERATORS), len(OPERATORS), 9, 7))

    def kernel(log_lengthscale):
        return eqx.tree_at(lambda k: k.log_lengthscale, PeriodicGaussian(lengthscale, PERIOD, periodic_dims),
                           log_lengthscale)

    def weighted(assemble, log_lengthscale):  # first-order operators: compiling autodiff's gradient is slow
        operators = OPERATORS[:3]
        return jnp.sum(weights[:3, :3] * assemble(kernel(log_lengthscale), operators, x, operators, y))

    log_lengthscale = PeriodicGaussian(lengthscale, PERIOD, periodic_dims).log_lengthscale
    closed = separable_gram(kernel(log_lengthscale), OPERATORS, x, OPERATORS, y)
    generic = feature_gram(kernel(log_lengthscale), OPERATORS, x, OPERATORS, y)
    scale = float(jnp.max(jnp.abs(generic)))
    np.testing.assert_allclose(closed, generic, rtol=1e-11, atol=1e-12 * scale)
    if periodic_dims == (X,) and np.ndim(lengthscale):  # gradients once
        np.testing.assert_allclose(jax.grad(lambda p: weighted(separable_gram, p))(log_lengthscale),
                                   jax.grad(lambda p: weighted(feature_gram, p))(log_lengthscale), rtol=1e-10)
