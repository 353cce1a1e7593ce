"""Pointwise equations that the collocation solution must satisfy, over one or several unknown
fields.

Multi-field problems (e.g. Darcy's pressure u and log-permeability a) have one kernel per field,
and the fields are independent GPs a priori. An operator in a constraint names the field it acts on
by wrapping it: `OnField(Partial(0), 1)` is ∂₀ of field 1; a bare operator acts on field 0, so
single-field problems read exactly as before. The wrapper (rather than a parallel list of field
indices) keeps each operator next to its field, so the two lists can never get out of step, and
the residual still sees one flat vector z of operator values in the order the operators are given.
"""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..kernels import AbstractKernel

from .._errors import ConfigError
from ._operators import AbstractOperator

#: r(x, z) with z[j] = (L_j u)(x): the equation at x is r(x, z) = 0; a constraint with
#: `parameters` p calls r(x, z, p) instead.
Residual = Callable[..., Float[Array, ""]]


class OnField(eqx.Module):
    """The operator `operator` applied to unknown field number `field` (0, 1, …: the position of
    that field's kernel in the tuple of kernels given to the solver)."""

    operator: AbstractOperator = eqx.field(static=True)
    field: int = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.operator, AbstractOperator):
            raise ConfigError(f"OnField needs an operator (δ, ∂_i, Δ, …), got {self.operator!r}")
        if not (isinstance(self.field, int) and not isinstance(self.field, bool) and self.field >= 0):
            raise ConfigError(f"OnField: the field index must be an integer >= 0, got {self.field!r}")

    def __repr__(self):
        return f"{self.operator!r}[field {self.field}]"


class Constraint(eqx.Module):
    """The equation r(x, (L_1 u)(x), …, (L_m u)(x)) = 0 at each of `points`.

    The interior PDE and each boundary condition are one Constraint each. A Gauss-Newton step
    linearizes r in z, which turns the constraint into ONE linear functional Σ_j w_j(x) L_j per
    point (docs/references.md §1: the reduced formulation). Each L_j acts on field `fields[j]`.

    With `observations` y (one value per point) the equation is r(x_a, z_a) = y_a: data rows,
    e.g. r = z[0] with the operator δ on the observed field. A constraint with a `noise_variance`
    σ² is a noisy observation: it enters the solve as the penalty |r − y|²/σ² instead of a hard
    equation, i.e. σ² replaces the nugget on its rows of the Gram matrix, and the bilevel outer
    loss whitens its residual by σ.

    `parameters` (a pytree of arrays, e.g. the coefficients of a PDE) are passed to the residual as
    its third argument, r(x, z, parameters). They are traced data, not part of the compiled program:
    solving the same equation for many parameter values compiles once, while a residual that closes
    over the values is a new static function, hence a new program, every time. For the same reason
    a problem that builds its constraints more than once (every re-solve, continuation stage and
    learning run does) should pass module-level functions, not closures or lambdas made per call:
    the compiled programs are keyed on the function object. (Evaluating a solution and its
    posterior variance reads only the functionals and is shared whatever the residual is.)

    `shift` (one row per point, one column per operator) is added to the operator values before
    the residual: the equation is r(x_a, z_a + shift_a) = 0. When the shift holds the operator
    values of a known function s (on each operator's field), the constraint is the original one on
    s + w, written for w; the solver's minimum-norm w then makes s + w the solution closest to s
    rather than to 0 (a prior mean, or one draw of a randomized-MAP ensemble, `randomized_map`).
    Like the parameters, the shift is traced data.
    """

    name: str = eqx.field(static=True)
    points: Float[Array, "n d"]
    operators: tuple[AbstractOperator, ...] = eqx.field(static=True)
    fields: tuple[int, ...] = eqx.field(static=True)
    residual: Residual = eqx.field(static=True)
    noise_variance: float | None = eqx.field(static=True)
    observations: Float[Array, " n"] | None
    parameters: object
    shift: Float[Array, "n m"] | None

    def __init__(
        self,
        name: str,
        points: Float[Array, "n d"],
        operators: Sequence[AbstractOperator | OnField],
        residual: Residual,
        noise_variance: float | None = None,
        observations: Float[Array, " n"] | None = None,
        parameters=None,
        shift: Float[Array, "n m"] | None = None,
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
        bare, fields = [], []
        for operator in operators:
            if isinstance(operator, OnField):
                bare.append(operator.operator)
                fields.append(operator.field)
            elif isinstance(operator, AbstractOperator):
                bare.append(operator)
                fields.append(0)
            else:
                raise ConfigError(
                    f"constraint '{name}': {operator!r} is not an operator; use δ, ∂_i, Δ, … or OnField(operator, field)"
                )
        for operator in bare:
            operator.check_dimension(points.shape[1])
        if noise_variance is not None:
            noise_variance = float(noise_variance)
            if not (np.isfinite(noise_variance) and noise_variance > 0):
                raise ConfigError(
                    f"constraint '{name}': noise_variance must be finite and > 0 (the observation noise σ²), "
                    f"got {noise_variance}; leave it out for an exact equation"
                )
        if observations is not None:
            observations = jnp.asarray(observations, dtype=points.dtype)
            if observations.shape != (points.shape[0],):
                raise ConfigError(
                    f"constraint '{name}': observations must have one value per point, shape "
                    f"({points.shape[0]},), got {observations.shape}"
                )
            if not np.all(np.isfinite(np.asarray(observations))):
                raise ConfigError(f"constraint '{name}': observations contain NaN or inf")
        self.name = name
        self.points = points
        self.operators = tuple(bare)
        self.fields = tuple(fields)
        self.residual = residual
        self.noise_variance = noise_variance
        self.observations = observations
        self.parameters = None if parameters is None else jax.tree.map(jnp.asarray, parameters)
        if shift is not None:
            shift = jnp.asarray(shift, dtype=points.dtype)
            if shift.shape != (points.shape[0], len(operators)):
                raise ConfigError(
                    f"constraint '{name}': shift must have one row per point and one column per operator, shape "
                    f"({points.shape[0]}, {len(operators)}), got {shift.shape}"
                )
            if not np.all(np.isfinite(np.asarray(shift))):
                raise ConfigError(f"constraint '{name}': shift contains NaN or inf")
        self.shift = shift

    @property
    def size(self) -> int:
        return self.points.shape[0]

    def residuals(self, values: Float[Array, "m n"]) -> Float[Array, " n"]:
        """r(x_a, z_a) − y_a at every point, from the operator values z (one row per operator; plus the
        shift, if any)."""
        return self._minus_observations(jax.vmap(self._residual)(self.points, self._shifted_values(values)))

    def residuals_and_weights(self, values: Float[Array, "m n"]) -> tuple[Float[Array, " n"], Float[Array, "n m"]]:
        """The residuals and their gradients ∂r/∂z at every point (the linearization weights)."""
        r, w = jax.vmap(jax.value_and_grad(self._residual, argnums=1))(self.points, self._shifted_values(values))
        return self._minus_observations(r), w

    def subset(self, indices) -> "Constraint":
        """The same constraint at the points `indices` only (with their observations and shift)."""
        subset = eqx.tree_at(lambda c: c.points, self, self.points[indices])
        if self.observations is not None:
            subset = eqx.tree_at(lambda c: c.observations, subset, self.observations[indices])
        if self.shift is not None:
            subset = eqx.tree_at(lambda c: c.shift, subset, self.shift[indices])
        return subset

    def shifted(self, shift: Float[Array, "n m"], observations: Float[Array, " n"] | None = None) -> "Constraint":
        """This constraint with `shift` (see the class docstring) and, if given, new observations."""
        return Constraint(self.name, self.points, self._field_operators(), self.residual, self.noise_variance,
                          self.observations if observations is None else observations, self.parameters, shift)

    def functionals(self) -> "Constraint":
        """The functionals alone: the same operators at the same points with the same noise, the
        equation, observations, parameters and shift dropped. What depends only on the functionals
        (the Gram blocks) is computed from this, so that constraints that differ only in their
        equations (continuation stages, a problem built twice) share one compiled program."""
        return Constraint("functionals", self.points, self._field_operators(), _functionals_only, self.noise_variance)

    def _field_operators(self) -> tuple[AbstractOperator | OnField, ...]:
        return tuple(OnField(op, f) for op, f in zip(self.operators, self.fields))

    def _shifted_values(self, values: Float[Array, "m n"]) -> Float[Array, "n m"]:
        """The operator values one row per point, plus the shift (∂r/∂z is the same for z and z + shift)."""
        return values.T if self.shift is None else values.T + self.shift

    def _residual(self, x, z):
        return self.residual(x, z) if self.parameters is None else self.residual(x, z, self.parameters)

    def _minus_observations(self, r):
        return r if self.observations is None else r - self.observations

    def rows(self, field: int) -> tuple[int, ...]:
        """Positions (in `operators`) of the operators that act on `field`."""
        return tuple(j for j, f in enumerate(self.fields) if f == field)


def _functionals_only(x, z):
    """The residual of `Constraint.functionals`: the first operator's value (never linearized; the
    functionals' Gram blocks do not depend on the equation)."""
    return z[0]


def kernel_tuple(kernel: AbstractKernel | Sequence[AbstractKernel]) -> tuple[AbstractKernel, ...]:
    """One kernel per field as a tuple: `kernel` itself as a tuple if it is a tuple or list, else
    (kernel,). The public entry points (GaussNewton.solve, BilevelLearner.learn, the collocation
    solution) accept either form and call this once; everything below them takes the tuple."""
    return tuple(kernel) if isinstance(kernel, (tuple, list)) else (kernel,)


def field_kernels(
    kernel: AbstractKernel | Sequence[AbstractKernel], constraints: Sequence[Constraint]
) -> tuple[AbstractKernel, ...]:
    """The kernels as a tuple (one per field, `kernel_tuple`), checked against the fields the
    constraints use: ConfigError if a constraint names a field without a kernel, or a kernel has
    no constraint."""
    kernels = kernel_tuple(kernel)
    if not kernels:
        raise ConfigError("give one kernel per unknown field, got none")
    for k in kernels:
        if not isinstance(k, AbstractKernel):
            raise ConfigError(f"expected a kernel (or a tuple of kernels, one per field), got {k!r}")
    used = {f for c in constraints for f in c.fields}
    missing = sorted(f for f in used if f >= len(kernels))
    if missing:
        raise ConfigError(
            f"constraints act on field(s) {missing} but only {len(kernels)} kernel(s) were given; "
            "pass a tuple with one kernel per field"
        )
    unused = sorted(set(range(len(kernels))) - used)
    if unused:
        raise ConfigError(
            f"kernel(s) for field(s) {unused} were given but no constraint acts on them; "
            "wrap operators as OnField(operator, field) or drop those kernels"
        )
    return kernels


def same_functionals(constraints: Sequence[Constraint], others: Sequence[Constraint]) -> bool:
    """Whether two constraint tuples carry the same functionals (operators at points) and noise,
    so that they differ at most in their equations: what a continuation stage may change."""
    return len(constraints) == len(others) and all(
        tuple(a.operators) == tuple(b.operators)
        and a.noise_variance == b.noise_variance
        and a.points.shape == b.points.shape
        and np.array_equal(np.asarray(a.points), np.asarray(b.points))
        for a, b in zip(constraints, others)
    )
