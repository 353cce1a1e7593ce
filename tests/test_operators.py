"""Operator Gram blocks (gpde.operator_gram): out[j, l, a, b] = L_jˣ L_lʸ k(x_a, y_b).

Checked against (1) nested central finite differences of the plain kernel function k(x, y), for
every operator, and (2) for the Gibbs kernel, whose per-point features (ℓ(x)) go through the
second-order Taylor jets of `gpde.feature_jets`, against direct nested autodiff of k(x, y) — an
implementation written here that knows nothing of the operator classes' `apply` methods.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gpde
from gpde import Evaluation, Laplacian, Partial, SecondPartial, operator_gram
from gpde.kernels import Gaussian, Gibbs, Matern72, Sum
from helpers import STENCIL_OFFSETS, finite_difference_gram, paired_points, stencil_weights

OPERATORS = (
    Evaluation(),
    Partial(0),
    Partial(1),
    SecondPartial(0, 1),
    SecondPartial(1, 1),
    Laplacian(),
    Laplacian(coordinates=(1,)),
)


def _gibbs(per_dimension=False):
    return Gibbs(2, key=jax.random.PRNGKey(7), width=8, depth=2, per_dimension=per_dimension)


KERNELS = {
    "gaussian": lambda: Gaussian(jnp.array([0.3, 0.25])),
    "matern72": lambda: Matern72(0.4),
    "gibbs": lambda: _gibbs(),
}


def _points(seed, nx=5, ny=4, shared=2):
    """x and y points in [0.1, 0.9]²; the first `shared` y points coincide with x points (r = 0)."""
    return paired_points(seed, nx, ny, shared, low=0.1, high=0.9)


# --------------------------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------------------------

# The stencils and the finite-difference Gram blocks are in tests/helpers.py.


def test_fd_stencils_are_exact_on_quadratics():
    # The stencils themselves: exact for second-degree polynomials, so a wrong weight shows here.
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=6), rng.normal(size=(2, 2)), rng.normal(size=2)
    quadratic = lambda p: a[0] + c @ p + p @ b @ p  # noqa: E731
    x0, h = np.array([0.3, 0.6]), 1e-2
    values = np.array([quadratic(x0 + h * o) for o in STENCIL_OFFSETS])
    hessian = b + b.T
    gradient = c + hessian @ x0
    expected = [quadratic(x0), gradient[0], gradient[1], hessian[0, 1], hessian[1, 1], np.trace(hessian), hessian[1, 1]]
    got = [values @ stencil_weights(op, h) for op in OPERATORS]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


# Step and tolerance. The nested second differences have truncation error ~ (h²/12)·(two more
# derivatives of k in each argument): relative to the block ~ c (h/ℓ)², c a few units, ℓ ≈ 0.25–0.4,
# i.e. ~1e-4 at h = 2e-3; rounding ~ ε·Σ|w|²·|k| = 64 ε/h⁴ ≈ 4e-4 absolute for Δₓ Δᵧ, against
# its size ~ 3/ℓ⁴ ≈ 10³. Measured worst relative deviations over all blocks: Gaussian 1.1e-4,
# Matérn 7/2 3.4e-4, Gibbs 4.8e-5 (δ–all) and 1.1e-4 (∂₀∂₁–∂₁); they shrink 4× when h halves
# (4e-3 gave 4.3e-4, 1.35e-3, 1.9e-4, 4.3e-4), so truncation dominates as estimated.
# The bound is 3× above the largest.
STEP = 2e-3
RTOL = 1e-3

_gram = eqx.filter_jit(operator_gram)


def _check_against_fd(kernel, ops_x, ops_y, x, y, label):
    gram = np.asarray(_gram(kernel, ops_x, x, ops_y, y))
    assert gram.shape == (len(ops_x), len(ops_y), x.shape[0], y.shape[0])
    fd_gram = finite_difference_gram(kernel, ops_x, x, y, STEP, ops_y)
    worst = 0.0
    for j, op_x in enumerate(ops_x):
        for l, op_y in enumerate(ops_y):
            fd = fd_gram[j, l]
            deviation = np.max(np.abs(gram[j, l] - fd)) / np.max(np.abs(fd))
            assert deviation <= RTOL, (label, op_x, op_y, deviation)
            worst = max(worst, deviation)
    return gram, worst


@pytest.mark.parametrize("name", ["gaussian", "matern72"])
def test_operator_gram_matches_finite_differences(name):
    kernel = KERNELS[name]()
    x, y = _points(1)
    _check_against_fd(kernel, OPERATORS, OPERATORS, x, y, name)


def test_finite_difference_comparison_detects_a_wrong_block():
    # The tolerance is tight enough to see plausible mistakes: a Laplacian over coordinate 1 only
    # instead of both coordinates, or a sign error in one argument.
    kernel = KERNELS["gaussian"]()
    x, y = _points(1)
    fd = finite_difference_gram(kernel, (Laplacian(),), x, y, STEP)[0, 0]
    wrong = np.asarray(_gram(kernel, (Laplacian(coordinates=(1,)),), x, (Laplacian(),), y))[0, 0]
    assert np.max(np.abs(wrong - fd)) / np.max(np.abs(fd)) > 100 * RTOL
    fd = finite_difference_gram(kernel, (Partial(0), Evaluation()), x, y, STEP)[0, 1]  # ∂ₓ₀ k
    right = np.asarray(_gram(kernel, (Partial(0),), x, (Evaluation(),), y))[0, 0]
    assert np.max(np.abs(right - fd)) <= RTOL * np.max(np.abs(fd))
    assert np.max(np.abs(-right - fd)) > 100 * RTOL * np.max(np.abs(fd))


# --------------------------------------------------------------------------------------------
# Symmetry and signs
# --------------------------------------------------------------------------------------------


def test_swapping_the_arguments_transposes_the_blocks():
    kernel = KERNELS["gaussian"]()
    x, y = _points(2, nx=4, ny=4)
    xy = np.asarray(_gram(kernel, OPERATORS, x, OPERATORS, y))
    yx = np.asarray(_gram(kernel, OPERATORS, y, OPERATORS, x))
    np.testing.assert_allclose(xy, np.transpose(yx, (1, 0, 3, 2)), rtol=1e-12, atol=1e-12 * np.max(np.abs(xy)))
    # Not trivially symmetric: the odd-order blocks do change sign under the swap of x and y.
    assert np.max(np.abs(xy[1, 0] - np.transpose(yx[1, 0]))) > 1e-3 * np.max(np.abs(xy[1, 0]))


def test_stationary_signs():
    # k(x, y) = κ(x − y): ∂ₓ k = −∂ᵧ k, so δ–∂ and ∂–δ blocks are opposite; ∂ₓ∂ᵧ k = −∂ₓ² k.
    kernel = KERNELS["gaussian"]()
    x, y = _points(3)
    ops = (Evaluation(), Partial(0), SecondPartial(0, 0))
    gram = np.asarray(_gram(kernel, ops, x, ops, y))
    scale = np.max(np.abs(gram))
    np.testing.assert_allclose(gram[1, 0], -gram[0, 1], atol=1e-13 * scale)
    np.testing.assert_allclose(gram[1, 1], -gram[2, 0], atol=1e-13 * scale)
    np.testing.assert_allclose(gram[2, 0], gram[0, 2], atol=1e-13 * scale)
    # At coincident points the δ–∂ block vanishes and ∂ₓ∂ᵧ k = 1/ℓ₀² for the Gaussian.
    np.testing.assert_allclose(gram[0, 1][[0, 1], [0, 1]], 0.0, atol=1e-13)
    np.testing.assert_allclose(gram[1, 1][[0, 1], [0, 1]], 1 / 0.3**2, rtol=1e-13)


# --------------------------------------------------------------------------------------------
# Gibbs: per-point Taylor jets against finite differences and direct autodiff of k(x, y)
# --------------------------------------------------------------------------------------------


def _coefficients(operator, d=2):
    """(order, coefficient tensor) of an operator: L f = ⟨c, ∇^order f⟩."""
    eye = np.eye(d)
    if isinstance(operator, Evaluation):
        return 0, np.array(1.0)
    if isinstance(operator, Partial):
        return 1, eye[operator.index]
    if isinstance(operator, SecondPartial):
        return 2, np.outer(eye[operator.first], eye[operator.second])
    if isinstance(operator, Laplacian):
        coordinates = range(d) if operator.coordinates is None else operator.coordinates
        return 2, sum(np.outer(eye[i], eye[i]) for i in coordinates)
    raise AssertionError(operator)


@eqx.filter_jit
def _derivative_table(kernel, x, y, p, q):
    """T[a, b] = ∂ᵧ^q ∂ₓᵖ k(x_a, y_b) (axes: q for y, then p for x), by nested jacfwd of the plain
    kernel function: the network runs on the perturbed points themselves, no Taylor jets."""
    f = lambda a, b: kernel(a, b)  # noqa: E731
    for _ in range(q):
        f = jax.jacfwd(f, argnums=1)
    for _ in range(p):
        f = jax.jacfwd(f, argnums=0)
    return jax.vmap(lambda a: jax.vmap(lambda b: f(a, b))(y))(x)


def _direct_gram(kernel, ops_x, ops_y, x, y, d=2):
    out = np.zeros((len(ops_x), len(ops_y), x.shape[0], y.shape[0]))
    for j, op_x in enumerate(ops_x):
        p, cx = _coefficients(op_x)
        for l, op_y in enumerate(ops_y):
            q, cy = _coefficients(op_y)
            table = np.asarray(_derivative_table(kernel, x, y, p, q)).reshape(x.shape[0], y.shape[0], d**q, d**p)
            out[j, l] = np.einsum("abyx,y,x->ab", table, cy.ravel(), cx.ravel())
    return out


def _check_gibbs(kernel, ops_x, ops_y, seed, swap=False):
    x, y = _points(seed, nx=4, ny=4)
    if swap:
        x, y = y, x
    gram, worst = _check_against_fd(kernel, ops_x, ops_y, x, y, "gibbs")
    direct = _direct_gram(kernel, ops_x, ops_y, x, y)
    for j in range(len(ops_x)):
        for l in range(len(ops_y)):
            scale = np.max(np.abs(direct[j, l]))
            assert np.max(np.abs(gram[j, l] - direct[j, l])) <= 1e-10 * scale, (ops_x[j], ops_y[l])
    return x, y, gram


def test_gibbs_every_operator_in_y():
    # Every operator in y (x evaluated). All 7×7 pairs at once: test_gibbs_every_operator_pair,
    # marked slow, because the Gibbs Gram compiles slowly.
    _check_gibbs(_gibbs(), (Evaluation(),), OPERATORS, seed=4)


def test_gibbs_every_operator_in_x():
    # The mirror image, on the swapped point sets: together with the previous test this checks
    # out_xy[j, l, a, b] = out_yx[l, j, b, a] for the Gibbs kernel to the 1e-10 of the reference.
    _check_gibbs(_gibbs(), OPERATORS, (Evaluation(),), seed=4, swap=True)


def test_gibbs_per_dimension_mixed_block():
    # One lengthscale per dimension: second order in x (the Hessian part of the jets of ℓ)
    # against first order in y.
    _check_gibbs(_gibbs(per_dimension=True), (SecondPartial(0, 1),), (Partial(1),), seed=6)


# The Gibbs Gram blocks of order 2 in BOTH arguments compile slowly (≈ 9 s for Δ–Δ alone, ≈ 70 s
# for all 7×7 operator pairs, plus ≈ 5 s per 4th-order table of the direct reference, on 2
# cores), so these run with -m slow.
@pytest.mark.slow
def test_gibbs_laplacian_laplacian_block():
    _check_gibbs(_gibbs(), (Laplacian(),), (Laplacian(),), seed=5)
    _check_gibbs(_gibbs(per_dimension=True), (SecondPartial(0, 1),), (Laplacian(coordinates=(1,)),), seed=6)


@pytest.mark.slow
def test_gibbs_every_operator_pair():
    _check_gibbs(_gibbs(), OPERATORS, OPERATORS, seed=7)


def test_composite_with_gibbs_jets():
    # A non-point composite (Gibbs + Gaussian): its features are a tuple, flattened into one jet.
    _check_gibbs(Sum(_gibbs(), Gaussian(0.3)), (Partial(1),), (Partial(0),), seed=8)


def test_point_kernels_need_no_jets():
    assert gpde.feature_jets(Gaussian(0.3), jnp.zeros((4, 2))) is None


def test_gibbs_feature_jets_against_finite_differences():
    # Jets of the features (x, ℓ(x)): value, Jacobian and Hessian of ℓ by central differences
    # (h = 1e-4: truncation ~ h²·|ℓ⁗| ≈ 1e-8, rounding ~ ε/h² ≈ 1e-8; tolerance 1e-6).
    kernel = _gibbs(per_dimension=True)
    x, _ = _points(10, nx=3, ny=1, shared=0)
    jets = eqx.filter_jit(gpde.feature_jets)(kernel, x)
    assert jets.value.shape == (3, 4) and jets.jacobian.shape == (3, 4, 2) and jets.hessian.shape == (3, 4, 2, 2)
    ell = jax.jit(jax.vmap(kernel.lengthscale))
    np.testing.assert_allclose(jets.value, np.concatenate([x, ell(x)], axis=1), rtol=1e-14)
    np.testing.assert_allclose(jets.jacobian[:, :2], np.broadcast_to(np.eye(2), (3, 2, 2)), atol=1e-14)
    np.testing.assert_allclose(jets.hessian[:, :2], 0.0, atol=1e-14)
    h, eye = 1e-4, np.eye(2)
    for i in range(2):
        gradient = (ell(x + h * eye[i]) - ell(x - h * eye[i])) / (2 * h)
        np.testing.assert_allclose(jets.jacobian[:, 2:, i], gradient, rtol=0, atol=1e-6)
        for j in range(2):
            second = (
                ell(x + h * (eye[i] + eye[j]))
                - ell(x + h * (eye[i] - eye[j]))
                - ell(x - h * (eye[i] - eye[j]))
                + ell(x - h * (eye[i] + eye[j]))
            ) / (4 * h**2)
            np.testing.assert_allclose(jets.hessian[:, 2:, i, j], second, rtol=0, atol=1e-6)
    assert np.max(np.abs(jets.hessian[:, 2:])) > 1e-3  # a curved field: the check is not vacuous


def test_direct_autodiff_reference_agrees_with_closed_form():
    # The reference above, checked on the Gaussian where ∂ₓ₀∂ᵧ₀ k and Δₓ Δᵧ k are known in closed
    # form: with δ = x − y, ℓ the lengthscale, k = exp(−|δ|²/(2ℓ²)):
    # ∂ₓ₀∂ᵧ₀ k = (1/ℓ² − δ₀²/ℓ⁴) k, Δₓ Δᵧ k = (|δ|⁴/ℓ⁸ − 2(d+2)|δ|²/ℓ⁶ + d(d+2)/ℓ⁴) k.
    ell = 0.3
    kernel = Gaussian(ell)
    x, y = _points(9, nx=3, ny=3)
    delta = np.asarray(x)[:, None, :] - np.asarray(y)[None, :, :]
    r2 = np.sum(delta**2, axis=-1)
    k = np.exp(-r2 / (2 * ell**2))
    direct = _direct_gram(kernel, (Partial(0), Laplacian()), (Partial(0), Laplacian()), x, y)
    np.testing.assert_allclose(direct[0, 0], (1 / ell**2 - delta[..., 0] ** 2 / ell**4) * k, rtol=1e-12, atol=1e-12)
    expected = (r2**2 / ell**8 - 8 * r2 / ell**6 + 8 / ell**4) * k
    np.testing.assert_allclose(direct[1, 1], expected, rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize(
    "kernel",
    [Matern72(0.4), gpde.kernels.Matern52(jnp.array([0.5, 0.3])), Sum(Gaussian(0.7), gpde.kernels.Scaled(Matern72(0.3), 2.0))],
    ids=["matern72", "matern52-anisotropic", "sum-scaled"],
)
def test_functional_gram_is_the_weighted_sum_of_operator_blocks(kernel):
    """functional_gram's fused closed form (per-point coefficients of Σ_j w_j L_j) equals
    Σ_jl w_j w_l K(L_j, L_l) from the per-operator blocks, for every operator order, at coincident
    and distinct points; a wrong weight changes it."""
    from gpde.solve._gram import functional_gram

    x = jax.random.uniform(jax.random.PRNGKey(0), (12, 2))
    y = jnp.concatenate([x[:5], jax.random.uniform(jax.random.PRNGKey(1), (6, 2))])
    wx = jax.random.normal(jax.random.PRNGKey(2), (12, len(OPERATORS)))
    wy = jax.random.normal(jax.random.PRNGKey(3), (11, len(OPERATORS)))
    blocks = operator_gram(kernel, OPERATORS, x, OPERATORS, y)
    expected = jnp.einsum("aj,jlab,bl->ab", wx, blocks, wy)
    fused = functional_gram(kernel, OPERATORS, wx, x, wy, y)
    scale = float(jnp.max(jnp.abs(expected)))
    assert float(jnp.max(jnp.abs(fused - expected))) <= 1e-12 * scale
    wrong = functional_gram(kernel, OPERATORS, wx.at[0, -1].add(1.0), x, wy, y)
    assert float(jnp.max(jnp.abs(wrong - expected))) > 1e-6 * scale
