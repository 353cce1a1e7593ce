"""The sparse-Cholesky Gauss-Newton path (gpde/sparse, docs/sparse.md).

Tolerances follow the method's accuracy: the factor's KL divergence from the dense one falls by a
constant factor per unit of ρ (about 4 on these problems), and with a pattern that covers every
earlier functional the factor IS the dense inverse Cholesky factor, so the sparse solver then
reproduces the dense one up to round-off.
"""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import ConfigError, Dense, GaussNewton, OnField, Sparse, operator_gram
from gpde.kernels import Gaussian, Gibbs, LayerStretch, Matern72, Warped
from gpde.problems.elliptic import NonlinearElliptic
from gpde.sparse import (
    DIRACS_FIRST,
    FOLLOW_DIRACS,
    SparseSteps,
    grouped_maximin_ordering,
    linear_solver,
    maximin_ordering,
    supernodal_pattern,
)

ROOT = Path(__file__).resolve().parent.parent


def _elliptic(side):
    problem = NonlinearElliptic()
    interior = problem.domain.interior_points(side * side, "grid", jax.random.PRNGKey(0))
    boundary = problem.domain.boundary_points(4 * (side + 1), "grid", jax.random.PRNGKey(1))
    return problem, interior, problem.constraints(interior, boundary)


def _dense_basis_gram(kernel, constraints):
    """Θ over all basis functionals in the natural order (constraint, operator, point)."""
    rows = []
    for cg in constraints:
        row = []
        for ch in constraints:
            block = np.asarray(operator_gram(kernel, cg.operators, cg.points, ch.operators, ch.points))
            m1, m2, n1, n2 = block.shape
            row.append(block.transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2))
        rows.append(row)
    return np.block(rows)


def _kl_and_factor(steps, theta):
    """KL(N(0, Θ + S) ‖ N(0, (U Uᵀ)⁻¹)) in the factor's ordering, and U densely."""
    order = steps.basis_order
    covariance = theta[np.ix_(order, order)] + np.diag(steps.basis_shift[order])
    factor = steps.basis.toarray()
    whitened = factor.T @ covariance @ factor
    eigenvalues = np.linalg.eigvalsh(0.5 * (whitened + whitened.T))
    return 0.5 * float(np.sum(eigenvalues - 1.0 - np.log(eigenvalues))), factor, covariance


# --------------------------------------------------------------------------------------------
# Ordering and pattern
# --------------------------------------------------------------------------------------------


def test_maximin_ordering_is_a_coarse_to_fine_permutation():
    points = np.asarray(jax.random.uniform(jax.random.PRNGKey(3), (300, 2)))
    order, lengthscales = maximin_ordering(points)
    assert sorted(order.tolist()) == list(range(300))
    assert np.all(np.diff(lengthscales) <= 1e-15) and np.all(np.isfinite(lengthscales))
    for k in range(1, 300):  # ℓ_k is the distance to the points chosen before, and the largest one
        distances = np.min(np.linalg.norm(points[None, order[:k]] - points[:, None], axis=2), axis=1)
        distances[order[:k]] = -1
        assert lengthscales[k] == pytest.approx(np.linalg.norm(points[order[k]] - points[order[:k]], axis=1).min())
        assert lengthscales[k] == pytest.approx(distances.max())


def test_grouped_ordering_puts_group_zero_first_and_measures_to_every_earlier_point():
    points = np.asarray(jax.random.uniform(jax.random.PRNGKey(5), (200, 2)))
    group = (points[:, 0] > 0.3).astype(np.int64)  # group 0: a strip, ordered first
    order, lengthscales = grouped_maximin_ordering(points, group)
    assert sorted(order.tolist()) == list(range(200))
    first = int(np.sum(group == 0))
    assert np.all(group[order[:first]] == 0) and np.all(group[order[first:]] == 1)
    for part in (slice(0, first), slice(first, 200)):  # coarse to fine within each group
        assert np.all(np.diff(lengthscales[part]) <= 1e-15)
    for k in range(1, 200):  # ℓ_k: distance to ALL points before it, group 0 included
        assert lengthscales[k] == pytest.approx(np.linalg.norm(points[order[k]] - points[order[:k]], axis=1).min())


@pytest.mark.parametrize("ordering", [FOLLOW_DIRACS, DIRACS_FIRST])
def test_pattern_holds_every_columns_own_set(ordering):
    rho, points = 2.5, np.asarray(jax.random.uniform(jax.random.PRNGKey(4), (150, 2)))
    site_of = np.concatenate([np.arange(150), np.arange(100)])  # 100 sites carry a second functional
    rank = np.concatenate([np.zeros(150, int), np.ones(100, int)])
    pattern = supernodal_pattern(points, site_of, rank, rho, ordering)
    assert sorted(pattern.columns.tolist()) == list(range(250))
    located = points[site_of[pattern.order]]
    if ordering == DIRACS_FIRST:  # every leading functional before every derivative functional
        assert np.all(rank[pattern.order][:150] == 0)
    else:  # a site's functionals are adjacent, the leading one first
        first = {}
        for position, i in enumerate(pattern.order):
            first.setdefault(site_of[i], position)
            assert position - first[site_of[i]] == rank[i]
    for s in range(pattern.supernodes):
        rows = pattern.rows[pattern.row_start[s] : pattern.row_start[s + 1]]
        for c in pattern.columns[pattern.column_start[s] : pattern.column_start[s + 1]]:
            own = np.flatnonzero(np.linalg.norm(located[: c + 1] - located[c], axis=1) <= rho * pattern.lengthscales[c])
            assert np.all(np.isin(own, rows)) and c in rows


def test_factor_size_is_linear_in_n():
    """No N × N object: nonzeros per functional stay flat when N quadruples (O(N ρ^d) storage)."""
    per_functional = []
    for side in (30, 60):
        a = np.linspace(0, 1, side + 2)[1:-1]
        points = np.stack(np.meshgrid(a, a, indexing="ij"), -1).reshape(-1, 2) / 0.3
        n = points.shape[0]
        pattern = supernodal_pattern(points, np.tile(np.arange(n), 2), np.repeat([0, 1], n), 3.0)
        per_functional.append(pattern.column_counts().sum() / (2 * n))
    assert per_functional[1] < 1.25 * per_functional[0]
    assert per_functional[1] < 0.02 * 2 * 3600


# --------------------------------------------------------------------------------------------
# The factor against the dense inverse Cholesky factor
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ordering", [FOLLOW_DIRACS, DIRACS_FIRST])
def test_factor_converges_to_the_dense_inverse_cholesky_factor(ordering):
    kernel = Matern72(0.3)
    _, _, constraints = _elliptic(12)
    theta = _dense_basis_gram(kernel, constraints)
    divergences = []
    for rho in (2.0, 3.0, 4.0, 5.0):
        steps = SparseSteps(Sparse(rho=rho, ordering=ordering), kernel, constraints, 1e-10, True)
        divergences.append(_kl_and_factor(steps, theta)[0])
    assert all(b < a for a, b in zip(divergences, divergences[1:])), divergences
    assert divergences[-1] < divergences[0] / 20, divergences  # geometric: ~4× per unit of ρ
    # A radius that covers every earlier functional gives the exact factor: U = L⁻ᵀ, L Lᵀ = Θ + S.
    steps = SparseSteps(Sparse(rho=1e3, ordering=ordering), kernel, constraints, 1e-10, True)
    divergence, factor, covariance = _kl_and_factor(steps, theta)
    exact = np.linalg.inv(np.linalg.cholesky(covariance)).T
    assert divergence < 1e-6
    assert np.max(np.abs(factor - exact)) <= 1e-6 * np.max(np.abs(exact))


# --------------------------------------------------------------------------------------------
# Gauss-Newton: sparse against dense and against the exact solution
# --------------------------------------------------------------------------------------------


def test_sparse_gauss_newton_matches_dense_and_exact():
    problem, interior, constraints = _elliptic(20)
    kernel, grid = Matern72(0.3), problem.domain.grid(25)[0]
    reference = problem.reference(grid)
    dense, _ = GaussNewton(nugget=1e-10, max_steps=4).solve(kernel, constraints)
    u_dense = np.asarray(dense(grid))
    dense_error = np.sqrt(np.mean((u_dense - reference) ** 2))
    gaps = {}
    for rho in (3.0, 6.0):
        sparse, history = GaussNewton(nugget=1e-10, max_steps=4, linear_solver=Sparse(rho=rho)).solve(kernel, constraints)
        u = np.asarray(sparse(grid))
        gaps[rho] = np.sqrt(np.mean((u - u_dense) ** 2))
        # CG convergence is reported, not assumed.
        assert all(s.cg_iterations > 0 and s.cg_residual < 1e-8 for s in history.steps)
        # The returned function gives the iterate's values at the collocation points, and its
        # local kriging (forced by moving the points by 1e-9) reproduces them.
        final = np.asarray(history.final_values[0][0])
        assert np.array_equal(np.asarray(sparse(interior)), final)
        assert np.allclose(np.asarray(sparse(np.asarray(interior) + 1e-9)), final, atol=1e-5)
    assert gaps[6.0] < gaps[3.0]
    assert gaps[6.0] < 0.3 * dense_error  # agreement well inside the discretization error
    # With a pattern that holds every earlier functional the factor is exact, and so is the solve
    # (up to the regularization difference of the other-kernels test below). On a smaller problem:
    # the full pattern makes every supernode as large as the whole system.
    # Kriging with the full pattern solves one system of all functionals per evaluation point: a
    # coarse grid.
    problem, _, small = _elliptic(10)
    coarse = problem.domain.grid(8)[0]
    small_dense, _ = GaussNewton(nugget=1e-10, max_steps=4).solve(kernel, small)
    exact, _ = GaussNewton(nugget=1e-10, max_steps=4, linear_solver=Sparse(rho=1e3)).solve(kernel, small)
    u_small = np.asarray(small_dense(coarse))
    assert np.max(np.abs(np.asarray(exact(coarse)) - u_small)) < 2e-5 * np.max(np.abs(u_small))


@pytest.mark.parametrize("kind", ["gibbs", "anisotropic", "warped"])
def test_sparse_solve_equals_dense_for_other_kernels(kind):
    """Every kernel goes through operator_gram, so with a full pattern the sparse solve is the
    dense one up to the regularization (max(D, W S Wᵀ) instead of D: at nugget 1e-8 a relative
    difference of a few 1e-6) and the kriging evaluation; with a sparse pattern it is close."""
    problem, interior, constraints = _elliptic(10)
    if kind == "gibbs":
        kernel = Gibbs(2, key=jax.random.PRNGKey(0), width=8, depth=1, scale=0.3)
    elif kind == "warped":
        kernel = Warped(Matern72(jnp.array([0.25, 0.2])), LayerStretch(axis=0, centre=0.5, width=0.1, ratio=1.5))
    else:
        kernel = Gaussian(jnp.array([0.25, 0.12]))
    settings = dict(nugget=1e-8, max_steps=3, stall_steps=0)
    dense, _ = GaussNewton(**settings).solve(kernel, constraints)
    grid = problem.domain.grid(12)[0]
    u_dense = np.asarray(dense(grid))
    # Kriging with the full pattern solves one system of all functionals per point: a coarse grid.
    coarse = problem.domain.grid(6)[0]
    full, _ = GaussNewton(**settings, linear_solver=Sparse(rho=1e3)).solve(kernel, constraints)
    u_coarse = np.asarray(dense(coarse))
    assert np.max(np.abs(np.asarray(full(coarse)) - u_coarse)) < 2e-5 * np.max(np.abs(u_coarse))
    sparse, history = GaussNewton(**settings, linear_solver=Sparse(rho=4.0)).solve(kernel, constraints)
    assert history.factor_nnz < 0.8 * history.functionals * (history.functionals + 1) / 2
    assert np.sqrt(np.mean((np.asarray(sparse(grid)) - u_dense) ** 2)) < 0.05 * np.sqrt(np.mean(u_dense**2))


@pytest.mark.parametrize("linear_solver", [Sparse(rho=5.0), Dense()], ids=["sparse", "dense"])
def test_continuation_equals_the_stages_solved_one_after_another(linear_solver):
    """Burgers at ν = 0.05 and 0.03 as continuation stages of ν = 0.02: the same iterate as solving
    each stage separately, warm-starting the next (the sparse solver reuses its basis factor, which
    depends only on the operators and points); stages on other points are refused."""
    from gpde.problems.burgers import Burgers

    t, x = np.meshgrid(np.linspace(0.1, 1.0, 6), np.linspace(-0.9, 0.9, 12), indexing="ij")
    interior = jnp.asarray(np.stack([t.ravel(), x.ravel()], axis=1))
    line = np.linspace(-1.0, 1.0, 14)
    boundary = jnp.asarray(np.concatenate([np.stack([0 * line, line], 1), [[ti, s] for ti in t[:, 0] for s in (-1.0, 1.0)]]))
    kernel = Matern72(jnp.array([0.3, 0.2]))
    stages = [Burgers(viscosity=nu).constraints(interior, boundary) for nu in (0.05, 0.03)]
    final = Burgers(viscosity=0.02).constraints(interior, boundary)
    settings = dict(nugget=1e-10, tolerance=0.0, stall_steps=0, linear_solver=linear_solver)
    together, history = GaussNewton(max_steps=3, **settings).solve(kernel, final, continuation=stages, continuation_steps=2)
    assert len(history.continuation_steps) == 4 and len(history.steps) == 3
    initial = None
    for stage in stages:
        initial, _ = GaussNewton(max_steps=2, **settings).solve(kernel, stage, initial=initial)
    separate, _ = GaussNewton(max_steps=3, **settings).solve(kernel, final, initial=initial)
    u_together, u_separate = np.asarray(together(interior)), np.asarray(separate(interior))
    # Separate sparse solves evaluate the stage solution at its own sites (stored values), the
    # continuation carries the same values on: equal up to CG's tolerance.
    assert np.max(np.abs(u_together - u_separate)) < 1e-6 * np.max(np.abs(u_separate))
    moved = [Burgers(viscosity=0.05).constraints(interior + 0.01, boundary)]
    with pytest.raises(ConfigError):
        GaussNewton(max_steps=1, **settings).solve(kernel, final, continuation=moved)


def test_eikonal_without_point_values_in_the_interior_matches_dense():
    """Eikonal's interior constraint has no δ (∂x, ∂y, Δ); the sparse path adds δ there as zero-
    weight basis functionals. With a full pattern the solve is the dense one; at ρ = 5 it stays
    within a small fraction of the dense solver's own error (without the added δ it was 10× the
    dense error at this size)."""
    from gpde.kernels import Matern52
    from gpde.problems.eikonal import Eikonal

    problem = Eikonal(epsilon=0.1)
    interior = problem.domain.interior_points(144, "grid", jax.random.PRNGKey(0))
    boundary = problem.domain.boundary_points(52, "grid", jax.random.PRNGKey(1))
    constraints, kernel = problem.constraints(interior, boundary), Matern52(0.2)
    settings = dict(nugget=1e-8, max_steps=8, tolerance=0.0, stall_steps=0)
    dense, _ = GaussNewton(**settings).solve(kernel, constraints)
    grid = problem.domain.grid(15)[0]
    u_dense, reference = np.asarray(dense(grid)), np.asarray(problem.reference(grid))
    dense_error = np.sqrt(np.mean((u_dense - reference) ** 2))
    # Kriging with the full pattern solves one system of all functionals per point: a coarse grid.
    coarse = problem.domain.grid(6)[0]
    full, _ = GaussNewton(**settings, linear_solver=Sparse(rho=1e3)).solve(kernel, constraints)
    u_coarse = np.asarray(dense(coarse))
    assert np.max(np.abs(np.asarray(full(coarse)) - u_coarse)) < 1e-4 * np.max(np.abs(u_coarse))
    sparse, _ = GaussNewton(**settings, linear_solver=Sparse(rho=5.0)).solve(kernel, constraints)
    assert np.sqrt(np.mean((np.asarray(sparse(grid)) - u_dense) ** 2)) < 0.2 * dense_error


# --------------------------------------------------------------------------------------------
# Settings, records, the benchmark
# --------------------------------------------------------------------------------------------


def test_settings_and_cli_choice():
    with pytest.raises(ConfigError):
        Sparse(rho=-1.0)
    with pytest.raises(ConfigError):
        Sparse(ordering="nearest")
    with pytest.raises(ConfigError):
        GaussNewton(linear_solver="sparse")
    assert isinstance(linear_solver("dense", 10**6), Dense)
    assert linear_solver("sparse", 100, rho=4).rho == 4.0
    assert isinstance(linear_solver("auto", 1000), Dense) and isinstance(linear_solver("auto", 10**5), Sparse)
    with pytest.raises(ConfigError):
        linear_solver("cholesky", 100)


def test_history_records_the_sparse_solver():
    _, _, constraints = _elliptic(8)
    _, history = GaussNewton(nugget=1e-10, max_steps=2, linear_solver=Sparse(rho=3.0)).solve(Matern72(0.3), constraints)
    columns = history.as_arrays()
    assert set(columns) >= {"cg_iterations", "cg_residual", "preconditioner_nnz"}
    attributes = history.solver_attributes()
    assert attributes["solver"] == "sparse" and attributes["rho"] == 3.0 and attributes["factor_nnz"] > 0
    _, dense = GaussNewton(nugget=1e-10, max_steps=1).solve(Matern72(0.3), constraints)
    assert "cg_iterations" not in dense.as_arrays() and dense.solver_attributes() == {"solver": "dense"}


def test_several_fields_are_refused():
    problem, interior, constraints = _elliptic(6)
    extra = constraints[0].__class__("other", interior, (OnField(constraints[0].operators[0], 1),), lambda x, z: z[0])
    with pytest.raises(ConfigError, match="one unknown field"):
        GaussNewton(linear_solver=Sparse()).solve((Matern72(0.3), Matern72(0.3)), constraints + (extra,))


@pytest.mark.parametrize(
    "problem, options",
    [("elliptic", []), ("eikonal", []),
     ("burgers", ["--viscosity", "0.01", "--continuation", "1", "--aspect", "1.5", "--layer-ratio", "3",
                  "--grid-errors"])],
)
def test_scale_benchmark_runs_at_tiny_size(problem, options):
    spec = importlib.util.spec_from_file_location("benchmark_scale", ROOT / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.main(["--tiny", "--problem", problem, *options])
    rows = [line.split("|") for line in text.splitlines() if line.startswith(f"| {problem}")]
    grid_rows = rows[2:]  # Burgers' errors on the test grid, a second table
    rows = rows[:2]
    assert [row[3].strip() for row in rows] == ["dense", "sparse"]
    for row in rows:  # RMS, relative L2 and L∞ errors are finite and positive
        errors = [float(cell) for cell in row[11:14]]
        assert all(np.isfinite(e) and e > 0 for e in errors), row
    assert len(grid_rows) == (2 if "--grid-errors" in options else 0)
    for row in grid_rows:
        assert all(np.isfinite(float(cell)) and float(cell) > 0 for cell in row[5:7]), row


@pytest.mark.parametrize("total, shapes", [(1, [1]), (5, [8]), (64, [64]), (300, [256, 256]), (512, [256, 256])])
def test_padded_batches_pad_a_small_evaluation_to_a_power_of_two(total, shapes):
    from gpde.sparse._solution import padded_batches

    points, labels = np.arange(2.0 * total).reshape(total, 2), np.arange(total)
    batches = list(padded_batches(256, points, labels))
    assert [x.shape[0] for _, (x, _) in batches] == shapes
    assert all(y.shape[0] == x.shape[0] for _, (x, y) in batches)
    np.testing.assert_array_equal(np.concatenate([x[:count] for count, (x, _) in batches]), points)
    np.testing.assert_array_equal(np.concatenate([y[:count] for count, (_, y) in batches]), labels)


def test_triangular_solves_and_products_equal_dense_ones():
    """U⁻ᵀU⁻¹v through the unit-triangular sweeps and U Uᵀ v through the normalized form equal
    the dense solves and products."""
    import scipy.sparse

    from gpde.sparse._triangular import TriangularFactor

    rng = np.random.default_rng(0)
    n = 1500
    strict = scipy.sparse.triu(scipy.sparse.random(n, n, density=0.01, random_state=1, format="csc"), k=1)
    factor = (0.1 * strict + scipy.sparse.diags(1.0 + rng.random(n))).tocsc()
    v = rng.standard_normal(n)
    dense = factor.toarray()
    expected = np.linalg.solve(dense.T, np.linalg.solve(dense, v))
    triangular = TriangularFactor(factor.copy())
    assert np.allclose(triangular.toarray(), dense, rtol=1e-14, atol=0)
    assert np.max(np.abs(triangular.covariance(v) - expected)) <= 1e-12 * np.max(np.abs(expected))
    assert np.allclose(triangular.precision(v), dense @ (dense.T @ v), rtol=1e-12, atol=0)
