"""Several unknown fields (gpde.OnField, tuples of kernels), noisy data constraints, the Darcy
finite-difference reference and the Darcy inverse problem (problems/darcy.py).

Independent references: a manufactured solution for the finite-difference scheme; a Gram matrix
assembled here functional by functional by nested autodiff, with the cross-field blocks written out
as zeros; manufactured fields for a two-field linear problem; GP regression in closed form for the
noisy data rows; the closed-form a and a finer finite-difference u for Darcy.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import (
    Box,
    ConfigError,
    Constraint,
    Evaluation,
    GaussNewton,
    Laplacian,
    OnField,
    Partial,
)
from gpde.learn._learner import linearized_validation_loss
from gpde.app._config import SolveConfig, resolve
from gpde._kernel_choice import make_field_kernels
from gpde.solve._linearize import (
    initial_values,
    linearize,
    operator_blocks,
    operator_values,
    reduced_gram,
)
from gpde.app._run import build_problem
from gpde.kernels import Gaussian
from gpde.problems._darcy_reference import grid_interpolant, solve_darcy_fd
from gpde.problems.darcy import (
    Darcy,
    constant_basis,
    cramer_rao_relative_l2,
    fourier_basis,
    true_log_permeability,
)

# --------------------------------------------------------------------------------------------
# Finite-difference reference
# --------------------------------------------------------------------------------------------


def _manufactured():
    """u = sin πx sin πy e^x, a = sin 2x + y², f = −∇·(e^a ∇u) by autodiff."""

    def u(x):
        return jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1]) * jnp.exp(x[0])

    def a(x):
        return jnp.sin(2 * x[0]) + x[1] ** 2

    def f(x):
        return -jnp.trace(jax.jacfwd(lambda y: jnp.exp(a(y)) * jax.grad(u)(y))(x))

    def batch(g):
        compiled = jax.jit(jax.vmap(g))
        return lambda points: np.asarray(compiled(jnp.asarray(points)))

    return batch(u), batch(a), batch(f)


def test_finite_differences_converge_at_second_order():
    u, a, f = _manufactured()
    errors = []
    for n in (15, 31, 63):  # h = 1/16, 1/32, 1/64
        nodes, values = solve_darcy_fd(a, n, f)
        assert nodes.shape == (n * n, 2) and values.shape == (n * n,)
        errors.append(np.max(np.abs(values - u(nodes))))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 3.7) & (ratios < 4.3)), (errors, ratios)


def test_interpolant_is_exact_at_nodes_and_accurate_between():
    u, a, f = _manufactured()
    n = 63
    nodes, values = solve_darcy_fd(a, n, f)
    interpolate = grid_interpolant(values, n)
    np.testing.assert_allclose(interpolate(nodes), values, atol=1e-14)
    points = np.random.default_rng(0).uniform(size=(200, 2))
    # Between nodes the error is the scheme's (~4e-4 at n = 63), not the interpolation's.
    assert np.max(np.abs(interpolate(points) - u(points))) < 1e-3
    np.testing.assert_allclose(interpolate(np.array([[0.0, 0.3], [1.0, 1.0]])), 0.0, atol=1e-14)


# --------------------------------------------------------------------------------------------
# Multi-field reduced Gram = block formulation with zero cross-field blocks
# --------------------------------------------------------------------------------------------


@eqx.filter_jit
def _derivative_tables(kernel, xs, ys):
    """For every pair (x_a, y_b): F = (k, ∇_y k, ∇_y² k) flattened, and its first and second
    derivatives in x, by nested autodiff of the pointwise kernel (no Gram code involved)."""

    def table(x, y):
        def along_y(x):
            k = lambda t: kernel(x, t)
            return jnp.concatenate([k(y)[None], jax.grad(k)(y), jax.hessian(k)(y).ravel()])

        return along_y(x), jax.jacfwd(along_y)(x), jax.jacfwd(jax.jacfwd(along_y))(x)

    return jax.vmap(lambda x: jax.vmap(lambda y: table(x, y))(ys))(xs)


def _block(tables, left, right, dim=2):
    """[L_leftˣ L_rightʸ k(x_a, y_b)]_ab from the derivative tables and the operators' own
    coefficient form L = c₀ + c₁·∇ + ⟨C₂, ∇²⟩."""
    value, first, second = tables
    c0, c1, c2 = left.coefficients(dim)
    e0, e1, e2 = right.coefficients(dim)
    r = np.concatenate([[e0], e1, e2.ravel()])
    return (c0 * np.einsum("abs,s->ab", value, r) + np.einsum("absi,s,i->ab", first, r, c1)
            + np.einsum("absij,s,ij->ab", second, r, c2))


def test_multifield_reduced_gram_equals_block_formulation():
    kernels = (Gaussian(0.4), Gaussian(0.25))
    rng = np.random.default_rng(1)
    constraints = (
        Constraint("mixed", rng.uniform(size=(5, 2)), (Laplacian(), OnField(Evaluation(), 1), OnField(Partial(0), 1),
                                                       Partial(1)), lambda x, z: z[0] * z[1] + z[2] ** 2 - z[3]),
        Constraint("u only", rng.uniform(size=(3, 2)), (Evaluation(),), lambda x, z: z[0]),
        Constraint("a only", rng.uniform(size=(4, 2)), (OnField(Laplacian(), 1),), lambda x, z: z[0]),
    )
    weights = [rng.normal(size=(len(c.operators), c.size)) for c in constraints]

    # Every basic functional (field, operator, point), ordered by constraint, operator, point; the
    # Gram block between two operator families is the field's kernel if their fields agree and
    # ZERO otherwise (independent GPs).
    families = [(g, j) for g, c in enumerate(constraints) for j in range(len(c.operators))]
    rows = [(g, j, a) for g, j in families for a in range(constraints[g].size)]
    everything = jnp.concatenate([c.points for c in constraints])
    tables = [[np.asarray(t) for t in _derivative_tables(k, everything, everything)] for k in kernels]
    offsets = np.cumsum([0] + [c.size for c in constraints])

    def pair(g, j, h, l):
        field = constraints[g].fields[j]
        if field != constraints[h].fields[l]:
            return np.zeros((constraints[g].size, constraints[h].size))
        cut = [t[offsets[g]:offsets[g + 1], offsets[h]:offsets[h + 1]] for t in tables[field]]
        return _block(cut, constraints[g].operators[j], constraints[h].operators[l])

    theta = np.block([[pair(g, j, h, l) for h, l in families] for g, j in families])
    mixing = np.zeros((offsets[-1], len(rows)))  # φ_{g,a} = Σ_j w_{g,j,a} L_{g,j,a}
    for p, (g, j, a) in enumerate(rows):
        mixing[offsets[g] + a, p] = weights[g][j, a]

    blocks = operator_blocks(kernels, constraints)
    np.testing.assert_allclose(reduced_gram(blocks, weights), mixing @ theta @ mixing.T, rtol=1e-10, atol=1e-10)
    # Operator values of u = Σ c φ: one value per basic functional, Θ Wᵀ c.
    coefficients = [rng.normal(size=c.size) for c in constraints]
    values = operator_values(blocks, weights, coefficients)
    expected = theta @ mixing.T @ np.concatenate(coefficients)
    flat = np.array([values[g][j, a] for g, j, a in rows])
    np.testing.assert_allclose(flat, expected, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Two-field linear problem with a manufactured solution
# --------------------------------------------------------------------------------------------


def _u(x):
    return jnp.sin(jnp.pi * x[0]) * jnp.sin(jnp.pi * x[1])


def _v(x):
    return jnp.cos(jnp.pi * x[0]) * x[1] + x[0] ** 2


def _laplacian(f):
    return lambda x: jnp.trace(jax.hessian(f)(x))


def test_two_field_linear_problem_recovers_both_fields():
    # −Δu + v = f₁ and v − 0.1 Δv + ∂₀u = f₂ in the square, u and v given on the boundary.
    box = Box((0.0, 0.0), (1.0, 1.0))
    interior = box.interior_points(196, "grid", jax.random.PRNGKey(0))
    boundary = box.boundary_points(60, "grid", jax.random.PRNGKey(1))
    f1 = lambda x: -_laplacian(_u)(x) + _v(x)
    f2 = lambda x: _v(x) - 0.1 * _laplacian(_v)(x) + jax.grad(_u)(x)[0]
    constraints = (
        Constraint("pde 1", interior, (Laplacian(), OnField(Evaluation(), 1)), lambda x, z: -z[0] + z[1] - f1(x)),
        Constraint("pde 2", interior, (OnField(Evaluation(), 1), OnField(Laplacian(), 1), Partial(0)),
                   lambda x, z: z[0] - 0.1 * z[1] + z[2] - f2(x)),
        Constraint("u boundary", boundary, (Evaluation(),), lambda x, z: z[0] - _u(x)),
        Constraint("v boundary", boundary, (OnField(Evaluation(), 1),), lambda x, z: z[0] - _v(x)),
    )
    solution, history = GaussNewton(nugget=1e-10, max_steps=3).solve((Gaussian(0.3), Gaussian(0.3)), constraints)
    assert history.converged  # linear: the second step changes nothing
    grid, _ = box.grid(20)
    assert np.max(np.abs(solution(grid) - jax.vmap(_u)(grid))) < 1e-4
    assert np.max(np.abs(solution(grid, field=1) - jax.vmap(_v)(grid))) < 1e-4
    # Second derivatives, away from the edges where collocation points lie on one side only
    # (measured: 1.1e-4 relative to max |Δv| inside, 7.6e-3 on the closed grid).
    inside = box.interior_points(100, "grid", None)
    laplacian_v = solution.apply(OnField(Laplacian(), 1), inside)
    exact = jax.vmap(_laplacian(_v))(inside)
    assert np.max(np.abs(laplacian_v - exact)) < 1e-3 * np.max(np.abs(exact))


# --------------------------------------------------------------------------------------------
# Noisy data rows = GP regression
# --------------------------------------------------------------------------------------------


def test_noisy_observations_give_the_gp_regression_mean():
    rng = np.random.default_rng(2)
    points = rng.uniform(size=(30, 2))
    data = np.sin(3 * points[:, 0]) + 0.05 * rng.normal(size=30)
    noise = 0.05**2
    kernel = Gaussian(0.3)
    observed = Constraint("data", points, (Evaluation(),), lambda x, z: z[0], noise_variance=noise, observations=data)
    solution, _ = GaussNewton(max_steps=2).solve(kernel, (observed,))
    test = rng.uniform(size=(10, 2))
    gram = np.asarray(jax.vmap(lambda x: jax.vmap(lambda y: kernel(x, y))(jnp.asarray(points)))(jnp.asarray(points)))
    cross = np.asarray(jax.vmap(lambda x: jax.vmap(lambda y: kernel(x, y))(jnp.asarray(points)))(jnp.asarray(test)))
    expected = cross @ np.linalg.solve(gram + noise * np.eye(30), data)
    np.testing.assert_allclose(solution(test), expected, rtol=1e-8, atol=1e-10)
    # The outer loss whitens the held-out misfit: mean((u(x) − y)²) / σ², u the inner solution.
    held = Constraint("held out", test, (Evaluation(),), lambda x, z: z[0], noise_variance=noise,
                      observations=np.zeros(10))
    train_values = initial_values((observed,))
    loss = linearized_validation_loss(kernel, (observed,), (held,), train_values, initial_values((held,)), 1e-10, True)
    np.testing.assert_allclose(loss, np.mean(expected**2) / noise, rtol=1e-8)


# --------------------------------------------------------------------------------------------
# Darcy
# --------------------------------------------------------------------------------------------


def test_darcy_data_are_reproducible_and_consistent():
    first, second = Darcy(), Darcy()
    points, values = first.observations()
    np.testing.assert_array_equal(points, second.observations()[0])
    assert points.shape == (60, 2) and len(np.unique(points, axis=0)) == 60
    assert not np.array_equal(points, Darcy(data_seed=1).observations()[0])
    # The data are the 80×80 solution plus noise of std σ = 1e-3 (±5σ at most).
    assert np.max(np.abs(values - first.reference(points))) < 5e-3
    # The constraint set: PDE, boundary, data with σ²; learning holds the last 12 values out.
    interior, boundary = jnp.full((4, 2), 0.5), jnp.zeros((4, 2))
    pde, _, data = first.constraints(interior, boundary)
    assert data.noise_variance == pytest.approx(1e-6) and data.size == 60 and pde.fields == (0, 0, 0, 1, 1, 1)
    assert first.training_constraints(interior, boundary)[2].size == 48
    assert [c.size for c in first.validation_constraints(interior, boundary)] == [4, 12]
    # The linearized PDE at the true fields vanishes: ∇a·∇u + Δu + e^{−a} = 0 (a, u of one
    # smooth closed form, to test the residual function itself).
    x = jnp.array([0.3, 0.6])
    a = lambda y: jnp.sin(y[0]) + y[1]
    u = lambda y: y[0] * (1 - y[0]) * y[1]
    z = jnp.concatenate([jax.grad(u)(x), _laplacian(u)(x)[None], a(x)[None], jax.grad(a)(x)])
    expected = jnp.dot(jax.grad(a)(x), jax.grad(u)(x)) + _laplacian(u)(x) + jnp.exp(-a(x))
    assert pde.residual(x, z) == pytest.approx(float(expected), rel=1e-14)


def test_darcy_small_solve_recovers_u_and_a_from_accurate_data():
    problem = Darcy(noise=1e-5)  # nearly exact data: the collocation error, not the noise, is measured
    interior = problem.domain.interior_points(196, "grid", jax.random.PRNGKey(0))
    boundary = problem.domain.boundary_points(60, "grid", jax.random.PRNGKey(1))
    solution, history = GaussNewton(nugget=1e-10, max_steps=15).solve(
        (Gaussian(0.2), Gaussian(0.14)), problem.constraints(interior, boundary)
    )
    residuals = [s.residual_rms for s in history.steps]
    assert np.all(np.isfinite(residuals)) and residuals[-1] < 0.05 * residuals[0]
    grid = np.asarray(problem.domain.grid(30)[0])
    u, a = np.asarray(solution(grid)), np.asarray(solution(grid, field=1))
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(a))
    u_ref, a_ref = problem.reference(grid), true_log_permeability(grid)
    # Measured 4.1e-2 and 7.7e-2; a zero guess has relative error 1.
    assert np.linalg.norm(u - u_ref) / np.linalg.norm(u_ref) < 0.08
    assert np.linalg.norm(a - a_ref) / np.linalg.norm(a_ref) < 0.15


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def _two_field_constraints():
    points = jnp.array([[0.2, 0.3], [0.6, 0.7]])
    return (Constraint("c", points, (Evaluation(), OnField(Evaluation(), 1)), lambda x, z: z[0] - z[1]),)


@pytest.mark.parametrize(
    "kernels, fragment",
    [
        (Gaussian(0.3), "only 1 kernel"),
        ((Gaussian(0.3), Gaussian(0.3), Gaussian(0.3)), "no constraint acts on them"),
        ((Gaussian(0.3), "gaussian"), "expected a kernel"),
    ],
)
def test_kernels_must_match_fields(kernels, fragment):
    with pytest.raises(ConfigError, match=fragment):
        GaussNewton().solve(kernels, _two_field_constraints())


def test_bad_constraints_and_fields_raise_config_errors():
    points = jnp.array([[0.2, 0.3], [0.6, 0.7]])
    with pytest.raises(ConfigError, match="field index must be an integer >= 0"):
        OnField(Evaluation(), -1)
    with pytest.raises(ConfigError, match="noise_variance must be finite and > 0"):
        Constraint("d", points, (Evaluation(),), lambda x, z: z[0], noise_variance=0.0)
    with pytest.raises(ConfigError, match="one value per point"):
        Constraint("d", points, (Evaluation(),), lambda x, z: z[0], observations=np.zeros(3))
    with pytest.raises(ConfigError, match="is not an operator"):
        Constraint("d", points, ("laplacian",), lambda x, z: z[0])
    solution, _ = GaussNewton(max_steps=1).solve((Gaussian(0.3), Gaussian(0.3)), _two_field_constraints())
    with pytest.raises(ConfigError, match="field must be an integer in"):
        solution(points, field=2)
    with pytest.raises(ConfigError, match="unknown field"):
        make_field_kernels("gaussian", (0.2,), {"b": (0.1,)}, ("u", "a"), 2)
    with pytest.raises(ConfigError, match="lengthscale of field 'a'"):
        resolve("darcy", Darcy.defaults, {"field_lengthscales": {"a": -1.0}}, config_class=SolveConfig)
    with pytest.raises(ConfigError, match="held_out"):
        build_problem(Darcy, {"held_out": 60})
    with pytest.raises(ConfigError, match="noise"):
        build_problem(Darcy, {"noise": -1e-3})
    with pytest.raises(ConfigError, match="n_observations must be an integer"):
        build_problem(Darcy, {"n_observations": 2.5})


def test_linearization_sees_observations():
    points = jnp.array([[0.2, 0.3], [0.6, 0.7]])
    data = Constraint("d", points, (Evaluation(),), lambda x, z: 2.0 * z[0], observations=np.array([1.0, -3.0]))
    linear = linearize((data,), (jnp.array([[0.5, 0.5]]),))
    np.testing.assert_allclose(linear.residuals[0], [2 * 0.5 - 1.0, 2 * 0.5 + 3.0])
    np.testing.assert_allclose(linear.targets[0], [1.0, -3.0])  # w·z − r = y for a linear residual


def test_darcy_run_stores_and_plots_both_fields(tmp_path):
    from gpde.io import _store as store
    from gpde.app._plotting import plot_fields
    from gpde.app._run import learned_kernel, run_solve

    config = resolve("darcy", Darcy.defaults, {"n_interior": 100, "n_boundary": 40, "steps": 2, "grid": 12},
                     config_class=SolveConfig)
    run = run_solve(Darcy, config)
    back = store.read_run(store.write_run(tmp_path / "darcy.h5", run.record))
    fields = back.groups[store.FIELDS]
    grid = np.asarray(fields[store.GRID_POINTS])
    np.testing.assert_allclose(fields["a_ref"].ravel(), true_log_permeability(grid), rtol=1e-14)
    np.testing.assert_allclose(fields["error_a"], fields["a"] - fields["a_ref"], atol=1e-14)
    np.testing.assert_allclose(fields["a"].ravel(), np.asarray(run.solution(grid, field=1)), rtol=1e-12)
    assert back.group_attrs["errors_a"]["l2_relative"] == pytest.approx(
        np.linalg.norm(fields["error_a"]) / np.linalg.norm(fields["a_ref"]), rel=1e-12
    )
    np.testing.assert_array_equal(back.groups[store.POINTS]["observations"], Darcy().observations()[0])
    assert back.config["field_lengthscales"] == {"a": [0.3]}
    assert plot_fields(back, tmp_path / "darcy.png").stat().st_size > 0
    with pytest.raises(ConfigError, match="no learned kernel"):
        learned_kernel(tmp_path / "darcy.h5")


def test_field_variance_auto_solves_with_the_factor_of_largest_likelihood(tmp_path, capsys):
    from gpde.app import main
    from gpde.app._config import FIELD_VARIANCE_CANDIDATES
    from gpde import GaussNewton
    from gpde.app._run import collocation_points, configured_kernel, run_solve
    from gpde.io import read_run
    from gpde.kernels import Scaled
    from gpde.solve import posterior

    config = resolve("darcy", Darcy.defaults, {"n_interior": 36, "n_boundary": 16, "steps": 3, "grid": 8,
                                               "field_variances": {"a": "auto"}}, config_class=SolveConfig)
    run = run_solve(Darcy, config)
    scan = run.record.config["field_variance_log_likelihoods"]["a"]
    assert list(scan) == [f"{c:g}" for c in FIELD_VARIANCE_CANDIDATES]
    chosen = run.record.config["field_variances"]["a"]
    assert f"{chosen:g}" == max(scan, key=scan.get)
    # The stored solve is the one with that factor on a's kernel (and u's kernel untouched).
    u_kernel, a_kernel = run.solution.kernels
    assert isinstance(a_kernel, Scaled) and float(a_kernel.variance) == pytest.approx(chosen, rel=1e-12)
    assert not isinstance(u_kernel, Scaled)
    # A candidate's likelihood is the posterior's at the solve with that factor.
    problem = Darcy()
    interior, boundary = collocation_points(problem, config)
    solver = GaussNewton(nugget=config.nugget, max_steps=config.steps, tolerance=config.tolerance)
    other = solver.solve(configured_kernel(problem, config, {"a": 4.0}), problem.constraints(interior, boundary))[0]
    assert scan["4"] == pytest.approx(float(posterior(other, config.nugget).log_likelihood()), rel=1e-9)

    # From the command line: a number is used as given; 'auto' needs the dense solver.
    out = tmp_path / "darcy.h5"
    argv = ["solve", "darcy", "--n-interior", "36", "--n-boundary", "16", "--steps", "2", "--grid", "8",
            "--out", str(out)]
    assert main(argv + ["--field-variance", "a=16"]) == 0
    assert read_run(out).config["field_variances"] == {"a": 16.0}
    capsys.readouterr()
    assert main(argv + ["--field-variance", "a=auto", "--solver", "sparse", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--solver dense" in err


def test_cramer_rao_bound_for_an_unknown_level_is_the_analytic_one():
    # a → a + c scales e^{a} by e^{c}, so u by e^{−c} exactly: J = −u(x_i) and the bound is
    # σ / sqrt(Σ u(x_i)²) / rms(a_true), independent of the finite differences.
    problem = Darcy()
    points, _ = problem.observations()
    _, u = solve_darcy_fd(true_log_permeability, problem.data_grid)
    u_observed = grid_interpolant(u, problem.data_grid)(points)  # the spline interpolates the nodes
    grid = np.asarray(problem.domain.grid(20)[0])
    expected = problem.noise / np.sqrt(np.sum(u_observed**2)) / np.sqrt(np.mean(true_log_permeability(grid) ** 2))
    assert cramer_rao_relative_l2(problem, constant_basis(), grid) == pytest.approx(expected, rel=1e-6)
    assert cramer_rao_relative_l2(problem, constant_basis(), grid, noise=1e-5) == pytest.approx(
        expected * 1e-2, rel=1e-6)


def test_cramer_rao_bound_is_infinite_when_the_data_cannot_separate_the_family():
    problem = Darcy()
    grid = np.asarray(problem.domain.grid(10)[0])
    twice = constant_basis() * 2  # the same unknown twice: singular information
    assert cramer_rao_relative_l2(problem, twice, grid) == float("inf")
    assert len(fourier_basis(1)) == 9 and len(fourier_basis(2)) == 25
