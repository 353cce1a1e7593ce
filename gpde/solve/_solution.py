"""The collocation solution: the posterior mean of each field f,
u_f = Σ_g Σ_b c_{g,b} Σ_{j on f} w_{g,j}(x_{g,b}) L_{g,j}ʸ k_f(·, y)."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..kernels import AbstractKernel

from ._constraint import Constraint, OnField, kernel_tuple
from .._errors import ConfigError
from ._gram import feature_jets, operator_gram
from ._operators import AbstractOperator, Evaluation

# Evaluation points are processed in batches, and the collocation points summed over in tiles, so
# that the (batch × tile × operators) intermediates stay a few tens of MB however large the
# evaluation grid and the collocation set are.
_EVALUATION_BATCH = 512
_COLLOCATION_TILE = 2048


class CollocationSolution(eqx.Module):
    """Functions (one per field) given by their kernel expansion over the functionals of a set of
    constraints.

    `kernel` is the kernel of a single-field problem or the tuple of per-field kernels (stored as
    the tuple `kernels`); `weights[g][j, b]` is the weight of operator L_{g,j} in the functional
    φ_{g,b} at point x_{g,b}, and `coefficients[g][b]` that functional's representer coefficient.
    """

    kernels: tuple[AbstractKernel, ...]
    constraints: tuple[Constraint, ...]
    weights: tuple[Float[Array, "mg ng"], ...]
    coefficients: tuple[Float[Array, " ng"], ...]

    def __init__(
        self,
        kernel: AbstractKernel | Sequence[AbstractKernel],
        constraints: Sequence[Constraint],
        weights: Sequence[Float[Array, "mg ng"]],
        coefficients: Sequence[Float[Array, " ng"]],
    ):
        self.kernels = kernel_tuple(kernel)
        self.constraints = tuple(constraints)
        self.weights = tuple(weights)
        self.coefficients = tuple(coefficients)

    @property
    def kernel(self) -> AbstractKernel | tuple[AbstractKernel, ...]:
        """The kernel of a single-field solution, the tuple of per-field kernels otherwise."""
        return self.kernels[0] if len(self.kernels) == 1 else self.kernels

    def apply(
        self, operator: AbstractOperator | OnField, points: Float[Array, "n d"], field: int = 0
    ) -> Float[Array, " n"]:
        """(L u_f)(x) at each point, for any operator L and field f (an OnField operator names its
        own field)."""
        if isinstance(operator, OnField):
            operator, field = operator.operator, operator.field
        if not (isinstance(field, int) and 0 <= field < len(self.kernels)):
            raise ConfigError(f"field must be an integer in [0, {len(self.kernels)}), got {field!r}")
        return _apply(self.functionals_only(), operator, jnp.asarray(points), field)

    def functionals_only(self) -> "CollocationSolution":
        """The same functions, their constraints reduced to the functionals
        (`Constraint.functionals`): evaluating u needs no equation, so compiled evaluations keyed
        on this share one program across continuation stages, re-solves and problems built anew
        (an equation is a Python function, and a new closure would otherwise compile anew)."""
        return CollocationSolution(self.kernels, tuple(c.functionals() for c in self.constraints), self.weights,
                                   self.coefficients)

    def __call__(self, points: Float[Array, "n d"], field: int = 0) -> Float[Array, " n"]:
        """u_f at each point (field 0 by default)."""
        return self.apply(Evaluation(), points, field)


@eqx.filter_jit
def _apply(solution: CollocationSolution, operator: AbstractOperator, points, field: int):
    kernel = solution.kernels[field]
    terms = _field_terms(solution.constraints, solution.weights, solution.coefficients, field)
    tiles = [_tiles(constraint.points, coefficient, feature_jets(kernel, constraint.points))
             for constraint, _, coefficient in terms]

    def at_point(x):
        x = x[None, :]
        total = 0.0
        for (_, operators, _), (tile_points, tile_coefficients, tile_jets) in zip(terms, tiles):
            def add(total, tile):
                p, c, jet = tile
                block = operator_gram(kernel, (operator,), x, operators, p, None, jet)
                return total + jnp.einsum("lb,lb->", block[0, :, 0, :], c), None

            total, _ = jax.lax.scan(add, total, (tile_points, tile_coefficients, tile_jets))
        return total

    return jax.lax.map(at_point, points, batch_size=_EVALUATION_BATCH)


def _tiles(points, coefficients, jets):
    """The collocation points, their coefficients (m, n) and jets cut into tiles of at most
    _COLLOCATION_TILE points (leading axis: the tile); the last tile is padded with copies of the
    last point and zero coefficients. Summing over tiles keeps the intermediates of a batch of
    evaluation points at (batch × tile) however many collocation points there are; one (batch × N)
    block per operator would be 512 × N entries, 4 GB at N = 10⁶."""
    n = points.shape[0]
    count = -(-n // _COLLOCATION_TILE)
    size = -(-n // count)
    pad = count * size - n

    def cut(a, axis, fill):
        padding = [(0, 0)] * a.ndim
        padding[axis] = (0, pad)
        a = jnp.pad(a, padding, mode="edge") if fill is None else jnp.pad(a, padding, constant_values=fill)
        shape = a.shape[:axis] + (count, size) + a.shape[axis + 1 :]
        return jnp.moveaxis(a.reshape(shape), axis, 0)

    jets = jax.tree.map(lambda leaf: cut(leaf, 0, None), jets)
    return cut(points, 0, None), cut(coefficients, 1, 0.0), jets


def _field_terms(constraints: Sequence[Constraint], weights, coefficients, field: int):
    """(constraint, its operators on `field`, their weights × coefficients) for each constraint
    that acts on `field`."""
    terms = []
    for constraint, w, c in zip(constraints, weights, coefficients):
        rows = constraint.rows(field)
        if rows:
            operators = tuple(constraint.operators[j] for j in rows)
            terms.append((constraint, operators, jnp.stack([w[j] for j in rows]) * c[None, :]))
    return terms
