"""The optimization methods: BLJES and its baselines, one `propose` step each.

Every method sees the same fitted surrogates (`SearchState`) and is followed by the same
recommendation rule (bilevel optimum of the posterior means, in `_loop.py`); they differ only in
where they query next. All work in the unit box.

* ``random``: (x, θ) uniform in the box; decoupled: the level is a fair coin.
* ``trusted-random``: uniform among grid candidates in the trusted set
  {(x, θ): LCB_g(x, θ) ≤ min_θ' UCB_g(x, θ')} (the pairs whose θ may still be lower-optimal);
  decoupled: the level whose standardized posterior variance at the point is larger.
* ``bilbo``: BILBO-style (Chew, Nguyen, Low 2025) on a fixed discrete grid, see `BILBO`.
* ``bljes``: bilevel joint entropy search, see `_acquisition.py` and `BLJES`.
"""

import abc
import time
from contextlib import contextmanager
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray
from scipy.stats import qmc

from .._errors import ConfigError
from ._acquisition import condition_on, information_gain, lower_bounds_at
from ._features import posterior_path, posterior_paths
from ._hyperposterior import hyperparameter_draws
from ._level_choice import check_min_share, query_upper_level
from ._sample_optimum import BilevelModel, SolverOptions, solve_bilevel_batch
from ._state import SearchState

#: Which levels a query evaluates.
BOTH, UPPER, LOWER = "both", "f", "g"


@dataclass(frozen=True)
class Query:
    """A point of the unit box and the levels to evaluate there."""

    x: np.ndarray
    theta: np.ndarray
    level: str = BOTH


class PhaseTimer:
    """Wall seconds per phase of one iteration (phases may be entered several times)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


class AbstractBilevelMethod(eqx.Module):
    """Chooses the next query from the fitted surrogates."""

    name: eqx.AbstractClassVar[str]

    @abc.abstractmethod
    def propose(
        self, state: SearchState, key: PRNGKeyArray, *, coupled: bool, costs: tuple[float, float], timer: PhaseTimer
    ) -> Query:
        """The next query. `costs` = (cost of an f query, cost of a g query) matters only to
        decoupled queries of a cost-aware method. Results must be concrete numpy arrays (the timer
        measures real work)."""


class RandomSearch(AbstractBilevelMethod):
    """Uniform random queries (the surrogates serve only the recommendation)."""

    name = "random"

    def propose(self, state, key, *, coupled, costs, timer):
        with timer("acquisition"):
            x_key, theta_key, level_key = jax.random.split(key, 3)
            x = np.asarray(jax.random.uniform(x_key, (state.x_dim,)))
            theta = np.asarray(jax.random.uniform(theta_key, (state.theta_dim,)))
            level = BOTH if coupled else (UPPER if bool(jax.random.bernoulli(level_key)) else LOWER)
        return Query(x, theta, level)


def _pairs(xs, thetas):
    """All (x, θ) pairs of a candidate grid, flattened: (n_x · n_θ, dx + dθ)."""
    n_x, n_t = xs.shape[0], thetas.shape[-2]
    thetas = jnp.broadcast_to(thetas, (n_x, n_t, thetas.shape[-1]))
    grid = jnp.concatenate([jnp.broadcast_to(xs[:, None, :], (n_x, n_t, xs.shape[1])), thetas], axis=2)
    return grid.reshape(n_x * n_t, -1)


def _mean_std(gp, points):
    mean, variance = jax.vmap(gp.mean_and_variance)(points)
    return mean, jnp.sqrt(variance)


@eqx.filter_jit
def _trusted(state: SearchState, xs, thetas, beta):
    """Mask (n_x, n_θ) of the trusted pairs LCB_g(x, θ) ≤ min_θ' UCB_g(x, θ') (min over the grid),
    and the standardized means and standard deviations of f, g (and c) on the grid."""
    points = _pairs(xs, thetas)
    shape = (xs.shape[0], thetas.shape[-2])
    g_mean, g_std = _mean_std(state.lower, points)
    lcb = (g_mean - beta * g_std).reshape(shape)
    ucb = (g_mean + beta * g_std).reshape(shape)
    trusted = lcb <= jnp.min(ucb, axis=1, keepdims=True)
    f_mean, f_std = _mean_std(state.upper, points)
    feasible = jnp.ones(shape, dtype=bool)
    if state.constraints is not None:
        c_mean, c_std = jax.vmap(_mean_std, in_axes=(0, None))(state.constraints, points)
        feasible = jnp.all(c_mean + beta * c_std >= 0.0, axis=0).reshape(shape)
    return trusted, (f_mean - beta * f_std).reshape(shape), feasible, f_std.reshape(shape), g_std.reshape(shape)


def _check_positive(owner: str, **values):
    for name, value in values.items():
        if not (np.isfinite(value) and value > 0):
            raise ConfigError(f"{owner}: {name} must be > 0, got {value!r}")


def _check_count(owner: str, **values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{owner}: {name} must be a positive integer, got {value!r}")


class TrustedRandom(AbstractBilevelMethod):
    """Uniform among the trusted pairs of a fresh random grid (n_x random x × n_θ random θ)."""

    name = "trusted-random"
    beta: float = 2.0
    grid_x: int = 64
    grid_theta: int = 64

    def __check_init__(self):
        _check_positive("trusted-random", beta=self.beta)
        _check_count("trusted-random", grid_x=self.grid_x, grid_theta=self.grid_theta)

    def propose(self, state, key, *, coupled, costs, timer):
        with timer("acquisition"):
            x_key, theta_key, pick_key = jax.random.split(key, 3)
            xs = jax.random.uniform(x_key, (self.grid_x, state.x_dim))
            thetas = jax.random.uniform(theta_key, (self.grid_theta, state.theta_dim))
            trusted, _, _, f_std, g_std = _trusted(state, xs, thetas, self.beta)
            trusted = np.asarray(trusted)
            rows, cols = np.nonzero(trusted)
            index = int(jax.random.randint(pick_key, (), 0, rows.size))
            i, j = rows[index], cols[index]
            level = BOTH if coupled else (UPPER if f_std[i, j] >= g_std[i, j] else LOWER)
        return Query(np.asarray(xs[i]), np.asarray(thetas[j]), level)


class BILBO(AbstractBilevelMethod):
    """BILBO-style baseline (after Chew, Nguyen, Low, ICML 2025) on a fixed discrete grid.

    What gpde assumes where the published description leaves room: the domain is a fixed grid of
    `grid_x` × `grid_theta` scrambled-Sobol points (seed 0, the same for every run); the trusted
    set is {(x, θ): LCB_g(x, θ) ≤ min_θ' UCB_g(x, θ')}, the optimistically feasible pairs have
    UCB_c ≥ 0; the query is the trusted, optimistically feasible pair with the smallest LCB_f
    (optimism in the upper level over the plausible lower-level optima), β = `beta` standard
    deviations. Decoupled: the level with the larger standardized posterior standard deviation
    at that pair. No theoretical β schedule and no discretization of the recommendation: the
    recommendation is the common rule of all methods (bilevel optimum of the posterior means).
    """

    name = "bilbo"
    beta: float = 2.0
    grid_x: int = 64
    grid_theta: int = 64

    def __check_init__(self):
        _check_positive("bilbo", beta=self.beta)
        _check_count("bilbo", grid_x=self.grid_x, grid_theta=self.grid_theta)

    def propose(self, state, key, *, coupled, costs, timer):
        with timer("acquisition"):
            xs = qmc.Sobol(state.x_dim, seed=0).random(self.grid_x)
            thetas = qmc.Sobol(state.theta_dim, seed=1).random(self.grid_theta)
            trusted, f_lcb, feasible, f_std, g_std = _trusted(state, jnp.asarray(xs), jnp.asarray(thetas), self.beta)
            allowed = np.asarray(trusted & feasible)
            if not allowed.any():
                allowed = np.asarray(trusted)
            score = np.where(allowed, np.asarray(f_lcb), np.inf)
            i, j = np.unravel_index(np.argmin(score), score.shape)
            level = BOTH if coupled else (UPPER if f_std[i, j] >= g_std[i, j] else LOWER)
        return Query(xs[i], thetas[j], level)


class BLJES(AbstractBilevelMethod):
    """Bilevel joint entropy search (docs/references.md §4; the acquisition in `_acquisition.py`).

    paths K posterior sample paths of every surrogate from `features` random Fourier features;
    their bilevel optima by `solver`; the acquisition maximized over candidates (x, θ) with x among
    the K sample optima and `x_candidates` uniform points, and for each x, θ among the K path-wise
    lower minimizers θ̃*_k(x) and `theta_candidates` uniform points. `tau` is the lower-optimality
    tolerance in standardized units of g (τ = max(tau, 2 σ_n,g)). Decoupled, the acquisition of
    each level is divided by that level's cost (the run's `costs`), and a level that holds fewer
    than `min_share` of all observations is queried regardless (`_level_choice.py`; 0 turns the
    floor off). `value_bound=True` restores
    the former truncation that also bounds g from below by the path's lower-level optimal value
    a_k(x) at every candidate x (an ablation; it rewards learning min_θ g everywhere, see
    `_acquisition.py`). `hyperposterior=True` draws the hyperparameters of the f and g surrogates
    per path from a Laplace approximation of their posterior (`_hyperposterior.py`) instead of
    using the fitted ones for every path; `hyperposterior_levels` says which surrogates get draws
    ("fg", "f" or "g"; the others keep their fitted hyperparameters on every path), and
    `hyperposterior_temperature` multiplies the Laplace covariance of the draws, and
    `hyperposterior_fraction` is the share of the paths that get draws (the rest keep the fitted
    hyperparameters: a mixture of the fit and its Laplace posterior).
    """

    name = "bljes"
    paths: int = 30
    features: int = 1000
    tau: float = 0.01
    value_bound: bool = False
    hyperposterior: bool = False
    hyperposterior_levels: str = "fg"
    hyperposterior_temperature: float = 1.0
    hyperposterior_fraction: float = 1.0
    min_share: float = 0.2
    x_candidates: int = 16
    theta_candidates: int = 16
    solver: SolverOptions = SolverOptions()

    def __check_init__(self):
        _check_count("bljes", paths=self.paths, x_candidates=self.x_candidates, theta_candidates=self.theta_candidates)
        _check_count("bljes", features=self.features)
        if self.features < 2 or self.features % 2:
            raise ConfigError(f"bljes: features must be an even number >= 2 (cosine and sine pairs), got {self.features}")
        _check_positive("bljes", tau=self.tau, hyperposterior_temperature=self.hyperposterior_temperature)
        check_min_share("bljes", self.min_share)
        if self.hyperposterior_levels not in ("fg", "f", "g"):
            raise ConfigError(f"bljes: hyperposterior_levels must be fg, f or g, got {self.hyperposterior_levels!r}")
        if not 0.0 < self.hyperposterior_fraction <= 1.0:
            raise ConfigError("bljes: hyperposterior_fraction (the share of paths with drawn hyperparameters) must be "
                              f"in (0, 1], got {self.hyperposterior_fraction!r}")

    def propose(self, state, key, *, coupled, costs, timer):
        path_key, optima_key, candidate_key = jax.random.split(key, 3)
        with timer("paths"):
            if self.hyperposterior:
                drawn = max(1, round(self.hyperposterior_fraction * self.paths))
                gps = _hyperparameter_draws(state, jax.random.fold_in(path_key, 1), self.paths,
                                            self.hyperposterior_levels, self.hyperposterior_temperature, drawn)
                models = _sample_models_per_path(state, gps, path_key, self.features)
            else:
                gps, models = None, _sample_models(state, path_key, self.paths, self.features)
            models = jax.block_until_ready(models)
        with timer("optima"):
            optima = jax.block_until_ready(_sample_optima(models, optima_key, self.solver))
        with timer("acquisition"):
            values, xs, thetas = _acquire(state, models, optima, candidate_key, self, gps)
            values = jax.tree.map(np.asarray, values)
            if coupled:
                level, score = BOTH, values.coupled
            else:
                observations = (int(np.sum(state.upper.mask)), int(np.sum(state.lower.mask)))
                if query_upper_level(values.upper.max(), values.lower.max(), costs, observations, self.min_share):
                    level, score = UPPER, values.upper
                else:
                    level, score = LOWER, values.lower
            i, j = np.unravel_index(np.argmax(score), score.shape)
        return Query(np.asarray(xs[i]), np.asarray(thetas[i, j]), level)


@eqx.filter_jit
def _sample_models(state, key, paths, features):
    return state.sample_models(key, paths, features)


@eqx.filter_jit
def _hyperparameter_draws(state, key, paths, levels: str = "fg", temperature: float = 1.0, drawn: int | None = None):
    """(f GPs, g GPs), `paths` of each: drawn hyperparameters (Laplace covariance × `temperature`)
    on the first `drawn` paths (all by default) for the levels in `levels`, the fitted GP repeated
    for the other paths and levels. The draws do not depend on `drawn`: path k's hyperparameters
    are the same whatever the share."""
    upper_key, lower_key = jax.random.split(key)
    drawn = paths if drawn is None else drawn

    def repeated(gp):
        return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (paths, *jnp.shape(leaf))), gp)

    def per_path(gp, key, levels_drawn):
        if not levels_drawn:
            return repeated(gp)
        draws = hyperparameter_draws(gp, key, paths, temperature)
        if drawn == paths:
            return draws
        keep = jnp.arange(paths) < drawn
        return jax.tree.map(lambda d, f: jnp.where(keep.reshape(-1, *([1] * (d.ndim - 1))), d, f), draws, repeated(gp))

    return per_path(state.upper, upper_key, "f" in levels), per_path(state.lower, lower_key, "g" in levels)


@eqx.filter_jit
def _sample_models_per_path(state, gps, key, features):
    """Path k of f (g) drawn from the k-th GP of gps = (f GPs, g GPs); constraints as usual."""
    upper_gps, lower_gps = gps
    f_key, g_key, c_key = jax.random.split(key, 3)
    count = upper_gps.mask.shape[0]

    def paths(gps, key):
        return jax.vmap(posterior_path, in_axes=(0, 0, None))(gps, jax.random.split(key, count), features)

    constraints = None
    if state.constraints is not None:
        keys = jax.random.split(c_key, state.constraints.mask.shape[0])
        constraints = jax.vmap(lambda gp, k: posterior_paths(gp, k, count, features), out_axes=1)(state.constraints, keys)
    return BilevelModel(paths(upper_gps, f_key), paths(lower_gps, g_key), constraints, state.x_dim, state.theta_dim)


@eqx.filter_jit
def _sample_optima(models, key, solver):
    return solve_bilevel_batch(models, jax.random.split(key, models.lower.coef.shape[0]), solver)


@eqx.filter_jit
def _acquire(state: SearchState, models, optima, key, method: BLJES, gps=None):
    """The acquisition on the candidate grid: (Acquisition of shape (n_x, n_θ), xs, θs per x).
    With per-path GPs `gps` = (f GPs, g GPs), path k's gain is computed under its own GPs and the
    gains are averaged (`_hyperposterior.py`)."""
    x_key, theta_key, lower_key = jax.random.split(key, 3)
    xs = jnp.concatenate([optima.x, jax.random.uniform(x_key, (method.x_candidates, state.x_dim))])
    dense = jax.random.uniform(lower_key, (method.solver.theta_candidates, state.theta_dim))
    path_thetas, lower_bounds = lower_bounds_at(models, xs, dense, method.solver.newton_steps)  # (k, n_x, ·)
    uniform = jax.random.uniform(theta_key, (method.theta_candidates, state.theta_dim))
    thetas = jnp.concatenate(
        [jnp.swapaxes(path_thetas, 0, 1), jnp.broadcast_to(uniform, (xs.shape[0], *uniform.shape))], axis=1
    )  # (n_x, n_θ, dθ)
    tau = jnp.maximum(method.tau, 2.0 * jnp.sqrt(state.lower.noise))
    if gps is None:
        anchors = condition_on(state.upper, state.lower, state.constraints, optima)

        def gain(z, bounds):
            return information_gain(
                state.upper, state.lower, state.constraints, anchors, optima.f, z, bounds, tau, method.value_bound
            )
    else:
        single = jax.tree.map(lambda leaf: leaf[:, None], optima)  # path k's optimum as a batch of one
        anchors = jax.vmap(lambda f, g, o: condition_on(f, g, state.constraints, o))(*gps, single)

        def gain(z, bounds):
            def one_path(f, g, a, o, bound):
                return information_gain(f, g, state.constraints, a, o.f, z, bound[None], tau, method.value_bound)

            per_path = jax.vmap(one_path)(*gps, anchors, single, bounds)
            return jax.tree.map(lambda v: jnp.mean(v, axis=0), per_path)

    def at(x, x_thetas, bounds):
        def one(theta):
            return gain(jnp.concatenate([x, theta]), bounds)

        return jax.vmap(one)(x_thetas)

    values = jax.vmap(at)(xs, thetas, lower_bounds.T)
    return values, xs, thetas


METHODS: dict[str, type[AbstractBilevelMethod]] = {
    "bljes": BLJES,
    "random": RandomSearch,
    "trusted-random": TrustedRandom,
    "bilbo": BILBO,
}


def make_method(name: str, **options) -> AbstractBilevelMethod:
    """The method `name` with keyword `options` (its constructor's arguments)."""
    if name not in METHODS:
        raise ConfigError(f"unknown BLJES method {name!r}; choose one of {sorted(METHODS)}")
    try:
        return METHODS[name](**options)
    except TypeError as error:
        raise ConfigError(f"bad options {sorted(options)} for method {name!r}: {error}") from None
