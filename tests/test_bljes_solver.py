"""The bilevel sample-optimum solver: implicit-function hypergradient vs finite differences, and
the known optima of the smoke problem and of an SMD1-like problem."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpde.bljes._sample_optimum import (
    AbstractBilevelModel,
    SolverOptions,
    autodiff_jet,
    implicit_value_and_grad,
    newton_refine,
    solve_bilevel,
)
from gpde.bljes._state import RECOMMENDATION_SOLVER


class _Model(AbstractBilevelModel):
    """An analytic bilevel model on the unit box: f, g given as functions of (x, θ)."""

    upper: object = eqx.field(static=True)
    lower: object = eqx.field(static=True)
    x_dim: int = eqx.field(static=True)
    theta_dim: int = eqx.field(static=True)

    def f(self, x, theta):
        return self.upper(x, theta)

    def g(self, x, theta):
        return self.lower(x, theta)

    def c(self, x, theta):
        return jnp.zeros((0,))


def _coupled_lower(x, theta):
    """A lower level whose minimizer moves with x in both components (interior for x in [0, 1]²)."""
    target = jnp.array([0.4 + 0.2 * jnp.sin(3.0 * x[0]), 0.5 + 0.1 * x[0] * x[1]])
    d = theta - target
    return d[0] ** 2 + 2.0 * d[1] ** 2 + 0.8 * d[0] * d[1] + 0.3 * d[0] ** 4


def _upper(x, theta):
    return jnp.sin(2.0 * x[0]) * theta[1] + (x[1] - theta[0]) ** 2 + jnp.exp(theta[0] * x[0])


@jax.jit
def _lower_solution(x):
    theta = newton_refine(_coupled_lower, autodiff_jet(_coupled_lower), x, jnp.array([0.5, 0.5]), 30)
    return theta


def test_implicit_hypergradient_matches_finite_differences():
    x = jnp.array([0.37, 0.61])
    theta = _lower_solution(x)
    assert np.linalg.norm(jax.grad(_coupled_lower, argnums=1)(x, theta)) < 1e-12  # a true lower minimum
    value, grad = jax.jit(lambda x, t: implicit_value_and_grad(_upper, autodiff_jet(_coupled_lower), x, t))(x, theta)
    step = 1e-5
    finite = []
    for i in range(2):
        e = jnp.zeros(2).at[i].set(step)
        finite.append((_upper(x + e, _lower_solution(x + e)) - _upper(x - e, _lower_solution(x - e))) / (2 * step))
    np.testing.assert_allclose(value, _upper(x, theta), rtol=1e-14)
    np.testing.assert_allclose(grad, np.array(finite), rtol=1e-6, atol=1e-8)
    # The hypergradient is not the partial gradient: θ*(x) really moves with x here.
    assert np.linalg.norm(grad - jax.grad(_upper)(x, theta)) > 1e-2


def test_hypergradient_freezes_components_on_an_active_bound():
    def lower(x, theta):  # unconstrained minimizer θ₀ = x₀ − 1 < 0: clipped to the bound 0
        return (theta[0] - (x[0] - 1.0)) ** 2 + (theta[1] - x[1]) ** 2

    def upper(x, theta):
        return theta[0] + theta[1] ** 2 + x[0]

    x = jnp.array([0.3, 0.4])
    theta = newton_refine(lower, autodiff_jet(lower), x, jnp.array([0.5, 0.5]), 10)
    np.testing.assert_allclose(theta, [0.0, 0.4], atol=1e-12)
    _, grad = implicit_value_and_grad(upper, autodiff_jet(lower), x, theta)
    np.testing.assert_allclose(grad, [1.0, 2 * 0.4], rtol=1e-10)  # dθ₀/dx = 0 on the bound, dθ₁/dx₁ = 1


def _smoke(dim):
    """docs/references.md §5 smoke problem mapped to the unit box (x, θ ∈ [−1, 1]^dim)."""

    def to_box(u):
        return 2.0 * u - 1.0

    def upper(x, theta):
        return jnp.sum(to_box(x) ** 2) + jnp.sum(to_box(theta) ** 2)

    def lower(x, theta):
        xb, tb = to_box(x), to_box(theta)
        return jnp.sum((xb - tb) ** 2) + tb[0] ** 2

    return _Model(upper, lower, dim, dim)


def _smd1_like():
    """SMD1 (docs/references.md §5), 2 + 2, scaled by 1/100, x_l2 ∈ [−1.5, 1.5]; optimum x = 0."""
    lo_x, hi_x = jnp.array([-5.0, -5.0]), jnp.array([10.0, 10.0])
    lo_t, hi_t = jnp.array([-5.0, -1.5]), jnp.array([10.0, 1.5])

    def boxed(x, theta):
        return lo_x + (hi_x - lo_x) * x, lo_t + (hi_t - lo_t) * theta

    def upper(x, theta):
        (u1, u2), (l1, l2) = boxed(x, theta)
        return (u1**2 + l1**2 + u2**2 + (u2 - jnp.tan(l2)) ** 2) / 100.0

    def lower(x, theta):
        (u1, u2), (l1, l2) = boxed(x, theta)
        return (u1**2 + l1**2 + (u2 - jnp.tan(l2)) ** 2) / 100.0

    return _Model(upper, lower, 2, 2), (jnp.array([1 / 3, 1 / 3]), jnp.array([1 / 3, 0.5]))


# The fast options of the K sample optima are coarser than the recommendation's (one model).
SETTINGS = [(SolverOptions(), 2.5e-2), (RECOMMENDATION_SOLVER, 1e-3)]


@pytest.mark.parametrize(("options", "tolerance"), SETTINGS, ids=["sample-optima", "recommendation"])
def test_solver_finds_the_smoke_optimum(options, tolerance):
    model = _smoke(2)
    found = jax.jit(solve_bilevel, static_argnums=2)(model, jax.random.PRNGKey(0), options)
    np.testing.assert_allclose(found.x, np.full(2, 0.5), atol=tolerance)
    # θ*(x) = (x₁/2, x₂) in [−1, 1] coordinates, so θ is as accurate as x.
    np.testing.assert_allclose(found.theta, np.full(2, 0.5), atol=tolerance)


@pytest.mark.parametrize(("options", "tolerance"), SETTINGS, ids=["sample-optima", "recommendation"])
def test_solver_finds_the_smd1_optimum(options, tolerance):
    model, (x_star, theta_star) = _smd1_like()
    found = jax.jit(solve_bilevel, static_argnums=2)(model, jax.random.PRNGKey(1), options)
    np.testing.assert_allclose(found.x, x_star, atol=tolerance)
    np.testing.assert_allclose(found.theta, theta_star, atol=2 * tolerance)
