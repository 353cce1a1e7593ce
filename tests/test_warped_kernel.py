"""The warped kernel (gpde.kernels.Warped) and the layer stretch (gpde.kernels.LayerStretch): the
map and its inverse, the kernel's value against its definition, every operator Gram block against
finite differences of the kernel function, and the sparse solver's screening coordinates."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import Evaluation, Laplacian, Partial, SecondPartial, operator_gram
from gpde.kernels import Gaussian, LayerStretch, Matern72, Scaled, Warped
from helpers import finite_difference_gram, paired_points

OPERATORS = (Evaluation(), Partial(0), Partial(1), SecondPartial(1, 1), SecondPartial(0, 1), Laplacian())
_gram = eqx.filter_jit(operator_gram)


def _stretch():
    return LayerStretch(axis=1, centre=0.5, width=0.1, ratio=4.0)


def test_layer_stretch_magnifies_its_layer_and_inverts():
    stretch = _stretch()
    x = np.linspace(-1.0, 2.0, 3001)
    w = np.asarray(stretch.stretch(x))
    slope = np.gradient(w, x)
    assert np.all(np.diff(w) > 0)  # increasing
    assert abs(slope[np.argmin(np.abs(x - 0.5))] - 4.0) < 1e-3  # magnification `ratio` at the centre
    assert abs(slope[0] - 1.0) < 1e-10 and abs(slope[-1] - 1.0) < 1e-10  # identity slope far away
    np.testing.assert_allclose(stretch.inverse(w), x, rtol=0, atol=1e-13)
    # Only the stretched axis moves.
    point = jnp.array([0.3, 0.55])
    np.testing.assert_allclose(np.asarray(stretch(point)), [0.3, float(stretch.stretch(0.55))], rtol=0, atol=0)


def test_value_is_the_inner_kernel_at_the_mapped_points():
    ell = np.array([0.3, 0.2])
    kernel = Warped(Gaussian(jnp.asarray(ell)), _stretch())
    x, y = paired_points(0, 5, 6, 2)

    def mapped(p):  # the stretch written out from its definition
        p = np.asarray(p).copy()
        p[:, 1] = p[:, 1] + 3.0 * 0.1 * np.tanh((p[:, 1] - 0.5) / 0.1)
        return p / ell

    mx, my = mapped(x), mapped(y)
    expected = np.exp(-0.5 * ((mx[:, None, :] - my[None, :, :]) ** 2).sum(-1))
    got = np.asarray(_gram(kernel, (Evaluation(),), x, (Evaluation(),), y))[0, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("inner", ["matern72"])
def test_every_operator_block_matches_finite_differences(inner):
    # Richardson-extrapolated central differences (steps h, h/2) are accurate to O(h⁴) relative to
    # the local lengthscale (0.3/4 inside the layer: (8e-3/0.075)⁴ ≈ 1e-4 at worst, far less
    # elsewhere) plus rounding; a wrong chain-rule term (the warp's second derivative in ∂²/∂x²,
    # a missing Jacobian factor) is off by O(1) relative.
    base = Matern72(jnp.array([0.4, 0.3])) if inner == "matern72" else Scaled(Gaussian(jnp.array([0.4, 0.3])), 2.0)
    kernel = Warped(base, _stretch())
    x, y = paired_points(1, 4, 5, 2)
    h = 8e-3
    fd = (4 * finite_difference_gram(kernel, OPERATORS, x, y, h / 2) - finite_difference_gram(kernel, OPERATORS, x, y, h)) / 3
    gram = np.asarray(_gram(kernel, OPERATORS, x, OPERATORS, y))
    scale = np.max(np.abs(gram), axis=(2, 3), keepdims=True)
    worst = np.max(np.abs(gram - fd) / scale)
    assert worst < 1e-3, worst
    # The warp matters: the unwarped kernel's blocks differ by O(1).
    plain = np.asarray(_gram(base, OPERATORS, x, OPERATORS, y))
    assert np.max(np.abs(plain - gram) / scale) > 0.1


def test_sparse_screening_coordinates_follow_the_warp():
    from gpde.sparse._scales import coordinate_scales, screening_coordinates

    stretch = _stretch()
    kernel = Scaled(Warped(Matern72(jnp.array([0.4, 0.3])), stretch), 3.0)
    points = np.asarray(paired_points(2, 7, 1, 0)[0])
    scales = coordinate_scales(kernel, points)
    np.testing.assert_allclose(scales, [0.4, 0.3])
    expected = np.column_stack([points[:, 0], np.asarray(stretch.stretch(points[:, 1]))]) / [0.4, 0.3]
    np.testing.assert_allclose(screening_coordinates(kernel, points, scales), expected, rtol=1e-14)


@pytest.mark.parametrize("arguments", [dict(width=0.0), dict(ratio=0.5), dict(axis=-1)])
def test_invalid_stretches_are_rejected(arguments):
    with pytest.raises(ValueError):
        LayerStretch(**{"axis": 0, "centre": 0.0, "width": 0.1, "ratio": 2.0, **arguments})


def test_warped_needs_a_kernel_and_a_warp():
    with pytest.raises(TypeError):
        Warped(_stretch(), _stretch())
    with pytest.raises(TypeError):
        Warped(Gaussian(1.0), lambda x: x)


@pytest.mark.parametrize("inner", ["scaled_gaussian", "sum"])
def test_closed_form_entries_equal_the_feature_space_derivatives(inner):
    """A coordinatewise warp of stationary kernels takes the closed-form path (per-point operator
    coefficients in the warped coordinates); the generic feature-space autodiff is the independent
    check, for operator blocks and for weighted functionals."""
    from gpde.solve._feature_gram import feature_gram
    from gpde.solve._gram import functional_gram
    from gpde.kernels import Sum

    # (Matérn 7/2's closed form is checked against finite differences above; its feature-space
    # derivatives take long to compile.)
    base = {
        "scaled_gaussian": Scaled(Gaussian(jnp.array([0.4, 0.3])), 2.0),
        "sum": Sum(Gaussian(0.3), Scaled(Gaussian(jnp.array([0.6, 0.2])), 0.5)),
    }[inner]
    kernel = Warped(base, _stretch())
    x, y = paired_points(3, 6, 5, 2)
    operators = (Evaluation(), Partial(1), SecondPartial(0, 1), Laplacian())  # the warp acts on input 1
    generic = np.asarray(feature_gram(kernel, operators, x, operators, y))
    scale = np.max(np.abs(generic))
    np.testing.assert_allclose(np.asarray(_gram(kernel, operators, x, operators, y)), generic, rtol=0, atol=1e-12 * scale)
    rng = np.random.default_rng(4)
    wx, wy = rng.normal(size=(6, len(operators))), rng.normal(size=(5, len(operators)))
    expected = np.einsum("aj,jlab,bl->ab", wx, generic, wy)
    got = np.asarray(functional_gram(kernel, operators, jnp.asarray(wx), x, jnp.asarray(wy), y))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.max(np.abs(expected)))
