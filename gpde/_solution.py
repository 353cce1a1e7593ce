"""The collocation solution: the posterior mean u = Σ_g Σ_b c_{g,b} φ_{g,b}ʸ k(·, y)."""


import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from kernels import AbstractKernel

from ._constraint import Constraint
from ._gram import feature_jets, operator_gram
from ._operators import AbstractOperator, Evaluation

# Evaluation points are processed in batches so that the (batch × collocation points × operators)
# intermediate stays a few tens of MB however large the evaluation grid is.
_EVALUATION_BATCH = 512


class CollocationSolution(eqx.Module):
    """A function given by its kernel expansion over the functionals of a set of constraints.

    `weights[g][j, b]` is the weight of operator L_{g,j} in the functional φ_{g,b} at point
    x_{g,b}, and `coefficients[g][b]` that functional's representer coefficient.
    """

    kernel: AbstractKernel
    constraints: tuple[Constraint, ...]
    weights: tuple[Float[Array, "mg ng"], ...]
    coefficients: tuple[Float[Array, " ng"], ...]

    def apply(self, operator: AbstractOperator, points: Float[Array, "n d"]) -> Float[Array, " n"]:
        """(L u)(x) at each point, for any operator L."""
        return _apply(self, operator, jnp.asarray(points))

    def __call__(self, points: Float[Array, "n d"]) -> Float[Array, " n"]:
        """u at each point."""
        return self.apply(Evaluation(), points)


@eqx.filter_jit
def _apply(solution: CollocationSolution, operator: AbstractOperator, points):
    kernel = solution.kernel
    jets = [feature_jets(kernel, c.points) for c in solution.constraints]
    weighted = [w * c[None, :] for w, c in zip(solution.weights, solution.coefficients)]

    def at_point(x):
        x = x[None, :]
        total = 0.0
        for constraint, jet, coefficient in zip(solution.constraints, jets, weighted):
            block = operator_gram(kernel, (operator,), x, constraint.operators, constraint.points, None, jet)
            total = total + jnp.einsum("lb,lb->", block[0, :, 0, :], coefficient)
        return total

    return jax.lax.map(at_point, points, batch_size=_EVALUATION_BATCH)
