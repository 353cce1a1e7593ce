"""Randomized-MAP draws (gpde/solve/_randomized_map.py) and the constraint shift they rest on."""

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import ConfigError, Constraint, Evaluation, GaussNewton, Laplacian, OnField, SolverError
from gpde._results import RESULTS
from gpde.app import configured_kernel, main
from gpde.app._config import resolve
from gpde.app._run import collocation_points
from gpde.kernels import Gaussian
from gpde.problems.darcy import Darcy
from gpde.solve import Box, posterior, randomized_map

NUGGET = 1e-8


@pytest.fixture(scope="module")
def linear_two_fields():
    """u and a: −Δu + a = 1 inside, u = 0 on the boundary, noisy observations of a (noise variance
    1e-2, large enough that the data perturbation matters). Linear, so randomized-MAP draws are
    exact posterior samples."""
    key = jax.random.PRNGKey(3)
    domain = Box((0.0, 0.0), (1.0, 1.0))
    observed = jax.random.uniform(jax.random.PRNGKey(4), (6, 2), minval=0.1, maxval=0.9)
    constraints = (
        Constraint("interior", domain.interior_points(25, "grid", key), (Laplacian(), OnField(Evaluation(), 1)),
                   lambda x, z: -z[0] + z[1] - 1.0),
        Constraint("boundary", domain.boundary_points(16, "grid", key), (Evaluation(),), lambda x, z: z[0]),
        Constraint("data", observed, (OnField(Evaluation(), 1),), lambda x, z: z[0], noise_variance=1e-2,
                   observations=jnp.sin(3.0 * observed[:, 0]) + observed[:, 1]),
    )
    kernels = (Gaussian(0.3), Gaussian(0.3))
    solver = GaussNewton(nugget=NUGGET, max_steps=2)
    solution, _ = solver.solve(kernels, constraints)
    # Three observed points (where the data perturbation sets a's spread) and three others.
    points = jnp.concatenate([observed[:3], jax.random.uniform(jax.random.PRNGKey(6), (3, 2))])
    return solver, kernels, constraints, solution, points


def test_draws_of_a_linear_problem_have_the_posterior_mean_and_variance(linear_two_fields):
    solver, kernels, constraints, solution, points = linear_two_fields
    exact = posterior(solution, NUGGET).with_amplitude(1.0)
    count = 120
    ensemble = randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(7), count)
    assert ensemble.draws.shape == (count, 2, 6)
    assert all(r.startswith("converged") for r in ensemble.results)
    ratios = []
    for field in (0, 1):
        mean = np.asarray(exact.mean(points, field=field))
        variance = np.asarray(exact.variance(points, field=field))
        # Standard error of a sample mean: √(v / n); five of them over 12 numbers.
        np.testing.assert_array_less(np.abs(np.asarray(ensemble.mean(field)) - mean), 5.0 * np.sqrt(variance / count))
        ratios.append(np.asarray(ensemble.std(field)) ** 2 / variance)
    ratios = np.concatenate(ratios)
    # One sample variance over the true one has standard error √(2 / (n − 1)) ≈ 0.13: each within
    # five of them, and their mean within three.
    assert np.all(np.abs(ratios - 1.0) < 5.0 * np.sqrt(2.0 / (count - 1))), ratios
    assert abs(np.mean(ratios) - 1.0) < 3.0 * np.sqrt(2.0 / (count - 1)), ratios


def test_amplitude_scales_the_spread_of_a_linear_problem_exactly(linear_two_fields):
    # Linear problem, same key: draw − MAP is linear in (prior draw, noise), both scaled by s.
    solver, kernels, constraints, solution, points = linear_two_fields
    unit = randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(9), 2)
    four = randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(9), 2, amplitude=4.0)
    for field in (0, 1):
        map_values = np.asarray(solution(points, field))
        spread = np.asarray(unit.draws[:, field]) - map_values
        assert np.max(np.abs(spread)) > 1e-3
        np.testing.assert_allclose(np.asarray(four.draws[:, field]) - map_values, 2.0 * spread,
                                   atol=1e-9 * np.max(np.abs(spread)))


def test_draws_started_from_the_solution_end_where_draws_from_the_prior_do(linear_two_fields):
    # Linear: one Gauss-Newton step from any start reaches the same minimum-norm solution, so a
    # start at w₀ = û − u_p (operator values of û minus the shift) changes nothing but the start.
    solver, kernels, constraints, solution, points = linear_two_fields
    cold = randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(9), 3)
    warm = randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(9), 3, start="solution",
                          solution=solution)
    assert cold.starts == ("prior",) * 3 and warm.starts == ("solution",) * 3
    spread = np.max(np.abs(np.asarray(cold.draws) - np.asarray(cold.mean(0))[None, None]))
    np.testing.assert_allclose(np.asarray(warm.draws), np.asarray(cold.draws), atol=1e-8 * spread)
    with pytest.raises(ConfigError, match="one array per constraint"):
        solver.solve(kernels, constraints, initial=(jnp.zeros((2, 25)),))
    with pytest.raises(ConfigError, match="operators × points"):
        solver.solve(kernels, constraints, initial=(jnp.zeros((2, 24)), jnp.zeros((1, 16)), jnp.zeros((1, 6))))


def test_a_draw_that_fails_from_the_prior_is_solved_again_from_the_solution(linear_two_fields, monkeypatch):
    # Every solve from the prior draw (no starting values) fails here: each draw is then the solve
    # from the solution, which for this linear problem is the same draw.
    solver, kernels, constraints, solution, points = linear_two_fields
    expected = randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(9), 2, start="solution",
                              solution=solution)
    solve = GaussNewton.solve

    def failing_from_the_prior(self, kernel, constraints, callback=None, initial=None, **options):
        if initial is None:
            raise SolverError("diverged (test)", RESULTS.diverged)
        return solve(self, kernel, constraints, callback, initial, **options)

    monkeypatch.setattr(GaussNewton, "solve", failing_from_the_prior)
    ensemble = randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(9), 2, solution=solution)
    assert ensemble.starts == ("solution", "solution")
    np.testing.assert_array_equal(np.asarray(ensemble.draws), np.asarray(expected.draws))
    with pytest.raises(SolverError, match="diverged"):  # without a solution to fall back to
        randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(9), 2)


def test_a_shift_by_a_solution_leaves_nothing_to_solve(linear_two_fields):
    # With exact constraints only, shifting by the operator values of their own minimum-norm
    # solution s makes w = 0 feasible, and it has the least norm: the shifted solve returns w ≈ 0
    # (up to the nugget), whatever the equations are.
    solver, kernels, constraints, _, points = linear_two_fields
    exact_only = constraints[:2]
    solution, _ = solver.solve(kernels, exact_only)
    shifted = [c.shifted(jnp.stack([solution.apply(op, c.points, f) for op, f in zip(c.operators, c.fields)], axis=1))
               for c in exact_only]
    remainder, _ = solver.solve(kernels, shifted)
    for field in (0, 1):
        scale = float(np.max(np.abs(np.asarray(solution(points, field)))))
        assert scale > 1e-2
        assert float(np.max(np.abs(np.asarray(remainder(points, field))))) < 1e-5 * scale


def test_bad_arguments_are_config_errors(linear_two_fields):
    solver, kernels, constraints, _, points = linear_two_fields
    with pytest.raises(ConfigError, match="count"):
        randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(0), 1)
    with pytest.raises(ConfigError, match="amplitude"):
        randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(0), 2, amplitude=0.0)
    with pytest.raises(ConfigError, match="shift must have one row per point"):
        constraints[0].shifted(jnp.zeros((3, 2)))
    with pytest.raises(ConfigError, match="start must be"):
        randomized_map(solver, kernels, constraints, points, jax.random.PRNGKey(0), 2, start="solution")
    with pytest.raises(ConfigError, match="without a shift"):
        randomized_map(solver, kernels, (constraints[0].shifted(jnp.zeros((25, 2))),) + constraints[1:], points,
                       jax.random.PRNGKey(0), 2)


def test_solve_with_std_draws_stores_the_draws_spread_of_every_field(tmp_path, capsys):
    """`gpde solve --std-draws N`: each field's stored σ is the spread of N randomized-MAP draws of
    the solve's own problem (the same draws as the library call), the calibration says so and keeps
    the linearized numbers, and `show` prints it; N = 1 and the sparse solver are refused."""
    out = tmp_path / "darcy.h5"
    sizes = dict(n_interior=36, n_boundary=20, grid=5, steps=2)
    argv = ["solve", "darcy", *(f"--{key.replace('_', '-')}={value}" for key, value in sizes.items()),
            "--std-draws", "3", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    config = resolve("darcy", Darcy.defaults, dict(sizes, std_draws=3))
    problem = Darcy()
    interior, boundary = collocation_points(problem, config)
    solver = GaussNewton(nugget=config.nugget, adaptive_nugget=config.adaptive_nugget, max_steps=config.steps,
                         tolerance=config.tolerance)
    grid, _ = problem.domain.grid(config.grid)
    kernel, constraints = configured_kernel(problem, config), problem.constraints(interior, boundary)
    solution, _ = solver.solve(kernel, constraints)
    ensemble = randomized_map(solver, kernel, constraints, grid, jax.random.fold_in(jax.random.PRNGKey(config.seed), 3),
                              3, solution=solution)
    with h5py.File(out) as f:
        for index, (std_key, group) in enumerate((("u_std", "calibration"), ("a_std", "calibration_a"))):
            np.testing.assert_allclose(f[f"fields/{std_key}"][()].ravel(), np.asarray(ensemble.std(index)),
                                       rtol=1e-9, atol=1e-14)
            attrs = f[group].attrs
            assert attrs["posterior"] == "randomized-map" and attrs["draws"] == 3 and attrs["amplitude"] == 1.0
            assert attrs["draws_from_solution"] == 0
            assert 0 <= attrs["linearized_coverage_2"] <= 1 and attrs["linearized_amplitude"] != 1.0
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    assert "σ of 3 randomized-MAP draws" in capsys.readouterr().out
    for bad, fragment in ((["--std-draws", "1"], "std_draws must be 0"), (["--std-draws", "3", "--solver", "sparse"],
                                                                           "needs the dense solver")):
        assert main(["solve", "darcy", *bad, "--out", str(tmp_path / "bad.h5")]) == 2
        assert fragment in capsys.readouterr().err
