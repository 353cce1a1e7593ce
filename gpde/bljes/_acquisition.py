"""The BLJES acquisition: a lower bound of the information gain about the bilevel optimum.

Outputs y = (y_f, y_g, y_c1, …) at a candidate z = (x, θ), in the standardized units of each
surrogate. For each sample Ω_k = (x*_k, θ*_k, f*_k, g*_k, c*_k) (the bilevel optimum of posterior
sample path k, `_sample_optimum.py`):

1. Condition each GP on its noiseless pseudo-observation at z*_k = (x*_k, θ*_k) (rank one; a jitter
   of 1e-10 σ² keeps it well posed): mean m_k(z), variance s_k²(z), outputs independent.
2. a_k(x) = g̃*_k(x) = min_θ' g̃_k(x, θ') of path k; τ = max(tau, 2 σ_n,g) with σ_n,g the lower
   surrogate's noise standard deviation (standardized units), so that "lower-optimal" is not
   decided finer than the observations can resolve.
3. Ω_k allows the outputs at z only in the union of the disjoint boxes
       A  = {g ≥ a + τ}                                   (θ not lower-optimal at x: f, c free)
       B  = {g < a + τ, f ≥ f*_k}                          (lower-optimal but not better than f*)
       C_j = {g < a + τ, f < f*_k, c_1..c_{j−1} ≥ 0, c_j < 0}   (better, but infeasible)
   (C_j only with constraints): the one excluded event is "θ lower-optimal at x and better than
   f*_k (and feasible)". a_k(x) only decides what counts as lower-optimal; g is NOT bounded from
   below by a_k(x): Ω_k bounds g from below only at x = x*_k (where the pseudo-observation already
   pins it), and a bound g ≥ a_k(x) at every x conditions on path k's whole lower-level value
   function x ↦ min_θ g̃_k(x, θ) as well, so the acquisition would reward learning min_θ g at every
   x, wherever g is uncertain, rather than learning Ω (measured on SMD1: queries spread over the
   box, far from θ*(x); docs/bljes.md). That former variant stays available as `value_bound=True`
   (then B and C_j also require g ≥ a) for the ablation. Moment-match N(m_k, diag s_k²) truncated to
   this union (`_truncation.py`): covariance Σ_k.
4. Coupled (one query observes all outputs): with noise variances N = diag(σ_n²),
       α(z) = ½ log det(diag(s²(z)) + N) − (1/K) Σ_k ½ log det(Σ_k(z) + N),
   s²(z) the unconditioned predictive variances. Decoupled: the same with only the outputs of one
   level — (f, c) for an upper query, g for a lower query — each divided by that level's cost.

The entropy of a Gaussian upper-bounds that of the truncated distribution with the same moments,
so each term is a lower bound of the information gain of the true conditional (as in JES).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._sample_optimum import BilevelModel, BilevelOptimum, lower_minimize
from ._surrogate import GaussianProcess
from ._truncation import truncated_moments

_JITTER = 1e-10


class Anchors(eqx.Module):
    """What conditioning on gp(anchor_k) = value_k needs of the anchors, computed once."""

    points: Float[Array, "k d"]
    whitened: Float[Array, "k n"]
    residual: Float[Array, " k"]  # value_k − posterior mean at anchor_k
    variance: Float[Array, " k"]  # posterior variance at anchor_k (+ jitter)


def anchors_of(gp: GaussianProcess, points: Float[Array, "k d"], values: Float[Array, " k"]) -> Anchors:
    whitened = jax.vmap(gp.whitened)(points)
    variance = jnp.maximum(gp.amplitude - jnp.sum(whitened**2, axis=1), 0.0) + _JITTER * gp.amplitude
    return Anchors(points, whitened, values - jax.vmap(gp.mean)(points), variance)


def conditioned_moments(gp: GaussianProcess, z: Float[Array, " d"], anchors: Anchors):
    """Mean and variance at z of `gp`, unconditioned, and conditioned on gp(anchor_k) = value_k
    separately for each k: (mean, variance, means (k,), variances (k,))."""
    v_z = gp.whitened(z)
    mean_z, var_z = gp.mean_and_variance(z)
    prior_za = jax.vmap(gp.prior, in_axes=(None, 0))(z, anchors.points)
    cov_za = prior_za - anchors.whitened @ v_z
    means = mean_z + cov_za / anchors.variance * anchors.residual
    variances = jnp.maximum(var_z - cov_za**2 / anchors.variance, 1e-12 * gp.amplitude)
    return mean_z, var_z, means, variances


def allowed_boxes(lower_bound, tau, f_star, n_constraints: int, value_bound: bool = False):
    """The boxes A, B, C_1..C_J of the module docstring: (lower, upper) of shape (2 + J, 2 + J).
    With `value_bound` the lower-optimal boxes also require g ≥ a (the path's lower-level optimal
    value bounds g from below at every x); without it they reach down to g = −∞."""
    inf = jnp.inf
    n_out = 2 + n_constraints
    free = (jnp.full(n_out, -inf), jnp.full(n_out, inf))
    g_low = lower_bound if value_bound else -inf
    lowers, uppers = [], []
    # A: g ≥ a + τ.
    lowers.append(free[0].at[1].set(lower_bound + tau))
    uppers.append(free[1])
    # B: g < a + τ (and g ≥ a with the value bound), f ≥ f*.
    lowers.append(free[0].at[1].set(g_low).at[0].set(f_star))
    uppers.append(free[1].at[1].set(lower_bound + tau))
    for j in range(n_constraints):
        low = free[0].at[1].set(g_low).at[2 : 2 + j].set(0.0)
        up = free[1].at[1].set(lower_bound + tau).at[0].set(f_star).at[2 + j].set(0.0)
        lowers.append(low)
        uppers.append(up)
    return jnp.stack(lowers), jnp.stack(uppers)


def _entropy_term(covariance, noise, selection):
    """½ log det of the selected block of covariance + diag(noise) (constants cancel in α)."""
    block = covariance[jnp.ix_(selection, selection)] + jnp.diag(noise[selection])
    return 0.5 * jnp.linalg.slogdet(block)[1]


class Acquisition(eqx.Module):
    """Per candidate: the coupled value and the values of an upper-level and a lower-level query."""

    coupled: Float[Array, "*n"]
    upper: Float[Array, "*n"]
    lower: Float[Array, "*n"]


def information_gain(
    upper: GaussianProcess,
    lower: GaussianProcess,
    constraints: GaussianProcess | None,
    anchors: tuple[Anchors, ...],
    f_star: Float[Array, " k"],
    z: Float[Array, " d"],
    lower_bounds: Float[Array, " k"],
    tau: Float[Array, ""],
    value_bound: bool = False,
) -> Acquisition:
    """The acquisitions at one candidate z, given the anchors of every output (`condition_on`),
    f*_k and a_k(x) = lower_bounds."""
    n_constraints = 0 if constraints is None else constraints.mask.shape[0]
    moments = [conditioned_moments(upper, z, anchors[0]), conditioned_moments(lower, z, anchors[1])]
    if constraints is not None:
        c_moments = jax.vmap(conditioned_moments, in_axes=(0, None, 0))(constraints, z, anchors[2])
        moments += [tuple(part[j] for part in c_moments) for j in range(n_constraints)]
    variance = jnp.stack([m[1] for m in moments])  # (n_out,)
    means_k = jnp.stack([m[2] for m in moments], axis=1)  # (k, n_out)
    variances_k = jnp.stack([m[3] for m in moments], axis=1)
    noise = jnp.stack([upper.noise, lower.noise] + [constraints.noise[j] for j in range(n_constraints)])

    def per_path(mean, var, a, f_k):
        low, up = allowed_boxes(a, tau, f_k, n_constraints, value_bound)
        _, covariance, _ = truncated_moments(mean, jnp.sqrt(var), low, up)
        return covariance

    covariances = jax.vmap(per_path)(means_k, variances_k, lower_bounds, f_star)
    predictive = jnp.diag(variance)

    def gain(selection):
        selection = jnp.asarray(selection)
        before = _entropy_term(predictive, noise, selection)
        after = jax.vmap(lambda cov: _entropy_term(cov, noise, selection))(covariances)
        return before - jnp.mean(after)

    upper_outputs = [0] + list(range(2, 2 + n_constraints))
    return Acquisition(gain(list(range(2 + n_constraints))), gain(upper_outputs), gain([1]))


def condition_on(upper, lower, constraints, optima: BilevelOptimum) -> tuple[Anchors, ...]:
    """The anchors of the pseudo-observations Ω_k of f, g and (batched) c."""
    points = jnp.concatenate([optima.x, optima.theta], axis=1)
    anchors = (anchors_of(upper, points, optima.f), anchors_of(lower, points, optima.g))
    if constraints is not None:
        anchors += (jax.vmap(anchors_of, in_axes=(0, None, 1))(constraints, points, optima.c),)
    return anchors


def lower_bounds_at(models: BilevelModel, xs: Float[Array, "n dx"], theta_candidates, newton_steps: int):
    """θ̃*_k(x) and a_k(x) = min_θ g̃_k(x, θ) for every path k (batched models) and every x:
    shapes (k, n, dθ) and (k, n)."""
    return jax.vmap(lambda model: lower_minimize(model, xs, theta_candidates, newton_steps))(models)
