"""Bilevel kernel learning with a Gauss-Newton linearized inner step (docs/references.md §3).

Inner problem: for hyperparameters θ, one Gauss-Newton step around the current iterate u_k, in
closed form: u_θ = K_θ(·, φ)(K_θ(φ, φ) + nugget)⁻¹ b, with φ and b from linearizing the training
constraints at u_k (which is held fixed). Outer problem: the mean square of the validation
constraints' residual, linearized around u_k, at the validation points (noisy observation
constraints contribute their misfit whitened by the noise σ), plus a regularizer R(θ);
minimized by an optax optimizer with gradients through the Cholesky solve by autodiff.
Schedule: for each of `gn_steps` iterations, `inner_steps` optimizer steps on θ with u_k frozen,
then one Gauss-Newton step with the new θ gives u_{k+1} (or `update_steps` of them, so that the
next loss is taken around an iterate closer to the new θ's solution).

Beyond gradient steps: before the first step, `lengthscale_scan` tries the lengthscales scaled up
by 2 … 64 (the loss barrier below the point spacing); with `scale_search`, every outer iteration
starts by trying one common lengthscale factor 2^(k/8), k = −24 … 24, and takes the best if it
is 30 % lower (local minima of the outer loss in σ); with `axis_search`, every outer iteration
starts by trying one factor per input axis, 2^(k/2), k = −4 … 4, on a grid (the same factors for
every field). All only evaluate the loss (no gradient), and all only move `log_lengthscale` leaves.

The adaptive nugget is relative to the mean variance of each constraint's functionals
(`_linearize.nugget_diagonal`), so a kernel's overall amplitude (e.g. σ² of the "additive" kernel
σ²·Gaussian + (α x·y + c)²) does not act as an inverse nugget that the outer loss could exploit.
"""

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..kernels import AbstractKernel

from .._results import RESULTS
from ..solve._constraint import Constraint, field_kernels, kernel_tuple
from .._errors import ConfigError, SolverError
from ..solve._linearize import (
    compiled_gauss_newton_step,
    compiled_operator_blocks,
    compiled_values_at,
    gauss_newton_step,
    initial_values,
    linearize,
    operator_blocks,
    solve_linearized,
    values_at,
)
from ..solve._precision import require_float64
from ..solve._solution import CollocationSolution
from ..solve._solver import reference_residual_rms


#: The outer losses of `linearized_validation_loss` (the first is the default and the published one).
OUTER_LOSSES = ("mean-square", "geometric-mean-square")
#: When the learner draws a new validation batch (with `batch_size`): before every optimizer step,
#: or once per outer iteration (the published codes' way: every step of an outer iteration then
#: minimizes the same loss).
BATCH_REDRAWS = ("every-step", "every-outer-iteration")


def check_outer_loss(kind: str, name: str = "outer loss") -> None:
    """ConfigError naming `name` unless `kind` is one of OUTER_LOSSES."""
    _check_choice(kind, OUTER_LOSSES, name)


def check_batch_redraw(kind: str, name: str = "batch redraw") -> None:
    """ConfigError naming `name` unless `kind` is one of BATCH_REDRAWS."""
    _check_choice(kind, BATCH_REDRAWS, name)


def _check_choice(kind, choices, name: str) -> None:
    if kind not in choices:
        raise ConfigError(f"unknown {name} {kind!r}; choose one of: {', '.join(choices)}")


def linearized_validation_residuals(
    kernel: AbstractKernel | Sequence[AbstractKernel],
    train: Sequence[Constraint],
    validation: Sequence[Constraint],
    train_values,
    validation_values,
    nugget: float,
    adaptive_nugget: bool,
) -> tuple[jax.Array, ...]:
    """Per validation constraint, the residual at each of its points for the inner solution u_θ
    (one Gauss-Newton step with `kernel` from the frozen iterate u_k), linearized around u_k
    (whose operator values are the *_values). A noisy observation constraint's residual (the
    misfit) is whitened by its noise σ. `kernel`: one kernel, or a tuple with one per field."""
    kernels = kernel_tuple(kernel)
    blocks = operator_blocks(kernels, train)
    linear = linearize(train, train_values)
    _, _, coefficients = solve_linearized(blocks, linear, nugget, adaptive_nugget)
    new_values = values_at(kernels, validation, train, linear.weights, coefficients)
    residuals = []
    for constraint, old, new in zip(validation, validation_values, new_values):
        residual, weight = constraint.residuals_and_weights(old)
        linearized = residual + jnp.sum(weight * (new - old).T, axis=1)
        if constraint.noise_variance is not None:
            linearized = linearized / np.sqrt(constraint.noise_variance)
        residuals.append(linearized)
    return tuple(residuals)


def linearized_validation_loss(
    kernel: AbstractKernel | Sequence[AbstractKernel],
    train: Sequence[Constraint],
    validation: Sequence[Constraint],
    train_values,
    validation_values,
    nugget: float,
    adaptive_nugget: bool,
    kind: str = "mean-square",
):
    """Σ over validation constraints of a mean of their squared linearized residuals
    (`linearized_validation_residuals`). `kind` "mean-square": the arithmetic mean (with a PDE
    and a data constraint, mean residual² + σ⁻² · mean misfit²). "geometric-mean-square": the
    geometric mean exp(mean log r²), which a few points with large residuals cannot dominate.
    Why the second exists: on the Schrödinger problem the squared residual at the validation points
    spans many orders of magnitude and the arithmetic mean is made by the few points at the
    focusing peak (docs/learning.md). Both have the units of r² and are ≥ 0."""
    check_outer_loss(kind)
    residuals = linearized_validation_residuals(
        kernel, train, validation, train_values, validation_values, nugget, adaptive_nugget
    )
    if kind == "mean-square":
        return sum(jnp.mean(r**2) for r in residuals)
    # The smallest positive float keeps log finite where a residual is exactly zero (a validation
    # point that is also a training point), with zero gradient there.
    return sum(jnp.exp(jnp.mean(jnp.log(r**2 + jnp.finfo(r.dtype).tiny))) for r in residuals)


@dataclass(frozen=True)
class OuterRecord:
    """One outer iteration: the last outer loss, the optimizer steps taken, the scalar
    hyperparameters (by pytree path, as stored), and the wall time of the iteration."""

    iteration: int
    loss: float
    optimizer_steps: int
    hyperparameters: dict[str, float]
    seconds: float
    #: The common factor that the scale search applied to the lengthscales before the optimizer
    #: steps of this iteration (1.0: kept them, or no search).
    scale_factor: float = 1.0


@dataclass
class LearnResult:
    """The learned kernel (in the form it was given: one kernel or a tuple), the last iterate and
    the history. `result` says how the learn ended (BilevelLearner.learn): successful, converged,
    nonfinite_loss, interrupted or diverged; `stopped_because` says it in words."""

    kernel: AbstractKernel | tuple[AbstractKernel, ...]
    solution: CollocationSolution
    records: list[OuterRecord] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    stopped_because: str = "completed the schedule"
    compile_seconds: float = 0.0
    #: What the lengthscale scan did before the first optimizer step (empty: kept the initial θ).
    start_note: str = ""
    result: RESULTS = field(default_factory=lambda: RESULTS.successful)
    #: The training residual RMS of the first frozen iterate (the larger of u_0's and u = 0's) and
    #: of the last one: the divergence rule (BilevelLearner.learn) compares them.
    start_residual_rms: float = float("nan")
    final_residual_rms: float = float("nan")


#: How far above its starting residual (the larger of u_0's and u = 0's) the learner's last
#: iterate may end before the learn counts as diverged (BilevelLearner.learn explains the value).
DIVERGENCE_FACTOR = 1e3


def scalar_hyperparameters(params) -> dict[str, float]:
    """Scalar leaves of a parameter pytree by path (e.g. '.log_lengthscale')."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if leaf is not None and hasattr(leaf, "size") and leaf.size == 1:
            out[jax.tree_util.keystr(path)] = float(np.asarray(leaf).reshape(()))
    return out


class BilevelLearner(eqx.Module):
    """Learns the kernel hyperparameters selected by `trainable` (an Equinox filter spec: a
    function of each leaf, or a pytree of booleans shaped like the kernel). The kernel may be a
    tuple with one kernel per field (multi-field problems); then all of them are learned together."""

    optimizer: optax.GradientTransformation = eqx.field(static=True, default_factory=lambda: optax.adam(1e-3))
    gn_steps: int = 10
    inner_steps: int = 50
    nugget: float = 1e-10
    adaptive_nugget: bool = True
    batch_size: int | None = None
    loss_tolerance: float = 0.0
    #: Start the optimizer afresh (e.g. Adam's moment estimates) at every outer iteration. Each
    #: outer iteration minimizes a different loss (a new frozen iterate u_k), and the losses of
    #: the first iterations can be 10⁶ times those of later ones: Adam's second-moment estimate,
    #: which decays only by β₂ = 0.999 per step, then shrinks later steps to ~1e-6 of the learning
    #: rate and the hyperparameters freeze (measured on the elliptic problem: σ stuck at 0.268).
    reset_optimizer: bool = True
    #: Before the first optimizer step, evaluate the outer loss with every log-lengthscale leaf
    #: scaled by 2, 4, …, 2^6 and start from the best scale if it lowers the loss 10-fold. Why:
    #: for lengthscales far below the point spacing the outer loss has a barrier (elliptic, 900 +
    #: 300 points, u_0 = 0: loss 4.6e5 at σ = 0.01 rising to 9.8e5 at 0.03, then 7.0e3 at 0.05 and
    #: 1.6e-3 at 0.1), so gradient steps from σ₀ = 0.01 walk to ever shorter lengthscales (the
    #: published code gives NaN there). Kernels without a `log_lengthscale` leaf are not scanned.
    lengthscale_scan: bool = True
    #: At the start of every outer iteration, evaluate the outer loss with all log-lengthscale
    #: leaves scaled by one common factor 2^(k/8), k = −24 … 24, and continue from the best factor
    #: if its loss is 30 % or more below the current one (48 loss evaluations, no gradient; the
    #: margin keeps it from trading a basin for an equally good one).
    #: Why: the outer loss can have several local minima in the lengthscale (elliptic, 900 + 300
    #: + 900 points, nugget 1e-10, at the converged iterate: 8.7e-5 at σ = 0.113, 3.0e-4 at 0.15,
    #: 1.8e-5 at 0.20), and Adam from below stops in the first one. Gradient steps only see the
    #: local slope; the grid sees the whole factor range 1/8 … 8 of every loss u_k defines.
    scale_search: bool = False
    #: At the start of every outer iteration (before the scale search, if both are on), evaluate
    #: the outer loss on the grid of one factor per input axis, 2^(k/2), k = −4 … 4 on each axis
    #: (81 loss evaluations for two axes; at most three axes), applied alike to every anisotropic
    #: log-lengthscale leaf, and continue from the best if it is 30 % or more below the current
    #: loss. Why: the outer loss can sit in a curved valley in (ℓ_t, ℓ_x) whose floor local steps
    #: leave on the wrong side (Schrödinger, around the converged start solve: the slope points to
    #: longer ℓ_t, the minimum lies at ℓ_t × 0.5, ℓ_x × 0.25; benchmarks/learn-published.md).
    axis_search: bool = False
    regularizer: Callable[[AbstractKernel], jax.Array] | None = eqx.field(static=True, default=None)
    #: How the squared validation residuals are averaged (`linearized_validation_loss`, OUTER_LOSSES).
    outer_loss: str = eqx.field(static=True, default="mean-square")
    #: With `batch_size`: a new batch before every optimizer step, or one per outer iteration
    #: (BATCH_REDRAWS; the scale search of an outer iteration uses the same batch as its steps).
    batch_redraw: str = eqx.field(static=True, default="every-step")
    #: Gauss-Newton steps with the new θ after each outer iteration's optimizer steps (published:
    #: 1). More steps take the next outer loss around an iterate nearer the new θ's own solution.
    update_steps: int = 1

    def __check_init__(self):
        check_outer_loss(self.outer_loss)
        check_batch_redraw(self.batch_redraw)
        for name in ("gn_steps", "update_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.inner_steps, int) or self.inner_steps < 0:
            raise ConfigError(f"inner_steps must be an integer >= 0, got {self.inner_steps!r}")
        if self.inner_steps == 0 and not (self.scale_search or self.axis_search):
            raise ConfigError("inner_steps = 0 leaves the hyperparameters unchanged unless a search moves them: "
                              "turn on scale_search or axis_search, or give inner_steps >= 1")
        if not (np.isfinite(self.nugget) and self.nugget > 0):
            raise ConfigError(f"nugget must be > 0, got {self.nugget}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 or None (full batch), got {self.batch_size}")

    def learn(
        self,
        kernel: AbstractKernel | Sequence[AbstractKernel],
        train: Sequence[Constraint],
        validation: Sequence[Constraint],
        trainable=eqx.is_inexact_array,
        seed: int = 0,
        callback: Callable[[OuterRecord, CollocationSolution], None] | None = None,
        initial: CollocationSolution | None = None,
    ) -> LearnResult:
        """Run the schedule; stop early on a loss at or below `loss_tolerance` (result converged),
        on a non-finite loss or gradient (nonfinite_loss, keeping the last good θ), or on
        KeyboardInterrupt (interrupted, keeping what it has).

        Divergence rule: the result is `diverged` if the last iterate's residual RMS on the
        training constraints is not finite, or above DIVERGENCE_FACTOR (1e3) times the larger of
        u_0's and u = 0's. GaussNewton's rule has factor 1, but it judges the end of a whole run;
        the learner's iterate has had only one Gauss-Newton step per outer iteration, and single
        steps overshoot u = 0's residual in ordinary runs (measured 2026-11-29: elliptic, 64 + 32
        points, ℓ = 0.5, after one step: 33×; the Eikonal default after step 1: 29×). 1e3 is 30×
        above those and far below a blow-up (elliptic, 100 + 40 points, ℓ₀ = 1e3: ~2e18×, while
        the outer loss rose from 4.7e5 to 6e40). It is judged at the end only: the learner may
        recover by moving the lengthscale. The learner does not raise for it; the caller reads
        `result`. A failed Gauss-Newton step raises SolverError (with its RESULTS member as
        `result`).

        The first frozen iterate u_0 is 0, or `initial` (any earlier solution, e.g. Gauss-Newton
        with the initial kernel): its operator values at the training and validation points."""
        require_float64()
        train, validation = tuple(train), tuple(validation)
        field_kernels(kernel, train)  # checks one kernel per field
        # The kernel is learned in the form it was given (a trainable filter, the regularizer and
        # the recorded hyperparameter names all follow that form); the Gauss-Newton algebra gets
        # its tuple form (kernel_tuple) where it is called.
        params, static = eqx.partition(kernel, trainable)
        if not jax.tree_util.tree_leaves(params):
            raise ConfigError("the trainable filter selects no hyperparameter of the kernel")
        optimizer_state = self.optimizer.init(params)
        last_good = params
        if initial is None:
            train_values, validation_values = initial_values(train), initial_values(validation)
        else:
            train_values, validation_values = (
                compiled_values_at(initial.kernels, targets, initial.constraints, initial.weights, initial.coefficients)
                for targets in (train, validation)
            )
        rng = np.random.default_rng(seed)
        result = LearnResult(kernel=kernel, solution=None)
        result.start_residual_rms = reference_residual_rms(train, train_values)

        start = time.perf_counter()
        sizes = [c.size for c in validation]
        indices = draw_batches(rng, sizes, self.batch_size)
        # Compiled once here and called below: every step has the same shapes (fixed batch size),
        # so the loop never traces again (calling the jitted wrapper would compile a second time).
        compiled_step = None if self.inner_steps == 0 else optimizer_step.lower(
            params, static, optimizer_state, self.optimizer, train, _subset(validation, indices),
            train_values, _subset_values(validation_values, indices), self.nugget, self.adaptive_nugget,
            self.regularizer, self.outer_loss,
        ).compile()
        scanned = (self.lengthscale_scan or self.scale_search or self.axis_search) and _has_lengthscales(params)
        if self.axis_search:
            _check_axis_search(params)
        if scanned:
            outer_loss = _outer_loss.lower(
                params, static, train, _subset(validation, indices), train_values,
                _subset_values(validation_values, indices), self.nugget, self.adaptive_nugget, self.regularizer,
                self.outer_loss,
            ).compile()

            def loss_at(p):
                # Reads the current iterate's values (rebound after each Gauss-Newton step).
                return float(outer_loss(
                    p, static, train, _subset(validation, indices), train_values,
                    _subset_values(validation_values, indices), self.nugget, self.adaptive_nugget, self.regularizer,
                    self.outer_loss,
                ))
        result.compile_seconds = time.perf_counter() - start
        if scanned and self.lengthscale_scan:
            params, result.start_note = _lengthscale_scan(params, loss_at)
            last_good = params

        try:
            per_step = self.batch_redraw == "every-step"
            for iteration in range(1, self.gn_steps + 1):
                start = time.perf_counter()
                if not per_step:
                    indices = draw_batches(rng, sizes, self.batch_size)
                factor, searched_loss = 1.0, None
                if scanned and self.axis_search:
                    params, searched_loss = _axis_search(params, loss_at)
                    last_good = params
                if scanned and self.scale_search:
                    params, factor = _scale_search(params, loss_at)
                    last_good, searched_loss = params, None
                if self.reset_optimizer:
                    optimizer_state = self.optimizer.init(params)
                steps_taken, loss = 0, float("nan")
                for _ in range(self.inner_steps):
                    if per_step:
                        indices = draw_batches(rng, sizes, self.batch_size)
                    new_params, new_state, loss_value, finite = compiled_step(
                        params, static, optimizer_state, self.optimizer, train, _subset(validation, indices),
                        train_values, _subset_values(validation_values, indices), self.nugget,
                        self.adaptive_nugget, self.regularizer, self.outer_loss,
                    )
                    if not bool(finite):
                        # θ itself gave the non-finite value: fall back to the last θ whose loss
                        # and gradient were finite.
                        params = last_good
                        result.result = RESULTS.nonfinite_loss
                        result.stopped_because = (
                            f"non-finite outer loss or gradient at outer iteration {iteration}, optimizer step "
                            f"{steps_taken + 1}; kept the last good hyperparameters. Lower the learning rate, "
                            f"raise the nugget, or start from a different lengthscale"
                        )
                        break
                    last_good = params
                    params, optimizer_state, loss = new_params, new_state, float(loss_value)
                    result.losses.append(loss)
                    steps_taken += 1
                    if loss <= self.loss_tolerance:
                        break
                if self.inner_steps == 0 and scanned:
                    # The searches' loss: no optimizer step to report one.
                    loss = loss_at(params) if searched_loss is None else searched_loss
                kernel = eqx.combine(params, static)
                solution, train_values, validation_values, residuals = _gauss_newton_update(
                    kernel, train, validation, train_values, self.nugget, self.adaptive_nugget, iteration,
                    self.update_steps,
                )
                result.final_residual_rms = float(np.sqrt(np.mean(np.concatenate([np.asarray(r) for r in residuals]) ** 2)))
                record = OuterRecord(
                    iteration, loss, steps_taken, scalar_hyperparameters(params), time.perf_counter() - start, factor
                )
                result.records.append(record)
                result.kernel, result.solution = kernel, solution
                if callback is not None:
                    callback(record, solution)
                if steps_taken < self.inner_steps and not loss <= self.loss_tolerance:
                    break  # non-finite: stop with the last good θ and its solution
                if loss <= self.loss_tolerance:
                    result.result = RESULTS.converged
                    result.stopped_because = f"outer loss {loss:.3e} reached the tolerance {self.loss_tolerance:g}"
                    break
        except KeyboardInterrupt:
            result.result = RESULTS.interrupted
            result.stopped_because = "interrupted (Ctrl-C); kept the hyperparameters learned so far"
            result.kernel = eqx.combine(params, static)
            return result
        if result.records and not result.final_residual_rms <= DIVERGENCE_FACTOR * result.start_residual_rms:
            result.result = RESULTS.diverged
        return result


def _scale_lengthscales(params, log_factor):
    def scale(path, leaf):
        named = bool(path) and getattr(path[-1], "name", None) == "log_lengthscale"
        return leaf + log_factor if named and leaf is not None else leaf

    return jax.tree_util.tree_map_with_path(scale, params)


def _has_lengthscales(params) -> bool:
    return any(getattr(path[-1], "name", None) == "log_lengthscale"
               for path, _ in jax.tree_util.tree_flatten_with_path(params)[0] if path)


def _best_scale(params, loss_at, factors, improvement):
    """(best factor or None, loss at θ, loss at the best factor): the factor among `factors` whose
    common scaling of the log-lengthscales gives the lowest finite outer loss, if that loss is
    `improvement` times below the loss at θ (or the loss at θ is not finite)."""
    initial = loss_at(params)
    losses = {factor: loss_at(_scale_lengthscales(params, float(np.log(factor)))) for factor in factors}
    losses = {factor: loss for factor, loss in losses.items() if np.isfinite(loss)}
    if not losses:
        return None, initial, initial
    best = min(losses, key=losses.get)
    if np.isfinite(initial) and losses[best] * improvement > initial:
        return None, initial, losses[best]
    return best, initial, losses[best]


#: The factors of the per-iteration scale search: 2^(k/8), k = −24 … 24 (k = 0 is θ itself). An
#: eighth of an octave: the basins can be narrow (elliptic, nugget 1e-12: 1.3e-6 at σ = 0.18 and
#: 0.19, 2.9e-6 at 0.20, 2.0e-6 at 0.236), and a quarter-octave grid from 0.236 steps over them.
SEARCH_FACTORS = tuple(2.0 ** (k / 8) for k in range(-24, 25) if k != 0)


def _scale_search(params, loss_at, factors=SEARCH_FACTORS, improvement=1.0 / 0.7):
    """(params, factor applied): θ with its log-lengthscales scaled by the best factor if that
    lowers the outer loss by 30 % or more, else θ and 1.0."""
    best, _, _ = _best_scale(params, loss_at, factors, improvement)
    if best is None:
        return params, 1.0
    return _scale_lengthscales(params, float(np.log(best))), best


#: The per-axis factors of the axis search: 2^(k/2), k = −4 … 4 (¼ … 4 in half octaves).
AXIS_FACTORS = tuple(2.0 ** (k / 2) for k in range(-4, 5))
#: At most this many axes: the grid has 9^d points, i.e. 81 loss evaluations per outer iteration
#: for two axes and 729 for three.
MAX_SEARCH_AXES = 3


def _axis_count(params) -> int:
    """The length of the last axis of the anisotropic log-lengthscale leaves (1 if none is)."""
    sizes = {int(np.shape(leaf)[-1]) for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
             if path and getattr(path[-1], "name", None) == "log_lengthscale" and np.ndim(leaf) >= 1}
    return max(sizes, default=1)


def _check_axis_search(params) -> None:
    """ConfigError unless the trainable hyperparameters have lengthscales on at most
    MAX_SEARCH_AXES axes."""
    if not _has_lengthscales(params):
        raise ConfigError("axis_search scales lengthscales, and this kernel's trainable hyperparameters have "
                          "none (a Gibbs kernel's lengthscale is a network); turn axis_search off")
    count = _axis_count(params)
    if count > MAX_SEARCH_AXES:
        raise ConfigError(f"axis_search tries {len(AXIS_FACTORS)}^d factor combinations; with d = {count} axes that is "
                          f"{len(AXIS_FACTORS) ** count} loss evaluations per outer iteration. Use scale_search instead")


def _scale_axes(params, log_factors):
    """The anisotropic log-lengthscale leaves (last axis of length len(log_factors)) plus
    `log_factors`; other leaves unchanged."""
    log_factors = np.asarray(log_factors)

    def scale(path, leaf):
        named = bool(path) and getattr(path[-1], "name", None) == "log_lengthscale"
        if not named or leaf is None:
            return leaf
        if np.ndim(leaf) >= 1 and np.shape(leaf)[-1] == log_factors.size:
            return leaf + log_factors
        if np.ndim(leaf) == 0 and log_factors.size == 1:  # an isotropic kernel: its one axis
            return leaf + log_factors[0]
        return leaf

    return jax.tree_util.tree_map_with_path(scale, params)


def _axis_search(params, loss_at, factors=AXIS_FACTORS, improvement=1.0 / 0.7):
    """(θ', its outer loss): θ with its anisotropic log-lengthscales scaled by the best combination
    of one factor per axis, if that lowers the outer loss by 30 % or more (or the loss at θ is not
    finite), else θ itself."""
    count = _axis_count(params)
    initial = loss_at(params)
    best, lowest = None, np.inf
    for combination in itertools.product(factors, repeat=count):
        if all(f == 1.0 for f in combination):
            continue
        loss = loss_at(_scale_axes(params, np.log(combination)))
        if np.isfinite(loss) and loss < lowest:
            best, lowest = combination, loss
    if best is None or (np.isfinite(initial) and lowest * improvement > initial):
        return params, initial
    return _scale_axes(params, np.log(best)), lowest


def _lengthscale_scan(params, loss_at, factors=(2, 4, 8, 16, 32, 64), improvement=10.0):
    """(params to start from, a note): the initial θ, or θ with every log-lengthscale scaled by
    the factor whose outer loss is lowest, if that is `improvement` times below the initial loss."""
    best, initial, lowest = _best_scale(params, loss_at, factors, improvement)
    if best is None:
        return params, ""
    note = (f"lengthscale scan: outer loss {initial:.3e} at the initial lengthscales, {lowest:.3e} with "
            f"them scaled by {best}; started from the scaled ones (the initial ones sit behind a loss barrier "
            f"that gradient steps do not cross)")
    return _scale_lengthscales(params, float(np.log(best))), note


def draw_batches(rng: np.random.Generator, sizes: Sequence[int], batch_size: int | None) -> tuple[np.ndarray, ...]:
    """Sorted point indices of one validation batch per constraint (all points if `batch_size` is
    None). One draw per distinct size: validation constraints on the same points (the equations of
    a system) are evaluated at the same batch of points, as in the published codes."""
    if batch_size is None:
        return tuple(np.arange(n) for n in sizes)
    draws = {n: np.sort(rng.choice(n, min(n, batch_size), replace=False)) for n in dict.fromkeys(sizes)}
    return tuple(draws[n] for n in sizes)


def _subset(constraints, indices):
    return tuple(c.subset(i) for c, i in zip(constraints, indices))


def _subset_values(values, indices):
    return tuple(z[:, i] for z, i in zip(values, indices))


def _regularized_loss(params, static, train, validation, train_values, validation_values, nugget, adaptive_nugget,
                      regularizer, kind="mean-square"):
    kernel = eqx.combine(params, static)
    loss = linearized_validation_loss(kernel, train, validation, train_values, validation_values, nugget,
                                      adaptive_nugget, kind)
    if regularizer is not None:
        loss = loss + regularizer(kernel)
    return loss


_outer_loss = eqx.filter_jit(_regularized_loss)


@eqx.filter_jit
def optimizer_step(params, static, state, optimizer, train, validation, train_values, validation_values,
                   nugget, adaptive_nugget, regularizer, kind="mean-square"):
    """One optimizer step of `BilevelLearner` on the trainable hyperparameters `params` (the kernel
    is `eqx.combine(params, static)`): the outer loss (`linearized_validation_loss` around the
    frozen iterate whose operator values are `train_values` / `validation_values`, averaged as
    `kind` says, plus
    `regularizer(kernel)` unless None), its gradient by autodiff through the inner Gauss-Newton
    step, and the optax update. Returns (new params, new optimizer state, loss, finite), where
    `finite` says whether the loss and every gradient leaf were finite."""

    def loss_of(p):
        return _regularized_loss(p, static, train, validation, train_values, validation_values, nugget,
                                 adaptive_nugget, regularizer, kind)

    loss, grads = eqx.filter_value_and_grad(loss_of)(params)
    finite = jnp.isfinite(loss) & jnp.all(
        jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)])
    )
    updates, new_state = optimizer.update(grads, state, params)
    return eqx.apply_updates(params, updates), new_state, loss, finite


@eqx.filter_jit
def _step_and_validation_values(kernels, train, validation, train_values, nugget, adaptive_nugget):
    blocks = operator_blocks(kernels, train)
    outcome = gauss_newton_step(blocks, train, train_values, nugget, adaptive_nugget)
    new_validation = values_at(kernels, validation, train, outcome.weights, outcome.coefficients)
    return outcome, new_validation


def _gauss_newton_update(kernel, train, validation, train_values, nugget, adaptive_nugget, iteration, steps=1):
    """`steps` Gauss-Newton steps with the new kernel from the frozen iterate's values: the next
    iterate, its operator values at the training and validation points, and its residuals."""
    kernels = kernel_tuple(kernel)

    def check(outcome):
        if not outcome.result == RESULTS.successful:
            raise SolverError(
                f"the Gauss-Newton step after outer iteration {iteration} failed: {RESULTS[outcome.result]}; "
                "or learn the lengthscales only (trainable = 'lengthscale')",
                outcome.result,
            )

    if steps == 1:  # one compiled program for the step and the validation values
        outcome, validation_values = _step_and_validation_values(
            kernels, train, validation, train_values, nugget, adaptive_nugget
        )
        check(outcome)
    else:  # the Gram blocks once, then the steps
        blocks = compiled_operator_blocks(kernels, train)
        for _ in range(steps):
            outcome = compiled_gauss_newton_step(blocks, train, train_values, nugget, adaptive_nugget)
            check(outcome)
            train_values = outcome.values
        validation_values = compiled_values_at(kernels, validation, train, outcome.weights, outcome.coefficients)
    solution = CollocationSolution(kernel, train, outcome.weights, outcome.coefficients)
    return solution, outcome.values, validation_values, outcome.residuals
