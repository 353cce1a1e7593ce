"""The posterior of the solved fields (gpde/solve/_posterior.py) and its calibration numbers
(gpde/solve/_calibration.py).

The posterior is checked against the GP formulas written out densely here, with kernel derivatives
by plain autodiff, independent of gpde's Gram assembly."""

import json
import math

import h5py
import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
import scipy.stats
from helpers import load_benchmark, number, table_with_header

from gpde import ConfigError, Constraint, Evaluation, GaussNewton, Laplacian, OnField
from gpde.app import (
    build_problem, collocation_points, held_out_points, main, plot_fields, resolve, run_solve, uncertainty_names,
)
from gpde.io import read_run, write_run
from gpde.io import _store as store
from gpde.kernels import Gaussian
from gpde.problems import get_problem_class
from gpde.solve import COVERAGE_2_GOAL, NOMINAL_COVERAGE, Box, calibration, coverage_verdict, reliability
from gpde.solve import posterior as posterior_of

EPS = np.finfo(np.float64).eps
FIELDS, GRID_POINTS = store.FIELDS, store.GRID_POINTS


def _gaussian(lengthscale):
    return lambda x, y: jnp.exp(-jnp.sum((x - y) ** 2) / (2.0 * lengthscale**2))


def _laplacian(f, argnum):
    return lambda x, y: jnp.trace(jax.hessian(f, argnums=argnum)(x, y))


def _derivative(k, kind_x, kind_y):
    """L_xˣ L_yʸ k for L ∈ {"d" (point value), "L" (Laplacian)}."""
    f = _laplacian(k, 0) if kind_x == "L" else k
    return _laplacian(f, 1) if kind_y == "L" else f


def _pairwise(f, xs, ys):
    return np.asarray(jax.jit(jax.vmap(lambda x: jax.vmap(lambda y: f(x, y))(ys)))(xs))


def _two_field_problem():
    """u (field 0) and a (field 1): −Δu + u³ + a·u = 1 inside, u = 0 on the boundary, noisy
    observations of a. Nonlinear in both fields, so the posterior depends on the last
    linearization's weights in both."""
    key = jax.random.PRNGKey(3)
    domain = Box((0.0, 0.0), (1.0, 1.0))
    interior = domain.interior_points(25, "grid", key)
    boundary = domain.boundary_points(16, "grid", key)
    observed = jax.random.uniform(jax.random.PRNGKey(4), (6, 2), minval=0.1, maxval=0.9)
    constraints = (
        Constraint("interior", interior, (Evaluation(), Laplacian(), OnField(Evaluation(), 1)),
                   lambda x, z: -z[1] + z[0] ** 3 + z[2] * z[0] - 1.0),
        Constraint("boundary", boundary, (Evaluation(),), lambda x, z: z[0]),
        Constraint("data", observed, (OnField(Evaluation(), 1),), lambda x, z: z[0], noise_variance=1e-4,
                   observations=jnp.sin(3.0 * observed[:, 0]) + observed[:, 1]),
    )
    # (field, operator kind) of each operator of each constraint, in order.
    terms = ([(0, "d"), (0, "L"), (1, "d")], [(0, "d")], [(1, "d")])
    return constraints, terms


def _dense(kernels, constraints, terms, weights, nugget):
    """K(φ, φ) + η over all functionals, built term by term; the nugget as in the solver (per
    constraint: nugget × mean prior variance of its functionals; σ² on noisy rows)."""
    points = np.concatenate([np.asarray(c.points) for c in constraints])
    owner = np.concatenate([np.full(c.size, g) for g, c in enumerate(constraints)])
    gram = np.zeros((len(points), len(points)))
    for field, kernel in enumerate(kernels):
        for kind_x in "dL":
            for kind_y in "dL":
                derivative = _pairwise(_derivative(kernel, kind_x, kind_y), points, points)
                left = _term_weights(constraints, terms, weights, field, kind_x)
                right = _term_weights(constraints, terms, weights, field, kind_y)
                gram += left[:, None] * derivative * right[None, :]
    diagonal = np.diagonal(gram).copy()
    for g, c in enumerate(constraints):
        rows = owner == g
        diagonal[rows] = c.noise_variance if c.noise_variance else nugget * diagonal[rows].mean()
    return gram + np.diag(diagonal)


def _term_weights(constraints, terms, weights, field, kind):
    """Per functional: the weight of its term (field, kind), 0 where it has none."""
    parts = []
    for c, t, w in zip(constraints, terms, weights):
        matches = [j for j, term in enumerate(t) if term == (field, kind)]
        parts.append(np.asarray(w[matches[0]]) if matches else np.zeros(c.size))
    return np.concatenate(parts)


def _dense_cross(kernel, field, xs, constraints, terms, weights):
    """Cov(u_f(x), φ_b) for every evaluation point x and functional b."""
    points = np.concatenate([np.asarray(c.points) for c in constraints])
    return sum(_pairwise(_derivative(kernel, "d", kind), xs, points)
               * _term_weights(constraints, terms, weights, field, kind)[None, :] for kind in "dL")


def test_variance_equals_the_dense_formula_for_every_field():
    constraints, terms = _two_field_problem()
    lengthscales = (0.3, 0.5)
    nugget = 1e-9
    solution, _ = GaussNewton(nugget=nugget, max_steps=6).solve(tuple(Gaussian(s) for s in lengthscales), constraints)
    posterior = posterior_of(solution, nugget)

    kernels = [_gaussian(s) for s in lengthscales]
    gram = _dense(kernels, constraints, terms, solution.weights, nugget)
    coefficients = np.concatenate([np.asarray(c) for c in solution.coefficients])
    amplitude = coefficients @ gram @ coefficients / coefficients.size  # bᵀ(K + η)⁻¹b / N, b = (K + η)c
    # Relative rounding of the two float64 routes (Cholesky vs LU solve) is at most cond(K + η)·ε.
    rounding = np.linalg.cond(gram) * EPS
    assert float(posterior.amplitude) == pytest.approx(amplitude, rel=rounding)
    # The profile log-likelihood: log N(b; 0, s²_ML (K + η)) with b = (K + η)c, by scipy's density.
    targets = gram @ coefficients
    expected = scipy.stats.multivariate_normal(np.zeros(targets.size), amplitude * gram).logpdf(targets)
    assert float(posterior.log_likelihood()) == pytest.approx(expected, rel=1e-9, abs=rounding * targets.size)

    points = np.asarray(jax.random.uniform(jax.random.PRNGKey(5), (40, 2)))
    for field, kernel in enumerate(kernels):
        cross = _dense_cross(kernel, field, points, constraints, terms, solution.weights)
        dense = amplitude * (1.0 - np.einsum("ab,ab->a", cross, np.linalg.solve(gram, cross.T).T))
        variance = np.asarray(posterior.variance(points, field=field))
        np.testing.assert_allclose(variance, dense, rtol=0, atol=amplitude * rounding * 10)
        # Data pin u down far below its prior: the check above is not a comparison of two priors.
        assert np.median(variance) < 0.5 * amplitude
        covariance = np.asarray(posterior.covariance(points[:10], field=field))
        np.testing.assert_allclose(np.diagonal(covariance), variance[:10], rtol=0, atol=amplitude * rounding * 10)
        np.testing.assert_allclose(covariance, covariance.T, rtol=0, atol=amplitude * rounding * 10)

    # Held-out amplitude: held-out observations of a (new points) and, by leave-one-out, the solve's
    # own noisy observations of a, each refitted without that row from the dense matrices.
    points_v = jnp.asarray(points[:8])
    values_v = jnp.sin(3.0 * points_v[:, 0]) + points_v[:, 1]
    held_out = Constraint("held out", points_v, (OnField(Evaluation(), 1),), lambda x, z: z[0], noise_variance=1e-4,
                          observations=values_v)
    residual = np.asarray(posterior.mean(points_v, field=1)) - np.asarray(values_v)
    unit_variance = np.asarray(posterior.variance(points_v, field=1)) / float(posterior.amplitude) + 1e-4
    targets = gram @ coefficients
    loo = []
    for i in range(gram.shape[0] - constraints[2].size, gram.shape[0]):  # the "data" rows
        rest = np.delete(np.arange(gram.shape[0]), i)
        weights_i = np.linalg.solve(gram[np.ix_(rest, rest)], gram[rest, i])
        loo.append((targets[i] - weights_i @ targets[rest]) ** 2 / (gram[i, i] - weights_i @ gram[rest, i]))
    expected = np.mean(np.concatenate([residual**2 / unit_variance, loo]))
    assert float(posterior.held_out_amplitude((held_out,))) == pytest.approx(expected, rel=10 * rounding)


POISSON_NUGGET = 1e-8


@pytest.fixture(scope="module")
def poisson():
    """−Δu = 1 on the unit square, u = 0 on the boundary (linear: the weights are constants):
    the solution and its posterior."""
    key = jax.random.PRNGKey(0)
    domain = Box((0.0, 0.0), (1.0, 1.0))
    constraints = (
        Constraint("interior", domain.interior_points(36, "grid", key), (Laplacian(),), lambda x, z: -z[0] - 1.0),
        Constraint("boundary", domain.boundary_points(28, "grid", key), (Evaluation(),), lambda x, z: z[0]),
    )
    solution, _ = GaussNewton(nugget=POISSON_NUGGET, max_steps=2).solve(Gaussian(0.25), constraints)
    return solution, posterior_of(solution, POISSON_NUGGET)


def test_variance_of_a_constrained_functional_is_at_most_its_nugget(poisson):
    # Observing f(x_a) with noise η bounds its posterior variance by kη/(k + η) < η; more data only
    # lower it. Rounding of k − kᵀ(K + η)⁻¹k is a few N·ε·k, far below the nugget used here.
    nugget = POISSON_NUGGET
    solution, posterior = poisson
    s2 = float(posterior.amplitude)
    interior, boundary = solution.constraints
    n = interior.size + boundary.size
    x = jnp.array([0.5, 0.5])
    prior_laplacian = float(_derivative(_gaussian(0.25), "L", "L")(x, x))  # the adaptive nugget's scale

    at_boundary = np.asarray(posterior.variance(boundary.points)) / s2
    assert np.all(at_boundary <= nugget + n * EPS)
    at_interior = np.asarray(posterior.variance(interior.points, operator=Laplacian())) / s2
    assert np.all(at_interior <= prior_laplacian * (nugget + n * EPS))
    # Elsewhere the same quantities are far from zero.
    between = np.asarray(boundary.points) * 0.9 + 0.05
    assert np.min(np.asarray(posterior.variance(between)) / s2) > 1e3 * nugget


def test_posterior_draws_have_the_posterior_mean_and_covariance(poisson):
    _, posterior = poisson
    points = np.asarray(jax.random.uniform(jax.random.PRNGKey(6), (8, 2)))
    count = 20000
    draws = np.asarray(posterior.sample(jax.random.PRNGKey(7), points, count))
    assert draws.shape == (count, 8)
    mean = np.asarray(posterior.mean(points))
    covariance = np.asarray(posterior.covariance(points))
    variance = np.diagonal(covariance)
    # Standard errors of a sample mean and of a sample covariance entry of Gaussian draws:
    # √(C_ii / n) and √((C_ii C_jj + C_ij²) / n). Five of them: over the 8 + 36 checked numbers a
    # false alarm has probability ~1e-5 (and the draws are fixed by the key).
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), 5.0 * np.sqrt(variance / count))
    sample = np.cov(draws, rowvar=False)
    tolerance = 5.0 * np.sqrt((np.outer(variance, variance) + covariance**2) / count)
    np.testing.assert_array_less(np.abs(sample - covariance), tolerance)
    # The amplitude enters: draws at another s² have another covariance.
    scaled = posterior.with_amplitude(4.0 * posterior.amplitude)
    np.testing.assert_allclose(np.asarray(scaled.covariance(points)), 4.0 * covariance, rtol=1e-12)


def test_held_out_amplitude_matches_its_definition_on_held_out_observations(poisson):
    solution, posterior = poisson
    s2 = float(posterior.amplitude)
    points = jax.random.uniform(jax.random.PRNGKey(8), (30, 2))
    values = 0.05 * jnp.sin(jnp.pi * points[:, 0]) * jnp.sin(jnp.pi * points[:, 1])
    noise = 1e-6
    held_out = Constraint("held out", points, (Evaluation(),), lambda x, z: z[0], noise_variance=noise,
                          observations=values)
    # r = mean − y ~ N(0, s²(var₁ + σ²)): the estimate is mean(r² / (var₁ + σ²)).
    residual = np.asarray(posterior.mean(points)) - np.asarray(values)
    unit_variance = np.asarray(posterior.variance(points)) / s2
    expected = np.mean(residual**2 / (unit_variance + noise))
    assert float(posterior.held_out_amplitude((held_out,))) == pytest.approx(expected, rel=1e-9)


def test_posterior_rejects_bad_arguments(poisson):
    _, posterior = poisson
    with pytest.raises(ConfigError, match="field"):
        posterior.std(jnp.zeros((2, 2)), field=1)
    with pytest.raises(ConfigError, match="count"):
        posterior.sample(jax.random.PRNGKey(0), jnp.zeros((2, 2)), 0)
    with pytest.raises(ConfigError, match="amplitude"):
        posterior.with_amplitude(-1.0)


def test_calibration_of_exactly_gaussian_errors_is_nominal():
    rng = np.random.default_rng(0)
    n = 200_000
    std = rng.uniform(0.1, 2.0, n)
    reference = rng.standard_normal(n)
    mean = reference + std * rng.standard_normal(n)
    numbers = calibration(mean, std, reference)
    # Binomial standard error of a coverage fraction √(p(1 − p)/n), five of them.
    for observed, nominal in zip((numbers.coverage_1, numbers.coverage_2, numbers.coverage_3), NOMINAL_COVERAGE):
        assert abs(observed - nominal) < 5.0 * math.sqrt(nominal * (1 - nominal) / n)
    assert abs(numbers.z_mean) < 5.0 / math.sqrt(n)
    assert abs(numbers.z_std - 1.0) < 5.0 / math.sqrt(2 * n)
    expected_nll = np.mean(0.5 * np.log(2 * np.pi * std**2)) + 0.5
    assert abs(numbers.nll - expected_nll) < 5.0 * math.sqrt(0.5 / n)
    assert (numbers.points, numbers.zero_std) == (n, 0)

    probabilities = np.array([0.1, 0.5, 0.9])
    observed = reliability(mean, std, reference, probabilities)
    assert np.all(np.abs(observed - probabilities) < 5.0 * np.sqrt(probabilities * (1 - probabilities) / n))

    # Halving σ makes the same errors over-confident: coverage drops, spread doubles.
    over = calibration(mean, 0.5 * std, reference)
    assert over.coverage_2 < 0.75 and over.z_std == pytest.approx(2.0 * numbers.z_std)
    # The verdicts: nominal σ is calibrated, half of it over-confident, twice it under-confident.
    assert numbers.verdict == "calibrated" and over.verdict == "over-confident"
    assert calibration(mean, 2.0 * std, reference).verdict == "under-confident"


def test_coverage_verdict_bounds_are_the_goal():
    low, high = COVERAGE_2_GOAL
    assert low < NOMINAL_COVERAGE[1] < high
    assert [coverage_verdict(c) for c in (low - 1e-9, low, high, high + 1e-9)] == [
        "over-confident", "calibrated", "calibrated", "under-confident"]


def test_calibration_leaves_out_points_with_zero_std():
    numbers = calibration(np.array([0.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0]), np.zeros(3))
    assert (numbers.points, numbers.zero_std) == (2, 1)
    assert numbers.coverage_1 == 1.0 and numbers.z_mean == 0.5
    with pytest.raises(ValueError, match="positive"):
        calibration(np.zeros(2), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        calibration(np.zeros(2), np.array([1.0, -1.0]), np.zeros(2))


def test_a_solve_run_stores_the_posterior_std_and_its_calibration(tmp_path, capsys):
    problem_class = get_problem_class("elliptic")
    config = resolve("elliptic", problem_class.defaults, dict(n_interior=36, n_boundary=28, grid=12, steps=4))
    run = run_solve(problem_class, config)
    path = write_run(tmp_path / "run.h5", run.record)
    record = read_run(path)
    fields = record.groups[FIELDS]
    std_key, group = uncertainty_names("u", True)
    assert fields[std_key].shape == fields["u"].shape

    # σ is the posterior's with the amplitude fitted to the PDE at the held-out points.
    problem = build_problem(problem_class, config.parameters)
    _, boundary = collocation_points(problem, config)
    held_out = problem.constraints(held_out_points(problem, config), boundary)[:1]
    posterior = posterior_of(run.solution, config.nugget, config.adaptive_nugget, held_out)
    grid = fields[GRID_POINTS]
    np.testing.assert_allclose(fields[std_key].ravel(), np.asarray(posterior.std(grid)), rtol=1e-10)
    attrs = record.group_attrs[group]
    assert attrs["amplitude"] == pytest.approx(float(posterior.amplitude), rel=1e-12)
    assert attrs["ml_amplitude"] == pytest.approx(float(posterior_of(run.solution, config.nugget).amplitude), rel=1e-12)
    assert attrs["amplitude"] != pytest.approx(attrs["ml_amplitude"], rel=1e-3)  # two different estimates

    # The stored numbers are those of the stored fields, for both amplitudes.
    std = fields[std_key]
    for prefix, scale in (("", 1.0), ("ml_", np.sqrt(attrs["ml_amplitude"] / attrs["amplitude"]))):
        numbers = calibration(fields["u"], scale * std, fields["u_ref"]).as_dict()
        for key, value in numbers.items():
            assert attrs[prefix + key] == pytest.approx(value, rel=1e-12), prefix + key

    # `gpde show` prints them, `gpde plot` adds a σ and an |error|/σ map to u, reference and error.
    assert main(["show", str(path)]) == 0
    coverage = " / ".join(f"{100 * attrs[f'coverage_{z}']:.1f}" for z in (1, 2, 3))
    shown = capsys.readouterr().out
    assert f"calibration u: |error| ≤ 1/2/3σ at {coverage} %" in shown
    assert f"): {coverage_verdict(attrs['coverage_2'])}, σ " in shown
    assert main(["show", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[group]["nll"] == pytest.approx(attrs["nll"], rel=1e-12)
    with_std = matplotlib.image.imread(plot_fields(run.record, tmp_path / "std.png")).shape[1]
    del run.record.groups[FIELDS][std_key]
    without_std = matplotlib.image.imread(plot_fields(run.record, tmp_path / "plain.png")).shape[1]
    assert with_std * 3 == without_std * 5


def test_calibration_benchmark_tiny(tmp_path, capsys):
    script = load_benchmark("calibration")
    out = tmp_path / "table.md"
    assert script.main(["--sizes", "tiny", "--problems", "darcy", "--grid", "10", "--out", str(out),
                        "--results", str(tmp_path / "runs")]) == 0
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out
    rows = table_with_header(text, "problem")
    ((n_interior, n_boundary),) = script.SIZES["tiny"]["darcy"]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("darcy", field, f"{n_interior} + {n_boundary}", amplitude) for field in ("u", "a") for amplitude in ("ml", "held-out")
    ]
    for r in rows:
        coverage = [number(cell) for cell in r[7:10]]
        assert 0.0 <= coverage[0] <= coverage[1] <= coverage[2] <= 1.0
        assert number(r[4]) > 0 and number(r[6]) > 0 and number(r[11]) > 0
        assert r[13] == coverage_verdict(coverage[1])
    # One amplitude per run, shared by the fields.
    assert rows[0][4] == rows[2][4] and rows[1][4] == rows[3][4]
    # The kept result file holds the σ fields that the table summarizes.
    with h5py.File(tmp_path / "runs" / f"darcy-{n_interior}+{n_boundary}-dense.h5") as f:
        assert f["fields/u_std"].shape == (10, 10) and np.all(f["fields/a_std"][()] > 0)
