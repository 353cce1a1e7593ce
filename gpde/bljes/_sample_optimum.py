"""The bilevel optimum of one sampled (or mean) model, in the unit box, jit- and vmap-friendly.

For a model (f̃, g̃[, c̃]) — a posterior sample path of each surrogate, or the posterior means —
solve  min_x F̃(x) = f̃(x, θ̃*(x)),  θ̃*(x) = argmin_θ g̃(x, θ)  over [0, 1]^dx × [0, 1]^dθ:

* Lower level at fixed x: g̃ on `theta_candidates` uniform points, then projected damped Newton
  steps from the best one (Hessian eigenvalues replaced by their absolute values, a four-point
  backtracking line search, so every step decreases g̃).
* Upper level: F̃ on `x_candidates` uniform points (each with its own dense lower solve); the best
  `starts` of them descend by projected Adam (cosine-decayed step) with the hypergradient of the implicit function
  theorem: at an interior lower minimum ∇_θ g̃(x, θ*(x)) = 0, hence
      dθ*/dx = −[∇²_θθ g̃]⁻¹ ∇²_θx g̃,      dF̃/dx = ∇_x f̃ + (dθ*/dx)ᵀ ∇_θ f̃.
  Components of θ* on an active bound (at the bound, gradient pushing outward) do not move with
  x, so they are removed from the linear system. During the descent θ*(x) is tracked by a few
  warm-started Newton steps; the end points are re-solved with the dense candidates, and the best
  of the starts and end points (by F̃ with the re-solved θ*) is returned, so a warm start that
  followed a non-global lower minimum cannot fake a low F̃.
* Constraints c̃(x, θ) ≥ 0 enter the upper objective as a quadratic penalty ρ Σ min(c̃, 0)².

Everything is pure JAX with static sizes: `jax.vmap` over models solves K paths at once.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._features import SamplePath

# Step lengths tried by the lower-level line search (0 keeps the current point).
_LINE_SEARCH = (1.0, 0.5, 0.2, 0.0)
# The longest Newton step, as a fraction of the unit box: Newton on a sample path is only a local model.
_MAX_STEP = 0.25


class AbstractBilevelModel(eqx.Module):
    """f̃, g̃ and c̃ as functions of (x, θ) in the unit box: what the bilevel solver needs."""

    x_dim: eqx.AbstractVar[int]
    theta_dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def f(self, x, theta) -> Float[Array, ""]: ...

    @abc.abstractmethod
    def g(self, x, theta) -> Float[Array, ""]: ...

    @abc.abstractmethod
    def c(self, x, theta) -> Float[Array, " nc"]: ...

    def g_jet(self, x, theta):
        """g̃, its gradient and Hessian in z = (x, θ) (autodiff unless overridden)."""
        return autodiff_jet(self.g)(x, theta)

    def g_grid(self, xs: Float[Array, "a dx"], thetas: Float[Array, "b dt"]) -> Float[Array, "a b"]:
        """g̃ on all pairs (xs[i], thetas[j])."""
        return jax.vmap(lambda x: jax.vmap(lambda t: self.g(x, t))(thetas))(xs)


class BilevelModel(AbstractBilevelModel):
    """Sample paths (or posterior means) of the surrogates; `constraints` is one SamplePath
    batched along a leading axis (one entry per constraint), or None."""

    upper: SamplePath
    lower: SamplePath
    constraints: SamplePath | None
    x_dim: int = eqx.field(static=True)
    theta_dim: int = eqx.field(static=True)

    def f(self, x, theta):
        return self.upper(jnp.concatenate([x, theta]))

    def g(self, x, theta):
        return self.lower(jnp.concatenate([x, theta]))

    def g_jet(self, x, theta):
        return self.lower.jet(jnp.concatenate([x, theta]))

    def g_grid(self, xs, thetas):
        return self.lower.grid(xs, thetas)

    def c(self, x, theta):
        if self.constraints is None:
            return jnp.zeros((0,))
        return jax.vmap(lambda path: path(jnp.concatenate([x, theta])))(self.constraints)


class SolverOptions(eqx.Module):
    """Sizes of the bilevel solver (static: changing one recompiles)."""

    x_candidates: int = eqx.field(static=True, default=32)
    theta_candidates: int = eqx.field(static=True, default=32)
    starts: int = eqx.field(static=True, default=4)
    steps: int = eqx.field(static=True, default=20)
    learning_rate: float = eqx.field(static=True, default=0.04)
    newton_steps: int = eqx.field(static=True, default=3)
    tracking_steps: int = eqx.field(static=True, default=1)
    penalty: float = eqx.field(static=True, default=100.0)


class BilevelOptimum(eqx.Module):
    """x̃*, θ̃*(x̃*), and f̃, g̃, c̃ there (standardized units of each surrogate)."""

    x: Float[Array, "*k dx"]
    theta: Float[Array, "*k dtheta"]
    f: Float[Array, "*k"]
    g: Float[Array, "*k"]
    c: Float[Array, "*k nc"]


def autodiff_jet(g: Callable) -> Callable:
    """(x, θ) ↦ (g, ∇_z g, ∇²_z g) by autodiff, for a g without a closed-form jet."""

    def jet(x, theta):
        def joint(z):
            return g(z[: x.shape[0]], z[x.shape[0] :])

        z = jnp.concatenate([x, theta])
        return joint(z), jax.grad(joint)(z), jax.hessian(joint)(z)

    return jet


def _free(theta, grad):
    """1 for the components of θ not held by an active bound of [0, 1], else 0."""
    active = ((theta <= 0.0) & (grad > 0.0)) | ((theta >= 1.0) & (grad < 0.0))
    return jnp.where(active, 0.0, 1.0)


def newton_refine(g: Callable, g_jet: Callable, x, theta, steps: int):
    """`steps` projected, damped Newton steps on θ ↦ g(x, θ) in [0, 1]^dθ; never increases g."""
    n = x.shape[0]

    def step(theta, _):
        _, grad, hessian = g_jet(x, theta)
        grad, hessian = grad[n:], hessian[n:, n:]
        # Components held by an active bound (at the bound, gradient pushing outward) do not move;
        # Newton runs on the free ones (otherwise the step cap would shrink their steps too).
        free = _free(theta, grad)
        grad = free * grad
        hessian = free[:, None] * hessian * free[None, :] + jnp.diag(1.0 - free)
        eigenvalues, vectors = jnp.linalg.eigh(hessian)
        scale = jnp.max(jnp.abs(eigenvalues))
        curvature = jnp.maximum(jnp.abs(eigenvalues), 1e-6 * scale + 1e-12)
        direction = -vectors @ ((vectors.T @ grad) / curvature)
        length = jnp.linalg.norm(direction)
        direction = direction * jnp.minimum(1.0, _MAX_STEP / jnp.maximum(length, 1e-300))
        trials = jnp.clip(theta + jnp.asarray(_LINE_SEARCH)[:, None] * direction, 0.0, 1.0)
        values = jax.vmap(g, in_axes=(None, 0))(x, trials)
        values = jnp.where(jnp.isfinite(values), values, jnp.inf)
        return trials[jnp.argmin(values)], None

    theta, _ = jax.lax.scan(step, theta, None, length=steps)
    return theta


def lower_minimize(model: AbstractBilevelModel, xs, theta_candidates, newton_steps: int):
    """θ̃*(x) and g̃(x, θ̃*) for every x of `xs` (n, dx): the best candidate on the grid
    xs × theta_candidates, refined by Newton steps. Shapes (n, dθ) and (n,)."""
    starts = theta_candidates[jnp.argmin(model.g_grid(xs, theta_candidates), axis=1)]
    thetas = jax.vmap(lambda x, t: newton_refine(model.g, model.g_jet, x, t, newton_steps))(xs, starts)
    return thetas, jax.vmap(model.g)(xs, thetas)


def implicit_jacobian(g_jet: Callable, x, theta) -> Float[Array, "dtheta dx"]:
    """dθ*/dx = −[∇²_θθ g]⁻¹ ∇²_θx g at a lower minimum θ, with actively bound components fixed."""
    n = x.shape[0]
    _, grad, hessian = g_jet(x, theta)
    grad, h_tt, h_tx = grad[n:], hessian[n:, n:], hessian[n:, :n]
    free = _free(theta, grad)
    system = free[:, None] * h_tt * free[None, :] + jnp.diag(1.0 - free)
    system = system + 1e-12 * (1.0 + jnp.trace(jnp.abs(h_tt))) * jnp.eye(theta.shape[0])
    return -jnp.linalg.solve(system, free[:, None] * h_tx)


def implicit_value_and_grad(h: Callable, g_jet: Callable, x, theta):
    """H(x) = h(x, θ*(x)) and dH/dx by the implicit function theorem, at θ = θ*(x)."""
    value, (h_x, h_t) = jax.value_and_grad(h, argnums=(0, 1))(x, theta)
    return value, h_x + implicit_jacobian(g_jet, x, theta).T @ h_t


def _penalized(model: AbstractBilevelModel, penalty: float) -> Callable:
    def h(x, theta):
        return model.f(x, theta) + penalty * jnp.sum(jnp.minimum(model.c(x, theta), 0.0) ** 2)

    return h


def solve_bilevel(model: AbstractBilevelModel, key: PRNGKeyArray, options: SolverOptions) -> BilevelOptimum:
    """The bilevel optimum of one model (see the module docstring)."""
    x_dim, theta_dim = model.x_dim, model.theta_dim
    x_key, theta_key = jax.random.split(key)
    x_candidates = jax.random.uniform(x_key, (options.x_candidates, x_dim))
    theta_candidates = jax.random.uniform(theta_key, (options.theta_candidates, theta_dim))
    h = _penalized(model, options.penalty)

    def dense(xs):
        thetas, _ = lower_minimize(model, xs, theta_candidates, options.newton_steps)
        values = jax.vmap(h)(xs, thetas)
        return thetas, jnp.where(jnp.isfinite(values), values, jnp.inf)

    thetas, values = dense(x_candidates)
    order = jnp.argsort(values)[: options.starts]
    optimizer = optax.adam(optax.cosine_decay_schedule(options.learning_rate, options.steps, alpha=0.01))

    def descend(x, theta):
        def step(carry, _):
            x, theta, state = carry
            theta = newton_refine(model.g, model.g_jet, x, theta, options.tracking_steps)
            _, grad = implicit_value_and_grad(h, model.g_jet, x, theta)
            grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
            updates, state = optimizer.update(grad, state)
            return (jnp.clip(x + updates, 0.0, 1.0), theta, state), None

        (x, _, _), _ = jax.lax.scan(step, (x, theta, optimizer.init(x)), None, length=options.steps)
        return x

    ends = jax.vmap(descend)(x_candidates[order], thetas[order])
    end_thetas, end_values = dense(ends)
    xs = jnp.concatenate([x_candidates[order], ends])
    all_thetas = jnp.concatenate([thetas[order], end_thetas])
    best = jnp.argmin(jnp.concatenate([values[order], end_values]))
    x, theta = xs[best], all_thetas[best]
    return BilevelOptimum(x, theta, model.f(x, theta), model.g(x, theta), model.c(x, theta))


solve_bilevel_batch = jax.vmap(solve_bilevel, in_axes=(0, 0, None))
