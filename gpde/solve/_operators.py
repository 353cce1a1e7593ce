"""Linear differential functionals of order ≤ 2, applied to functions by forward-mode autodiff.

An operator maps a function f: R^d → R^m (m ≥ 1 outputs, so that several kernel derivatives are
taken in one pass) and a point x to (L f)(x) ∈ R^m. Applying an operator to each argument of a
kernel gives every Gram block: K(L₁, L₂)[a, b] = L₁ˣ L₂ʸ k(x_a, y_b).
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def _unit(x, i):
    return jnp.zeros_like(x).at[i].set(1.0)


def _directional(f, direction):
    return lambda x: jax.jvp(f, (x,), (direction(x),))[1]


class AbstractOperator(eqx.Module):
    """A linear functional family x ↦ (L f)(x)."""

    @abc.abstractmethod
    def apply(self, f, x):
        """(L f)(x) for f: R^d → R^m (or R)."""

    @abc.abstractmethod
    def coefficients(self, dim: int) -> tuple[float, np.ndarray, np.ndarray]:
        """(c₀, c₁, C₂) with L f = c₀ f + c₁·∇f + ⟨C₂, ∇²f⟩, C₂ symmetric: every operator here
        has constant coefficients of order ≤ 2, which closed-form Gram assembly relies on."""

    @abc.abstractmethod
    def check_dimension(self, dim: int) -> None:
        """Raise ValueError if the operator does not make sense in dimension `dim`."""


class Evaluation(AbstractOperator):
    """δ: f ↦ f(x)."""

    def apply(self, f, x):
        return f(x)

    def coefficients(self, dim):
        return 1.0, np.zeros(dim), np.zeros((dim, dim))

    def check_dimension(self, dim):
        pass

    def __repr__(self):
        return "δ"


class Partial(AbstractOperator):
    """∂_i: f ↦ ∂f/∂x_i (x)."""

    index: int = eqx.field(static=True)

    def apply(self, f, x):
        return _directional(f, lambda x: _unit(x, self.index))(x)

    def coefficients(self, dim):
        return 0.0, np.eye(dim)[self.index], np.zeros((dim, dim))

    def check_dimension(self, dim):
        if not 0 <= self.index < dim:
            raise ValueError(f"∂_{self.index} needs coordinate {self.index} < dimension {dim}")

    def __repr__(self):
        return f"∂{self.index}"


class SecondPartial(AbstractOperator):
    """∂_i∂_j: f ↦ ∂²f/∂x_i∂x_j (x)."""

    first: int = eqx.field(static=True)
    second: int = eqx.field(static=True)

    def apply(self, f, x):
        inner = _directional(f, lambda x: _unit(x, self.first))
        return _directional(inner, lambda x: _unit(x, self.second))(x)

    def coefficients(self, dim):
        c2 = np.zeros((dim, dim))
        c2[self.first, self.second] += 0.5
        c2[self.second, self.first] += 0.5
        return 0.0, np.zeros(dim), c2

    def check_dimension(self, dim):
        for i in (self.first, self.second):
            if not 0 <= i < dim:
                raise ValueError(f"∂_{i} needs coordinate {i} < dimension {dim}")

    def __repr__(self):
        return f"∂{self.first}∂{self.second}"


class Laplacian(AbstractOperator):
    """Δ over a set of coordinates (all of them by default; the space coordinates of a space-time
    problem otherwise)."""

    coordinates: tuple[int, ...] | None = eqx.field(static=True, default=None)

    def apply(self, f, x):
        coordinates = range(x.shape[-1]) if self.coordinates is None else self.coordinates
        return sum(SecondPartial(i, i).apply(f, x) for i in coordinates)

    def coefficients(self, dim):
        coordinates = range(dim) if self.coordinates is None else self.coordinates
        c2 = np.zeros((dim, dim))
        for i in coordinates:
            c2[i, i] = 1.0
        return 0.0, np.zeros(dim), c2

    def check_dimension(self, dim):
        for i in self.coordinates or ():
            if not 0 <= i < dim:
                raise ValueError(f"Laplacian coordinate {i} is not < dimension {dim}")

    def __repr__(self):
        return "Δ" if self.coordinates is None else f"Δ{list(self.coordinates)}"
