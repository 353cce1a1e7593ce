"""Applying a sparse inverse-Cholesky factor: Θ⁻¹ ≈ U Uᵀ with U sparse upper triangular.

The covariance Θ ≈ U⁻ᵀ U⁻¹ needs two sparse triangular solves per product. They run on the CPU in
SuperLU (scipy.sparse.linalg.splu): a triangular matrix is its own LU factorization, so with the
natural column order and no row pivoting the "factorization" only copies U into SuperLU's layout
(no fill), and each solve is one compiled sweep. This is 30× faster per solve than
scipy.sparse.linalg.spsolve_triangular (measured: 14 ms against 450 ms for 8.8·10⁶ nonzeros), and
one object serves both U⁻¹ and U⁻ᵀ.
"""

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from jaxtyping import Float

from .._errors import SolverError


class TriangularFactor:
    """U (sparse upper triangular, positive diagonal) with products by U, Uᵀ and solves with both."""

    def __init__(self, factor: scipy.sparse.csc_matrix):
        self.factor = factor.tocsc()
        self._solver = None

    @property
    def nnz(self) -> int:
        return int(self.factor.nnz)

    def precision(self, v: Float[np.ndarray, " n"]) -> Float[np.ndarray, " n"]:
        """U Uᵀ v ≈ Θ⁻¹ v (two sparse products)."""
        return self.factor @ (self.factor.T @ v)  # .T of a CSC matrix is a CSR view: no copy

    def covariance(self, v: Float[np.ndarray, " n"]) -> Float[np.ndarray, " n"]:
        """U⁻ᵀ U⁻¹ v ≈ Θ v (two sparse triangular solves)."""
        solver = self._lu()
        return solver.solve(solver.solve(v), trans="T")

    def _lu(self):
        if self._solver is None:
            try:
                self._solver = scipy.sparse.linalg.splu(
                    self.factor, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
                )
            except RuntimeError as error:  # an exactly zero pivot: the factor has a zero diagonal entry
                raise SolverError(
                    f"the sparse factor is singular ({error}); increase the nugget or the sparsity radius rho"
                ) from error
        return self._solver
