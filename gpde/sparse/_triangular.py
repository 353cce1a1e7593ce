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
nonzeros). Measured 2026-11-29: 2.4·10⁻² s for U⁻¹v with 10⁷ nonzeros on one core. With many
right-hand sides (the sparse posterior's batches of points) the sweep goes through dense
supernodal blocks instead (`SupernodalBlocks`): 0.52 s against SuperLU's 1.98 s for U⁻ᵀU⁻¹ applied
to 256 columns at 1.7·10⁶ nonzeros.

`gstrs` is scipy's internal binding (scipy ≥ 1.13, where spsolve_triangular is built on it); the
tests compare every product and solve here with dense linear algebra, so a change of its
signature fails them rather than the results.
"""

import numpy as np
import scipy.linalg
import scipy.sparse
from jaxtyping import Float

from .._errors import ConfigError, SolverError

try:  # scipy's internal binding; its absence must not break `import gpde`, only the sparse solver
    from scipy.sparse.linalg._dsolve import _superlu
except ImportError:  # pragma: no cover - depends on the installed scipy
    _superlu = None

_ENTRIES_PER_PASS = 1 << 22
#: Right-hand sides from which a solve goes through the dense supernodal blocks: SuperLU's sweep
#: treats the columns one by one (1.0 s for 256 columns at 1.7·10⁶ nonzeros, 17 times a sparse
#: product with the same columns), the blocks multiply all columns at once.
_BLOCKED_COLUMNS = 8


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
        self._blocks = None  # built on the first solve with many columns
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
        """(I + T)⁻¹ b (trans "N") or (I + T)⁻ᵀ b (trans "T"); many columns at once by dense
        supernodal blocks (`SupernodalBlocks`), one vector by SuperLU's sweep."""
        if b.ndim == 2 and b.shape[1] >= _BLOCKED_COLUMNS:
            if self._blocks is None:
                self._blocks = SupernodalBlocks(self.strict)
            return self._blocks.solve(b, trans)
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


class SupernodalBlocks:
    """T (strictly upper triangular, CSC) split into supernodes: maximal runs of columns a … c−1
    where column k's rows are those of column a plus a … k−1. Such a run is a dense block
    T[R, a:c] over the rows R < a that column a holds, and a dense strictly upper triangular block
    T[a:c, a:c]. Solves with I + T and its transpose then take one small triangular solve and one
    matrix product per supernode for all right-hand sides at once (a copy of T's values, in blocks)."""

    def __init__(self, strict: scipy.sparse.csc_matrix):
        indptr, indices, data = strict.indptr, strict.indices, strict.data
        n = strict.shape[0]
        lengths = np.diff(indptr)
        # Column k + 1 continues column k's supernode when it holds k's rows and k itself (k's
        # stored diagonal position k is k + 1's row k), i.e. one more row, the same first rows.
        continues = np.zeros(n, dtype=bool)
        for k in np.flatnonzero(lengths[1:] == lengths[:-1] + 1):
            a, b = indices[indptr[k] : indptr[k + 1]], indices[indptr[k + 1] : indptr[k + 2]]
            continues[k + 1] = b[-1] == k + 1 and b[-2] == k and np.array_equal(a[:-1], b[:-2])
        starts = np.flatnonzero(~continues)
        ends = np.append(starts[1:], n)
        self.supernodes = []
        for a, c in zip(starts, ends):
            rows = indices[indptr[a] : indptr[a + 1] - 1]  # rows < a (the last entry is a's diagonal)
            width, height = c - a, rows.size
            off = np.empty((height, width))
            diagonal = np.zeros((width, width))
            for k in range(width):
                column = data[indptr[a + k] : indptr[a + k + 1]]
                off[:, k] = column[:height]
                diagonal[:k, k] = column[height : height + k]
            # (I + T[a:c, a:c])⁻¹, at most a few dozen rows: a product per solve instead of a
            # triangular solve (whose call overhead was 30 % of the sweep).
            inverse = scipy.linalg.solve_triangular(diagonal + np.eye(width), np.eye(width), lower=False)
            self.supernodes.append((a, c, rows, off, inverse))

    def solve(self, b: Float[np.ndarray, "n m"], trans: str) -> Float[np.ndarray, "n m"]:
        """(I + T)⁻¹ b (trans "N": backward, last supernode first) or (I + T)⁻ᵀ b ("T": forward)."""
        x = np.array(b, dtype=np.float64, copy=True)
        if trans == "N":
            for a, c, rows, off, inverse in reversed(self.supernodes):
                if c - a > 1:
                    x[a:c] = inverse @ x[a:c]
                if rows.size:
                    x[rows] -= off @ x[a:c]
        else:
            for a, c, rows, off, inverse in self.supernodes:
                if rows.size:
                    x[a:c] -= off.T @ x[rows]
                if c - a > 1:
                    x[a:c] = inverse.T @ x[a:c]
        return x
