"""Checks of the numpy reference solvers (problems/_cole_hopf.py, problems/_eikonal_reference.py).

Fast (a few seconds): small grids only. The numbers these tests pin down are quoted in
docs/references.md §2 and data/README.md.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from gpde.io._data import shipped_file
from gpde.problems._cole_hopf import burgers_cole_hopf
from gpde.problems._eikonal_reference import (
    EikonalReference,
    componentwise_backward_error,
    eikonal_fd_system,
    eikonal_reference_grid,
    reference_name,
    reference_path,
    solve_eikonal_fd,
)
from gpde.problems._eikonal_reference import _solve_m_matrix

NU = 0.02


# --------------------------------------------------------------------------------------------
# Burgers (Cole-Hopf)
# --------------------------------------------------------------------------------------------


def _burgers_fd_residual(t, x, step, nu=NU, nu_in_pde=NU):
    """Central-difference residual u_t + u u_x - nu u_xx and the sum of the terms' sizes."""
    u = burgers_cole_hopf(t, x, nu)
    u_t = (burgers_cole_hopf(t + step, x, nu) - burgers_cole_hopf(t - step, x, nu)) / (2 * step)
    u_right, u_left = burgers_cole_hopf(t, x + step, nu), burgers_cole_hopf(t, x - step, nu)
    u_x = (u_right - u_left) / (2 * step)
    u_xx = (u_right - 2 * u + u_left) / step**2
    residual = u_t + u * u_x - nu_in_pde * u_xx
    size = np.abs(u_t) + np.abs(u * u_x) + np.abs(nu_in_pde * u_xx)
    return residual, size


def _burgers_points():
    """40 random points in [0.1, 1] x [-0.95, 0.95] plus 4 in the steep front at t = 1."""
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.uniform(0.1, 1.0, 40), np.ones(4)])
    x = np.concatenate([rng.uniform(-0.95, 0.95, 40), [0.01, -0.03, 0.05, 0.1]])
    return t, x


def test_burgers_satisfies_pde():
    # Truncation error of the differences, relative to the terms: the front at t = 1 behaves
    # like -A tanh(k x) with A ~ 0.7, k = A / (2 nu) ~ 17.5 (max |u_x| ~ 12); the dominant
    # error u * step^2 u_xxx / 6 relative to u u_x is ~ (k step)^2 / 3 ~ 1.0e-6 at step 1e-4.
    # Measured: 8.3e-7 max, 7e-9 median. Bound: twice the estimate.
    t, x = _burgers_points()
    step = 1e-4
    residual, size = _burgers_fd_residual(t, x, step)
    relative = np.abs(residual) / size
    assert relative.max() < 2e-6
    # The residual is truncation error, not a defect of the formula: it shrinks as step^2.
    residual_2, _ = _burgers_fd_residual(t, x, 2 * step)
    assert 3.5 < np.abs(residual_2).max() / np.abs(residual).max() < 4.5
    # And the check can fail: the same solution put into the PDE with nu = 0.021 gives a
    # relative residual of ~2.5e-2.
    wrong, wrong_size = _burgers_fd_residual(t, x, step, nu_in_pde=0.021)
    assert (np.abs(wrong) / wrong_size).max() > 1e-3


def test_burgers_boundary_values_vanish():
    t = np.linspace(0.0, 1.0, 51)
    for x_edge in (-1.0, 1.0):
        assert np.abs(burgers_cole_hopf(t, x_edge, NU)).max() < 1e-14


def test_burgers_initial_condition():
    x = np.linspace(-1.0, 1.0, 101)
    np.testing.assert_array_equal(burgers_cole_hopf(0.0, x, NU), -np.sin(np.pi * x))
    # At t = 1e-6 the solution has moved by ~t |u_t| <= t (pi + nu pi^2) ~ 3.3e-6.
    assert np.abs(burgers_cole_hopf(1e-6, x, NU) + np.sin(np.pi * x)).max() < 4e-6


def test_burgers_quadrature_converged():
    t = np.linspace(0.0, 1.0, 26)[:, None]
    x = np.linspace(-1.0, 1.0, 81)[None, :]
    u_80 = burgers_cole_hopf(t, x, NU, n_nodes=80)
    u_300 = burgers_cole_hopf(t, x, NU, n_nodes=300)
    assert u_80.shape == (26, 81)
    assert np.abs(u_80 - u_300).max() < 1e-12  # measured 1.6e-13 (docs/references.md: 1.6e-13)


def test_burgers_pinn_viscosity_against_an_independent_quadrature():
    """At ν = 0.01/π (the PINN benchmark) the 80-node Gauss-Hermite reference equals a plain
    trapezoid rule over ±12 standard deviations of the heat kernel (a quadrature that shares
    nothing with Gauss-Hermite but the Cole-Hopf formula); measured 7.4e-14 on a 20 × 201 grid."""
    nu = 0.01 / np.pi
    t, x = (a.ravel() for a in np.meshgrid(np.linspace(0.05, 1.0, 6), np.linspace(-1.0, 1.0, 41), indexing="ij"))
    spread = np.sqrt(4 * nu * t)[:, None]
    eta = np.linspace(-12.0, 12.0, 20001)[None, :] * spread
    exponent = -np.cos(np.pi * (x[:, None] - eta)) / (2 * np.pi * nu) - eta**2 / spread**2
    weight = np.exp(exponent - exponent.max(axis=1, keepdims=True))
    trapezoid = -np.sum(np.sin(np.pi * (x[:, None] - eta)) * weight, axis=1) / np.sum(weight, axis=1)
    assert np.abs(burgers_cole_hopf(t, x, nu) - trapezoid).max() < 1e-12


def test_burgers_steep_front():
    # docs/references.md: at t = 1, max |u_x| ~ 12 at x = 0.
    x = np.linspace(-0.02, 0.02, 401)
    slope = np.diff(burgers_cole_hopf(1.0, x, NU)) / np.diff(x)
    assert 11.5 < np.abs(slope).max() < 12.5


def test_burgers_small_viscosity_stays_finite():
    # exp(1 / (2 pi nu)) overflows float64 for nu < 1 / (2 pi 709) ~ 2.2e-4 without the shift.
    u = burgers_cole_hopf(0.5, np.linspace(-1, 1, 11), 1e-5, n_nodes=200)
    assert np.all(np.isfinite(u)) and np.abs(u).max() <= 1.0 + 1e-12


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(t=0.5, x=0.0, nu=0.0), "nu"),
        (dict(t=0.5, x=0.0, nu=-0.1), "nu"),
        (dict(t=0.5, x=0.0, nu=float("nan")), "nu"),
        (dict(t=0.5, x=0.0, nu=NU, n_nodes=1), "n_nodes"),
        (dict(t=0.5, x=0.0, nu=NU, n_nodes=2.5), "n_nodes"),
        (dict(t=-0.1, x=0.0, nu=NU), "t"),
        (dict(t=np.array([0.1, np.nan]), x=0.0, nu=NU), "NaN"),
        (dict(t=np.zeros(3), x=np.zeros(4), nu=NU), "broadcastable"),
    ],
)
def test_burgers_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        burgers_cole_hopf(**kwargs)


# --------------------------------------------------------------------------------------------
# Eikonal (finite differences on v = exp(-u / eps))
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _fd(n, eps):
    """Cached finite-difference solution (axis, u); the n = 400 solve takes ~2 s."""
    return solve_eikonal_fd(n, eps)


def _successive_differences(eps, ns):
    """Max |u_n' - u_n| between successive grids, compared on the coarsest grid's nodes."""
    coarse = ns[0]
    diffs = []
    for n_a, n_b in zip(ns[:-1], ns[1:]):
        u_a = _fd(n_a, eps)[1][:: n_a // coarse, :: n_a // coarse]
        u_b = _fd(n_b, eps)[1][:: n_b // coarse, :: n_b // coarse]
        diffs.append(np.abs(u_b - u_a).max())
    return np.array(diffs)


def _richardson_from_fd(n_fine):
    """Richardson value from the cached FD solutions with n_fine and n_fine / 2 (eps 0.01)."""
    _, u_h = _fd(n_fine, 0.01)
    axis, u_2h = _fd(n_fine // 2, 0.01)
    return axis, u_h[::2, ::2] + (u_h[::2, ::2] - u_2h) / 3.0


def test_eikonal_second_order_eps_0_1():
    # Measured ratios 3.89, 3.97 for n = 20, 40, 80, 160 (3.62 from n = 10 to 20).
    diffs = _successive_differences(0.1, [20, 40, 80, 160])
    ratios = diffs[:-1] / diffs[1:]
    assert np.all((ratios > 3) & (ratios < 5)), ratios


def test_eikonal_second_order_eps_0_01():
    # Measured: differences 1.37e-2 (100 -> 200), 3.77e-3 (200 -> 400): ratio 3.64; it tends
    # to 4 on finer grids (6.2e-4 for 500 -> 1000, 1.56e-4 for 1000 -> 2000: ratio 3.98).
    diffs = _successive_differences(0.01, [100, 200, 400])
    ratio = diffs[0] / diffs[1]
    assert 3 < ratio < 5, ratio


@pytest.mark.parametrize("n, published", [(100, 0.467), (200, 0.481)])
def test_eikonal_max_matches_published(n, published):
    # Measured: 0.467349 (n = 100), 0.481070 (n = 200), 0.485929 (n = 1000).
    assert round(_fd(n, 0.01)[1].max(), 3) == published


def test_eikonal_solution_shape_boundary_and_symmetry():
    axis, u = _fd(100, 0.01)
    np.testing.assert_array_equal(axis, np.linspace(0, 1, 101))
    assert u.shape == (101, 101)
    for edge in (u[0], u[-1], u[:, 0], u[:, -1]):
        np.testing.assert_array_equal(edge, 0.0)
    assert np.all(u[1:-1, 1:-1] > 0)
    # The square's symmetries are symmetries of the discrete problem.
    np.testing.assert_allclose(u, u.T, atol=1e-14)
    np.testing.assert_allclose(u, u[::-1], atol=1e-14)


def test_eikonal_solve_is_componentwise_accurate():
    # v ~ 5e-21 in the centre: only a solve with small relative error in every component
    # gives u = -eps log v to full accuracy. For the M-matrix with b >= 0, a componentwise
    # backward error of a few ulps certifies that.
    A, b = eikonal_fd_system(100, 0.01)
    v = _solve_m_matrix(A, b)
    assert 0 < v.min() < 1e-20
    assert componentwise_backward_error(A, v, b) < 1e-14  # measured 6.9e-16
    _, u = _fd(100, 0.01)
    np.testing.assert_allclose(u[1:-1, 1:-1].ravel(), -0.01 * np.log(v), rtol=1e-14)


def test_eikonal_constant_speed_is_a_rescaling():
    # |grad u|^2 = c^2 + eps Laplace(u)  <=>  u = c w, |grad w|^2 = 1 + (eps / c) Laplace(w);
    # the discrete systems are identical, so this holds to rounding.
    _, u_speed = solve_eikonal_fd(40, 0.1, speed=lambda x, y: np.full_like(x, 2.0))
    _, w = solve_eikonal_fd(40, 0.05)
    np.testing.assert_allclose(u_speed, 2.0 * w, rtol=1e-12, atol=1e-14)


def test_eikonal_rejects_bad_input():
    with pytest.raises(ValueError, match="eps"):
        solve_eikonal_fd(10, 0.0)
    with pytest.raises(ValueError, match=r"n \(mesh"):
        solve_eikonal_fd(1, 0.1)
    with pytest.raises(ValueError, match="n_fine"):
        eikonal_reference_grid(0.1, n_fine=11)


def test_load_or_build_caches_atomically(tmp_path):
    ref = EikonalReference.load_or_build(eps=0.1, cache_dir=tmp_path, n_fine=20)
    path = reference_path(0.1, tmp_path)
    assert path.name == "eikonal_reference_eps0.1.npz"
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind
    loaded = EikonalReference.load_or_build(eps=0.1, cache_dir=tmp_path, n_fine=20)
    np.testing.assert_array_equal(loaded.u, ref.u)
    _, u = eikonal_reference_grid(0.1, n_fine=20)
    np.testing.assert_array_equal(ref.u, u)
    with pytest.raises(ValueError, match="n_fine"):
        EikonalReference.load_or_build(eps=0.1, cache_dir=tmp_path, n_fine=40)


@pytest.fixture(scope="module")
def cached_reference():
    shipped = shipped_file(reference_name(0.01))
    assert shipped is not None, "the ε = 0.01 reference must ship as package data (gpde.data)"
    with shipped.open("rb") as source:
        return EikonalReference.load(source, expect_eps=0.01, expect_n_fine=1000)


def test_cached_reference_reproduces_its_grid(cached_reference):
    ref = cached_reference
    assert ref.u.shape == (501, 501)
    X, Y = np.meshgrid(ref.axis, ref.axis, indexing="ij")
    at_nodes = ref(np.column_stack([X.ravel(), Y.ravel()])).reshape(X.shape)
    assert np.abs(at_nodes - ref.u).max() < 1e-12
    for edge in (ref.u[0], ref.u[-1], ref.u[:, 0], ref.u[:, -1]):
        np.testing.assert_array_equal(edge, 0.0)
    assert 0.4860 < ref.u.max() < 0.4862  # Richardson value 0.486136


def test_cached_reference_is_smooth_and_positive(cached_reference):
    ref = cached_reference
    rng = np.random.default_rng(1)
    points = rng.uniform(0.0, 1.0, (2000, 2))
    values = ref(points)
    assert np.all(values > 0)
    # |grad u| <= 1 (|grad u|^2 = 1 + eps Laplace(u) with u concave-ish; max of the grid's
    # finite-difference gradient: 0.999998), so u moves by at most the distance between two
    # points: a spline wiggling between nodes would break this.
    step = 1e-3
    for shift in ([step, 0.0], [0.0, step]):
        shifted = ref(np.clip(points + shift, 0.0, 1.0))
        assert np.abs(shifted - values).max() <= step * (1 + 1e-3)
    # Off the nodes, the spline agrees with an independent coarser Richardson value
    # (n = 400, 200) to that value's error: 3.4e-5 max measured (the cached file's own error
    # is ~9e-7, estimated against a run with n = 2000).
    axis, u_coarse = _richardson_from_fd(400)
    X, Y = np.meshgrid(axis, axis, indexing="ij")
    on_coarse = ref(np.column_stack([X.ravel(), Y.ravel()])).reshape(X.shape)
    assert np.abs(on_coarse - u_coarse).max() < 1e-4

