"""Gray-Scott (problems/gray_scott.py): the method-of-lines reference converges under refinement and
satisfies the PDE, initial and boundary conditions (checked by finite differences, independently of
how it was computed); a small two-field collocation solve reaches it; the learner runs on it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import GaussNewton
from gpde.app._config import LearnConfig, resolve
from gpde.app._learn_run import run_learn
from gpde.kernels import Gaussian
from gpde.problems._gray_scott_reference import gray_scott_mol
from gpde.problems.gray_scott import GrayScott

PARAMETERS = (1e-3, 2e-3, 0.04, 0.06)


def _grid(nt=21, nx=41):
    tt, xx = np.meshgrid(np.linspace(0, 1, nt), np.linspace(0, 1, nx), indexing="ij")
    return tt.ravel(), xx.ravel()


def test_reference_converges_exponentially_under_refinement():
    # Measured (2026-11-29, 101 × 201 grid, against N = 96, rtol 1e-12): N = 32: 1.5e-6, N = 48:
    # 2.2e-9, N = 64 (default): 3.8e-12. Here on a coarser grid against N = 64.
    t, x = _grid()
    fine = gray_scott_mol(*PARAMETERS)(t, x)
    coarse = np.abs(gray_scott_mol(*PARAMETERS, modes=32, time_nodes=32, rtol=1e-9)(t, x) - fine).max()
    middle = np.abs(gray_scott_mol(*PARAMETERS, modes=48, time_nodes=40, rtol=1e-10)(t, x) - fine).max()
    assert 1e-8 < coarse < 1e-5
    assert middle < 1e-2 * coarse


def test_reference_satisfies_the_equations():
    reference = gray_scott_mol(*PARAMETERS)
    du, dv, feed, kill = PARAMETERS
    rng = np.random.default_rng(0)
    t, x = rng.uniform(0.05, 0.95, 30), rng.uniform(0.05, 0.95, 30)
    h = 1e-3

    def at(dt, dx):
        return reference(t + dt, x + dx)

    # Central differences: O(h²) truncation (|∂³| ≲ (3π)³ → ~5e-6 in u_t) and rounding ~ε/h² in
    # u_xx, which the small diffusivities scale down: residual ≲ 1e-5 if the equations hold; a wrong
    # sign or coefficient leaves O(1e-2).
    (u, v) = at(0, 0)
    u_t, v_t = (at(h, 0) - at(-h, 0)) / (2 * h)
    u_xx, v_xx = (at(0, h) - 2 * at(0, 0) + at(0, -h)) / h**2
    assert np.abs(u_t - (du * u_xx - u * v**2 + feed * (1 - u))).max() < 1e-5
    assert np.abs(v_t - (dv * v_xx + u * v**2 - (feed + kill) * v)).max() < 1e-5
    # Initial values and zero Neumann data.
    xs = np.linspace(0, 1, 17)
    u0, v0 = reference(np.zeros_like(xs), xs)
    np.testing.assert_allclose(u0, -np.cos(3 * np.pi * xs), atol=1e-12)
    np.testing.assert_allclose(v0, np.cos(2 * np.pi * xs), atol=1e-12)
    ts = np.linspace(0.1, 1, 5)
    for wall, inward in ((0.0, 1.0), (1.0, -1.0)):
        # One-sided second-order difference of the derivative at the wall.
        w = np.full_like(ts, wall)
        slope = (-3 * reference(ts, w) + 4 * reference(ts, w + inward * h) - reference(ts, w + 2 * inward * h)) / (2 * h)
        assert np.abs(slope).max() < 1e-4


def test_boundary_points_split_into_initial_and_neumann_constraints():
    problem = GrayScott()
    keys = jax.random.split(jax.random.PRNGKey(0))
    interior = problem.domain.interior_points(20, "random", keys[0])
    boundary = problem.domain.boundary_points(30, "random", keys[1], problem.boundary_faces)
    constraints = {c.name: c for c in problem.constraints(interior, boundary)}
    assert set(constraints) == {"pde_u", "pde_v", "initial_u", "initial_v", "neumann_u", "neumann_v"}
    assert constraints["initial_u"].size + constraints["neumann_u"].size == 30
    assert np.all(np.asarray(constraints["initial_v"].points)[:, 0] == 0.0)
    assert constraints["neumann_v"].fields == (1,)
    assert [c.name for c in problem.validation_constraints(interior, boundary)] == ["pde_u", "pde_v"]


def test_small_solve_reaches_the_reference():
    # Measured (2026-11-29, seed 0, ℓ = (0.7, 0.1) for u and v, nugget 1e-10, 101 × 201 grid):
    # 100 + 60 points: u RMS 3.1e-3, v 2.0e-3; 200 + 100: 6.8e-4, 3.1e-4; 600 + 400: 1.7e-5,
    # 1.3e-5. With ℓ = (0.71, 0.71) (the published start) at 600 + 400: u RMS 5.4e-2. The bound
    # is 3× the measured error at this size and 5× below the long-lengthscale error at 6× the points.
    problem = GrayScott()
    keys = jax.random.split(jax.random.PRNGKey(0))
    interior = problem.domain.interior_points(100, "random", keys[0])
    boundary = problem.domain.boundary_points(60, "random", keys[1], problem.boundary_faces)
    kernels = (Gaussian(jnp.array([0.7, 0.1])), Gaussian(jnp.array([0.7, 0.1])))
    solution, _ = GaussNewton(nugget=1e-10, max_steps=8).solve(kernels, problem.constraints(interior, boundary))
    t, x = _grid()
    points = np.column_stack([t, x])
    for field in (0, 1):
        error = np.asarray(solution(jnp.asarray(points), field)) - problem.field_reference(problem.fields[field], points)
        assert np.sqrt(np.mean(error**2)) < 1e-2


@pytest.mark.slow  # ~60 s of CPU (2026-11-29), almost all of it compiling the two-field learner
def test_learning_runs_on_both_fields():
    config = resolve("gray-scott", GrayScott.learn_defaults,
                     dict(n_interior=60, n_boundary=30, n_validation=40, gn_steps=2, inner_steps=3, eval_steps=3,
                          grid=11),
                     config_class=LearnConfig)
    run = run_learn(GrayScott, config)
    kernels = run.result.kernel
    assert len(kernels) == 2
    initial = np.log(np.asarray(GrayScott.learn_defaults.lengthscale))
    for kernel in kernels:
        # Both fields' lengthscales moved, and the outer loss went down.
        assert np.all(np.abs(np.asarray(kernel.log_lengthscale) - initial) > 1e-4)
    losses = np.asarray(run.record.groups["history"]["loss"])
    assert np.all(np.isfinite(losses))
    assert np.isfinite(run.after["rms"]) and np.isfinite(run.before["rms"])
    # σ of both fields of the re-solve with the learned kernels.
    assert {"u_std", "v_std"} <= set(run.record.groups["fields"])
    assert {"calibration", "calibration_v"} <= set(run.record.group_attrs)
