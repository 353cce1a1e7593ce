"""Gauss-Newton steps with sparse Cholesky factors and preconditioned conjugate gradients.

The basis functionals are every operator of every constraint at its points (δ and Δ at interior
points, δ at boundary points for −Δu + u³ = f); their Gram matrix Θ does not change between steps.
Its sparse inverse-Cholesky factor U (Θ + S ≈ U⁻ᵀ U⁻¹, S = η_f·diag Θ the factor's own relative
nugget) is built ONCE. A step linearizes the PDE around the current iterate: functional a of the
reduced system is φ_a = Σ_j w_j(x_a) L_j δ_{x_a} = (W·basis)_a, with W sparse (one row per point), and
the step solves, as the dense solver does (docs/references.md: the reduced formulation),

    (W Θ Wᵀ + D) c = b,       D the adaptive nugget of `_linearize.nugget_diagonal`,

by CG on the CPU (scipy): each product applies Θ ≈ U⁻ᵀU⁻¹ − S through two sparse triangular
solves, and the preconditioner is a sparse factor of the reduced system itself
((W Θ Wᵀ + D)⁻¹ ≈ V Vᵀ, computed from the same supernodal machinery with the step's weights). S is
subtracted wherever Θ is applied, so the regularization is exactly the dense solver's and the
two agree up to the factor's approximation error, which falls exponentially with ρ. The new
operator values (of u_{k+1} at every basis functional) are Θ Wᵀ c, one more product.

What runs where: the maximin ordering, the supernodes, the triangular solves and CG in
numpy/scipy on the CPU; the supernodes' Gram blocks and Cholesky factorizations, the
linearization and the residuals in JAX (on an accelerator when JAX has one).
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.sparse.linalg
from jaxtyping import Array, Float
from threadpoolctl import threadpool_limits

from .._errors import ConfigError, SolverError
from .._results import RESULTS
from ..kernels import AbstractKernel
from ..solve._constraint import Constraint, same_functionals
from ..solve._linearize import StepOutcome, linearize
from ..solve._operators import AbstractOperator, Evaluation
from ._basis_posterior import BasisPosterior
from ._buckets import bucket_layout
from ._factor import factor, pointwise_blocks
from ._ordering import grouped_maximin_ordering
from ._pattern import FOLLOW_DIRACS, supernodal_pattern
from ._scales import coordinate_scales, screening_coordinates
from ._settings import Sparse
from ._solution import SparseSolution, neighbour_count, site_functional_table
from ._triangular import TriangularFactor


@dataclass(frozen=True)
class SparseStepInfo:
    """What the linear solve of one sparse step did: CG iterations, the relative residual
    ‖b − A c‖/‖b‖ of its answer, the preconditioner's nonzeros and the time of its factorization."""

    cg_iterations: int
    cg_residual: float
    preconditioner_nnz: int
    preconditioner_seconds: float
    cg_seconds: float


@dataclass(frozen=True)
class SparseSetup:
    """Sizes and times of the once-per-solve work."""

    functionals: int
    factor_nnz: int
    factor_supernodes: int
    ordering_seconds: float
    factor_seconds: float


class SparseSteps:
    """The state of a sparse Gauss-Newton solve: the patterns, the basis-functional factor, and a
    `step` that does what `_linearize.gauss_newton_step` does for the dense solver."""

    def __init__(
        self,
        settings: Sparse,
        kernel: AbstractKernel,
        constraints: Sequence[Constraint],
        nugget: float,
        adaptive_nugget: bool,
    ):
        self._last_coefficients = None
        self._preconditioner = None
        with _one_blas_thread():
            self._setup(settings, kernel, tuple(constraints), nugget, adaptive_nugget)

    def _setup(self, settings, kernel, constraints, nugget, adaptive_nugget):
        constraints = tuple(constraints)
        if isinstance(kernel, (tuple, list)) and len(kernel) == 1:
            kernel = kernel[0]
        if isinstance(kernel, (tuple, list)) or any(f != 0 for c in constraints for f in c.fields):
            raise ConfigError(
                "the sparse solver handles problems with one unknown field; use the dense solver "
                "(GaussNewton(linear_solver=Dense()), --solver dense) for several fields"
            )
        self.settings, self.kernel, self.constraints = settings, kernel, constraints
        self.nugget, self.adaptive_nugget = nugget, adaptive_nugget
        self.sizes = [c.size for c in constraints]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        # The basis functionals of a constraint are its operators at its points, with δ added in
        # front where the constraint has no point value (Eikonal's ∂x, ∂y, Δ): derivative
        # functionals alone screen poorly, and the factor conditions every column on the nearby
        # values of u. The added δ carry zero weight in every reduced functional, so the solved
        # problem is the same; only the factor's approximation improves (10x on Eikonal at 256 points).
        self.basis_operators = [
            tuple(c.operators) if any(isinstance(op, Evaluation) for op in c.operators) else (Evaluation(), *c.operators)
            for c in constraints
        ]
        self.added = [len(b) - len(c.operators) for b, c in zip(self.basis_operators, constraints)]
        self.operators: list[AbstractOperator] = []
        self.operator_index = []
        for operators in self.basis_operators:
            self.operator_index.append(tuple(self._dictionary_index(op) for op in operators))

        start = time.perf_counter()
        self.sites = np.concatenate([np.asarray(c.points) for c in constraints])
        self.scales = coordinate_scales(kernel, self.sites)
        scaled = screening_coordinates(kernel, self.sites, self.scales)
        # Sites of Dirac-only constraints (boundary and data values) first when asked: they then
        # form the coarse levels, and every interior functional conditions on nearby ones.
        if settings.dirac_constraints_first:
            site_group = np.concatenate(
                [np.full(c.size, 0 if all(isinstance(op, Evaluation) for op in c.operators) else 1) for c in constraints]
            )
        else:
            site_group = np.zeros(self.sites.shape[0], dtype=np.int64)
        site_order = grouped_maximin_ordering(scaled, site_group)
        site_of, rank, operator_of = [], [], []
        for g, (c, operators) in enumerate(zip(constraints, self.basis_operators)):
            lead = next(j for j, op in enumerate(operators) if isinstance(op, Evaluation))
            ranks = [0 if j == lead else 1 + j - (j > lead) for j in range(len(operators))]
            for j in range(len(operators)):
                site_of.append(self.offsets[g] + np.arange(c.size))
                rank.append(np.full(c.size, ranks[j]))
                operator_of.append(np.full(c.size, self.operator_index[g][j]))
        # Basis functional (g, j, a) is number basis_start[g] + j·n_g + a in the natural order.
        self.basis_start = np.concatenate(
            [[0], np.cumsum([len(operators) * c.size for c, operators in zip(constraints, self.basis_operators)])]
        )
        site_of, rank, operator_of = map(np.concatenate, (site_of, rank, operator_of))
        self.site_of, self.operator_of = site_of, operator_of
        ordering = dict(
            band_ratio=settings.band_ratio, aggregation=settings.aggregation, site_order=site_order, site_group=site_group
        )
        basis = supernodal_pattern(scaled, site_of, rank, settings.rho, settings.ordering, **ordering)
        reduced = supernodal_pattern(
            scaled, np.arange(self.sites.shape[0]), np.zeros(self.sites.shape[0], dtype=np.int64),
            settings.preconditioner_rho or settings.rho, FOLLOW_DIRACS, **ordering,
        )
        self.basis_order, self.reduced_order = basis.order, reduced.order
        self.basis_layout = bucket_layout(basis, settings.chunk_entries)
        self.reduced_layout = bucket_layout(reduced, settings.chunk_entries)
        ordering_seconds = time.perf_counter() - start

        start = time.perf_counter()
        # Per-point covariances of each constraint's functionals: the diagonal of Θ, and the
        # diagonal of the reduced Gram matrix for the adaptive nugget.
        self.point_blocks = [
            np.asarray(pointwise_blocks(kernel, operators, c.points)) for c, operators in zip(constraints, self.basis_operators)
        ]
        shift = settings.factor_nugget if settings.factor_nugget is not None else nugget
        self.basis_shift = shift * np.concatenate(
            [self.point_blocks[g][:, j, j] for g, operators in enumerate(self.basis_operators) for j in range(len(operators))]
        )
        one_hot = np.eye(len(self.operators))[operator_of[self.basis_order]]
        basis_factor = factor(
            kernel, self.operators, self.sites[site_of[self.basis_order]], one_hot,
            np.zeros(self.basis_order.shape[0]), shift, self.basis_layout,
        )
        if not np.all(np.isfinite(basis_factor.data)):
            raise SolverError(
                "the sparse factor of the basis functionals' Gram matrix failed (a local Cholesky "
                "factorization was not positive definite); increase the nugget (or Sparse.factor_nugget)"
            )
        self.basis = TriangularFactor(basis_factor)
        self.setup = SparseSetup(
            functionals=int(self.basis_order.shape[0]),
            factor_nnz=self.basis.nnz,
            factor_supernodes=basis.supernodes,
            ordering_seconds=ordering_seconds,
            factor_seconds=time.perf_counter() - start,
        )

    def _dictionary_index(self, operator: AbstractOperator) -> int:
        for i, known in enumerate(self.operators):
            if known == operator:
                return i
        self.operators.append(operator)
        return len(self.operators) - 1

    # --- products with W, Θ and their transposes (natural orders) -------------------------------

    def _lift(self, weights, v):
        """Wᵀ v: the basis-functional coefficients of Σ_a v_a φ_a (v a vector, or a matrix whose
        columns are lifted one by one)."""
        columns = v.shape[1:]
        return np.concatenate([
            (_rows(w, v) * v[a:b][None]).reshape(-1, *columns) for w, a, b in zip(weights, self.offsets, self.offsets[1:])
        ])

    def _extract(self, weights, t):
        """W t: the reduced functionals' values from the basis functionals' values t (a vector, or
        a matrix of columns)."""
        return np.concatenate([np.sum(_rows(w, t) * block, axis=0) for w, block in zip(weights, self._blocks(t))])

    def _blocks(self, t):
        """The basis values t split per constraint, shaped (operators, points) (and t's columns)."""
        return [
            t[a:b].reshape(len(operators), c.size, *t.shape[1:])
            for c, operators, a, b in zip(self.constraints, self.basis_operators, self.basis_start, self.basis_start[1:])
        ]

    def _basis_weights(self, weights):
        """The reduced functionals' weights on the basis functionals: zero on an added δ."""
        return [np.concatenate([np.zeros((k, w.shape[1])), w]) if k else w for w, k in zip(weights, self.added)]

    def _regularized_covariance(self, y):
        """(Θ + S) y for basis coefficients y (a vector or a matrix of columns), through the
        factor: U⁻ᵀ U⁻¹ y."""
        out = np.empty_like(y)
        out[self.basis_order] = self.basis.covariance(y[self.basis_order])
        return out

    def _covariance(self, y):
        """Θ y for basis coefficients y, through the factor (its nugget S subtracted)."""
        return self._regularized_covariance(y) - self.basis_shift * y

    def retarget(self, constraints: Sequence[Constraint]) -> None:
        """Solve `constraints` from now on, keeping the ordering, patterns and basis factor: they
        depend only on the kernel and on which operators act at which points, so constraints with
        the same operators at the same points (another viscosity of Burgers' equation, say) reuse
        them. ConfigError if the operators, points or noise variances differ."""
        constraints = tuple(constraints)
        if not same_functionals(constraints, self.constraints):
            raise ConfigError("retarget needs constraints with the same operators, points and noise")
        self.constraints = constraints

    # --- one step ------------------------------------------------------------------------------

    def step(self, values: Sequence[Float[Array, "mg ng"]]) -> tuple[StepOutcome, SparseStepInfo]:
        """Linearize around the operator values `values` and solve the reduced system."""
        with _one_blas_thread():
            return self._step(values)

    def _step(self, values):
        linear = _linearize(self.constraints, tuple(values))
        weights = self._basis_weights([np.asarray(w) for w in linear.weights])
        targets = np.concatenate([np.asarray(t) for t in linear.targets])
        finite = all(np.all(np.isfinite(w)) for w in weights) and np.all(np.isfinite(targets))
        if not finite:
            return self._failed(linear, RESULTS.nonfinite_linearization)
        reduced_weights, nugget, top_up = self._reduced_system(weights)
        start = time.perf_counter()
        preconditioner = self._preconditioner_for(reduced_weights, nugget)
        if preconditioner is None:
            return self._failed(linear, RESULTS.cholesky_failed)
        preconditioner_seconds = time.perf_counter() - start

        def gram(v):
            return self._extract(weights, self._regularized_covariance(self._lift(weights, v))) + top_up * v

        precondition = _precision_in_natural_order(preconditioner, self.reduced_order)

        size = targets.shape[0]
        operator = scipy.sparse.linalg.LinearOperator((size, size), matvec=gram, dtype=np.float64)
        inverse = scipy.sparse.linalg.LinearOperator((size, size), matvec=precondition, dtype=np.float64)
        iterations = [0]

        def count(_):
            iterations[0] += 1

        # Start from the better of the preconditioned right-hand side and the last step's
        # coefficients: once Gauss-Newton settles, successive reduced systems and their solutions
        # differ little, and CG then starts close to the answer.
        start_point = precondition(targets)
        if self._last_coefficients is not None:
            def misfit(c):
                return np.linalg.norm(targets - gram(c))
            if misfit(self._last_coefficients) < misfit(start_point):
                start_point = self._last_coefficients

        start = time.perf_counter()
        coefficients, _ = scipy.sparse.linalg.cg(
            operator, targets, x0=start_point, rtol=self.settings.cg_tolerance,
            maxiter=self.settings.cg_max_iterations, M=inverse, callback=count,
        )
        cg_seconds = time.perf_counter() - start
        scale = max(np.linalg.norm(targets), np.finfo(float).tiny)
        residual = float(np.linalg.norm(targets - gram(coefficients)) / scale)

        self._last_coefficients = coefficients
        basis_values = self._covariance(self._lift(weights, coefficients))
        new_values = tuple(jnp.asarray(z[k:]) for z, k in zip(self._blocks(basis_values), self.added))
        residuals = _residuals(self.constraints, new_values)
        finite = np.isfinite(residual) and all(np.all(np.isfinite(np.asarray(z))) for z in new_values)
        outcome = StepOutcome(
            linear.weights,
            tuple(jnp.asarray(coefficients[a:b]) for a, b in zip(self.offsets, self.offsets[1:])),
            new_values,
            residuals,
            RESULTS.successful if finite else RESULTS.nonfinite_iterate,
        )
        info = SparseStepInfo(iterations[0], residual, preconditioner.nnz, preconditioner_seconds, cg_seconds)
        return outcome, info

    def _preconditioner_for(self, reduced_weights, nugget) -> TriangularFactor | None:
        """The sparse factor of the reduced system (W Θ Wᵀ + nugget)⁻¹ ≈ V Vᵀ, or None if a local
        factorization failed. The preconditioner only changes CG's speed, never its answer: the
        last one is kept while the reduced functionals (weights and nugget) moved by less than
        `preconditioner_refresh` relative to their size, as they do once Gauss-Newton has settled."""
        previous = self._preconditioner
        refresh = self.settings.preconditioner_refresh
        if previous is not None and _relative_change(previous[0], reduced_weights) <= refresh \
                and _relative_change(previous[1], nugget) <= refresh:
            return previous[2]
        self._preconditioner = None  # its memory is free before the new one is built
        order = self.reduced_order
        preconditioner_factor = factor(
            self.kernel, self.operators, self.sites[order], reduced_weights[order], nugget[order], 0.0,
            self.reduced_layout,
        )
        if not np.all(np.isfinite(preconditioner_factor.data)):
            return None
        preconditioner = TriangularFactor(preconditioner_factor)
        self._preconditioner = (reduced_weights, nugget, preconditioner)
        return preconditioner

    def basis_posterior(self, outcome: StepOutcome) -> BasisPosterior | None:
        """Cov(t | b) of the basis values in the model of the step that made `outcome`
        (`_basis_posterior.py`): its products through this solve's factors. None where the step
        failed (non-finite weights, or its preconditioner's factorization)."""
        weights = self._basis_weights([np.asarray(w) for w in outcome.weights])
        if not all(np.all(np.isfinite(w)) for w in weights):
            return None
        with _one_blas_thread():
            reduced_weights, nugget, top_up = self._reduced_system(weights)
            preconditioner = self._preconditioner_for(reduced_weights, nugget)
        if preconditioner is None:
            return None
        return BasisPosterior(
            self._regularized_covariance, lambda v: self._lift(weights, v), lambda t: self._extract(weights, t),
            top_up, _precision_in_natural_order(preconditioner, self.reduced_order), self.settings.cg_tolerance,
            self.settings.cg_max_iterations,
        )

    def solution(self, outcome: StepOutcome) -> SparseSolution:
        """The iterate of `outcome` as a function: its values t = Θ̃ Wᵀ c at the basis functionals,
        evaluated elsewhere by local kriging (`_solution.py`)."""
        weights = self._basis_weights([np.asarray(w) for w in outcome.weights])
        coefficients = np.concatenate([np.asarray(c) for c in outcome.coefficients])
        with _one_blas_thread():
            lifted = self._lift(weights, coefficients)
            values = self._regularized_covariance(lifted)
        return SparseSolution(
            (self.kernel,), self.constraints, tuple(outcome.weights), tuple(outcome.coefficients),
            self.sites, self.scales, tuple(self.operators),
            site_functional_table(self.site_of, self.sites.shape[0]), self.operator_of, values,
            self.basis_shift,
            neighbour_count(self.settings.rho, self.sites.shape[1], self.sites.shape[0]),
            values - self.basis_shift * lifted,
            self.basis_posterior(outcome),
        )

    def _reduced_system(self, weights):
        """(reduced weights, nugget, top-up) of the reduced functionals with basis weights
        `weights`: functional a is Σ_j reduced_weights[a, j] operators[j] at site a. The factor
        already regularizes functional a by (W S Wᵀ)_aa; it is topped up to the dense solver's
        nugget D where that is less, so that W Θ̃ Wᵀ + top-up stays positive definite whatever the
        factor's error, with regularization nugget = max(D, W S Wᵀ)."""
        variances = np.concatenate(
            [np.einsum("ja,ajl,la->a", w, blocks, w) for w, blocks in zip(weights, self.point_blocks)]
        )
        covered = np.concatenate(
            [np.sum(w**2 * shift, axis=0) for w, shift in zip(weights, self._blocks(self.basis_shift))]
        )
        top_up = np.maximum(self._nugget_diagonal(variances) - covered, 0.0)
        reduced_weights = np.zeros((self.sites.shape[0], len(self.operators)))
        for g, w in enumerate(weights):
            for j, column in enumerate(self.operator_index[g]):
                reduced_weights[self.offsets[g] : self.offsets[g + 1], column] += w[j]
        return reduced_weights, covered + top_up, top_up

    def _nugget_diagonal(self, variances):
        """The dense solver's regularization (`_linearize.nugget_diagonal`) from the diagonal of the
        reduced Gram matrix: η times the mean variance of each constraint's functionals (adaptive),
        η, or a noisy constraint's noise variance."""
        parts = []
        for g, c in enumerate(self.constraints):
            size = self.sizes[g]
            if c.noise_variance is not None:
                parts.append(np.full(size, c.noise_variance))
            elif self.adaptive_nugget:
                parts.append(np.full(size, self.nugget * np.mean(variances[self.offsets[g] : self.offsets[g + 1]])))
            else:
                parts.append(np.full(size, self.nugget))
        return np.concatenate(parts)

    def _failed(self, linear, result):
        zeros = tuple(jnp.zeros(c.size) for c in self.constraints)
        values = tuple(jnp.full((len(c.operators), c.size), jnp.nan) for c in self.constraints)
        outcome = StepOutcome(linear.weights, zeros, values, zeros, result)
        return outcome, SparseStepInfo(0, float("nan"), 0, 0.0, 0.0)


def _precision_in_natural_order(preconditioner: TriangularFactor, order):
    """v ↦ V Vᵀ v for v in the reduced functionals' natural order (a vector or columns), V the
    preconditioner's factor in the ordering `order`."""
    def precondition(v):
        out = np.empty_like(v)
        out[order] = preconditioner.precision(v[order])
        return out

    return precondition


def _rows(weights, v):
    """Per-point weights (operators, points) shaped to multiply the blocks of v: with a trailing
    axis when v holds columns."""
    return weights if v.ndim == 1 else weights[..., None]


def _relative_change(old, new) -> float:
    """max |new − old| / max |old| (∞ when old is all zero)."""
    scale = float(np.max(np.abs(old)))
    return float(np.max(np.abs(new - old))) / scale if scale > 0 else float("inf")


def _one_blas_thread():
    """BLAS/LAPACK on one thread while the sparse path runs. Its dense problems (Cholesky
    factorizations of 100–300-row blocks, SuperLU's small kernels) are far too small for a
    threaded BLAS, whose idle threads spin: on the loaded 2-core machine one batched Cholesky took
    0.65 s of CPU with OpenBLAS's default threads and 0.007 s with one (JAX's CPU LAPACK is
    scipy's OpenBLAS, so this limits it too)."""
    return threadpool_limits(limits=1, user_api="blas")


_linearize = eqx.filter_jit(linearize)


@eqx.filter_jit
def _residuals(constraints, values):
    return tuple(c.residuals(z) for c, z in zip(constraints, values))
