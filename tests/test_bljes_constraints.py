"""Constraints in BLJES: the constraint surrogates keep c = 0 at standardized zero, and the
recommendation is feasible under the surrogates whenever a feasible design is known."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gpde.bljes._feasible_recommendation import feasible_first
from gpde.bljes._sample_optimum import AbstractBilevelModel, SolverOptions, solve_bilevel
from gpde.bljes._state import SurrogateFitter


def test_constraint_surrogates_keep_the_sign_of_the_constraint():
    # c = 100 (z₀ − 0.2) has observed mean ≈ 30: a centred surrogate would call every point with
    # 0.2 < z₀ < 0.5 infeasible (standardized value below zero although c > 0).
    rng = np.random.default_rng(0)
    inputs = rng.uniform(size=(40, 2))
    c = 100.0 * (inputs[:, 0] - 0.2)
    state = SurrogateFitter(x_dim=1, n_constraints=1).fit(
        inputs, np.sin(inputs[:, 0]), inputs[:, 1] ** 2, c[:, None], np.ones((40, 2), dtype=bool)
    )
    constraint = jax.tree.map(lambda leaf: leaf[0], state.constraints)
    assert float(constraint.y_mean) == 0.0
    assert float(state.upper.y_mean) != 0.0  # f and g stay centred
    predicted = np.asarray(jax.vmap(state.mean_model().c)(jnp.asarray(inputs[:, :1]), jnp.asarray(inputs[:, 1:])))[:, 0]
    clear = np.abs(inputs[:, 0] - 0.2) > 0.02
    assert clear.sum() > 30 and np.any(c[clear] > 0) and np.any(c[clear] < 0)
    np.testing.assert_array_equal(np.sign(predicted[clear]), np.sign(c[clear]))


class _ActiveConstraint(AbstractBilevelModel):
    """f = (x − 0.9)² + θ², g = (θ − x / 2)², c = 0.5 − x: the constrained optimum x = 0.5 is on
    the boundary, where the penalized one lies outside (by about |f'| / 2ρ)."""

    x_dim: int = eqx.field(static=True, default=1)
    theta_dim: int = eqx.field(static=True, default=1)

    def f(self, x, theta):
        return (x[0] - 0.9) ** 2 + 0.1 * theta[0] ** 2

    def g(self, x, theta):
        return (theta[0] - 0.5 * x[0]) ** 2

    def c(self, x, theta):
        return jnp.array([0.5 - x[0]])


def test_recommendation_moves_the_penalized_optimum_back_to_the_feasible_side():
    model, options = _ActiveConstraint(), SolverOptions(steps=60)
    key = jax.random.PRNGKey(0)
    optimum = solve_bilevel(model, key, options)
    assert float(optimum.c[0]) < 0.0  # the exterior penalty's optimum is infeasible
    designs = jnp.array([[0.1], [0.3], [0.45], [0.49]])
    observed = jnp.array([True, True, True, False])  # the last row is padding
    chosen = feasible_first(model, optimum, designs, observed, key, options)
    x = float(chosen.x[0])
    # On the segment from the design 0.45 to the optimum, the last feasible of 33 points.
    assert 0.5 - (float(optimum.x[0]) - 0.45) / 32 <= x <= 0.5
    assert float(chosen.c[0]) >= 0.0
    np.testing.assert_allclose(chosen.theta, 0.5 * chosen.x, atol=1e-6)  # its own lower solve


def test_recommendation_without_a_feasible_design_is_the_penalized_optimum():
    model, options = _ActiveConstraint(), SolverOptions(steps=60)
    key = jax.random.PRNGKey(0)
    optimum = solve_bilevel(model, key, options)
    designs = jnp.array([[0.7], [0.95], [0.2]])
    observed = jnp.array([True, True, False])  # the only feasible design is padding
    chosen = feasible_first(model, optimum, designs, observed, key, options)
    np.testing.assert_array_equal(chosen.x, optimum.x)
