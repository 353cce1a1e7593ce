"""Sparse Cholesky Gauss-Newton for large collocation problems (docs/sparse.md).

`GaussNewton(linear_solver=Sparse(rho=3))` solves each Gauss-Newton step with sparse
inverse-Cholesky factors in a coarse-to-fine (maximin) ordering and preconditioned CG: memory
O(N ρ^d) and time close to linear in the number of collocation points N, instead of the dense
solver's O(N²) and O(N³).
"""

from ._gauss_newton import SparseSetup as SparseSetup
from ._gauss_newton import SparseStepInfo as SparseStepInfo
from ._gauss_newton import SparseSteps as SparseSteps
from ._ordering import grouped_maximin_ordering as grouped_maximin_ordering
from ._ordering import maximin_ordering as maximin_ordering
from ._pattern import DIRACS_FIRST as DIRACS_FIRST
from ._pattern import FOLLOW_DIRACS as FOLLOW_DIRACS
from ._pattern import ORDERINGS as ORDERINGS
from ._pattern import supernodal_pattern as supernodal_pattern
from ._settings import AUTO_SPARSE_FROM as AUTO_SPARSE_FROM
from ._settings import SOLVER_NAMES as SOLVER_NAMES
from ._settings import Dense as Dense
from ._settings import Sparse as Sparse
from ._settings import linear_solver as linear_solver
from ._posterior import NEIGHBOUR_FACTOR as NEIGHBOUR_FACTOR
from ._posterior import SparsePosterior as SparsePosterior
from ._posterior import sparse_posterior as sparse_posterior
