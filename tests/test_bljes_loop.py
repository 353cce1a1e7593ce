"""One optimization run: bookkeeping, settings, reproducibility and clear errors for bad arguments."""

import numpy as np
import pytest

from gpde import RESULTS, ConfigError
from gpde.bljes import AbstractBilevelBenchmark, make_method, run_optimization


class Smoke(AbstractBilevelBenchmark):
    """docs/references.md §5: f = |x|² + |θ|², g = |x − θ|² + θ₁², x, θ ∈ [−1, 1]^d, θ*(x) = (x₁/2, x₂, …)."""

    name = "test-smoke"
    summary = "smoke problem of docs/references.md §5"
    x_bounds: np.ndarray
    theta_bounds: np.ndarray

    def __init__(self, dim=1):
        self.x_bounds = np.array([[-1.0] * dim, [1.0] * dim])
        self.theta_bounds = np.array([[-1.0] * dim, [1.0] * dim])

    def upper(self, x, theta):
        return float(np.sum(np.square(x)) + np.sum(np.square(theta)))

    def lower(self, x, theta):
        return float(np.sum(np.square(np.subtract(x, theta))) + theta[0] ** 2)

    def lower_optimum(self, x):
        theta = np.array(x, dtype=float)
        theta[0] /= 2.0
        return theta

    @property
    def optimum(self):
        return np.zeros(self.x_dim), 0.0


class ConstrainedSmoke(Smoke):
    """The smoke problem with the upper-level constraint c = x₁ + θ₁ − 0.2 ≥ 0."""

    name = "test-smoke-constrained"

    @property
    def n_constraints(self):
        return 1

    def constraints(self, x, theta):
        return np.array([x[0] + theta[0] - 0.2])


EVALUATIONS = 6  # one budget for all fast tests: everything compiles once


def test_random_run_records_every_query():
    benchmark = Smoke()
    calls = []
    run = run_optimization(benchmark, make_method("random"), evaluations=EVALUATIONS, seed=1, progress=calls.append)
    assert calls == list(range(1, EVALUATIONS + 1))
    assert run.x.shape == (EVALUATIONS, 1) and run.theta.shape == (EVALUATIONS, 1) and run.y_c.shape == (EVALUATIONS, 0)
    assert run.observed.all()
    for t in range(EVALUATIONS):
        assert run.y_f[t] == pytest.approx(benchmark.upper(run.x[t], run.theta[t]), abs=1e-12)
        assert run.y_g[t] == pytest.approx(benchmark.lower(run.x[t], run.theta[t]), abs=1e-12)
        assert run.regret[t] == pytest.approx(benchmark.regret(run.recommendation[t]), abs=1e-12)
    assert np.all(np.abs(run.x) <= 1) and np.all(np.abs(run.recommendation) <= 1)
    assert np.all(run.regret >= 0) and np.all(np.isfinite(run.regret))
    assert run.result == RESULTS.successful
    assert set(run.seconds) >= {"fit", "paths", "optima", "acquisition", "evaluation"}
    assert all(seconds.shape == (EVALUATIONS,) for seconds in run.seconds.values())


def test_runs_are_reproducible_and_seeds_differ():
    first = run_optimization(Smoke(), make_method("random"), evaluations=EVALUATIONS, seed=3)
    again = run_optimization(Smoke(), make_method("random"), evaluations=EVALUATIONS, seed=3)
    other = run_optimization(Smoke(), make_method("random"), evaluations=EVALUATIONS, seed=4)
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.regret, again.regret)
    assert not np.array_equal(first.x, other.x)


def test_decoupled_queries_evaluate_one_level_and_noise_is_added():
    benchmark = ConstrainedSmoke()
    run = run_optimization(
        benchmark, make_method("random"), coupled=False, evaluations=EVALUATIONS, initial=2, noise=0.1, seed=0
    )
    assert run.observed[:2].all()
    assert np.all(run.observed[2:].sum(axis=1) == 1)
    np.testing.assert_array_equal(np.isnan(run.y_f), ~run.observed[:, 0])
    np.testing.assert_array_equal(np.isnan(run.y_g), ~run.observed[:, 1])
    np.testing.assert_array_equal(np.isnan(run.y_c[:, 0]), ~run.observed[:, 0])
    observed = run.observed[:, 0]
    exact = np.array([benchmark.upper(x, t) for x, t in zip(run.x[observed], run.theta[observed])])
    errors = run.y_f[observed] - exact
    assert np.all(errors != 0) and np.all(np.abs(errors) < 0.6)  # N(0, 0.1²) noise


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"evaluations": 0}, "evaluations must be a positive integer"),
        ({"evaluations": 2.5}, "evaluations must be a positive integer"),
        ({"initial": 0}, "initial must be a positive integer"),
        ({"evaluations": 3, "initial": 4}, "must not exceed evaluations"),
        ({"noise": -0.1}, "noise must be"),
        ({"noise": float("nan")}, "noise must be"),
        ({"seed": -1}, "seed must be"),
        ({"costs": (1.0,)}, "costs must be"),
        ({"costs": (1.0, -2.0)}, "costs must be"),
    ],
)
def test_bad_run_arguments_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        run_optimization(Smoke(), make_method("random"), **options)


def test_bad_benchmarks_and_methods_are_config_errors():
    with pytest.raises(ConfigError, match="AbstractBilevelBenchmark"):
        run_optimization("smoke", make_method("random"))
    with pytest.raises(ConfigError, match="AbstractBilevelMethod"):
        run_optimization(Smoke(), "random")
    broken = Smoke()
    broken = type(broken).__new__(type(broken))
    object.__setattr__(broken, "x_bounds", np.array([[1.0], [-1.0]]))
    object.__setattr__(broken, "theta_bounds", np.array([[-1.0], [1.0]]))
    with pytest.raises(ConfigError, match="lower < upper"):
        run_optimization(broken, make_method("random"))


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("bayes", {}, "unknown BLJES method"),
        ("bljes", {"paths": 0}, "paths must be a positive integer"),
        ("bljes", {"features": 999}, "features must be an even number"),
        ("bljes", {"tau": 0.0}, "tau must be > 0"),
        ("bljes", {"temperature": 1.0}, "bad options"),
        ("bilbo", {"beta": -1.0}, "beta must be > 0"),
        ("trusted-random", {"grid_x": 0}, "grid_x must be a positive integer"),
    ],
)
def test_bad_methods_are_config_errors(name, options, message):
    with pytest.raises(ConfigError, match=message):
        make_method(name, **options)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["bljes", "trusted-random", "bilbo"])
@pytest.mark.parametrize("coupled", [True, False])
def test_every_method_runs_coupled_and_decoupled(method, coupled):
    run = run_optimization(Smoke(), make_method(method), coupled=coupled, evaluations=EVALUATIONS, seed=0)
    assert np.all(np.isfinite(run.regret)) and np.all(np.abs(run.x) <= 1)
    if not coupled:
        assert np.all(run.observed[3:].sum(axis=1) == 1)


@pytest.mark.slow
def test_bljes_runs_with_constraints():
    run = run_optimization(ConstrainedSmoke(), make_method("bljes", paths=5), evaluations=EVALUATIONS, seed=0)
    assert np.all(np.isfinite(run.regret)) and not np.isnan(run.y_c).any()


class NanRegret(Smoke):
    """The smoke problem with a broken reference optimum: every regret is NaN."""

    name = "test-smoke-nan-regret"

    @property
    def optimum(self):
        return np.zeros(self.x_dim), float("nan")


def test_a_non_finite_regret_is_the_runs_result():
    run = run_optimization(NanRegret(), make_method("random"), evaluations=EVALUATIONS, seed=1)
    assert np.isnan(run.regret).all() and np.isfinite(run.recommendation).all()  # the run completes ...
    assert run.result == RESULTS.nonfinite_recommendation  # ... and says what went wrong
