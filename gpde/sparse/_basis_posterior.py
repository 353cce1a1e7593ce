"""The posterior covariance of the sparse solver's basis-functional values, and through the
solution's kriging, the posterior variance of any functional of u (docs/sparse-posterior.md).

The sparse Gauss-Newton step (`_gauss_newton.py`) works with one Gaussian model of the values t
of the basis functionals: prior covariance Θ̃ = (U Uᵀ)⁻¹, the basis factor's approximation of
Θ + S (the functionals' Gram matrix plus the factor's nugget), and reduced data b = W t + ε with
ε ~ N(0, T), T the top-up nugget, so that its system matrix is A = W Θ̃ Wᵀ + T. Given b,

    Cov(t | b) = Θ̃ − Θ̃ Wᵀ A⁻¹ W Θ̃.

The solution evaluates (L u)(x) by kriging from the basis values at the sites near x,
(L u)(x) = g_xᵀ t with g_x = (Θ_ss + S_s)⁻¹ K(s, L δ_x), which leaves the kriging variance
r_x = K(L δ_x, L δ_x) − K(L δ_x, s) g_x. In this model the posterior variance of (L u)(x) is

    var(x) = r_x + g_xᵀ Cov(t | b) g_x,

every term taken from the factor the solve used. It is ≥ 0 whatever the factor's error, because
it is the variance of one Gaussian model. The exact-kernel formula k(x, x) − K(x, φ) A⁻¹ K(φ, x)
with the factor's A is not: the posterior variance of a resolved solve is 10⁻⁴–10⁻⁷ of the prior's,
below the factor's approximation error, and mixing exact cross-covariances with the approximate A
gave variances hundreds of times the dense ones and negative (elliptic problem, 484 sites, ρ = 5:
median −247 × the dense variance).

Cost per target: one kriging solve of the solution's neighbourhood (as for evaluating u), the two
triangular sweeps of Θ̃ g, and a conjugate-gradient solve with A, preconditioned by the step's own
preconditioner; all targets of a batch go through each sweep together (`batched_cg`). Memory: the
batch's columns, (basis functionals) × batch; no N × N array.
"""

from collections.abc import Callable

import numpy as np
from jaxtyping import Float

from .._errors import SolverError

Columns = Float[np.ndarray, "n m"]


class BasisPosterior:
    """Cov(t | b) of the last sparse step, applied to columns: `quadratic(G)` is diag(Gᵀ Cov(t | b) G)
    and `inverse_diagonal(rows)` the diagonal entries of A⁻¹ at `rows` (for leave-one-out
    residuals). Holds the step's products, not copies of the factors."""

    def __init__(
        self,
        covariance: Callable[[Columns], Columns],
        lift: Callable[[Columns], Columns],
        extract: Callable[[Columns], Columns],
        top_up: Float[np.ndarray, " N"],
        precondition: Callable[[Columns], Columns],
        tolerance: float,
        max_iterations: int,
    ):
        self._covariance, self._lift, self._extract = covariance, lift, extract
        self._top_up, self._precondition = top_up, precondition
        self.tolerance, self.max_iterations = tolerance, max_iterations
        self.reduced_size = top_up.shape[0]

    def system(self, v: Columns) -> Columns:
        """A v = W Θ̃ Wᵀ v + T v."""
        return self._extract(self._covariance(self._lift(v))) + self._top_up[:, None] * v

    def quadratic(self, g: Columns) -> Float[np.ndarray, " m"]:
        """gᵀ Cov(t | b) g for each column g (in the basis functionals' natural order)."""
        y = self._covariance(g)
        z = self._extract(y)
        x, residual = self._solve(z)
        # zᵀ A⁻¹ z ≈ zᵀx + xᵀr: the CG error enters squared (in A's norm), not linearly.
        return np.sum(g * y, axis=0) - (np.sum(z * x, axis=0) + np.sum(x * residual, axis=0))

    def inverse_diagonal(self, rows: np.ndarray) -> Float[np.ndarray, " r"]:
        """[A⁻¹]_ii for each reduced functional i in `rows`."""
        unit = np.zeros((self.reduced_size, rows.size))
        unit[rows, np.arange(rows.size)] = 1.0
        x, residual = self._solve(unit)
        return x[rows, np.arange(rows.size)] + np.sum(x * residual, axis=0)

    def _solve(self, rhs: Columns) -> tuple[Columns, Columns]:
        x, residual, converged = batched_cg(self.system, self._precondition, rhs, self.tolerance, self.max_iterations)
        if not converged:
            raise SolverError(
                f"the sparse posterior's conjugate-gradient solves did not reach the relative residual "
                f"{self.tolerance:g} in {self.max_iterations} iterations: increase Sparse.cg_max_iterations "
                "or the preconditioner's rho"
            )
        return x, residual


def batched_cg(
    apply: Callable[[Columns], Columns],
    precondition: Callable[[Columns], Columns],
    rhs: Columns,
    tolerance: float,
    max_iterations: int,
) -> tuple[Columns, Columns, bool]:
    """Preconditioned CG for A X = rhs, column by column but with every product taken on all
    still-unconverged columns at once (one sparse sweep serves them all). A column stops when its
    residual is ≤ tolerance × its right-hand side's norm. Returns X, the residuals rhs − A X and
    whether every column converged."""
    x = np.zeros_like(rhs)
    residual = rhs.copy()
    scale = np.linalg.norm(rhs, axis=0)
    active = scale > 0
    z = np.zeros_like(rhs)
    z[:, active] = precondition(residual[:, active])
    direction = z.copy()
    rz = np.sum(residual * z, axis=0)
    for _ in range(max_iterations):
        active &= np.linalg.norm(residual, axis=0) > tolerance * scale
        if not active.any():
            return x, residual, True
        columns = np.flatnonzero(active)
        p = direction[:, columns]
        q = apply(p)
        curvature = np.sum(p * q, axis=0)
        if not np.all(np.isfinite(curvature) & (curvature > 0)):
            return x, residual, False
        alpha = rz[columns] / curvature
        x[:, columns] += alpha * p
        residual[:, columns] -= alpha * q
        z = precondition(residual[:, columns])
        rz_new = np.sum(residual[:, columns] * z, axis=0)
        direction[:, columns] = z + (rz_new / rz[columns]) * p
        rz[columns] = rz_new
    active &= np.linalg.norm(residual, axis=0) > tolerance * scale
    return x, residual, not active.any()
