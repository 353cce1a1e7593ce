"""Kernels (kernels/): symmetry, positive semi-definiteness, closed forms, the Matérn Taylor branch
at r = 0, and input validation.

Reference values are written out here from the textbook formulas (and, for the Matérn family, the
general Bessel-function form through scipy), never taken from the code under test.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from gpde.kernels import (
    Additive,
    Gaussian,
    Gibbs,
    Matern52,
    Matern72,
    Polynomial,
    Product,
    RationalQuadratic,
    Scaled,
    Sum,
)


def _gibbs(per_dimension: bool, dim: int = 2):
    return Gibbs(dim, key=jax.random.PRNGKey(3), width=8, depth=2, per_dimension=per_dimension)


# name → (factory, input dimension). Factories so that each test builds its own kernel.
KERNELS = {
    "gaussian-iso": (lambda: Gaussian(0.3), 2),
    "gaussian-aniso": (lambda: Gaussian(jnp.array([0.3, 0.1])), 2),
    "matern52": (lambda: Matern52(0.4), 2),
    "matern72-aniso": (lambda: Matern72(jnp.array([0.3, 0.5])), 2),
    "rational-quadratic": (lambda: RationalQuadratic(0.4, alpha=1.5), 2),
    "polynomial": (lambda: Polynomial(alpha=0.7, offset=0.5, degree=3), 2),
    "sum": (lambda: Sum(Gaussian(0.3), Polynomial(alpha=0.5, offset=1.0, degree=2)), 2),
    "product": (lambda: Product(Gaussian(0.5), Matern52(0.4)), 2),
    "scaled": (lambda: Scaled(Matern72(0.3), variance=2.5), 2),
    "additive": (lambda: Additive([Gaussian(0.3), Matern52(0.5)], [(0, 2), (1,)]), 3),
    "gibbs-shared": (lambda: _gibbs(False), 2),
    "gibbs-per-dimension": (lambda: _gibbs(True), 2),
}


def _points(n, dim, seed):
    return jnp.asarray(np.random.default_rng(seed).uniform(0.0, 1.0, (n, dim)))


@eqx.filter_jit
def _gram(kernel, x, y):
    return jax.vmap(lambda a: jax.vmap(lambda b: kernel(a, b))(y))(x)


# --------------------------------------------------------------------------------------------
# Symmetry and positive semi-definiteness
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(KERNELS))
def test_symmetric(name):
    factory, dim = KERNELS[name]
    kernel = factory()
    x, y = _points(20, dim, 0), _points(15, dim, 1)
    forward = np.asarray(_gram(kernel, x, y))
    backward = np.asarray(_gram(kernel, y, x))
    assert np.all(np.isfinite(forward))
    np.testing.assert_allclose(forward, backward.T, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", list(KERNELS))
def test_gram_positive_semidefinite(name):
    factory, dim = KERNELS[name]
    kernel = factory()
    x = _points(30, dim, 2)
    gram = np.asarray(_gram(kernel, x, x))
    eigenvalues = np.linalg.eigvalsh(0.5 * (gram + gram.T))
    assert eigenvalues.min() >= -1e-10 * eigenvalues.max(), (eigenvalues.min(), eigenvalues.max())


def test_psd_check_can_fail():
    # The same check rejects a symmetric "kernel" that is not positive semi-definite
    # (k = −|x − y|²: its Gram matrix has trace 0 and is nonzero, so it has a negative eigenvalue).
    x = _points(30, 2, 2)
    gram = -np.sum((np.asarray(x)[:, None, :] - np.asarray(x)[None, :, :]) ** 2, axis=-1)
    eigenvalues = np.linalg.eigvalsh(gram)
    assert not eigenvalues.min() >= -1e-10 * eigenvalues.max()


# --------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------


def _pairs(dim=2, n=12, seed=5):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (n, dim)), rng.uniform(0.0, 1.0, (n, dim))


@eqx.filter_jit
def _paired(kernel, x, y):
    # The kernel is an argument (a pytree), not baked into a jax.vmap closure.
    return jax.vmap(kernel)(x, y)


def _values(kernel, x, y):
    return np.asarray(_paired(kernel, jnp.asarray(x), jnp.asarray(y)))


def test_gaussian_isotropic_closed_form():
    x, y = _pairs()
    expected = np.exp(-np.sum((x - y) ** 2, axis=1) / (2 * 0.3**2))
    np.testing.assert_allclose(_values(Gaussian(0.3), x, y), expected, rtol=1e-13)


def test_gaussian_per_dimension_closed_form():
    x, y = _pairs()
    lengthscale = np.array([0.3, 0.07])
    expected = np.exp(-np.sum((x - y) ** 2 / (2 * lengthscale**2), axis=1))
    np.testing.assert_allclose(_values(Gaussian(jnp.asarray(lengthscale)), x, y), expected, rtol=1e-13)
    assert not np.allclose(expected, np.exp(-np.sum((x - y) ** 2, axis=1) / (2 * 0.3**2)))


def _matern_bessel(nu, r):
    """The general Matérn form 2^{1−ν}/Γ(ν) (√(2ν) r)^ν K_ν(√(2ν) r) (scipy's Bessel K)."""
    z = np.sqrt(2 * nu) * r
    return 2 ** (1 - nu) / special.gamma(nu) * z**nu * special.kv(nu, z)


# Scaled distances r = |x − y| / ℓ at which the Matérn formulas are checked.
DISTANCES = np.array([0.01, 0.1, 0.5, 1.0, 2.0, 3.5])


@pytest.mark.parametrize(
    "kernel_class, nu, written_out",
    [
        (Matern52, 2.5, lambda r: (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)),
        (
            Matern72,
            3.5,
            lambda r: (1 + np.sqrt(7) * r + 14 * r**2 / 5 + 7 * np.sqrt(7) * r**3 / 15) * np.exp(-np.sqrt(7) * r),
        ),
    ],
)
def test_matern_closed_form(kernel_class, nu, written_out):
    lengthscale = np.array([0.4, 0.25])
    direction = np.array([0.6, -0.8])  # unit vector
    # x − y = r · (ℓ ∘ d) / |d| per coordinate scaling: the scaled distance is exactly r·|d| = r.
    x = np.tile([0.3, 0.7], (len(DISTANCES), 1))
    y = x - DISTANCES[:, None] * lengthscale * direction
    values = _values(kernel_class(jnp.asarray(lengthscale)), x, y)
    np.testing.assert_allclose(values, written_out(DISTANCES), rtol=1e-13)
    np.testing.assert_allclose(values, _matern_bessel(nu, DISTANCES), rtol=1e-10)


def test_rational_quadratic_closed_form_and_gaussian_limit():
    x, y = _pairs()
    s = np.sum((x - y) ** 2, axis=1) / 0.4**2
    for alpha in (0.5, 2.0):
        expected = (1 + s / (2 * alpha)) ** (-alpha)
        np.testing.assert_allclose(_values(RationalQuadratic(0.4, alpha=alpha), x, y), expected, rtol=1e-13)
    # α → ∞ is the Gaussian; the difference is O(s²/α).
    np.testing.assert_allclose(
        _values(RationalQuadratic(0.4, alpha=1e7), x, y), np.exp(-s / 2), rtol=0, atol=1e-6
    )


def test_polynomial_closed_form():
    x, y = _pairs()
    expected = (0.7 * np.sum(x * y, axis=1) + 0.5) ** 3
    np.testing.assert_allclose(_values(Polynomial(alpha=0.7, offset=0.5, degree=3), x, y), expected, rtol=1e-13)


def test_composites_closed_form():
    x, y = _pairs(dim=3)
    sq = lambda a, b: np.sum((a - b) ** 2, axis=1)  # noqa: E731
    gauss = lambda a, b, l: np.exp(-sq(a, b) / (2 * l**2))  # noqa: E731

    def matern52(a, b, l):
        r = np.sqrt(sq(a, b)) / l
        return (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)

    poly = (0.5 * np.sum(x * y, axis=1) + 1.0) ** 2
    np.testing.assert_allclose(
        _values(Sum(Gaussian(0.3), Polynomial(alpha=0.5, offset=1.0, degree=2)), x, y),
        gauss(x, y, 0.3) + poly,
        rtol=1e-13,
    )
    np.testing.assert_allclose(
        _values(Product(Gaussian(0.5), Matern52(0.4)), x, y), gauss(x, y, 0.5) * matern52(x, y, 0.4), rtol=1e-12
    )
    np.testing.assert_allclose(
        _values(Scaled(Gaussian(0.3), variance=2.5), x, y), 2.5 * gauss(x, y, 0.3), rtol=1e-13
    )
    additive = Additive([Gaussian(0.3), Matern52(0.5)], [(0, 2), (1,)])
    expected = gauss(x[:, [0, 2]], y[:, [0, 2]], 0.3) + matern52(x[:, [1]], y[:, [1]], 0.5)
    np.testing.assert_allclose(_values(additive, x, y), expected, rtol=1e-12)


@pytest.mark.parametrize("per_dimension", [False, True])
def test_gibbs_formula_with_its_own_lengthscale_field(per_dimension):
    kernel = _gibbs(per_dimension)
    x, y = _pairs()
    lx = np.asarray(jax.vmap(kernel.lengthscale)(jnp.asarray(x)))
    ly = np.asarray(jax.vmap(kernel.lengthscale)(jnp.asarray(y)))
    assert lx.shape == (len(x), 2)
    # ℓ(x) = scale · softplus(network(x)), the softplus written out as log(1 + e^t).
    raw = np.asarray(jax.vmap(kernel.network)(jnp.asarray(x)))
    np.testing.assert_allclose(lx, np.broadcast_to(np.log1p(np.exp(raw)) / 3.0, lx.shape), rtol=1e-13)
    if not per_dimension:
        np.testing.assert_array_equal(lx[:, 0], lx[:, 1])
    square_sum = lx**2 + ly**2
    expected = np.prod(np.sqrt(2 * lx * ly / square_sum) * np.exp(-((x - y) ** 2) / square_sum), axis=1)
    np.testing.assert_allclose(_values(kernel, x, y), expected, rtol=1e-13)
    # A non-constant field: the prefactor is really < 1 somewhere (the check above is not vacuous).
    assert np.min(np.prod(np.sqrt(2 * lx * ly / square_sum), axis=1)) < 1 - 1e-6


def _softplus_inverse(value):
    return float(np.log(np.expm1(value)))


@pytest.mark.parametrize("lengthscales", [(0.2,), (0.25, 0.08)])
def test_gibbs_with_constant_field_is_gaussian(lengthscales):
    per_dimension = len(lengthscales) > 1
    kernel = _gibbs(per_dimension)
    last = kernel.network.layers[-1]
    # Zero output weights: the network returns its bias, so ℓ(x) = scale · softplus(bias) everywhere.
    bias = jnp.asarray([_softplus_inverse(3.0 * value) for value in lengthscales])
    constant = eqx.tree_at(
        lambda k: (k.network.layers[-1].weight, k.network.layers[-1].bias),
        kernel,
        (jnp.zeros_like(last.weight), bias),
    )
    x, y = _pairs()
    np.testing.assert_allclose(
        np.asarray(jax.vmap(constant.lengthscale)(jnp.asarray(x))),
        np.broadcast_to(lengthscales, (len(x), 2)),
        rtol=1e-13,
    )
    expected = np.exp(-np.sum((x - y) ** 2 / (2 * np.asarray(lengthscales) ** 2), axis=1))
    np.testing.assert_allclose(_values(constant, x, y), expected, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Matérn Taylor branch near r = 0
# --------------------------------------------------------------------------------------------


@eqx.filter_jit  # one compilation per kernel class, shared by the tests below
def _derivative_tensors_jit(kernel, x, y):
    f = lambda point: kernel(point, y)  # noqa: E731
    derivatives = [f]
    for _ in range(4):
        derivatives.append(jax.jacfwd(derivatives[-1]))
    return [d(x) for d in derivatives]


def _derivative_tensors(kernel, x, y):
    """[k, ∇ₓk, ∇ₓ²k, ∇ₓ³k, ∇ₓ⁴k] of x ↦ k(x, y), by nested forward-mode autodiff."""
    return [np.asarray(t) for t in _derivative_tensors_jit(kernel, jnp.asarray(x), jnp.asarray(y))]


# Spectral moments of the Matérn kernel in one coordinate (scaled by ℓ):
# k''(0) = −ν/(ν−1), k''''(0) = 3ν²/((ν−1)(ν−2)).
@pytest.mark.parametrize("kernel_class, nu", [(Matern52, 2.5), (Matern72, 3.5)])
def test_matern_derivatives_at_zero_distance(kernel_class, nu):
    lengthscale = np.array([0.3, 0.5])
    kernel = kernel_class(jnp.asarray(lengthscale))
    y = np.array([0.4, 0.6])
    value, gradient, hessian, third, fourth = _derivative_tensors(kernel, y, jnp.asarray(y))
    for tensor in (value, gradient, hessian, third, fourth):
        assert np.all(np.isfinite(tensor))
    assert value == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-12)
    np.testing.assert_allclose(hessian, np.diag(-nu / (nu - 1) / lengthscale**2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(third, 0.0, atol=1e-8)
    fourth_moment = 3 * nu**2 / ((nu - 1) * (nu - 2))
    # ∂⁴/∂x_i⁴ k = k''''(0)/ℓ_i⁴ and ∂²∂²/∂x_0²∂x_1² k = (k''''(0)/3)/(ℓ_0² ℓ_1²) (isotropy in r).
    assert fourth[0, 0, 0, 0] == pytest.approx(fourth_moment / lengthscale[0] ** 4, rel=1e-10)
    assert fourth[1, 1, 1, 1] == pytest.approx(fourth_moment / lengthscale[1] ** 4, rel=1e-10)
    assert fourth[0, 0, 1, 1] == pytest.approx(fourth_moment / 3 / (lengthscale[0] * lengthscale[1]) ** 2, rel=1e-10)


def _branch_mismatch(kernel_class, scaled_distance):
    """Largest change, relative to the size of the tensor at r = 0, of the derivatives of order
    0…4 of x ↦ k(x, y) between x = y and a point at scaled distance r."""
    lengthscale = np.array([0.3, 0.5])
    kernel = kernel_class(jnp.asarray(lengthscale))
    y = np.array([0.4, 0.6])
    direction = np.array([0.6, 0.8])
    x = y + scaled_distance * lengthscale * direction
    at_zero = _derivative_tensors(kernel, y, jnp.asarray(y))
    nearby = _derivative_tensors(kernel, x, jnp.asarray(y))
    mismatch = []
    for order, (a, b) in enumerate(zip(at_zero, nearby)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(b)), order
        scale = max(np.max(np.abs(a)), 1.0 / np.min(lengthscale) ** order)
        mismatch.append(float(np.max(np.abs(a - b)) / scale))
    return mismatch


def _allowed_change(r):
    """How much the exact derivatives of order ≤ 4 may change between r = 0 and r, relative to
    their size: odd orders grow like k⁽ⁿ⁺¹⁾(0)·r (≤ 15 r in these units; e.g. the 3rd derivative
    of ν = 5/2 grows by k⁗(0)·r = 25 r/ℓ⁴ against its scale 1/ℓ³), even orders change by O(r)
    (the r⁵ term of ν = 5/2: 4th derivative −149 r against k⁗(0) = 25) or less. Plus 1e-3 for
    rounding."""
    return 1e-3 + 20.0 * r


@pytest.mark.parametrize("kernel_class", [Matern52, Matern72])
@pytest.mark.parametrize("scaled_distance", [0.9e-5, 1e-4, 1e-3])
def test_matern_branches_agree_near_zero(kernel_class, scaled_distance):
    """The series branch (used for scaled distance r ≤ 1e-5) at r = 0 against r = 0.9e-5 (series)
    and r = 1e-4, 1e-3 (closed form): derivatives of order ≤ 4 agree up to the exact change.
    Measured worst: 1.3e-4 (r = 0.9e-5), 1.5e-3 (r = 1e-4), 1.5e-2 (r = 1e-3, 3rd derivative)."""
    mismatch = _branch_mismatch(kernel_class, scaled_distance)
    assert max(mismatch) <= _allowed_change(scaled_distance), mismatch


@pytest.mark.parametrize("kernel_class", [Matern52, Matern72])
@pytest.mark.parametrize("scaled_distance", [1.1e-5, 2e-5])
def test_matern_fourth_derivatives_just_above_the_series_switch(kernel_class, scaled_distance):
    """Just above the switch to the closed form (s = r² > 1e-10) the closed form's 4th
    derivatives (the Δₓ Δᵧ Gram entries) go through √s, whose derivatives grow like r⁻³ and
    cancel. Measured relative errors of the 4th derivatives (ℓ = (0.3, 0.5)): 3.7e-2 (ν = 5/2)
    and 4.1e-2 (ν = 7/2) at r = 1.1e-5; 4.7e-3 and 1.3e-2 at r = 2e-5; the allowance is
    1.2e-3 … 1.4e-3 and the exact change from r = 0 is < 1.2e-4.
    KNOWN BUG (see the test report): the switch point is too low for 4th derivatives."""
    mismatch = _branch_mismatch(kernel_class, scaled_distance)
    assert max(mismatch) <= _allowed_change(scaled_distance), mismatch


# --------------------------------------------------------------------------------------------
# Invalid input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Gaussian(0.0), "Gaussian lengthscale must be finite and > 0"),
        (lambda: Gaussian(-0.2), "Gaussian lengthscale"),
        (lambda: Gaussian(float("nan")), "Gaussian lengthscale"),
        (lambda: Gaussian(jnp.array([0.2, -0.1])), "Gaussian lengthscale"),
        (lambda: Matern52(float("inf")), "Matern52 lengthscale"),
        (lambda: Matern72(0.0), "Matern72 lengthscale"),
        (lambda: RationalQuadratic(0.3, alpha=0.0), "RationalQuadratic alpha"),
        (lambda: RationalQuadratic(-1.0), "RationalQuadratic lengthscale"),
        (lambda: Polynomial(degree=0), "degree must be an integer >= 1"),
        (lambda: Polynomial(degree=1.5), "degree must be an integer >= 1"),
        (lambda: Polynomial(alpha=-1.0), "Polynomial alpha"),
        (lambda: Polynomial(offset=0.0), "Polynomial offset"),
        (lambda: Scaled(Gaussian(0.3), variance=0.0), "Scaled variance"),
        (lambda: Sum(), "at least one kernel"),
        (lambda: Additive([Gaussian(0.3), Gaussian(0.2)], [(0,)]), "one coordinate subset per kernel"),
        (lambda: Additive([Gaussian(0.3)], [()]), "non-empty"),
        (lambda: Additive([Gaussian(0.3)], [(-1,)]), ">= 0"),
        (lambda: Gibbs(0, key=jax.random.PRNGKey(0)), "dim >= 1"),
        (lambda: Gibbs(2, key=jax.random.PRNGKey(0), scale=0.0), "scale must be > 0"),
    ],
)
def test_invalid_input_raises_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: Sum(Gaussian(0.3), 2.0),
        lambda: Product(Gaussian(0.3), "gaussian"),
        lambda: Scaled("gaussian"),
        lambda: Additive([Gaussian(0.3), None], [(0,), (1,)]),
    ],
)
def test_non_kernel_parts_raise_type_error(build):
    with pytest.raises(TypeError, match="combines kernels, got"):
        build()


def test_invalid_lengthscale_message_names_the_value():
    with pytest.raises(ValueError) as info:
        Gaussian(-0.5)
    # The message shows the offending value and says what to pass instead.
    assert "-0.5" in str(info.value) and "pass a positive value" in str(info.value)
