"""One bilevel Bayesian-optimization run: `run_optimization(benchmark, method, ...)`.

Budget. `evaluations` counts queries, the `initial` uniform random ones included. The initial
queries evaluate both levels (and the constraints) in both settings, so that every surrogate has
data. After them, a coupled query evaluates f, g (and c) at one point; a decoupled query evaluates
one level only (f with its constraints, or g), so with equal costs per level a decoupled run of T
queries spends about half the black-box evaluations of a coupled run of T queries.

Noise. `noise` is the standard deviation of independent Gaussian noise added to every observation
of f, g and c, in the benchmark's own output units (not relative: a benchmark whose outputs span
100 units needs a larger `noise` for the same signal-to-noise ratio than one spanning 1 unit). A
benchmark may carry noise of its own, per output (`benchmark.observation_noise()`, e.g.
`RelativeNoise`: a fraction of each output's range); the two are independent and add in variance.

Costs. `costs` = (cost of an f query, cost of a g query). A coupled or initial query costs their
sum, a decoupled one the cost of its level; `BilevelRun.cost` is the cumulative cost after each
query, so regret can be read against the cost spent. The costs are passed to the method (BLJES
divides the acquisition of each level by its cost).

Feasibility. `BilevelRun.feasible[t]` says whether the recommendation x̂_t satisfies every
constraint at the TRUE θ*(x̂_t) (`benchmark.feasible`; always true without constraints).

Each iteration t: the method proposes (surrogates of iteration t − 1) → the benchmark is evaluated
→ all surrogates are refitted (warm started) → the recommendation x̂_t = bilevel optimum of the
posterior means → regret_t = F(x̂_t) − F(x*) with the benchmark's TRUE lower-level optimum at x̂_t.
The data are padded to the budget, so nothing is compiled twice within a run (nor across runs of
the same sizes). Seeds: `seed` fixes the initial design, the observation noise and every key of
the method, so a run is reproducible.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import numpy as np

from .._errors import ConfigError, GpdeError
from .._results import RESULTS
from ._benchmark import AbstractBilevelBenchmark
from ._methods import BOTH, LOWER, UPPER, AbstractBilevelMethod, PhaseTimer, Query
from ._state import SurrogateFitter, recommend

#: Phases timed in every iteration (seconds per phase in `BilevelRun.seconds`).
PHASES = ("fit", "paths", "optima", "acquisition", "evaluation", "recommendation")


@dataclass
class BilevelRun:
    """One optimization run, plain numpy; T = number of queries."""

    x: np.ndarray  # (T, dx) queried upper variables, benchmark coordinates
    theta: np.ndarray  # (T, dθ)
    observed: np.ndarray  # (T, 2) bool: which of (f, g) the query evaluated (both when coupled)
    y_f: np.ndarray  # (T,) noisy observations, NaN where not observed
    y_g: np.ndarray  # (T,)
    y_c: np.ndarray  # (T, n_constraints)
    recommendation: np.ndarray  # (T, dx) recommended x̂ after each query
    regret: np.ndarray  # (T,) benchmark.regret(recommendation[t])
    feasible: np.ndarray  # (T,) bool: benchmark.feasible(recommendation[t])
    cost: np.ndarray  # (T,) cumulative cost of the queries 0..t (see `costs`)
    seconds: dict[str, np.ndarray]  # phase name -> (T,) wall seconds
    #: RESULTS.successful, or nonfinite_recommendation if a recommendation or its regret is NaN
    #: or inf (the run still completes its budget; those rows carry the NaN).
    result: RESULTS = field(default_factory=lambda: RESULTS.successful)


def _check(benchmark, method, evaluations, initial, noise, seed, costs=(1.0, 1.0)):
    if not isinstance(benchmark, AbstractBilevelBenchmark):
        raise ConfigError(f"benchmark must be an AbstractBilevelBenchmark, got {type(benchmark).__name__}")
    if not isinstance(method, AbstractBilevelMethod):
        raise ConfigError(f"method must be an AbstractBilevelMethod (see make_method), got {type(method).__name__}")
    for name, value in (("evaluations", evaluations), ("initial", initial)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if initial > evaluations:
        raise ConfigError(f"initial ({initial}) must not exceed evaluations ({evaluations}): the initial queries count toward the budget")
    if not np.isfinite(noise) or noise < 0:
        raise ConfigError(f"noise must be a finite standard deviation >= 0, got {noise!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if len(costs) != 2 or not all(np.isfinite(c) and c > 0 for c in costs):
        raise ConfigError(f"costs must be (cost of an f query, cost of a g query), both > 0, got {costs!r}")
    for name, bounds in (("x_bounds", benchmark.x_bounds), ("theta_bounds", benchmark.theta_bounds)):
        bounds = np.asarray(bounds, dtype=float)
        if bounds.ndim != 2 or bounds.shape[0] != 2 or bounds.shape[1] < 1 or not np.all(bounds[1] > bounds[0]):
            raise ConfigError(f"benchmark {benchmark.name!r}: {name} must have shape (2, d) with lower < upper bounds")


def _evaluate(benchmark, query: Query, rng, noise):
    """Noisy f, g, c at the query (NaN for the levels it does not evaluate), benchmark coordinates."""
    x, theta = benchmark.to_box(np.asarray(query.x, dtype=float), np.asarray(query.theta, dtype=float))
    y_f, y_g = np.nan, np.nan
    y_c = np.full(benchmark.n_constraints, np.nan)
    if query.level in (BOTH, UPPER):
        y_f = float(benchmark.upper(x, theta))
        y_c = np.asarray(benchmark.constraints(x, theta), dtype=float).reshape(benchmark.n_constraints)
    if query.level in (BOTH, LOWER):
        y_g = float(benchmark.lower(x, theta))
    values = np.array([y_f, y_g, *y_c])
    evaluated = np.array([query.level != LOWER, query.level != UPPER] + [query.level != LOWER] * len(y_c))
    if not np.all(np.isfinite(values[evaluated])):
        raise GpdeError(f"benchmark {benchmark.name!r} returned non-finite values {values[evaluated]} at x={x}, θ={theta}")
    values = values + noise * rng.standard_normal(values.shape) * evaluated
    return x, theta, values[0], values[1], values[2:]


def run_optimization(
    benchmark: AbstractBilevelBenchmark,
    method: AbstractBilevelMethod,
    *,
    coupled: bool = True,
    evaluations: int = 60,
    initial: int = 3,
    noise: float = 0.0,
    seed: int = 0,
    costs: tuple[float, float] = (1.0, 1.0),
    progress: Callable[[int], None] | None = None,
) -> BilevelRun:
    """Run `method` on `benchmark` for `evaluations` queries (see the module docstring)."""
    _check(benchmark, method, evaluations, initial, noise, seed, costs)
    costs = (float(costs[0]), float(costs[1]))
    noise = np.sqrt(float(noise) ** 2 + np.asarray(benchmark.observation_noise(), dtype=float) ** 2)
    dx, dtheta, nc = benchmark.x_dim, benchmark.theta_dim, benchmark.n_constraints
    total = int(evaluations)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    unit = np.full((total, dx + dtheta), 0.5)  # padded rows: any point in the box (masked out)
    run = BilevelRun(
        x=np.full((total, dx), np.nan),
        theta=np.full((total, dtheta), np.nan),
        observed=np.zeros((total, 2), dtype=bool),
        y_f=np.full(total, np.nan),
        y_g=np.full(total, np.nan),
        y_c=np.full((total, nc), np.nan),
        recommendation=np.full((total, dx), np.nan),
        regret=np.full(total, np.nan),
        feasible=np.zeros(total, dtype=bool),
        cost=np.full(total, np.nan),
        seconds={phase: np.zeros(total) for phase in PHASES},
    )
    fitter = SurrogateFitter(dx, nc)
    state = None
    for t in range(total):
        timer = PhaseTimer()
        key, propose_key, recommend_key = jax.random.split(key, 3)
        if t < initial:
            query = Query(rng.uniform(size=dx), rng.uniform(size=dtheta), BOTH)
        else:
            query = method.propose(state, propose_key, coupled=coupled, costs=costs, timer=timer)
        with timer("evaluation"):
            run.x[t], run.theta[t], run.y_f[t], run.y_g[t], run.y_c[t] = _evaluate(benchmark, query, rng, noise)
        unit[t] = np.concatenate([query.x, query.theta])
        run.observed[t] = (query.level != LOWER, query.level != UPPER)
        run.cost[t] = (0.0 if t == 0 else run.cost[t - 1]) + costs[0] * run.observed[t, 0] + costs[1] * run.observed[t, 1]
        with timer("fit"):
            state = fitter.fit(unit, run.y_f, run.y_g, run.y_c, run.observed)
        with timer("recommendation"):
            best = recommend(state, recommend_key)
            x_hat, _ = benchmark.to_box(np.asarray(best.x), np.asarray(best.theta))
            run.recommendation[t] = x_hat
            run.regret[t] = benchmark.regret(x_hat)
            run.feasible[t] = benchmark.feasible(x_hat)
        for phase, seconds in timer.seconds.items():
            run.seconds.setdefault(phase, np.zeros(total))[t] = seconds
        if progress is not None:
            progress(t + 1)
    if not (np.all(np.isfinite(run.recommendation)) and np.all(np.isfinite(run.regret))):
        run.result = RESULTS.nonfinite_recommendation
    return run
