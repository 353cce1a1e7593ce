"""Gram blocks of non-stationary kernels by directional derivatives in feature space
(gpde/solve/_feature_gram.py), against an independent reference: plain nested autodiff of the pointwise
kernel k(x, y) (network included, no jets, no directions), contracted with operator coefficients
written out by hand here (not taken from the operator classes)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import Evaluation, Laplacian, Partial, SecondPartial, operator_gram
from gpde.kernels import Gaussian, Gibbs, Polynomial, Product, Sum
from helpers import paired_points

_HALF = np.array([[0.0, 0.5], [0.5, 0.0]])

#: operator, and its (c₀, c₁, C₂) in L f = c₀ f + c₁·∇f + ⟨C₂, ∇²f⟩, by hand.
OPERATORS = (
    (Evaluation(), (1.0, np.zeros(2), np.zeros((2, 2)))),
    (Partial(0), (0.0, np.array([1.0, 0.0]), np.zeros((2, 2)))),
    (Partial(1), (0.0, np.array([0.0, 1.0]), np.zeros((2, 2)))),
    (SecondPartial(0, 1), (0.0, np.zeros(2), _HALF)),
    (SecondPartial(0, 0), (0.0, np.zeros(2), np.diag([1.0, 0.0]))),
    (SecondPartial(1, 1), (0.0, np.zeros(2), np.diag([0.0, 1.0]))),
    (Laplacian(), (0.0, np.zeros(2), np.eye(2))),
    (Laplacian(coordinates=(1,)), (0.0, np.zeros(2), np.diag([0.0, 1.0]))),
)


def _gibbs(per_dimension=False, seed=3):
    # Width 16 and a lengthscale scale near the published ones give a visibly curved ℓ(x).
    return Gibbs(2, key=jax.random.PRNGKey(seed), width=16, depth=2, per_dimension=per_dimension, scale=0.3)


def _points(seed, nx=4, ny=5, shared=2):
    """x, y in [0, 1]²; the first `shared` y points coincide with x points (the r = 0 diagonal)."""
    return paired_points(seed, nx, ny, shared)


def _derivative_stack(function):
    """x ↦ (f, ∇f, ∇²f)(x) for f: R^d → R^m, by plain nested forward-mode autodiff."""
    return lambda x: (function(x), jax.jacfwd(function)(x), jax.jacfwd(jax.jacfwd(function))(x))


def _apply(coefficients, stack):
    c0, c1, c2 = coefficients
    value, gradient, hessian = stack
    return c0 * value + jnp.tensordot(gradient, c1, axes=([-1], [0])) + jnp.tensordot(hessian, c2, axes=([-2, -1], [0, 1]))


def reference_gram(kernel, operators_x, points_x, operators_y, points_y):
    """out[j, l, a, b] = L_jˣ L_lʸ k(x_a, y_b) by nested autodiff of kernel(x, y) itself."""
    coefficients_x = [c for _, c in operators_x]
    coefficients_y = [c for _, c in operators_y]

    def one(x, y):
        def along_y(x):
            stack = _derivative_stack(lambda y: kernel(x, y))(y)
            return jnp.stack([_apply(c, stack) for c in coefficients_y])

        stack = _derivative_stack(along_y)(x)
        return jnp.stack([_apply(c, stack) for c in coefficients_x])

    blocks = jax.vmap(jax.vmap(one, (None, 0)), (0, None))(points_x, points_y)
    return jnp.moveaxis(blocks, (0, 1), (2, 3))


_gram = eqx.filter_jit(operator_gram)
_reference = eqx.filter_jit(reference_gram)


def _check(kernel, seed, operators_x=OPERATORS, operators_y=OPERATORS):
    x, y = _points(seed)
    got = _gram(kernel, tuple(o for o, _ in operators_x), x, tuple(o for o, _ in operators_y), y)
    want = _reference(kernel, operators_x, x, operators_y, y)
    assert got.shape == want.shape == (len(operators_x), len(operators_y), 4, 5)
    # Both are exact up to rounding; entries reach ~1e3 (Δ×Δ with ℓ ≈ 0.2), so compare per block
    # relative to the block's scale.
    # A block that vanishes identically is compared on the scale of the whole Gram matrix.
    scale = np.max(np.abs(np.asarray(want)), axis=(2, 3), keepdims=True)
    scale = np.maximum(scale, 1e-12 * np.max(scale))
    np.testing.assert_allclose(np.asarray(got) / scale, np.asarray(want) / scale, rtol=0, atol=1e-11)
    return got


def test_shared_lengthscale_gibbs_every_operator_pair():
    _check(_gibbs(), seed=0)


def test_per_dimension_gibbs():
    # Burgers' kernel: separate ℓ_t, ℓ_x from one network (both first-order directions, the mixed
    # second derivative with its ±(1, 1)/√2 eigendirections, a one-coordinate Laplacian).
    _check(_gibbs(per_dimension=True), seed=1, operators_x=OPERATORS[1:4], operators_y=OPERATORS[5:])


@pytest.mark.slow
def test_per_dimension_gibbs_every_operator_pair():
    _check(_gibbs(per_dimension=True), seed=1)


def test_lengthscale_field_is_not_constant():
    # The checks above are only meaningful if ℓ(x) varies: the feature Hessian terms (H : C₂)
    # and the ℓ-Jacobian parts of the directions must matter.
    kernel = _gibbs()
    x, _ = _points(0)
    ell = jax.vmap(kernel.lengthscale)(x)[:, 0]
    gradient = jax.vmap(jax.grad(lambda p: kernel.lengthscale(p)[0]))(x)
    assert np.ptp(np.asarray(ell)) > 1e-3 and np.min(np.abs(np.asarray(gradient))) > 1e-4


def test_composites_and_point_kernels():
    # A Sum (split by linearity) and a non-stationary point kernel (features = x, no jets).
    _check(Sum(_gibbs(seed=5), Gaussian(0.3)), seed=2, operators_x=OPERATORS[:3], operators_y=OPERATORS[5:7])
    _check(Polynomial(2.0, 1.0, 3), seed=3)


@pytest.mark.slow
def test_product_with_gibbs_general_path():
    # A Product: one kernel whose features are a tuple, flattened into one jet, through the general
    # feature-space path (nested jvps of `pair`), which compiles slowly.
    _check(Product(_gibbs(seed=5), Gaussian(0.3)), seed=2, operators_x=OPERATORS[1:2], operators_y=OPERATORS[6:7])


def test_gibbs_reduces_to_gaussian_for_constant_lengthscale():
    # Zero network weights: ℓ = scale · softplus(bias) everywhere, and k is exp(−|x−y|²/(2ℓ²)),
    # whose Gram blocks come from the separate closed-form stationary path.
    kernel = _gibbs()
    kernel = jax.tree_util.tree_map(lambda leaf: jnp.zeros_like(leaf) if eqx.is_inexact_array(leaf) else leaf, kernel)
    ell = float(kernel.lengthscale(jnp.zeros(2))[0])
    operators = tuple(o for o, _ in OPERATORS)
    x, y = _points(4)
    got = _gram(kernel, operators, x, operators, y)
    want = _gram(Gaussian(ell), operators, x, operators, y)
    scale = np.max(np.abs(np.asarray(want)), axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(np.asarray(got) / scale, np.asarray(want) / scale, rtol=0, atol=1e-12)


@pytest.mark.parametrize("per_dimension", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_network_gradients(per_dimension):
    # Reverse-mode gradients w.r.t. the network parameters (what the bilevel learner needs), for the
    # Eikonal operators, against central finite differences along random parameter directions.
    kernel = _gibbs(per_dimension)
    params, static = eqx.partition(kernel, eqx.is_inexact_array)
    flat_params, unravel = jax.flatten_util.ravel_pytree(params)
    operators = (Partial(0), Partial(1), Laplacian())
    x, y = _points(6)
    weights = jnp.cos(jnp.arange(9 * 4 * 5.0)).reshape(3, 3, 4, 5)
    # Blocks scaled to O(1) by a fixed (not differentiated) scale, so that every block matters.
    scale = np.max(np.abs(np.asarray(_gram(kernel, operators, x, operators, y))), axis=(2, 3), keepdims=True)

    @jax.jit
    def loss(flat):
        blocks = operator_gram(eqx.combine(unravel(flat), static), operators, x, operators, y)
        return jnp.sum(weights * blocks / scale)

    gradient = jax.jit(jax.grad(loss))(flat_params)
    assert np.max(np.abs(np.asarray(gradient))) > 1e-3
    step = 1e-5
    for seed in (11, 12):
        direction = jax.random.normal(jax.random.PRNGKey(seed), flat_params.shape)
        difference = (loss(flat_params + step * direction) - loss(flat_params - step * direction)) / (2 * step)
        # Central differences: truncation ~ step² times the third derivative, rounding ~ 1e-16 / step.
        np.testing.assert_allclose(difference, jnp.dot(gradient, direction), rtol=1e-6)


#: Operators of the tiled reverse-pass check, per case: (per-dimension lengthscales, operators on
#: the tiled x side, operators on the y side). A Δ–Δ block is most of a case's compile time
#: (shared ℓ ≈ 25 s without it, per dimension ≈ 30 s without it and ≈ 80 s with it), so the default cases are
#: second order on the tiled x side and first order in y; test_network_gradients[False] already
#: differentiates the shared-ℓ Δ–Δ block through the tiled pass (default tile of 16 rows, padded)
#: against finite differences, and the per-dimension Δ–Δ case runs with the slow tests.
TILED_CASES = {
    "shared": (False, (Evaluation(), Partial(0), Laplacian()), (Evaluation(), Partial(1))),
    "per-dimension": (True, (Evaluation(), Partial(0), Laplacian()), (Evaluation(), Partial(1))),
    "per-dimension-laplacian-pair": (True, (Evaluation(), Partial(0), Laplacian()),
                                     (Evaluation(), Partial(0), Laplacian())),
}


@pytest.mark.parametrize("case", [
    "shared", "per-dimension", pytest.param("per-dimension-laplacian-pair", marks=pytest.mark.slow)])
def test_tiled_reverse_pass_equals_plain_reverse_mode(case):
    # The tiled backward pass (gpde/solve/_tiled_vjp.py) must give the plain reverse-mode gradient, for
    # the network parameters and for the points, with several tiles and a padded last tile (7 rows
    # in tiles of 3), second order on the tiled x side; the shared-ℓ case also checks the one-column
    # lengthscale tables.
    from gpde.solve._gibbs_gram import gibbs_gram

    per_dimension, operators_x, operators_y = TILED_CASES[case]
    kernel = _gibbs(per_dimension)
    params, static = eqx.partition(kernel, eqx.is_inexact_array)
    x, y = _points(8, nx=7, ny=5)
    shape = (len(operators_x), len(operators_y), 7, 5)
    weights = jnp.sin(jnp.arange(float(np.prod(shape)))).reshape(shape)

    def loss(p, x, y, tile_rows):
        blocks = gibbs_gram(eqx.combine(p, static), operators_x, x, operators_y, y, tile_rows=tile_rows)
        return jnp.sum(weights * blocks)

    plain = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)(params, x, y, None)
    tiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)(params, x, y, 3)
    plain_flat = jax.flatten_util.ravel_pytree(plain)[0]
    tiled_flat = jax.flatten_util.ravel_pytree(tiled)[0]
    assert np.max(np.abs(np.asarray(plain_flat))) > 1e-3
    np.testing.assert_allclose(np.asarray(tiled_flat), np.asarray(plain_flat), rtol=1e-12,
                               atol=1e-12 * float(np.max(np.abs(np.asarray(plain_flat)))))
    # The value is the plain one, bit for bit (compiled: op by op, the first call compiled every
    # operation of the graph separately, ≈ 8 s).
    value = eqx.filter_jit(gibbs_gram)(kernel, operators_x, x, operators_y, y, tile_rows=3)
    np.testing.assert_array_equal(np.asarray(value),
                                  np.asarray(eqx.filter_jit(gibbs_gram)(kernel, operators_x, x, operators_y, y,
                                                                        tile_rows=None)))
