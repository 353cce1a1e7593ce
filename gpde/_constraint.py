"""Pointwise equations that the collocation solution must satisfy."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._errors import ConfigError
from ._operators import AbstractOperator

#: r(x, z) with z[j] = (L_j u)(x): the equation at x is r(x, z) = 0.
Residual = Callable[[Float[Array, " d"], Float[Array, " m"]], Float[Array, ""]]


class Constraint(eqx.Module):
    """The equation r(x, (L_1 u)(x), …, (L_m u)(x)) = 0 at each of `points`.

    The interior PDE and each boundary condition are one Constraint each. A Gauss-Newton step
    linearizes r in z, which turns the constraint into ONE linear functional Σ_j w_j(x) L_j per
    point (REFERENCES.md §1: the reduced formulation).
    """

    name: str = eqx.field(static=True)
    points: Float[Array, "n d"]
    operators: tuple[AbstractOperator, ...] = eqx.field(static=True)
    residual: Residual = eqx.field(static=True)

    def __init__(
        self,
        name: str,
        points: Float[Array, "n d"],
        operators: Sequence[AbstractOperator],
        residual: Residual,
    ):
        points = jnp.asarray(points)
        if points.ndim != 2 or points.shape[0] < 1:
            raise ConfigError(
                f"constraint '{name}': points must be an (n, d) array with n >= 1, got shape "
                f"{points.shape}"
            )
        if not np.all(np.isfinite(np.asarray(points))):
            raise ConfigError(f"constraint '{name}': points contain NaN or inf")
        operators = tuple(operators)
        if not operators:
            raise ConfigError(f"constraint '{name}' needs at least one operator")
        for operator in operators:
            operator.check_dimension(points.shape[1])
        self.name = name
        self.points = points
        self.operators = operators
        self.residual = residual

    @property
    def size(self) -> int:
        return self.points.shape[0]
