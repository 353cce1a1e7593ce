"""A recommendation that the constraint surrogates call feasible, whenever one is known.

The bilevel solver handles constraints by a quadratic penalty ρ Σ min(c̃, 0)². An exterior
penalty's minimizer violates every constraint that is active at the optimum (by about λ / 2ρ), and
in the standardized units of c̃ a violation that is small next to the spread of c over the whole
box costs almost nothing: on SMD12 the constraints range over ±10³ on the box while the feasible
set near x* is a wedge a few tenths wide, so the penalized optimum of the posterior means can be
infeasible by far. A recommendation must not be.

`feasible_first` therefore chooses among

* the penalized optimum x_p of the posterior means,
* the evaluated designs x_i (the x of every upper-level observation), and
* `segment_points` points on the segment from the best evaluated design that the surrogates call
  feasible to x_p (the last feasible point on the way to x_p is the one that gives up least),

each with its own lower-level solve θ̃*(x), the one with the lowest f̃ among those with
c̃(x, θ̃*(x)) ≥ 0 (posterior means). If none of them is feasible under the surrogates it returns
x_p. Without constraints it returns x_p unchanged.

The test is on the posterior means, without a confidence margin (mean − z·sd ≥ 0): a constraint
that the lower level makes active at θ*(x) for every x — SMD12's c₁ = x_u2 − tan x_l2 — is 0 at
the truth, so no point would ever be confidently feasible, and the recommendation would fall back
to x_p every time.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._sample_optimum import AbstractBilevelModel, BilevelOptimum, SolverOptions, lower_minimize


def feasible_first(
    model: AbstractBilevelModel,
    optimum: BilevelOptimum,
    designs: Float[Array, "n dx"],
    observed: Bool[Array, " n"],
    key: PRNGKeyArray,
    options: SolverOptions,
    segment_points: int = 33,
) -> BilevelOptimum:
    """The recommendation of the module docstring, from the penalized optimum `optimum` of `model`
    and the evaluated designs (`observed` marks the valid rows of the padded `designs`)."""
    theta_candidates = jax.random.uniform(key, (options.theta_candidates, model.theta_dim))

    def evaluate(xs):
        thetas, _ = lower_minimize(model, xs, theta_candidates, options.newton_steps)
        f = jax.vmap(model.f)(xs, thetas)
        feasible = jnp.all(jax.vmap(model.c)(xs, thetas) >= 0.0, axis=1) & jnp.isfinite(f)
        return thetas, f, feasible

    design_thetas, design_f, design_feasible = evaluate(designs)
    design_feasible = design_feasible & observed
    anchor = designs[jnp.argmin(jnp.where(design_feasible, design_f, jnp.inf))]
    steps = jnp.linspace(0.0, 1.0, segment_points)[:, None]
    segment = anchor[None] + steps * (optimum.x - anchor)[None]
    segment_thetas, segment_f, segment_feasible = evaluate(segment)
    # The segment only counts when its anchor is a feasible design.
    segment_feasible = segment_feasible & jnp.any(design_feasible)

    xs = jnp.concatenate([designs, segment])
    thetas = jnp.concatenate([design_thetas, segment_thetas])
    scores = jnp.where(jnp.concatenate([design_feasible, segment_feasible]),
                       jnp.concatenate([design_f, segment_f]), jnp.inf)
    best = jnp.argmin(scores)
    optimum_feasible = jnp.all(optimum.c >= 0.0)
    use_optimum = (optimum_feasible & (optimum.f <= scores[best])) | ~jnp.isfinite(scores[best])
    x = jnp.where(use_optimum, optimum.x, xs[best])
    theta = jnp.where(use_optimum, optimum.theta, thetas[best])
    return BilevelOptimum(x, theta, model.f(x, theta), model.g(x, theta), model.c(x, theta))
