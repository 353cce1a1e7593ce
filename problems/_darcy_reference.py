"""Finite-difference reference for Darcy flow: −∇·(e^{a}∇u) = f on [0,1]², u = 0 on the boundary.

The 5-point conservative scheme on the uniform grid x_i = i h, h = 1/(n+1), i = 0 … n+1: the
flux through the face between neighbouring nodes P and Q is e^{a}_{PQ} (u_Q − u_P)/h with the
face permeability e^{a}_{PQ} = the HARMONIC mean of e^{a(P)} and e^{a(Q)} (the exact face value for
a permeability that is piecewise constant around the nodes, and the usual choice because it stays
accurate where e^{a} varies by orders of magnitude). The scheme is second order in h for smooth a,
u and f. The matrix is sparse symmetric positive definite; scipy's sparse direct solver solves it.

Used by problems/darcy.py (the observations and the u reference) and by the BLJES black-box
Darcy benchmark, so the signature of `solve_darcy_fd` is fixed.
"""

from collections.abc import Callable

import numpy as np
import scipy.interpolate
import scipy.sparse
import scipy.sparse.linalg


def interior_nodes(n: int) -> np.ndarray:
    """The n×n interior nodes (i h, j h), i, j = 1 … n, h = 1/(n+1), as an (n*n, 2) array in
    row-major order (the first coordinate varies slowest)."""
    axis = np.arange(1, n + 1) / (n + 1)
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)


def solve_darcy_fd(
    log_permeability: Callable[[np.ndarray], np.ndarray],
    n: int,
    source: float | Callable[[np.ndarray], np.ndarray] = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve −∇·(e^{a}∇u) = f on [0,1]², u = 0 on the boundary, by 5-point finite differences.

    `n` counts the INTERIOR nodes per side: the grid spacing is h = 1/(n+1) and the unknowns are
    the n×n nodes strictly inside the square. `log_permeability` is a: (m, 2) points → (m,)
    values (it is also evaluated at the boundary nodes, for the faces next to the boundary);
    `source` is f, a constant or a function like a. Returns (nodes (n*n, 2), u at the nodes (n*n,)),
    nodes ordered as `interior_nodes(n)`.
    """
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n (interior nodes per side) must be an integer >= 1, got {n!r}")
    h = 1.0 / (n + 1)
    axis = np.arange(n + 2) * h
    full = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    permeability = np.exp(np.asarray(log_permeability(full), dtype=float)).reshape(n + 2, n + 2)
    if not np.all(np.isfinite(permeability)) or np.any(permeability <= 0):
        raise ValueError("e^{a} must be finite and positive at every grid node")
    nodes = interior_nodes(n)
    f = np.broadcast_to(np.asarray(source(nodes) if callable(source) else source, dtype=float), (n * n,))

    def harmonic(p, q):
        return 2.0 * p * q / (p + q)

    # Face permeabilities between node (i, j) and its four neighbours, for interior (i, j).
    centre = permeability[1:-1, 1:-1]
    east = harmonic(centre, permeability[2:, 1:-1])  # towards i + 1
    west = harmonic(centre, permeability[:-2, 1:-1])  # towards i − 1
    north = harmonic(centre, permeability[1:-1, 2:])  # towards j + 1
    south = harmonic(centre, permeability[1:-1, :-2])  # towards j − 1
    index = np.arange(n * n).reshape(n, n)
    rows = [index.ravel()]
    cols = [index.ravel()]
    values = [(east + west + north + south).ravel()]
    # Off-diagonal couplings to interior neighbours; boundary neighbours carry u = 0 and drop out.
    for face, shift in ((east, (1, 0)), (west, (-1, 0)), (north, (0, 1)), (south, (0, -1))):
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        ni, nj = i + shift[0], j + shift[1]
        inside = (ni >= 0) & (ni < n) & (nj >= 0) & (nj < n)
        rows.append(index[i[inside], j[inside]])
        cols.append(index[ni[inside], nj[inside]])
        values.append(-face[inside])
    matrix = scipy.sparse.csr_matrix(
        (np.concatenate(values) / h**2, (np.concatenate(rows), np.concatenate(cols))), shape=(n * n, n * n)
    )
    u = scipy.sparse.linalg.spsolve(matrix.tocsc(), f)
    return nodes, np.asarray(u)


def grid_interpolant(u: np.ndarray, n: int) -> Callable[[np.ndarray], np.ndarray]:
    """u(x) at arbitrary points of [0,1]² from the values `u` at `interior_nodes(n)` and u = 0 on
    the boundary: a bicubic spline through all (n+2)² nodes (its error, O(h⁴) for smooth u, is
    below the scheme's O(h²)). Returns a function (m, 2) points → (m,) values."""
    u = np.asarray(u, dtype=float)
    if u.shape != (n * n,):
        raise ValueError(f"expected {n * n} nodal values for n = {n}, got shape {u.shape}")
    full = np.zeros((n + 2, n + 2))
    full[1:-1, 1:-1] = u.reshape(n, n)
    axis = np.arange(n + 2) / (n + 1)
    spline = scipy.interpolate.RectBivariateSpline(axis, axis, full, kx=3, ky=3)

    def evaluate(points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=float)
        return spline(points[:, 0], points[:, 1], grid=False)

    return evaluate
