"""Reference solution of the regularized Eikonal problem on the unit square.

Problem (docs/references.md, section 2):  |grad u|^2 = f^2 + eps * Laplace(u)  on [0, 1]^2,  u = 0 on
the boundary, with speed f = 1 unless given. The substitution v = exp(-u / eps) makes it linear,

    f(x)^2 v - eps^2 Laplace(v) = 0  in the square,   v = 1 on the boundary,

which is solved here by 5-point finite differences and a sparse direct solve; u = -eps log(v).
A Richardson-extrapolated fine-grid solution for ε = 0.01 ships with gpde (package data
`gpde.data`) as the yardstick for the GP solvers; other ε are computed on first use and cached in
the user's cache directory (`gpde.io.cache_directory`). Pure numpy/scipy, float64, no JAX.

Rebuild the shipped file with ``python -m gpde.problems._eikonal_reference`` (see data/README.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.interpolate import RectBivariateSpline
from scipy.sparse.linalg import splu

Speed = Callable[[np.ndarray, np.ndarray], np.ndarray]

from gpde.io import atomic_path, cache_directory, find_data_file, source_data_directory


# --------------------------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------------------------


def eikonal_fd_system(n: int, eps: float, speed: Speed | None = None):
    """Assemble the 5-point system A v = b for the interior values of v = exp(-u / eps).

    Grid: nodes axis = linspace(0, 1, n + 1), h = 1 / n; the m = n - 1 interior nodes per side
    are numbered k = i * m + j for the node (axis[i + 1], axis[j + 1]). The discrete equation
    f^2 v - eps^2 (v_E + v_W + v_N + v_S - 4 v) / h^2 = 0, multiplied by h^2 / eps^2, reads

        (4 + (h f / eps)^2) v_ij - (sum of interior neighbours) = (number of boundary neighbours),

    since v = 1 on the boundary. A is symmetric, strictly diagonally dominant with positive
    diagonal and nonpositive off-diagonal entries (an M-matrix), and b >= 0.

    Returns:
        A: scipy.sparse CSC matrix of shape (m*m, m*m); b: float64 array of shape (m*m,).
    """
    _check_grid_args(n, eps)
    m = n - 1
    h = 1.0 / n
    axis = np.linspace(0.0, 1.0, n + 1)
    f2 = _speed_squared(speed, axis[1:-1])
    second_diff = sp.diags([-np.ones(m - 1), 2.0 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1])
    eye = sp.identity(m)
    A = sp.kron(second_diff, eye) + sp.kron(eye, second_diff)
    A = A + sp.diags((h / eps) ** 2 * f2.ravel())
    boundary_neighbours = np.zeros((m, m))
    boundary_neighbours[0, :] += 1.0
    boundary_neighbours[-1, :] += 1.0
    boundary_neighbours[:, 0] += 1.0
    boundary_neighbours[:, -1] += 1.0
    return A.tocsc(), boundary_neighbours.ravel()


def solve_eikonal_fd(n: int, eps: float, speed: Speed | None = None):
    """Solve the regularized Eikonal problem by 5-point finite differences on an n x n mesh.

    Args:
        n: number of mesh intervals per side (h = 1 / n), >= 2.
        eps: regularization eps > 0.
        speed: optional callable f(x, y) -> array broadcastable to x's shape, evaluated on
            'ij'-indexed meshgrids of the interior nodes; default f = 1.

    Returns:
        axis: float64 array (n + 1,) = linspace(0, 1, n + 1).
        u: float64 array (n + 1, n + 1), u[i, j] = u(axis[i], axis[j]); exactly 0 on the
            boundary.
    """
    A, b = eikonal_fd_system(n, eps, speed)
    v_interior = _solve_m_matrix(A, b)
    if not np.all(v_interior > 0):
        # Cannot happen in exact arithmetic (A is an M-matrix, b >= 0, b != 0); an underflow
        # to 0 means eps is too small for float64 (v ~ exp(-0.5 / eps)).
        raise FloatingPointError(
            f"v = exp(-u/eps) underflowed or lost its sign (min v = {v_interior.min():.3e}); "
            f"eps={eps} is too small for float64")
    u = np.zeros((n + 1, n + 1))
    u[1:-1, 1:-1] = -eps * np.log(v_interior.reshape(n - 1, n - 1))
    return np.linspace(0.0, 1.0, n + 1), u


def _solve_m_matrix(A, b) -> np.ndarray:
    """Solve A v = b for a symmetric M-matrix A and b >= 0, with small componentwise error.

    v spans ~20 orders of magnitude at eps = 0.01 (v ~ 1e-21 in the centre), so a normwise
    accurate solve is useless there: u = -eps log v needs v to small *relative* error in every
    component. Gaussian elimination with diagonal pivots on an M-matrix keeps every Schur
    complement an M-matrix, so L and U have nonpositive off-diagonals and positive pivots;
    with b >= 0 the forward and back substitutions then only add nonnegative terms - there is
    no cancellation, and each component of v carries a relative error of a few ulps times the
    elimination depth. That argument needs *diagonal* pivoting and a *symmetric* permutation
    (P A P^T is again an M-matrix). SuperLU's default partial pivoting with a COLAMD column
    ordering guarantees neither, so we ask for both explicitly: a symmetric fill-reducing
    ordering (minimum degree on A^T + A), SymmetricMode, and diag_pivot_thresh = 0 (always take
    the diagonal pivot; A is symmetric positive definite, so this is stable).
    Checked with componentwise_backward_error: ~1e-15 for n = 58 ... 1000 at eps = 0.01 (the
    default splu happened to do as well on these grids, but nothing guarantees it). Cost at
    n = 1000 (1e6 unknowns): ~14 s and 1.3 GB peak on 2 cores; n = 2000: ~96 s, 5.4 GB.
    """
    lu = splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
              options={"SymmetricMode": True})
    return lu.solve(b)


def componentwise_backward_error(A, v: np.ndarray, b: np.ndarray) -> float:
    """max_i |b - A v|_i / (|A| |v| + |b|)_i: the relative residual component by component.

    Calling it omega, the relative error of every component of v is at most omega times the
    componentwise condition number max_i (|A^-1| (|A| |v| + |b|))_i / v_i, which for this
    system equals max_i (2 A^-1 diag(A) v)_i / v_i: measured 224 (n = 100), 3.2e3 (n = 400),
    2.0e4 (n = 1000) at eps = 0.01. With omega ~ 1e-15 the error in u = -eps log v is then
    below eps * 2e4 * 1e-15 = 2e-13.
    """
    residual = np.abs(b - A @ v)
    scale = abs(A) @ np.abs(v) + np.abs(b)
    return float(np.max(residual / scale))


def _check_grid_args(n, eps) -> None:
    """Raise ValueError for a mesh size or eps the solver cannot use."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n (mesh intervals per side) must be an integer >= 2, got n={n!r}")
    if not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a positive finite number, got eps={eps!r}")


def _speed_squared(speed: Speed | None, interior_axis: np.ndarray) -> np.ndarray:
    """f^2 at the interior nodes, shape (m, m), 'ij' indexing; f = 1 when speed is None."""
    m = interior_axis.size
    if speed is None:
        return np.ones((m, m))
    X, Y = np.meshgrid(interior_axis, interior_axis, indexing="ij")
    f = np.broadcast_to(np.asarray(speed(X, Y), dtype=np.float64), (m, m))
    if not np.all(np.isfinite(f)):
        raise ValueError("speed(x, y) returned non-finite values on the grid")
    return f**2


# --------------------------------------------------------------------------------------------
# Richardson extrapolation and the cached reference
# --------------------------------------------------------------------------------------------


def eikonal_reference_grid(eps: float, n_fine: int = 1000, speed: Speed | None = None):
    """Richardson-extrapolated solution u_h + (u_h - u_2h) / 3 on the coarse grid.

    u_h is the finite-difference solution with n_fine intervals, u_2h with n_fine / 2; the
    scheme is second order, so the h^2 error terms cancel and the result is fourth order
    where u is smooth.

    Returns:
        axis: float64 array (n_fine / 2 + 1,); u: float64 array (n_fine/2 + 1, n_fine/2 + 1).
    """
    if isinstance(n_fine, bool) or not isinstance(n_fine, (int, np.integer)) \
            or n_fine < 4 or n_fine % 2:
        raise ValueError(f"n_fine must be an even integer >= 4, got n_fine={n_fine!r}")
    _, u_fine = solve_eikonal_fd(n_fine, eps, speed)
    axis, u_coarse = solve_eikonal_fd(n_fine // 2, eps, speed)
    u_fine_on_coarse = u_fine[::2, ::2]
    return axis, u_fine_on_coarse + (u_fine_on_coarse - u_coarse) / 3.0


def reference_name(eps: float) -> str:
    """File name of the reference for eps, e.g. eikonal_reference_eps0.01.npz."""
    return f"eikonal_reference_eps{eps:g}.npz"


def reference_path(eps: float, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the reference for eps is cached: `cache_dir`, or the user's gpde cache directory."""
    cache_dir = cache_directory() if cache_dir is None else Path(cache_dir)
    return cache_dir / reference_name(eps)


class EikonalReference:
    """Reference solution u of the regularized Eikonal problem, interpolated bicubically.

    Built from a grid solution (axis, u) with u[i, j] = u(axis[i], axis[j]) on [0, 1]^2.
    Calling it with points of shape (m, 2) returns u at the points, shape (m,), from an
    interpolating bicubic spline (scipy RectBivariateSpline, kx = ky = 3, s = 0).
    """

    def __init__(self, axis, u, eps: float | None = None, n_fine: int | None = None):
        axis = np.asarray(axis, dtype=np.float64)
        u = np.asarray(u, dtype=np.float64)
        if axis.ndim != 1 or axis.size < 4 or np.any(np.diff(axis) <= 0):
            raise ValueError("axis must be a strictly increasing 1-D array with >= 4 nodes, "
                             f"got shape {axis.shape}")
        if u.shape != (axis.size, axis.size):
            raise ValueError(f"u must have shape {(axis.size, axis.size)} to match axis, "
                             f"got {u.shape}")
        self.axis, self.u, self.eps, self.n_fine = axis, u, eps, n_fine
        self._spline = RectBivariateSpline(axis, axis, u, kx=3, ky=3, s=0)

    def __call__(self, points) -> np.ndarray:
        """u at points of shape (m, 2) (columns x, y, inside the grid); returns shape (m,)."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must have shape (m, 2), got {points.shape}")
        lo, hi = self.axis[0], self.axis[-1]
        tol = 1e-12 * (hi - lo)
        if np.any(points < lo - tol) or np.any(points > hi + tol):
            raise ValueError(f"points must lie in [{lo}, {hi}]^2; the spline does not "
                             "extrapolate")
        return self._spline.ev(points[:, 0], points[:, 1])

    @classmethod
    def load_or_build(cls, eps: float = 0.01, cache_dir: str | os.PathLike | None = None,
                      n_fine: int = 1000) -> "EikonalReference":
        """Load the reference for eps, or compute and cache it.

        Without `cache_dir`, the file shipped with gpde is used when there is one, else the
        user's cache directory; with `cache_dir`, only that directory. When it is missing,
        ``eikonal_reference_grid(eps, n_fine)`` is computed (n_fine = 1000: ~16 s and 1.3 GB peak
        on 2 cores) and saved atomically, so a concurrent reader never sees a partial file.
        """
        found = find_data_file(reference_name(eps)) if cache_dir is None else None
        if found is not None:
            with found.open("rb") as source:
                return cls.load(source, expect_eps=eps, expect_n_fine=n_fine)
        path = reference_path(eps, cache_dir)
        if path.exists():
            return cls.load(path, expect_eps=eps, expect_n_fine=n_fine)
        axis, u = eikonal_reference_grid(eps, n_fine)
        save_reference(path, axis, u, eps, n_fine)
        return cls(axis, u, eps=eps, n_fine=n_fine)

    @classmethod
    def load(cls, path, expect_eps: float | None = None,
             expect_n_fine: int | None = None) -> "EikonalReference":
        """Load a file written by ``save_reference``, optionally checking eps and n_fine."""
        with np.load(path) as data:
            axis, u = data["axis"], data["u"]
            eps, n_fine = float(data["eps"]), int(data["n_fine"])
        if expect_eps is not None and not np.isclose(eps, expect_eps, rtol=1e-12, atol=0):
            raise ValueError(f"{path} holds eps={eps}, expected eps={expect_eps}")
        if expect_n_fine is not None and n_fine != expect_n_fine:
            raise ValueError(f"{path} was built with n_fine={n_fine}, expected "
                             f"n_fine={expect_n_fine}; delete it or use another cache_dir")
        return cls(axis, u, eps=eps, n_fine=n_fine)


def save_reference(path, axis, u, eps: float, n_fine: int) -> None:
    """Write (axis, u, eps, n_fine) to path as compressed float64 .npz, atomically.

    The data go to a temporary file in the same directory first and are then renamed with
    os.replace, which is atomic on one file system.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, open(temporary, "wb") as out:
        np.savez_compressed(out, axis=np.asarray(axis, np.float64), u=np.asarray(u, np.float64),
                            eps=np.float64(eps), n_fine=np.int64(n_fine))


# --------------------------------------------------------------------------------------------
# Command line: rebuild the cached file and print how good it is
# --------------------------------------------------------------------------------------------


def build_and_report(eps: float = 0.01, n_fine: int = 1000,
                     cache_dir: str | os.PathLike | None = None) -> Path:
    """(Re)build the cached reference for eps and print timings and accuracy estimates.

    The accuracy estimates are (u_h - u_2h)/3, the estimated error of u_h itself, and the
    difference between this Richardson value and the one from n_fine/2 and n_fine/4, an
    estimate (pessimistic) of the extrapolated value's error on the n_fine/4 grid.
    """
    start = time.perf_counter()
    _, u_h = solve_eikonal_fd(n_fine, eps)
    t_fine = time.perf_counter() - start
    _, u_2h = solve_eikonal_fd(n_fine // 2, eps)
    u_4h = solve_eikonal_fd(n_fine // 4, eps)[1] if n_fine % 4 == 0 else None
    total = time.perf_counter() - start
    axis = np.linspace(0.0, 1.0, n_fine // 2 + 1)
    u_ref = u_h[::2, ::2] + (u_h[::2, ::2] - u_2h) / 3.0
    path = reference_path(eps, cache_dir)
    save_reference(path, axis, u_ref, eps, n_fine)

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"eps={eps:g}: n={n_fine} solve {t_fine:.1f} s, all solves {total:.1f} s, "
          f"peak RSS {peak_mib:.0f} MiB")
    print(f"max u: n={n_fine}: {u_h.max():.6f}, n={n_fine // 2}: {u_2h.max():.6f}, "
          f"Richardson: {u_ref.max():.6f}")
    diff = u_h[::2, ::2] - u_2h
    print(f"u_h - u_2h: max {np.abs(diff).max():.3e}, RMS {np.sqrt(np.mean(diff**2)):.3e}; "
          f"estimated error of u_h (diff/3): max {np.abs(diff).max() / 3:.3e}")
    if u_4h is not None:
        rich_coarse = u_2h[::2, ::2] + (u_2h[::2, ::2] - u_4h) / 3.0
        d = u_ref[::2, ::2] - rich_coarse
        print(f"Richardson({n_fine},{n_fine // 2}) - Richardson({n_fine // 2},{n_fine // 4}): "
              f"max {np.abs(d).max():.3e}, RMS {np.sqrt(np.mean(d**2)):.3e}")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return path


def main(argv=None) -> None:
    """Entry point of ``python -m gpde.problems._eikonal_reference`` (writes the repository's
    data/ directory by default: the file that ships with gpde)."""
    parser = argparse.ArgumentParser(description=build_and_report.__doc__.splitlines()[0])
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--n-fine", type=int, default=1000)
    parser.add_argument("--cache-dir", type=Path, default=source_data_directory())
    args = parser.parse_args(argv)
    build_and_report(args.eps, args.n_fine, args.cache_dir)


if __name__ == "__main__":
    main()
