"""Applying a sparse inverse-Cholesky factor: Θ⁻¹ ≈ U Uᵀ with U sparse upper triangular.

U is kept in one normalized form, U = (I + T) D: D the diagonal of U and T = the strictly upper
part of U D⁻¹ (its diagonal stored as zeros), in U's own compressed columns with 32-bit indices:
12 bytes per nonzero and no other copy. Products by U and Uᵀ are sparse products with T; the covariance Θ ≈ U⁻ᵀ U⁻¹ needs
the solves with I + T and (I + T)ᵀ, done by SuperLU's compiled triangular sweep (`gstrs`, the
routine scipy.sparse.linalg.spsolve_triangular calls) with L = I and U = T in SuperLU's own
convention (the unit diagonal of a unit-triangular factor is implicit). Calling it on the stored
arrays avoids what spsolve_triangular does on every call (a copy of the matrix, a rescaling and
checks: 450 ms against 14 ms per solve at 8.8·10⁶ nonzeros), and what a SuperLU factorization
object costs (a second copy of the factor, and an allocation that fails above a few times 10⁷
nonzeros). Measured 2026-11-29: 2.4·10⁻² s for U⁻¹v with 10⁷ nonzeros on one core.

`gstrs` is scipy's internal binding (scipy ≥ 1.13, where spsolve_triangular is built on it); the
tests compare every product and solve here with dense linear algebra, so a change of its
signature fails them rather than the results.
"""

import numpy as np
import scipy.sparse
from jaxtyping import Float

from .._errors import ConfigError, SolverError

try:  # scipy's internal binding; its absence must not break `import gpde`, only the sparse solver
    from scipy.sparse.linalg._dsolve import _superlu
except ImportError:  # pragma: no cover - depends on the installed scipy
    _superlu = None

_ENTRIES_PER_PASS = 1 << 22


class TriangularFactor:
    """U (sparse upper triangular, positive diagonal) with products by U, Uᵀ and solves with both."""

    def __init__(self, factor: scipy.sparse.csc_matrix):
        """Takes over `factor`'s arrays (its values are overwritten by T's): every column must hold
        its diagonal entry, as the last of its sorted rows (as `_factor.factor` lays it out)."""
        if _superlu is None or not hasattr(_superlu, "gstrs"):
            raise ConfigError(
                "the sparse solver needs SuperLU's triangular solve from scipy >= 1.13 "
                "(pip install 'scipy>=1.13'), or use the dense solver (--solver dense)"
            )
        n = factor.shape[0]
        factor.sort_indices()
        indptr = np.asarray(factor.indptr)
        indices = factor.indices.astype(np.intc, copy=False)
        data = factor.data
        last = indptr[1:] - 1
        if np.any(np.diff(indptr) < 1) or np.any(indices[last] != np.arange(n)):
            raise ValueError("each column of the factor must end with its diagonal entry")
        self.nnz = int(factor.nnz)
        self.diagonal = data[last].copy()
        if not np.all(self.diagonal > 0):  # NaN and 0 alike
            raise SolverError(
                "the sparse factor has a zero or non-finite diagonal entry; increase the nugget or "
                "the sparsity radius rho"
            )
        # In place: T[:, c] = U[:, c] / d_c with the diagonal entry stored as 0.
        for lo in range(0, self.nnz, _ENTRIES_PER_PASS):  # in passes: no second nnz-sized array
            entries = np.arange(lo, min(lo + _ENTRIES_PER_PASS, self.nnz))
            data[entries] /= self.diagonal[np.searchsorted(indptr, entries, side="right") - 1]
        data[last] = 0.0
        self._diagonal_squared = self.diagonal**2
        self.strict = scipy.sparse.csc_matrix((data, indices, indptr.astype(np.intc)), shape=(n, n))
        self._identity = scipy.sparse.csc_matrix(
            (np.ones(n), np.arange(n, dtype=np.intc), np.arange(n + 1, dtype=np.intc)), shape=(n, n)
        )

    def toarray(self) -> Float[np.ndarray, "n n"]:
        """U as a dense array (for checks at small sizes)."""
        return (self.strict.toarray() + np.eye(self.diagonal.shape[0])) * self.diagonal[None, :]

    def precision(self, v: Float[np.ndarray, "n *m"]) -> Float[np.ndarray, "n *m"]:
        """U Uᵀ v ≈ Θ⁻¹ v for a vector or the columns of a matrix (sparse products; .T of a CSC
        matrix is a CSR view, no copy)."""
        w = self._column(self._diagonal_squared, v) * (v + self.strict.T @ v)
        return w + self.strict @ w

    def covariance(self, v: Float[np.ndarray, "n *m"]) -> Float[np.ndarray, "n *m"]:
        """U⁻ᵀ U⁻¹ v ≈ Θ v for a vector or the columns of a matrix (two triangular sweeps)."""
        v = np.asarray(v, dtype=np.float64)
        return self._unit_solve(self._unit_solve(v, "N") / self._column(self._diagonal_squared, v), "T")

    @staticmethod
    def _column(d, v):
        """The diagonal d shaped to scale the rows of v (a vector or a matrix)."""
        return d if np.ndim(v) == 1 else d[:, None]

    def _unit_solve(self, b, trans):
        """(I + T)⁻¹ b (trans "N") or (I + T)⁻ᵀ b (trans "T")."""
        n = b.shape[0]
        x, info = _superlu.gstrs(
            trans,
            n, self._identity.nnz, self._identity.data, self._identity.indices, self._identity.indptr,
            n, self.strict.nnz, self.strict.data, self.strict.indices, self.strict.indptr,
            np.array(b, dtype=np.float64, copy=True),
        )
        if info:
            raise SolverError(f"the sparse triangular solve failed (SuperLU info {info})")
        return x
