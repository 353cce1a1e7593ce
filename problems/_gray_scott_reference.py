"""Reference solution of the 1-D Gray-Scott system by the method of lines.

    u_t = D_u u_xx − u v² + F (1 − u),   v_t = D_v v_xx + u v² − (F + k) v,   (t, x) ∈ [0, T]×[0, 1],
    u_x = v_x = 0 at x = 0 and 1,   u(0, x) = −cos 3πx,   v(0, x) = cos 2πx.

Space: cosine pseudo-spectral collocation on the nodes x_j = j/N, j = 0…N. A cosine series
Σ_k a_k cos kπx satisfies the zero Neumann conditions term by term, and the initial data are single
cosine modes, so the solution is smooth and its cosine coefficients decay faster than any power:
the x-discretization error falls exponentially in N. Time: scipy's Radau (implicit, for stiff
systems; the diffusion eigenvalues reach D_v (Nπ)²) with tight tolerances, the solution taken at
Chebyshev nodes in t, so that values at any t come from barycentric polynomial interpolation (the
solution is analytic in t). Pure numpy/scipy, float64; independent of the GP solver.

Accuracy (2026-11-29, `python -m problems._gray_scott_reference` prints it), max over the
101 × 201 test grid of the difference to N = 96, 64 time nodes, rtol 1e-12, for (u, v):
N = 32, 32 nodes, rtol 1e-9: (1.5e-6, 8.5e-7); N = 48, 40, 1e-10: (2.2e-9, 1.1e-9); the default
N = 64, 48, 1e-11: (3.8e-12, 4.1e-12), far below any collocation error. About 2 s per solve.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.integrate import solve_ivp

#: Defaults of the reference: cosine modes, Chebyshev time nodes, Radau relative tolerance.
MODES = 64
TIME_NODES = 48
RTOL = 1e-11


class CosineTimeInterpolant:
    """Values at Chebyshev time nodes of the cosine coefficients of u and v, and their evaluation
    at arbitrary (t, x)."""

    def __init__(self, t_nodes: np.ndarray, coefficients: np.ndarray):
        self.t_nodes = t_nodes  # (m,)
        self.coefficients = coefficients  # (m, 2, N + 1)
        m = t_nodes.size
        # Barycentric weights of Chebyshev points of the second kind.
        self.weights = (-1.0) ** np.arange(m) * np.where((np.arange(m) == 0) | (np.arange(m) == m - 1), 0.5, 1.0)

    def __call__(self, t: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(u, v) at the points (t_i, x_i): shape (2, n)."""
        t, x = np.asarray(t, float), np.asarray(x, float)
        difference = t[:, None] - self.t_nodes[None, :]
        exact = np.isclose(difference, 0.0, rtol=0.0, atol=1e-15)
        ratio = self.weights / np.where(exact, 1.0, difference)
        lagrange = ratio / ratio.sum(axis=1, keepdims=True)
        rows, columns = np.nonzero(exact)
        lagrange[rows] = 0.0
        lagrange[rows, columns] = 1.0
        coefficients = np.einsum("nm,mfk->nfk", lagrange, self.coefficients)  # (n, 2, N + 1)
        modes = np.cos(np.pi * x[:, None] * np.arange(self.coefficients.shape[2])[None, :])  # (n, N + 1)
        return np.einsum("nfk,nk->fn", coefficients, modes)


def gray_scott_mol(
    diffusion_u: float, diffusion_v: float, feed: float, kill: float, t_end: float = 1.0,
    modes: int = MODES, time_nodes: int = TIME_NODES, rtol: float = RTOL,
) -> CosineTimeInterpolant:
    """Solve the system by cosine collocation in x and Radau in t; returns the interpolant."""
    nodes = np.arange(modes + 1) / modes
    basis = np.cos(np.pi * np.outer(nodes, np.arange(modes + 1)))  # values = basis @ coefficients
    to_coefficients = np.linalg.inv(basis)
    second = basis @ np.diag(-((np.pi * np.arange(modes + 1)) ** 2)) @ to_coefficients

    def rhs(_, y):
        u, v = y[: modes + 1], y[modes + 1 :]
        uvv = u * v * v
        return np.concatenate([
            diffusion_u * (second @ u) - uvv + feed * (1.0 - u),
            diffusion_v * (second @ v) + uvv - (feed + kill) * v,
        ])

    def jacobian(_, y):
        u, v = y[: modes + 1], y[modes + 1 :]
        eye = np.eye(modes + 1)
        return np.block([
            [diffusion_u * second - np.diag(v * v) - feed * eye, -np.diag(2 * u * v)],
            [np.diag(v * v), diffusion_v * second + np.diag(2 * u * v) - (feed + kill) * eye],
        ])

    t_nodes = t_end * (1.0 - np.cos(np.pi * np.arange(time_nodes) / (time_nodes - 1))) / 2.0
    y0 = np.concatenate([-np.cos(3 * np.pi * nodes), np.cos(2 * np.pi * nodes)])
    result = solve_ivp(rhs, (0.0, t_end), y0, method="Radau", t_eval=t_nodes, rtol=rtol, atol=rtol * 1e-2,
                       jac=jacobian)
    if not result.success:
        raise RuntimeError(f"Gray-Scott reference: the time integration failed: {result.message}")
    values = result.y.T.reshape(time_nodes, 2, modes + 1)
    coefficients = np.einsum("kj,mfj->mfk", to_coefficients, values)
    return CosineTimeInterpolant(t_nodes, coefficients)


@functools.lru_cache(maxsize=4)
def cached_gray_scott(diffusion_u, diffusion_v, feed, kill) -> CosineTimeInterpolant:
    """The default-accuracy reference for these parameters, solved once per process."""
    return gray_scott_mol(diffusion_u, diffusion_v, feed, kill)


if __name__ == "__main__":
    parameters = (1e-3, 2e-3, 0.04, 0.06)
    tt, xx = np.meshgrid(np.linspace(0, 1, 101), np.linspace(0, 1, 201), indexing="ij")
    fine = gray_scott_mol(*parameters, modes=96, time_nodes=64, rtol=1e-12)(tt.ravel(), xx.ravel())
    for modes, nodes, rtol in ((32, 32, 1e-9), (48, 40, 1e-10), (MODES, TIME_NODES, RTOL)):
        coarse = gray_scott_mol(*parameters, modes=modes, time_nodes=nodes, rtol=rtol)(tt.ravel(), xx.ravel())
        print(f"N = {modes:3d}, {nodes} time nodes, rtol {rtol:.0e}: max |Δu|, |Δv| vs N = 96, 64, 1e-12 =",
              np.abs(coarse - fine).max(axis=1))
