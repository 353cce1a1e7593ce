"""Kernels built from other kernels: sums, products, scaling, and additive kernels on coordinate
subsets. Composition, not subclassing: each combinator holds its parts."""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._base import AbstractKernel
from ._positive import log_of_positive


def _check_parts(parts, name):
    parts = tuple(parts)
    if not parts:
        raise ValueError(f"{name} needs at least one kernel")
    for part in parts:
        if not isinstance(part, AbstractKernel):
            raise TypeError(f"{name} combines kernels, got {type(part).__name__}")
    return parts


class Sum(AbstractKernel):
    """k = k₁ + k₂ + …"""

    parts: tuple[AbstractKernel, ...]

    def __init__(self, *parts: AbstractKernel):
        self.parts = _check_parts(parts, "Sum")

    def features(self, x):
        return tuple(part.features(x) for part in self.parts)

    def pair(self, fx, fy):
        return sum(part.pair(a, b) for part, a, b in zip(self.parts, fx, fy))


class Product(AbstractKernel):
    """k = k₁ · k₂ · …"""

    parts: tuple[AbstractKernel, ...]

    def __init__(self, *parts: AbstractKernel):
        self.parts = _check_parts(parts, "Product")

    def features(self, x):
        return tuple(part.features(x) for part in self.parts)

    def pair(self, fx, fy):
        value = jnp.asarray(1.0)
        for part, a, b in zip(self.parts, fx, fy):
            value = value * part.pair(a, b)
        return value


class Scaled(AbstractKernel):
    """k = σ² · k₀ (σ² the variance, stored as its logarithm)."""

    kernel: AbstractKernel
    log_variance: Float[Array, ""]

    def __init__(self, kernel: AbstractKernel, variance: ArrayLike = 1.0):
        self.kernel = _check_parts((kernel,), "Scaled")[0]
        self.log_variance = log_of_positive(variance, "Scaled variance")

    @property
    def variance(self) -> Float[Array, ""]:
        return jnp.exp(self.log_variance)

    def features(self, x):
        return self.kernel.features(x)

    def pair(self, fx, fy):
        return jnp.exp(self.log_variance) * self.kernel.pair(fx, fy)


class Additive(AbstractKernel):
    """k(x, y) = Σ_j k_j(x[S_j], y[S_j]): each part sees only its coordinate subset S_j."""

    parts: tuple[AbstractKernel, ...]
    coordinates: tuple[tuple[int, ...], ...]

    def __init__(self, parts, coordinates):
        self.parts = _check_parts(parts, "Additive")
        coordinates = tuple(tuple(int(i) for i in subset) for subset in coordinates)
        if len(coordinates) != len(self.parts):
            raise ValueError(
                f"Additive needs one coordinate subset per kernel: {len(self.parts)} kernels, "
                f"{len(coordinates)} subsets"
            )
        for subset in coordinates:
            if not subset or min(subset) < 0:
                raise ValueError(f"coordinate subsets must be non-empty and >= 0, got {subset}")
        self.coordinates = coordinates

    def features(self, x):
        highest = max(max(subset) for subset in self.coordinates)
        if highest >= x.shape[-1]:
            # Shapes are static under jit, so this check costs nothing at run time; without it
            # JAX would clamp the index and silently use another coordinate.
            raise ValueError(f"Additive uses coordinate {highest}, but the points have dimension {x.shape[-1]}")
        return tuple(
            part.features(x[jnp.asarray(subset)])
            for part, subset in zip(self.parts, self.coordinates)
        )

    def pair(self, fx, fy):
        return sum(part.pair(a, b) for part, a, b in zip(self.parts, fx, fy))
