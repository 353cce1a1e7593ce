"""What an optimization method sees at each iteration: the fitted surrogates of f, g and c.

All surrogates live on the unit box of (x, θ) (x first) and are fitted to the padded data of the
run, so their shapes, and everything compiled on them, stay fixed for the whole run.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ._feasible_recommendation import feasible_first
from ._features import mean_path, posterior_paths
from ._sample_optimum import BilevelModel, BilevelOptimum, SolverOptions, solve_bilevel
from ._surrogate import GaussianProcess, Hyperparameters, fit_gp


class SearchState(eqx.Module):
    """The surrogates of one iteration; `constraints` is batched along a leading axis (or None)."""

    upper: GaussianProcess
    lower: GaussianProcess
    constraints: GaussianProcess | None
    x_dim: int = eqx.field(static=True)

    @property
    def theta_dim(self) -> int:
        return self.upper.inputs.shape[1] - self.x_dim

    def mean_model(self) -> BilevelModel:
        """The posterior means as a BilevelModel."""
        constraints = None if self.constraints is None else jax.vmap(lambda gp: mean_path(gp, 2))(self.constraints)
        return BilevelModel(mean_path(self.upper, 2), mean_path(self.lower, 2), constraints, self.x_dim, self.theta_dim)

    def sample_models(self, key: PRNGKeyArray, n_paths: int, n_features: int) -> BilevelModel:
        """`n_paths` joint posterior sample paths (independent across f, g, c), batched."""
        f_key, g_key, c_key = jax.random.split(key, 3)
        upper = posterior_paths(self.upper, f_key, n_paths, n_features)
        lower = posterior_paths(self.lower, g_key, n_paths, n_features)
        constraints = None
        if self.constraints is not None:
            keys = jax.random.split(c_key, self.constraints.mask.shape[0])
            constraints = jax.vmap(lambda gp, k: posterior_paths(gp, k, n_paths, n_features), out_axes=1)(self.constraints, keys)
        return BilevelModel(upper, lower, constraints, self.x_dim, self.theta_dim)


#: The recommendation solves one model, not K: it affords a finer search (x̂ to ~1e-3 of the box).
RECOMMENDATION_SOLVER = SolverOptions(x_candidates=64, theta_candidates=64, starts=8, steps=80, newton_steps=6, tracking_steps=2)


@eqx.filter_jit
def _recommend(state: SearchState, key, options):
    solve_key, feasible_key = jax.random.split(key)
    model = state.mean_model()
    optimum = solve_bilevel(model, solve_key, options)
    if state.constraints is None:
        return optimum
    designs = state.upper.inputs[:, : state.x_dim]
    return feasible_first(model, optimum, designs, state.upper.mask > 0, feasible_key, options)


def recommend(state: SearchState, key: PRNGKeyArray, options: SolverOptions | None = None) -> BilevelOptimum:
    """x̂ = the bilevel optimum of the posterior means (in the unit box); with constraints, one that
    the constraint surrogates call feasible whenever one is known (`feasible_first`)."""
    return _recommend(state, key, RECOMMENDATION_SOLVER if options is None else options)


class SurrogateFitter:
    """Fits the surrogates of a run, warm-starting each fit from the previous hyperparameters."""

    def __init__(self, x_dim: int, n_constraints: int, kernel: str = "matern52", noise_floor: float = 1e-6):
        self.x_dim = x_dim
        self.kernel = kernel
        self.noise_floor = noise_floor
        self.previous: list[Hyperparameters | None] = [None] * (2 + n_constraints)

    def fit(self, inputs, y_f, y_g, y_c, observed) -> SearchState:
        """inputs (T, dx + dθ) unit box, padded; y_* with NaN where not observed; observed (T, 2)."""
        observed = np.asarray(observed, dtype=bool)
        columns = [(y_f, observed[:, 0]), (y_g, observed[:, 1])]
        columns += [(y_c[:, j], observed[:, 0]) for j in range(np.shape(y_c)[1])]
        gps = []
        for index, (values, mask) in enumerate(columns):
            # Constraints (index ≥ 2) are not centred: c̃ ≥ 0 must mean c ≥ 0.
            gp, params = fit_gp(
                inputs, values, mask, kernel=self.kernel, noise_floor=self.noise_floor, warm_start=self.previous[index],
                centred=index < 2,
            )
            self.previous[index] = params
            gps.append(gp)
        constraints = None
        if len(gps) > 2:
            constraints = jax.tree.map(lambda *leaves: jnp.stack(leaves), *gps[2:])
        return SearchState(gps[0], gps[1], constraints, self.x_dim)
