"""BLJES beyond the coupled, noiseless, unconstrained setting: relative observation noise,
feasibility of recommendations, per-level query costs, hyperparameter draws per sample path, and
studies on a multi-process Dask cluster."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde import ConfigError
from gpde.app import _study as study
from gpde.bljes import RelativeNoise, make_method, output_ranges, run_optimization
from gpde.bljes._hyperposterior import _with, fitted_psi, hyperparameter_draws, laplace_covariance
from gpde.bljes._level_choice import query_upper_level
from gpde.bljes._loop import _evaluate
from gpde.bljes._methods import BOTH, PhaseTimer, Query, _acquire, _sample_models, _sample_optima
from gpde.bljes._state import SurrogateFitter
from gpde.problems.bilevel import get_benchmark

from helpers import load_benchmark

EVALUATIONS = 6  # the budget of test_bljes_loop.py: the loop compiles once for both files


# --------------------------------------------------------------------------------------------
# Relative noise
# --------------------------------------------------------------------------------------------


def test_output_ranges_cover_the_closed_form_extremes():
    # SMD1: f = x₁² + θ₁² + x₂² + (x₂ − tan θ₂)² peaks at the corner x = (10, 10), θ = (10, −1.5)
    # and is ≥ 0 everywhere; the design includes the corners, so the range is at least the peak
    # minus the smallest sampled value (which is > 0).
    smd1 = get_benchmark("smd1")
    peak = 300.0 + (10.0 - np.tan(-1.5)) ** 2
    ranges = output_ranges(smd1)
    assert ranges.shape == (2,)
    assert peak - 20.0 <= ranges[0] <= peak
    # smd12 has three constraints: one range per output.
    assert output_ranges(get_benchmark("smd12")).shape == (5,)


def test_relative_noise_has_the_stated_standard_deviation_per_output():
    noisy = get_benchmark("smd12[noise=0.05]")
    assert isinstance(noisy, RelativeNoise) and noisy.name == "smd12[noise=0.05]"
    expected = 0.05 * output_ranges(get_benchmark("smd12"))
    np.testing.assert_allclose(noisy.observation_noise(), expected)
    rng = np.random.default_rng(0)
    query = Query(np.array([0.3, 0.6]), np.array([0.2, 0.4, 0.7]), BOTH)
    exact = _evaluate(noisy.base, query, rng, 0.0)
    draws = np.array([np.concatenate([[f, g], c]) for _, _, f, g, c in
                      (_evaluate(noisy, query, rng, noisy.observation_noise()) for _ in range(2000))])
    truth = np.concatenate([[exact[2], exact[3]], exact[4]])
    assert np.all(np.abs(draws.mean(axis=0) - truth) < 4 * expected / np.sqrt(2000))
    np.testing.assert_allclose(draws.std(axis=0), expected, rtol=0.06)


def test_noisy_runs_are_reproducible_and_their_regret_is_that_of_the_true_problem():
    noisy = get_benchmark("smoke-1+1[noise=0.05]")
    base = get_benchmark("smoke-1+1")
    run = run_optimization(noisy, make_method("random"), evaluations=EVALUATIONS, seed=2)
    again = run_optimization(noisy, make_method("random"), evaluations=EVALUATIONS, seed=2)
    np.testing.assert_array_equal(run.y_f, again.y_f)
    exact = np.array([base.upper(x, t) for x, t in zip(run.x, run.theta)])
    sd = noisy.observation_noise()[0]
    assert np.all(run.y_f != exact) and np.all(np.abs(run.y_f - exact) < 5 * sd)
    for t in range(EVALUATIONS):
        assert run.regret[t] == pytest.approx(base.regret(run.recommendation[t]), abs=1e-12)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("smd1[noise=-0.1]", "must be > 0"),
        ("smd1[noise=x]", "must be a number"),
        ("smd1[tau=0.1]", "only benchmark option"),
        ("smd1[noise=0.1", "only benchmark option"),
        ("smd9[noise=0.1]", "unknown benchmark 'smd9'"),
    ],
)
def test_bad_benchmark_options_are_config_errors(name, message):
    with pytest.raises(ConfigError, match=message):
        get_benchmark(name)
    with pytest.raises(ConfigError, match=message):
        study.plan_study(f"smoke-1+1,{name}", "random", seeds=1, evaluations=4)


def test_noisy_benchmarks_are_separate_cells_of_a_study():
    specs = study.plan_study("smd1[noise=0.01],smd1,smd1[noise=0.05]", "random", seeds=1, evaluations=4)
    assert [spec.benchmark for spec in specs] == ["smd1[noise=0.01]", "smd1", "smd1[noise=0.05]"]
    assert len({spec.path for spec in specs}) == 3


# --------------------------------------------------------------------------------------------
# Feasibility
# --------------------------------------------------------------------------------------------


def test_smd12_feasibility_at_the_true_lower_optimum():
    smd12 = get_benchmark("smd12")
    assert smd12.feasible(np.array([1.0, 1.0]))  # x*: both cubic constraints active
    assert not smd12.feasible(np.array([2.0, 1.0]))  # x₂ ≥ x₁³ violated
    assert not smd12.feasible(np.array([0.5, 0.9]))  # x₁ ≥ x₂³ violated
    assert smd12.regret(np.array([0.5, 0.9])) == pytest.approx(334.31, abs=0.01)
    assert get_benchmark("smd1").feasible(np.array([3.0, -4.0]))  # unconstrained: always


def test_runs_record_whether_each_recommendation_is_feasible(tmp_path):
    smd12 = get_benchmark("smd12")
    run = run_optimization(smd12, make_method("random"), evaluations=EVALUATIONS, seed=0)
    expected = [smd12.feasible(x) for x in run.recommendation]
    np.testing.assert_array_equal(run.feasible, expected)
    np.testing.assert_array_equal(run.regret[~run.feasible], smd12.regret(np.array([0.5, 0.9])))
    # The study file stores it per run and query.
    out = tmp_path / "study.h5"
    study.run_study(study.plan_study("smd12", "random", seeds=1, evaluations=EVALUATIONS), out, progress=False)
    (stored,) = study.read_study(out)
    assert stored.arrays["feasible"].dtype == bool and stored.arrays["feasible"].shape == (EVALUATIONS,)
    np.testing.assert_array_equal(stored.arrays["feasible"], [smd12.feasible(x) for x in stored.arrays["recommendation"]])


# --------------------------------------------------------------------------------------------
# Costs
# --------------------------------------------------------------------------------------------


def test_cumulative_cost_counts_the_levels_each_query_evaluated():
    smoke = get_benchmark("smoke-1+1")
    run = run_optimization(smoke, make_method("random"), coupled=False, evaluations=EVALUATIONS, seed=0, costs=(1.0, 0.1))
    per_query = np.where(run.observed[:, 0], 1.0, 0.0) + np.where(run.observed[:, 1], 0.1, 0.0)
    np.testing.assert_allclose(run.cost, np.cumsum(per_query))
    assert run.cost[2] == pytest.approx(3.3)  # three initial queries evaluate both levels
    assert set(np.round(np.diff(run.cost[2:]), 12)) <= {1.0, 0.1}
    coupled = run_optimization(smoke, make_method("random"), evaluations=EVALUATIONS, seed=0, costs=(2.0, 0.5))
    np.testing.assert_allclose(coupled.cost, 2.5 * np.arange(1, EVALUATIONS + 1))


def test_costs_parse_and_make_separate_cells():
    assert study.parse_costs("f=1,g=0.1") == (1.0, 0.1)
    assert study.parse_costs("g=2, f=0.5") == (0.5, 2.0)
    for bad in ("f=1", "f=1,g=0", "f=1,g=-1", "f=1,h=2", "f=1,f=2", "f=one,g=1", "1,0.1"):
        with pytest.raises(ConfigError, match="--cost"):
            study.parse_costs(bad)
    plain = study.plan_study("smd1", "bljes", "decoupled", seeds=1, evaluations=4)[0]
    cheap = study.plan_study("smd1", "bljes", "decoupled", seeds=1, evaluations=4, costs="f=1,g=0.1")[0]
    assert "costs" not in plain.config()  # the default leaves earlier study files valid
    assert cheap.config()["costs"] == [1.0, 0.1]
    assert plain.path == "runs/smd1/bljes/decoupled/seed0"
    assert cheap.path == "runs/smd1/bljes/decoupled[f=1,g=0.1]/seed0"


def test_cli_cost_flag_is_a_one_line_error_when_bad(tmp_path, capsys):
    from gpde.app._cli import main

    assert main(["bljes", "smd1", "--cost", "f=1,g=0", "--out", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--cost" in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------------------------
# BLJES: costs and hyperparameter draws
# --------------------------------------------------------------------------------------------

SMALL = dict(paths=3, features=40, x_candidates=4, theta_candidates=4)


def _state(seed=0, n=8, dim=2):
    """Surrogates fitted to n random points of smoke-1+1 (unit box)."""
    smoke = get_benchmark("smoke-1+1")
    rng = np.random.default_rng(seed)
    unit = rng.uniform(size=(n, dim))
    x, theta = smoke.to_box(unit[:, :1], unit[:, 1:])
    y_f = np.array([float(smoke.upper(a, b)) for a, b in zip(x, theta)])
    y_g = np.array([float(smoke.lower(a, b)) for a, b in zip(x, theta)])
    return SurrogateFitter(1, 0).fit(unit, y_f, y_g, np.zeros((n, 0)), np.ones((n, 2), dtype=bool))


def test_decoupled_bljes_divides_each_level_by_its_cost():
    state = _state()
    method = make_method("bljes", **SMALL)
    key = jax.random.PRNGKey(0)
    levels = {costs: method.propose(state, key, coupled=False, costs=costs, timer=PhaseTimer()).level
              for costs in [(1.0, 1e9), (1e9, 1.0)]}
    assert levels == {(1.0, 1e9): "f", (1e9, 1.0): "g"}


def test_level_choice_follows_gain_per_cost_above_the_share_floor():
    # Balanced observations: the ratio decides (2/1 vs 0.3/0.1 → g; at equal costs → f).
    assert not query_upper_level(2.0, 0.3, (1.0, 0.1), (5, 5), 0.2)
    assert query_upper_level(2.0, 0.3, (1.0, 1.0), (5, 5), 0.2)
    # f holds 3 of 16 observations (< 0.2): f, although g's gain per cost is 10x larger.
    assert query_upper_level(1.0, 1.0, (1.0, 0.1), (3, 13), 0.2)
    assert not query_upper_level(1.0, 1.0, (1.0, 0.1), (3, 12), 0.2)  # 3/15 = 0.2 is not below
    assert not query_upper_level(1.0, 1.0, (1.0, 0.1), (3, 13), 0.0)  # no floor: the ratio
    assert not query_upper_level(100.0, 1.0, (1.0, 1.0), (13, 3), 0.2)  # the floor works for g too
    for bad in (-0.1, 0.5, float("nan")):
        with pytest.raises(ConfigError, match="min_share"):
            make_method("bljes", min_share=bad)


def test_decoupled_bljes_queries_a_starved_level_whatever_its_cost():
    state = _state()
    n = state.upper.mask.shape[0]
    # Refit with f observed at 1 of the 8 points: f holds 1/9 < 0.2 of the observations.
    smoke = get_benchmark("smoke-1+1")
    unit = np.asarray(state.upper.inputs)
    x, theta = smoke.to_box(unit[:, :1], unit[:, 1:])
    y_f = np.array([float(smoke.upper(a, b)) for a, b in zip(x, theta)])
    y_g = np.array([float(smoke.lower(a, b)) for a, b in zip(x, theta)])
    observed = np.ones((n, 2), dtype=bool)
    observed[1:, 0] = False
    starved = SurrogateFitter(1, 0).fit(unit, np.where(observed[:, 0], y_f, np.nan), y_g, np.zeros((n, 0)), observed)
    # An f query costs 1e9 g queries, so the ratio alone would query g (test above).
    method = make_method("bljes", **SMALL)
    query = method.propose(starved, jax.random.PRNGKey(0), coupled=False, costs=(1e9, 1.0), timer=PhaseTimer())
    assert query.level == "f"


def test_laplace_draws_reproduce_the_fit_and_concentrate_with_data():
    state = _state(n=8)
    gp = state.lower
    same = _with(gp, fitted_psi(gp))
    z = jnp.array([0.3, 0.7])
    np.testing.assert_allclose(same.mean_and_variance(z), gp.mean_and_variance(z), rtol=1e-10, atol=1e-12)
    covariance = laplace_covariance(gp)
    draws = hyperparameter_draws(gp, jax.random.PRNGKey(1), 4000)
    psi = jax.vmap(fitted_psi)(draws)
    np.testing.assert_allclose(np.mean(psi, axis=0), fitted_psi(gp), atol=4 * np.sqrt(np.diag(covariance).max() / 4000))
    np.testing.assert_allclose(np.cov(np.asarray(psi).T), covariance, atol=0.1 * np.abs(covariance).max())
    # Prior precision is the floor: no direction wider than the prior (sd 1).
    assert np.linalg.eigvalsh(covariance).max() <= 1.0 + 1e-12
    # A temperature multiplies the covariance of the draws.
    tempered = jax.vmap(fitted_psi)(hyperparameter_draws(gp, jax.random.PRNGKey(1), 4000, temperature=0.25))
    np.testing.assert_allclose(np.cov(np.asarray(tempered).T), 0.25 * covariance, atol=0.025 * np.abs(covariance).max())
    with pytest.raises(ConfigError, match="hyperposterior_temperature"):
        make_method("bljes", hyperposterior_temperature=0.0)
    # More data → a narrower posterior of the lengthscales.
    rich = laplace_covariance(_state(n=40).lower)
    assert np.trace(rich) < np.trace(covariance)


def test_per_path_gps_that_equal_the_fit_give_the_usual_acquisition():
    """Averaging one-path gains under per-path GPs equals the shared-GP α when every path's GP is
    the fitted one: the plumbing of the hyperparameter option, checked against the default."""
    state = _state()
    method = make_method("bljes", **SMALL)
    key = jax.random.PRNGKey(3)
    models = _sample_models(state, key, method.paths, method.features)
    optima = _sample_optima(models, key, method.solver)
    copies = tuple(jax.tree.map(lambda leaf: jnp.stack([leaf] * method.paths), gp) for gp in (state.upper, state.lower))
    shared, xs, thetas = _acquire(state, models, optima, key, method)
    per_path, xs2, thetas2 = _acquire(state, models, optima, key, method, copies)
    np.testing.assert_array_equal(xs, xs2)
    for field in ("coupled", "upper", "lower"):
        np.testing.assert_allclose(getattr(per_path, field), getattr(shared, field), rtol=1e-8, atol=1e-10)


def test_hyperposterior_levels_draw_only_the_named_surrogates():
    from gpde.bljes._methods import _hyperparameter_draws

    state = _state()
    key = jax.random.PRNGKey(2)
    upper, lower = _hyperparameter_draws(state, key, 5, "g")
    # f keeps its fitted GP on every path; g's paths have their own lengthscales.
    for leaf, fitted in zip(jax.tree.leaves(upper), jax.tree.leaves(state.upper)):
        np.testing.assert_array_equal(np.asarray(leaf), np.broadcast_to(np.asarray(fitted), np.shape(leaf)))
    assert len(np.unique(np.asarray(lower.kernel.log_lengthscale)[:, 0])) == 5
    # The g draws are those of the default (both levels drawn, same key).
    both = _hyperparameter_draws(state, key, 5, "fg")
    np.testing.assert_array_equal(np.asarray(both[1].kernel.log_lengthscale), np.asarray(lower.kernel.log_lengthscale))
    assert len(np.unique(np.asarray(both[0].kernel.log_lengthscale)[:, 0])) == 5
    with pytest.raises(ConfigError, match="hyperposterior_levels"):
        make_method("bljes", hyperposterior_levels="h")


def test_hyperposterior_fraction_draws_on_a_share_of_the_paths():
    from gpde.bljes._methods import _hyperparameter_draws

    state = _state()
    key = jax.random.PRNGKey(2)
    full = _hyperparameter_draws(state, key, 5, "fg")
    mixed = _hyperparameter_draws(state, key, 5, "fg", drawn=2)
    for level, fitted, every in zip(mixed, (state.upper, state.lower), full):
        scales = np.asarray(level.kernel.log_lengthscale)
        # The first two paths are the draws of the full option, the other three the fit.
        np.testing.assert_array_equal(scales[:2], np.asarray(every.kernel.log_lengthscale)[:2])
        np.testing.assert_array_equal(scales[2:], np.broadcast_to(np.asarray(fitted.kernel.log_lengthscale),
                                                                  scales[2:].shape))
        np.testing.assert_array_equal(np.asarray(level.coef)[2:], np.broadcast_to(np.asarray(fitted.coef),
                                                                                  np.asarray(level.coef)[2:].shape))
        assert not np.array_equal(scales[0], scales[2])
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="hyperposterior_fraction"):
            make_method("bljes", hyperposterior_fraction=bad)


def test_hyperposterior_option_runs_and_changes_the_queries():
    smoke = get_benchmark("smoke-1+1")
    plain = run_optimization(smoke, make_method("bljes", **SMALL), evaluations=EVALUATIONS, seed=0)
    drawn = run_optimization(smoke, make_method("bljes", hyperposterior=True, **SMALL), evaluations=EVALUATIONS, seed=0)
    assert np.all(np.isfinite(drawn.regret))
    np.testing.assert_array_equal(plain.x[:3], drawn.x[:3])  # the same initial design
    assert not np.array_equal(plain.x[3:], drawn.x[3:])


# --------------------------------------------------------------------------------------------
# A study on a cluster of worker processes
# --------------------------------------------------------------------------------------------


def test_study_on_a_local_cluster_of_two_processes_is_bitwise_the_in_process_study(tmp_path, capsys):
    """benchmarks/study_cluster.py at a tiny size: the same study in this process and on
    `local_cluster(2)`, every run's arrays bitwise equal."""
    pytest.importorskip("distributed")
    # One benchmark, the one with noise draws and a constraint (a feasibility array): each worker
    # compiles every benchmark it runs, and a second one (smoke-1+1) took over a third of the test's time.
    out = tmp_path / "table.md"
    code = load_benchmark("study_cluster").main(["--benchmarks", "smd12[noise=0.05]", "--methods", "random,trusted-random",
                                                 "--seeds", "2", "--iters", "4", "--workers", "2", "--out", str(out)])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| this") or line.startswith("| Local")]
    assert code == 0, capsys.readouterr().out
    assert len(rows) == 2 and all(row.split("|")[3].strip() == "4" and row.rstrip(" |").endswith("yes") for row in rows)


# --------------------------------------------------------------------------------------------
# Tables at checkpoints and cost budgets
# --------------------------------------------------------------------------------------------


def test_regret_at_cost_reads_the_last_query_within_the_budget():
    from gpde.bljes._costs import regret_at_cost

    regret = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    cost = np.array([1.1, 2.2, 3.3, 3.4, 4.4])
    assert regret_at_cost(regret, cost, 3.35) == 3.0
    assert regret_at_cost(regret, cost, 3.4) == 2.0  # a query that exactly fills the budget counts
    assert regret_at_cost(regret, cost, 4.4) == 1.0
    assert np.isnan(regret_at_cost(regret, cost, 1.0))  # nothing fits
    assert np.isnan(regret_at_cost(regret, cost, 5.0))  # the run stopped before spending it
    with pytest.raises(ValueError, match="columns of one run"):
        regret_at_cost(regret, cost[:3], 2.0)


def test_checkpoint_table_separates_feasible_recommendations():
    from gpde.app._study_tables import checkpoint_table, markdown_checkpoints

    def run(seed, regret, feasible, costs=None):
        config = {"benchmark": "smd12", "method": "bljes", "setting": "coupled", "seed": seed}
        if costs:
            config["costs"] = costs
        arrays = {"regret": np.asarray(regret, dtype=float), "feasible": np.asarray(feasible),
                  "cost": np.cumsum(np.full(len(regret), 1.5)), "observed": np.ones((len(regret), 2), dtype=bool)}
        return study.StudyRun(config=config, arrays=arrays, seconds={}, attrs={})

    runs = [run(0, [334.0, 1.0], [False, True]), run(1, [334.0, 334.0], [False, False]), run(2, [2.0, 3.0], [True, True]),
            run(0, [7.0, 6.0], [True, True], costs=[1.0, 0.5])]
    table = checkpoint_table(runs, [1, 2])
    cell = table[("smd12", "bljes", "coupled")]
    assert cell[1]["infeasible"] == pytest.approx(2 / 3) and cell[1]["feasible_median"] == 2.0
    assert cell[2]["infeasible"] == pytest.approx(1 / 3) and cell[2]["feasible_median"] == 2.0
    assert cell[2]["median"] == 3.0 and cell[2]["seeds"] == 3
    assert table[("smd12", "bljes", "coupled[f=1,g=0.5]")][2]["median"] == 6.0
    by_cost = checkpoint_table(runs, [1.5, 2.9], by_cost=True)[("smd12", "bljes", "coupled")]
    assert by_cost[1.5]["median"] == 334.0 and by_cost[2.9]["median"] == 334.0
    text = markdown_checkpoints(table, [1, 2], feasibility=True)
    assert "| smd12 | bljes | coupled | 334 [168, 334] (3) | 0.667 | 2 |" in text
