"""The Gauss-Newton collocation solver (gpde.GaussNewton, gpde/_linearize.py).

The reduced formulation (one functional per collocation point) is checked against an independent
full-block Gauss-Newton step written here (docs/references.md §1); the solver is checked on the three
catalogue problems against their independent references (manufactured solution, Cole-Hopf, the
finite-difference Eikonal reference), on a linear problem, and on its failure modes.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gpde
from gpde import Constraint, Evaluation, GaussNewton, Laplacian, Partial, SecondPartial, operator_gram
from gpde._results import FAILURES, is_failure, result_name
from gpde.solve._linearize import gauss_newton_step, initial_values, operator_blocks
from gpde.kernels import Gaussian, Matern52
from gpde.problems.burgers import Burgers
from gpde.problems.eikonal import Eikonal
from gpde.problems.elliptic import NonlinearElliptic


def _points(problem, n_interior, n_boundary, layout, seed=0):
    interior_key, boundary_key = jax.random.split(jax.random.PRNGKey(seed))
    interior = problem.domain.interior_points(n_interior, layout, interior_key)
    boundary = problem.domain.boundary_points(n_boundary, layout, boundary_key, problem.boundary_faces)
    return interior, boundary


def _grid_errors(problem, solution, per_side=30):
    grid, _ = problem.domain.grid(per_side)
    u = np.asarray(solution(grid))
    reference = np.asarray(problem.reference(np.asarray(grid)))
    error = u - reference
    return {"rms": float(np.sqrt(np.mean(error**2))), "linf": float(np.max(np.abs(error)))}


# --------------------------------------------------------------------------------------------
# Reduced formulation = full-block formulation (docs/references.md §1)
# --------------------------------------------------------------------------------------------


def _full_gram(kernel, interior, boundary):
    """Θ over all basis functionals, ordered [u(x_i) for interior x_i, Δu(x_i), u(x_b) boundary]."""
    ops_i, ops_b = (Evaluation(), Laplacian()), (Evaluation(),)

    def flat(block):  # (m1, m2, n1, n2) → (m1 n1, m2 n2), operator-major
        block = np.asarray(block)
        m1, m2, n1, n2 = block.shape
        return block.transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)

    gram = eqx.filter_jit(operator_gram)
    ii = flat(gram(kernel, ops_i, interior, ops_i, interior))
    ib = flat(gram(kernel, ops_i, interior, ops_b, boundary))
    bb = flat(gram(kernel, ops_b, boundary, ops_b, boundary))
    return np.block([[ii, ib], [ib.T, bb]])


def _full_block_step(theta, z, source, boundary_values, nugget):
    """One Gauss-Newton step on all functional values z = [u_I, Δu_I, u_B]: linearize
    −Δu + u³ − f = 0 (weights w = (3u², −1)) and u − g = 0, then take the minimum-norm z subject
    to A z = b in the norm of Θ̃ = Θ + nugget·I: z = Θ̃ Aᵀ (A Θ̃ Aᵀ)⁻¹ b."""
    n_i, n_b = len(source), len(boundary_values)
    u, lap = z[:n_i], z[n_i : 2 * n_i]
    residual = -lap + u**3 - source
    w_u, w_lap = 3 * u**2, -np.ones(n_i)
    a = np.zeros((n_i + n_b, 2 * n_i + n_b))
    a[np.arange(n_i), np.arange(n_i)] = w_u
    a[np.arange(n_i), n_i + np.arange(n_i)] = w_lap
    a[n_i + np.arange(n_b), 2 * n_i + np.arange(n_b)] = 1.0
    b = np.concatenate([w_u * u + w_lap * lap - residual, boundary_values])
    theta_tilde = theta + nugget * np.eye(len(theta))
    return theta_tilde @ a.T @ np.linalg.solve(a @ theta_tilde @ a.T, b)


def test_reduced_gauss_newton_equals_full_block_formulation():
    problem = NonlinearElliptic()
    interior, boundary = _points(problem, 64, 32, "grid")
    kernel = Gaussian(0.2)
    nugget = 1e-10
    constraints = problem.constraints(interior, boundary)
    source = np.asarray(jax.jit(jax.vmap(problem.source))(interior))
    boundary_values = np.asarray(jax.jit(jax.vmap(problem.exact))(boundary))
    theta = _full_gram(kernel, interior, boundary)

    blocks = eqx.filter_jit(operator_blocks)((kernel,), constraints)
    step_function = eqx.filter_jit(gauss_newton_step)
    values = initial_values(constraints)
    z = np.zeros(len(theta))
    full_iterates = []
    # Measured max relative deviation (η = 1e-10): 2.3e-9 after step 1, 6.7e-8 after steps 2-4;
    # it scales linearly with η (6.7e-10 at 1e-12, 6.6e-6 at 1e-8): the nugget sits on different
    # diagonals in the two formulations (A·η·Aᵀ vs the reduced adaptive nugget). Bound: 1e-6.
    for step in range(4):
        outcome = step_function(blocks, constraints, values, nugget, True)
        assert outcome.result == gpde.RESULTS.successful
        values = outcome.values
        z = _full_block_step(theta, z, source, boundary_values, nugget)
        full_iterates.append(z)
        reduced = np.concatenate([np.asarray(values[0][0]), np.asarray(values[0][1]), np.asarray(values[1][0])])
        n = len(interior)
        for name, part in (("u", slice(0, n)), ("Δu", slice(n, 2 * n)), ("u on the boundary", slice(2 * n, None))):
            scale = np.max(np.abs(z[:n])) if name == "u on the boundary" else np.max(np.abs(z[part]))
            deviation = np.max(np.abs(reduced[part] - z[part])) / scale
            assert deviation <= 1e-6, (step + 1, name, deviation)
    # The iterates really move (the comparison is not between two fixed points): step 1 solves
    # the linear −Δu = f, later steps add the u³ term.
    assert np.max(np.abs(full_iterates[1] - full_iterates[0])) > 1e-2 * np.max(np.abs(full_iterates[1]))

    # The public solver after 3 steps, evaluated through CollocationSolution.apply.
    solution, history = GaussNewton(nugget=nugget, max_steps=3, tolerance=0.0).solve(kernel, constraints)
    assert len(history.steps) == 3
    z3 = full_iterates[2]
    n = len(interior)
    np.testing.assert_allclose(solution(interior), z3[:n], rtol=0, atol=1e-6 * np.max(np.abs(z3[:n])))
    np.testing.assert_allclose(
        solution.apply(Laplacian(), interior), z3[n : 2 * n], rtol=0, atol=1e-6 * np.max(np.abs(z3[n : 2 * n]))
    )
    np.testing.assert_allclose(solution(boundary), z3[2 * n :], rtol=0, atol=1e-6 * np.max(np.abs(z3[:n])))


# --------------------------------------------------------------------------------------------
# Convergence on the catalogue problems
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)  # shared by the tests that run in the same worker
def _solve_elliptic(n_interior, n_boundary):
    problem = NonlinearElliptic()
    interior, boundary = _points(problem, n_interior, n_boundary, "grid")
    solver = GaussNewton(nugget=1e-12, max_steps=8)
    solution, history = solver.solve(Gaussian(0.2), problem.constraints(interior, boundary))
    return problem, solution, history


def test_elliptic_converges_and_refines():
    # Measured (30×30 grid): 400 + 80 points: L∞ 4.1e-5, RMS 3.2e-6, converged in 5 steps;
    # 100 + 40 points: L∞ 2.6e-2, RMS 8.4e-3. Bounds about 3× above.
    problem, solution, history = _solve_elliptic(400, 80)
    fine = _grid_errors(problem, solution)
    assert fine["linf"] < 1.2e-4, fine
    assert fine["rms"] < 1e-5, fine
    assert history.converged and len(history.steps) <= 8
    assert history.result == gpde.RESULTS.converged
    assert history.steps[-1].residual_rms < 1e-3 * history.steps[0].residual_rms
    # The divergence rule's reference: u = 0's residual RMS at the collocation points.
    assert history.start_residual_rms == pytest.approx(_zero_residual_rms(solution.constraints), rel=1e-12)

    problem, solution, _ = _solve_elliptic(100, 40)
    coarse = _grid_errors(problem, solution)
    assert coarse["linf"] < 0.08, coarse
    assert fine["linf"] < 1e-2 * coarse["linf"], (fine, coarse)
    assert fine["rms"] < 1e-2 * coarse["rms"], (fine, coarse)


def test_warm_start_from_a_converged_solution_stays_there():
    """Started from its own converged solution, Gauss-Newton takes one step that changes nothing;
    started from a solution on other points, it converges to the same answer
    as from u = 0 (this problem has one fixed point)."""
    problem, solution, cold_history = _solve_elliptic(100, 40)
    constraints = solution.constraints
    solver = GaussNewton(nugget=1e-12, max_steps=8)
    again, history = solver.solve(Gaussian(0.2), constraints, initial=solution)
    assert history.steps[0].update < 1e-6 and len(history.steps) < len(cold_history.steps)
    grid, _ = problem.domain.grid(20)
    np.testing.assert_allclose(np.asarray(again(grid)), np.asarray(solution(grid)), atol=1e-8)

    _, other, _ = _solve_elliptic(64, 32)
    warm, _ = solver.solve(Gaussian(0.2), constraints, initial=other)
    np.testing.assert_allclose(np.asarray(warm(grid)), np.asarray(solution(grid)), atol=1e-6)


def test_burgers_converges():
    # 400 interior + 120 boundary random points, anisotropic Gaussian (ℓ_t, ℓ_x) = (0.3, 0.05)
    # (the published lengthscales; (0.3, 0.07) gives RMS 8.8e-2, L∞ 0.55 at this size).
    # Measured (30×30 grid): RMS 1.8e-2, L∞ 0.10; collocation residual RMS per step 0.80, 0.82,
    # 0.12, 4.9e-3, 2.9e-4, 4.3e-6, 8.3e-7, 2.8e-7.
    problem = Burgers()
    interior, boundary = _points(problem, 400, 120, "random")
    solution, history = GaussNewton(nugget=1e-10, max_steps=8).solve(
        Gaussian(jnp.array([0.3, 0.05])), problem.constraints(interior, boundary)
    )
    errors = _grid_errors(problem, solution)
    assert errors["rms"] < 5e-2, errors
    assert errors["linf"] < 0.3, errors
    residuals = [s.residual_rms for s in history.steps]
    assert len(residuals) == 8
    assert history.result == gpde.RESULTS.max_steps_reached and history.stop_reason == "stopped at the step limit"
    assert residuals[-1] < 1e-4 * history.start_residual_rms  # far below u = 0's: not diverged
    # Decreasing from step 2 on (step 1 solves the linear part only), by 1e4 overall.
    for before, after in zip(residuals[1:], residuals[2:]):
        assert after <= 1.05 * before + 1e-9, residuals
    assert residuals[-1] < 1e-4 * residuals[1], residuals


def test_eikonal_converges():
    # 400 interior + 120 boundary random points, Matérn 5/2, ℓ = 0.2, 8 steps. Measured against
    # the finite-difference reference on a 30×30 grid: RMS 4.7e-3, L∞ 2.1e-2; collocation
    # residual RMS 66, 16, 3.9, 0.85, 0.14, 9.5e-3, 7.1e-4, 3.5e-4.
    problem = Eikonal()
    interior, boundary = _points(problem, 400, 120, "random")
    solution, history = GaussNewton(nugget=1e-10, max_steps=8).solve(
        Matern52(0.2), problem.constraints(interior, boundary)
    )
    errors = _grid_errors(problem, solution)
    assert errors["rms"] < 1.5e-2, errors
    assert errors["linf"] < 6e-2, errors
    residuals = [s.residual_rms for s in history.steps]
    assert residuals[-1] < 1e-4 * residuals[0], residuals
    # Steps 1-3 end far above u = 0's residual RMS (0.88 here) before converging: why the
    # divergence rule judges the final residual only.
    assert max(residuals) > 10 * history.start_residual_rms > 1e3 * residuals[-1], residuals
    assert history.result == gpde.RESULTS.max_steps_reached


def _records(residuals, updates):
    return [
        gpde.StepRecord(step=i + 1, residual_rms=r, residual_max=r, update=u, seconds=0.0)
        for i, (r, u) in enumerate(zip(residuals, updates))
    ]


@pytest.mark.parametrize(
    "residuals, updates, stalled",
    [
        ([1.0, 1e-3, 1e-6, 1.0e-6, 1.0e-6, 1.0e-6], [1, 1e-2, 1e-4, 1e-6, 1e-6, 1e-6], True),
        # still improving by more than 1 % per step: not a stall
        ([1.0, 1e-3, 1e-6, 0.5e-6, 0.25e-6, 0.1e-6], [1, 1e-2, 1e-4, 1e-6, 1e-6, 1e-6], False),
        # flat residual but the iterate still moves: not a stall
        ([1.0, 1e-3, 1e-6, 1.0e-6, 1.0e-6, 1.0e-6], [1, 1e-2, 1e-4, 1e-3, 1e-3, 1e-3], False),
        # too few steps to judge
        ([1.0, 1.0, 1.0], [1e-9, 1e-9, 1e-9], False),
    ],
)
def test_stall_rule(residuals, updates, stalled):
    assert GaussNewton()._stalled(_records(residuals, updates)) is stalled
    assert GaussNewton(stall_steps=0)._stalled(_records(residuals, updates)) is False


@pytest.mark.slow
def test_stall_rule_stops_early_without_losing_accuracy():
    # At the default size the Eikonal residual levels off at ~4e-9 after ~17 steps while the update
    # decays slowly (ratio ~0.55) and would reach the 1e-8 tolerance only after ~35 steps; measured:
    # the stall rule stops at step 22 of 30 with the same RMS error (2.89e-3).
    problem = Eikonal()
    interior, boundary = _points(problem, 900, 300, "random")
    constraints = problem.constraints(interior, boundary)
    stalled, stalled_history = GaussNewton(nugget=1e-10, max_steps=30).solve(Matern52(0.2), constraints)
    full, full_history = GaussNewton(nugget=1e-10, max_steps=30, stall_steps=0).solve(Matern52(0.2), constraints)
    assert stalled_history.stalled and not stalled_history.converged
    assert stalled_history.result == gpde.RESULTS.stalled and stalled_history.stop_reason == "stalled"
    assert len(stalled_history.steps) < len(full_history.steps) == 30
    stalled_errors, full_errors = _grid_errors(problem, stalled), _grid_errors(problem, full)
    assert stalled_errors["rms"] < 1.01 * full_errors["rms"], (stalled_errors, full_errors)


# --------------------------------------------------------------------------------------------
# A linear problem
# --------------------------------------------------------------------------------------------


def _poisson_exact(x):
    return jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1]) + x[0] * x[1] + 0.5


def test_linear_problem_converges_in_two_steps():
    # −Δu = f with u = sin πx sin πy + xy + 1/2 (f = 2π² sin πx sin πy), u = g on the boundary.
    box = gpde.Box((0.0, 0.0), (1.0, 1.0))
    interior = box.interior_points(144, "grid", jax.random.PRNGKey(0))
    boundary = box.boundary_points(48, "grid", jax.random.PRNGKey(1))
    source = lambda x: 2 * jnp.pi**2 * jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1])  # noqa: E731
    constraints = (
        Constraint("poisson", interior, (Laplacian(),), lambda x, z: -z[0] - source(x)),
        Constraint("dirichlet", boundary, (Evaluation(),), lambda x, z: z[0] - _poisson_exact(x)),
    )
    solution, history = GaussNewton(nugget=1e-10, max_steps=10).solve(Gaussian(0.25), constraints)
    assert history.converged
    assert len(history.steps) <= 2, [s.update for s in history.steps]
    # The residual left by the nugget: measured 1.05e-5 RMS (|f| ≤ 2π² ≈ 20).
    assert history.steps[-1].residual_rms < 1e-4
    grid, _ = box.grid(20)
    error = np.max(np.abs(np.asarray(solution(grid)) - np.asarray(jax.vmap(_poisson_exact)(grid))))
    assert error < 1e-3, error  # measured 2.0e-4


def _scaled_poisson(x, z, parameters):
    """−Δu = c f with the coefficient c a constraint parameter."""
    source = 2 * jnp.pi**2 * jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1])
    return -z[0] - parameters[0] * source


def _zero_boundary(x, z):
    return z[0]


def test_constraint_parameters_are_traced_data_not_a_new_program(caplog):
    # A residual r(x, z, p) with p given as the constraint's parameters: the solve equals the one
    # with p closed over, and a second value of p reuses the compiled programs (nothing compiles).
    box = gpde.Box((0.0, 0.0), (1.0, 1.0))
    interior = box.interior_points(64, "grid", jax.random.PRNGKey(0))
    boundary = box.boundary_points(32, "grid", jax.random.PRNGKey(1))
    dirichlet = Constraint("dirichlet", boundary, (Evaluation(),), _zero_boundary)
    solver, grid = GaussNewton(nugget=1e-10, max_steps=2), box.grid(9)[0]
    solutions, compiled = {}, {}
    for c in (1.0, 2.5):
        poisson = Constraint("poisson", interior, (Laplacian(),), _scaled_poisson, parameters=jnp.array([c]))
        caplog.clear()
        with jax.log_compiles(), caplog.at_level(logging.DEBUG):
            solutions[c] = np.asarray(solver.solve(Gaussian(0.25), (poisson, dirichlet))[0](grid))
        compiled[c] = sum("Compiling" in record.getMessage() for record in caplog.records)
    assert compiled[1.0] > 0 and compiled[2.5] == 0, compiled
    closed = Constraint("poisson", interior, (Laplacian(),), lambda x, z: _scaled_poisson(x, z, jnp.array([2.5])))
    expected = np.asarray(solver.solve(Gaussian(0.25), (closed, dirichlet))[0](grid))
    np.testing.assert_allclose(solutions[2.5], expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(solutions[2.5], 2.5 * solutions[1.0], rtol=1e-6, atol=1e-9)  # linear in c


def test_evaluation_compiles_once_for_equations_built_anew(caplog):
    # Evaluating u and its posterior σ reads only the functionals, so the same problem built again
    # (its equations new closures, as in every continuation stage and re-solve) evaluates with the
    # programs compiled for the first build: nothing compiles the second time.
    problem = NonlinearElliptic()
    interior, boundary = _points(problem, 36, 20, "grid")
    grid = problem.domain.grid(9)[0]
    solver = GaussNewton(nugget=1e-10, max_steps=2)
    compiled, values = [], []
    for _ in range(2):
        solution = solver.solve(Gaussian(0.25), problem.constraints(interior, boundary))[0]
        posterior = gpde.solve.posterior(solution, 1e-10)
        caplog.clear()
        with jax.log_compiles(), caplog.at_level(logging.DEBUG):
            values.append((np.asarray(solution(grid)), np.asarray(posterior.std(grid))))
        compiled.append(sum("Compiling" in record.getMessage() for record in caplog.records))
    assert compiled[0] > 0 and compiled[1] == 0, compiled
    np.testing.assert_array_equal(values[0][0], values[1][0])
    np.testing.assert_array_equal(values[0][1], values[1][1])


# --------------------------------------------------------------------------------------------
# Precision and numerical failures
# --------------------------------------------------------------------------------------------


def test_float32_is_refused_with_instructions():
    # conftest.py turns 64-bit mode on in this process, so the float32 run is a subprocess.
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp
        assert not jax.config.jax_enable_x64
        import gpde
        from gpde.kernels import Gaussian
        points = jnp.asarray([[0.1, 0.2], [0.5, 0.5], [0.9, 0.3]])
        constraint = gpde.Constraint("values", points, (gpde.Evaluation(),), lambda x, z: z[0] - 1.0)
        try:
            gpde.GaussNewton().solve(Gaussian(0.3), [constraint])
        except gpde.PrecisionError as error:
            assert isinstance(error, gpde.GpdeError)
            print("PRECISION-ERROR:", error)
        """
    )
    env = {**os.environ, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "PRECISION-ERROR:" in result.stdout, (result.stdout, result.stderr)
    message = result.stdout.split("PRECISION-ERROR:", 1)[1]
    assert "float64" in message
    assert "jax.config.update('jax_enable_x64', True)" in message
    assert "JAX_ENABLE_X64=1" in message


def _value_constraint(points, residual=None):
    residual = residual or (lambda x, z: z[0] - jnp.sin(3 * x[0]) * x[1])
    return Constraint("values", points, (Evaluation(),), residual)


def test_failed_cholesky_raises_solver_error():
    # Every point twice: the Gram matrix is exactly singular and η = 1e-300 does not help.
    points = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (20, 2)))
    duplicated = jnp.concatenate([points, points])
    with pytest.raises(gpde.SolverError) as info:
        GaussNewton(nugget=1e-300, adaptive_nugget=False).solve(Gaussian(0.3), [_value_constraint(duplicated)])
    message = str(info.value)
    assert "step 1" in message
    assert "Cholesky" in message
    assert "increase the nugget" in message
    assert info.value.result == gpde.RESULTS.cholesky_failed
    # The same points with a sane nugget solve: the failure is the nugget's, not the setup's.
    solution, _ = GaussNewton(nugget=1e-8, adaptive_nugget=False).solve(Gaussian(0.3), [_value_constraint(duplicated)])
    expected = np.sin(3 * np.asarray(points)[:, 0]) * np.asarray(points)[:, 1]
    np.testing.assert_allclose(solution(points), expected, atol=1e-4)


def test_nan_residual_raises_solver_error():
    points = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (10, 2)))
    with pytest.raises(gpde.SolverError, match=r"step 1 failed: .*NaN or inf.*residual") as info:
        GaussNewton().solve(Gaussian(0.3), [_value_constraint(points, lambda x, z: z[0] - jnp.nan)])
    assert info.value.result == gpde.RESULTS.nonfinite_linearization
    # NaN only once the iterate moves: the failure is reported at step 2.
    late = lambda x, z: jnp.where(z[0] > 0.5, jnp.nan, z[0] - 1.0)  # noqa: E731
    with pytest.raises(gpde.SolverError, match="step 2 failed") as info:
        GaussNewton().solve(Gaussian(0.3), [_value_constraint(points, late)])
    assert info.value.result == gpde.RESULTS.nonfinite_linearization


# --------------------------------------------------------------------------------------------
# How a solve ends: RESULTS
# --------------------------------------------------------------------------------------------


def _zero_residual_rms(constraints):
    """RMS of the residuals of u = 0 at the constraints' points, evaluated pointwise here."""
    def at(c, x):
        z = jnp.zeros(len(c.operators))
        return float(c.residual(x, z) if c.parameters is None else c.residual(x, z, c.parameters))

    residuals = [np.array([at(c, x) for x in c.points]) for c in constraints]
    return float(np.sqrt(np.mean(np.concatenate(residuals) ** 2)))


#: Words that name a setting a user can change.
_FIXES = ("nugget", "lengthscale", "points", "steps", "learning rate", "noise floor", "initial queries", "rerun")


def test_every_result_has_a_message_and_every_problem_names_a_fix():
    names = list(gpde.RESULTS._name_to_item)
    assert len(names) == len(gpde.RESULTS) >= 10
    assert FAILURES < set(names)
    for name in names:
        member = getattr(gpde.RESULTS, name)
        message = gpde.RESULTS[member]
        assert message.strip() and result_name(member) == name
        assert is_failure(member) == (name in FAILURES)
        if name not in ("successful", "converged"):  # outcomes that need nothing changed
            assert any(fix in message for fix in _FIXES), (name, message)
    assert gpde.RESULTS.diverged != gpde.RESULTS.converged  # distinct members, compared in JAX


def test_huge_lengthscale_with_a_tiny_nugget_fails_cholesky_and_with_a_small_one_diverges():
    """Elliptic, 100 + 40 grid points, Gaussian ℓ = 1e3 (a Gram matrix of nearly equal entries).
    With η = 1e-20 the factorization fails; with the default η = 1e-12 it succeeds, but the steps
    land far away (residual RMS 1.4e21 after step 1, 3.3e12 after step 10, against 606 for u = 0):
    diverged, not "stopped at the step limit"."""
    problem = NonlinearElliptic()
    interior, boundary = _points(problem, 100, 40, "grid")
    constraints = problem.constraints(interior, boundary)
    with pytest.raises(gpde.SolverError, match="Cholesky") as info:
        GaussNewton(nugget=1e-20).solve(Gaussian(1e3), constraints)
    assert info.value.result == gpde.RESULTS.cholesky_failed

    steps = []
    with pytest.raises(gpde.SolverError, match=r"diverged .*lengthscale") as info:
        GaussNewton(nugget=1e-12).solve(Gaussian(1e3), constraints, callback=steps.append)
    assert info.value.result == gpde.RESULTS.diverged
    assert len(steps) == 10 and steps[-1].residual_rms > 1e3 * _zero_residual_rms(constraints)
    # The residual fell at every step: "grew since the first step" would not have caught it.
    assert all(after.residual_rms < before.residual_rms for before, after in zip(steps, steps[1:]))

    # The same points with the problem's lengthscale: converged, far below u = 0's residual.
    _, history = GaussNewton(nugget=1e-12).solve(Gaussian(0.2), constraints)
    assert history.result == gpde.RESULTS.converged
    assert history.steps[-1].residual_rms < 1e-3 * history.start_residual_rms


def test_divergence_is_judged_against_u_zero_after_a_warm_start():
    """A warm start from an accurate solution starts with a tiny residual; a solve with another
    kernel that ends at its own (higher) floor is not divergence: the reference is the larger of
    the starting residual and u = 0's."""
    problem, solution, _ = _solve_elliptic(100, 40)
    constraints = solution.constraints
    start = float(np.sqrt(np.mean(np.concatenate([np.asarray(r) for r in _residuals_of(solution)]) ** 2)))
    _, history = GaussNewton(nugget=1e-8, max_steps=3).solve(Gaussian(0.3), constraints, initial=solution)
    assert history.steps[-1].residual_rms > start  # ended above where it started ...
    assert history.start_residual_rms == pytest.approx(_zero_residual_rms(constraints), rel=1e-12)
    assert not history.result == gpde.RESULTS.diverged  # ... but far below u = 0's


def _residuals_of(solution):
    values = [jnp.stack([solution.apply(op, c.points) for op in c.operators]) for c in solution.constraints]
    return [c.residuals(z) for c, z in zip(solution.constraints, values)]


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"nugget": 0.0}, "nugget must be > 0"),
        ({"nugget": -1e-10}, "nugget must be > 0"),
        ({"nugget": float("nan")}, "nugget must be > 0"),
        ({"max_steps": 0}, "max_steps must be an integer >= 1"),
        ({"max_steps": 2.5}, "max_steps must be an integer >= 1"),
        ({"tolerance": -1.0}, "tolerance must be >= 0"),
        ({"stall_steps": -1}, "stall_steps must be an integer >= 0"),
    ],
)
def test_bad_solver_settings(settings, match):
    with pytest.raises(gpde.ConfigError, match=match):
        GaussNewton(**settings)


def _zero(x, z):
    return z[0]


@pytest.mark.parametrize(
    "points, operators, match",
    [
        (np.array([[0.1, 0.2], [np.nan, 0.3]]), (Evaluation(),), "NaN or inf"),
        (np.array([[0.1, np.inf]]), (Evaluation(),), "NaN or inf"),
        (np.array([0.1, 0.2, 0.3]), (Evaluation(),), r"\(n, d\) array"),
        (np.zeros((0, 2)), (Evaluation(),), r"\(n, d\) array"),
        (np.zeros((2, 2, 1)), (Evaluation(),), r"\(n, d\) array"),
        (np.zeros((3, 2)), (), "at least one operator"),
    ],
)
def test_bad_constraint_raises_config_error(points, operators, match):
    with pytest.raises(gpde.ConfigError, match=match):
        Constraint("bad", points, operators, _zero)


@pytest.mark.parametrize(
    "operator, match",
    [
        (Partial(2), "coordinate 2 < dimension 2"),
        (Partial(-1), "coordinate -1 < dimension 2"),
        (SecondPartial(0, 3), "coordinate 3 < dimension 2"),
        (Laplacian(coordinates=(0, 2)), "coordinate 2 is not < dimension 2"),
    ],
)
def test_operator_coordinate_out_of_range(operator, match):
    with pytest.raises(ValueError, match=match):
        Constraint("bad", np.zeros((3, 2)), (operator,), _zero)


def test_mixed_dimensions_and_no_constraints():
    two = _value_constraint(jnp.zeros((2, 2)) + 0.5)
    three = _value_constraint(jnp.zeros((2, 3)) + 0.5)
    with pytest.raises(gpde.ConfigError, match="one dimension"):
        GaussNewton().solve(Gaussian(0.3), [two, three])
    with pytest.raises(gpde.ConfigError, match="at least one constraint"):
        GaussNewton().solve(Gaussian(0.3), [])


# --------------------------------------------------------------------------------------------
# CollocationSolution.apply
# --------------------------------------------------------------------------------------------


def test_solution_apply_matches_finite_differences():
    problem, solution, _ = _solve_elliptic(100, 40)
    points = jnp.asarray(np.random.default_rng(2).uniform(0.1, 0.9, (12, 2)))
    # Fourth-order central differences, h = 1e-3: truncation h⁴/30·|u⁽⁵⁾| with |u⁽⁵⁾| ≲ 4(4π)⁵ ≈
    # 1.2e6 (the sin 4πx part) gives ≲ 4e-8, i.e. ~1e-9 relative to |∂u| ≈ 50; rounding
    # ≈ ε·|u|·(18/12)/h ≈ 1e-12. Measured 8.5e-10 relative; bound 1e-7.
    h = 1e-3
    for i, operator in enumerate((Partial(0), Partial(1))):
        e = np.zeros(2)
        e[i] = h
        u = lambda shift: np.asarray(solution(points + shift))  # noqa: E731
        fd = (-u(2 * e) + 8 * u(e) - 8 * u(-e) + u(-2 * e)) / (12 * h)
        derivative = np.asarray(solution.apply(operator, points))
        np.testing.assert_allclose(derivative, fd, rtol=0, atol=1e-7 * np.max(np.abs(fd)))
        assert np.max(np.abs(fd)) > 1.0  # a nonzero derivative: the check is not vacuous
    # Second order: the Laplacian against the 5-point stencil (h = 1e-3: truncation h²/12·|u⁗|·2
    # ≈ 1e-7·4(4π)⁴ ≈ 1e-2 relative to |Δu| ~ 4·32π² ≈ 1e3, i.e. 1e-5; rounding 8ε|u|/h² ≈ 4e-9).
    # Measured 1.3e-5 relative; bound 5e-5.
    laplacian = np.asarray(solution.apply(Laplacian(), points))
    fd = sum(
        (np.asarray(solution(points + h * e)) - 2 * np.asarray(solution(points)) + np.asarray(solution(points - h * e)))
        / h**2
        for e in np.eye(2)
    )
    np.testing.assert_allclose(laplacian, fd, rtol=0, atol=5e-5 * np.max(np.abs(fd)))


def test_box_shrunk_moves_only_the_named_faces():
    box = gpde.Box((0.0, -1.0), (1.0, 1.0))
    assert box.shrunk(0.0) == box
    assert box.shrunk(0.1) == gpde.Box((0.1, -0.9), (0.9, 0.9))
    # Burgers: boundary data on t = 0 and x = ±1, none on t = 1.
    assert box.shrunk(0.1, ((0, 0), (1, 0), (1, 1))) == gpde.Box((0.1, -0.9), (1.0, 0.9))
    for bad in (-0.1, float("inf")):
        with pytest.raises(gpde.ConfigError, match="margin"):
            box.shrunk(bad)
    with pytest.raises(gpde.ConfigError, match="leaves nothing"):
        box.shrunk(0.5)
