"""How a Gauss-Newton step solves its linear system: dense Cholesky or sparse Cholesky + CG.

`GaussNewton(linear_solver=Dense())` (the default) factors the reduced Gram matrix densely: exact,
O(N²) memory and O(N³) time, fine up to about 10⁴ collocation points. `Sparse(rho=…)` uses
sparse inverse-Cholesky factors in a coarse-to-fine ordering (docs/sparse.md): memory O(N ρ^d), time
close to linear in N, accuracy improving exponentially with ρ.
"""

from typing import ClassVar

import equinox as eqx
import numpy as np

from .._errors import ConfigError
from ._pattern import FOLLOW_DIRACS, ORDERINGS

#: `auto` picks the sparse solver from this many collocation points (all constraints together) on:
#: measured on the elliptic problem (benchmarks/scale-results.md), dense was 1.8x faster at 4,356
#: points and sparse 4.5x faster with 15x less memory at 16,900.
AUTO_SPARSE_FROM = 8000
#: The CLI's choices for --solver.
SOLVER_NAMES = ("dense", "sparse", "auto")


class Dense(eqx.Module):
    """Dense Cholesky factorization of the reduced Gram matrix (exact)."""

    name: ClassVar[str] = "dense"


class Sparse(eqx.Module):
    """Sparse Cholesky Gauss-Newton (Chen, Owhadi, Schäfer, Math. Comp. 2025).

    - `rho`: sparsity radius of the factor of the Gram matrix over all basis functionals (δ and
      every operator of every constraint at its points), built once per solve; its accuracy, and
      so the agreement with the dense solver, improves exponentially with ρ (2 … 5).
    - `preconditioner_rho`: sparsity radius of the per-step factor of the reduced system, used only
      as the CG preconditioner (it changes CG's iteration count, not the answer). Default: `rho`.
    - `ordering`: where the derivative functionals of a point go, "follow_diracs" (right after
      the point's δ, the default) or "diracs_first" (after all points, at the finest scale).
    - `dirac_constraints_first`: order the points of constraints made only of point values
      (boundary and data values) before all others, as coarse levels of the hierarchy; the interior
      functionals then condition on nearby boundary values, which cut CG's iteration count 
      several-fold on elliptic problems (docs/sparse.md).
    - `band_ratio` (λ) and `aggregation` (α): supernodes gather columns whose lengthscales differ by
      less than λ and whose points share a cell of side α·ρ·ℓ.
    - `factor_nugget`: relative nugget added to the diagonal of the basis-functional factor's local
      Gram blocks to keep them positive definite; it is subtracted again where the factor is used,
      so it does not change the regularization (default: the Gauss-Newton nugget η).
    - `preconditioner_refresh`: the preconditioner is rebuilt when the reduced functionals' weights
      or nugget moved by more than this fraction of their size since it was built (0: every step).
    - `cg_tolerance`, `cg_max_iterations`: CG stops at this relative residual or iteration count.
    - `chunk_entries`: Gram entries per batched chunk of supernodes (memory per chunk ≈ 8 bytes ×
      operators² × chunk_entries, plus the kernel's intermediates).
    """

    name: ClassVar[str] = "sparse"

    rho: float = 5.0
    preconditioner_rho: float | None = None
    ordering: str = FOLLOW_DIRACS
    dirac_constraints_first: bool = True
    band_ratio: float = 1.5
    aggregation: float = 1.0
    factor_nugget: float | None = None
    preconditioner_refresh: float = 0.2
    cg_tolerance: float = 1e-10
    cg_max_iterations: int = 500
    chunk_entries: int = 1_000_000

    def __check_init__(self):
        for name in ("rho", "band_ratio", "aggregation"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ConfigError(f"Sparse: {name} must be a finite number > 0, got {value!r}")
        if self.preconditioner_rho is not None and not (np.isfinite(self.preconditioner_rho) and self.preconditioner_rho > 0):
            raise ConfigError(f"Sparse: preconditioner_rho must be > 0, got {self.preconditioner_rho!r}")
        if self.band_ratio <= 1:
            raise ConfigError(f"Sparse: band_ratio must be > 1 (typical 1.5), got {self.band_ratio}")
        if self.ordering not in ORDERINGS:
            raise ConfigError(f"Sparse: unknown ordering '{self.ordering}'; choose one of {', '.join(ORDERINGS)}")
        if self.factor_nugget is not None and not (np.isfinite(self.factor_nugget) and self.factor_nugget > 0):
            raise ConfigError(f"Sparse: factor_nugget must be > 0, got {self.factor_nugget!r}")
        if not (isinstance(self.preconditioner_refresh, (int, float)) and self.preconditioner_refresh >= 0):
            raise ConfigError(f"Sparse: preconditioner_refresh must be >= 0 (0: rebuild every step), got {self.preconditioner_refresh!r}")
        if not isinstance(self.dirac_constraints_first, bool):
            raise ConfigError(f"Sparse: dirac_constraints_first must be True or False, got {self.dirac_constraints_first!r}")
        if not (np.isfinite(self.cg_tolerance) and self.cg_tolerance > 0):
            raise ConfigError(f"Sparse: cg_tolerance must be > 0, got {self.cg_tolerance!r}")
        for name in ("cg_max_iterations", "chunk_entries"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ConfigError(f"Sparse: {name} must be an integer >= 1, got {value!r}")


def linear_solver(name: str, points: int, rho: float | None = None) -> Dense | Sparse:
    """The settings for the CLI's `--solver NAME [--rho R]`: "dense", "sparse", or "auto" (sparse
    from AUTO_SPARSE_FROM collocation points on). `points` is the total number of collocation
    points; `rho` (sparse only) defaults to Sparse's."""
    if name not in SOLVER_NAMES:
        raise ConfigError(f"unknown solver '{name}'; choose one of {', '.join(SOLVER_NAMES)}")
    if name == "auto":
        name = "sparse" if points >= AUTO_SPARSE_FROM else "dense"
    if name == "dense":
        return Dense()
    return Sparse() if rho is None else Sparse(rho=float(rho))
