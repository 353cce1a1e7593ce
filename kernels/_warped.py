"""Input warping: a kernel evaluated at mapped points, k(x, y) = k₀(w(x), w(y)).

For any map w this is positive semi-definite when k₀ is (it is k₀'s Gram matrix at the points
w(x_i)). A smooth monotone w that magnifies a thin region makes a stationary k₀ act with a short
lengthscale inside that region and its own lengthscale elsewhere: the prior of a solution with an
internal layer (Burgers' shock, a boundary layer) whose position is known, at the price of one map
per point. The map enters through the kernel's features, so every operator differentiates through
it by the chain rule once per point (`gpde.solve.operator_gram`'s feature path).
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._base import AbstractKernel


class AbstractWarp(eqx.Module):
    """A smooth map of R^d onto itself, applied pointwise."""

    #: Whether w_i depends on x_i only (then `coordinate_jets` is implemented).
    coordinatewise: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """w(x)."""

    def coordinate_jets(self, points: Float[Array, "n d"]) -> tuple[Float[Array, "n d"], ...]:
        """(w_i(x), ∂w_i/∂x_i, ∂²w_i/∂x_i²) at each point and axis, for a coordinatewise warp. It
        turns every operator of order ≤ 2 into one with per-point coefficients in the warped
        coordinates, which lets a warped stationary kernel keep the stationary kernels'
        closed-form Gram entries."""
        raise NotImplementedError(f"{type(self).__name__} does not map each coordinate on its own")


class LayerStretch(AbstractWarp):
    """Magnifies the layer of half-width `width` around `centre` along one axis by `ratio`:

        w_a(x) = x_a + (ratio − 1) · width · tanh((x_a − centre) / width),   other axes unchanged.

    w_a′ = 1 + (ratio − 1) sech²((x_a − centre)/width) lies in [1, ratio], so w is strictly
    increasing (invertible) and equals a shift of the identity a few widths away from the layer:
    a stationary kernel of lengthscale ℓ under w has the local lengthscale ℓ / ratio at the centre
    and ℓ far from it.
    """

    coordinatewise: ClassVar[bool] = True
    axis: int = eqx.field(static=True)
    centre: float
    width: float
    ratio: float

    def __init__(self, axis: int, centre: float, width: float, ratio: float):
        if axis < 0:
            raise ValueError(f"LayerStretch axis must be >= 0, got {axis}")
        if not width > 0:
            raise ValueError(f"LayerStretch width must be > 0, got {width}")
        if not ratio >= 1:
            raise ValueError(f"LayerStretch ratio must be >= 1 (a magnification), got {ratio}")
        self.axis = int(axis)
        self.centre = float(centre)
        self.width = float(width)
        self.ratio = float(ratio)

    def stretch(self, values: ArrayLike) -> Array:
        """w along the stretched axis, elementwise (JAX or NumPy input)."""
        return values + (self.ratio - 1.0) * self.width * jnp.tanh((values - self.centre) / self.width)

    def __call__(self, x):
        return x.at[self.axis].set(self.stretch(x[self.axis]))

    def coordinate_jets(self, points):
        z = (points[:, self.axis] - self.centre) / self.width
        sech2 = 1.0 - jnp.tanh(z) ** 2
        first = jnp.ones_like(points).at[:, self.axis].set(1.0 + (self.ratio - 1.0) * sech2)
        second = jnp.zeros_like(points).at[:, self.axis].set(-2.0 * (self.ratio - 1.0) / self.width * sech2 * jnp.tanh(z))
        return points.at[:, self.axis].set(self.stretch(points[:, self.axis])), first, second

    def inverse(self, values: Float[np.ndarray, " n"]) -> Float[np.ndarray, " n"]:
        """w⁻¹ along the stretched axis, elementwise, by bisection (w is increasing and
        |w(x) − x| ≤ (ratio − 1)·width bounds the bracket)."""
        target = np.asarray(values, dtype=np.float64)
        offset = (self.ratio - 1.0) * self.width
        low, high = target - offset, target + offset
        for _ in range(64):
            middle = 0.5 * (low + high)
            above = middle + offset * np.tanh((middle - self.centre) / self.width) > target
            high = np.where(above, middle, high)
            low = np.where(above, low, middle)
        return 0.5 * (low + high)


class Warped(AbstractKernel):
    """k(x, y) = k₀(w(x), w(y)): `kernel` k₀ at the points mapped by `warp` w."""

    kernel: AbstractKernel
    warp: AbstractWarp

    def __init__(self, kernel: AbstractKernel, warp: AbstractWarp):
        if not isinstance(kernel, AbstractKernel):
            raise TypeError(f"Warped wraps a kernel, got {type(kernel).__name__}")
        if not isinstance(warp, AbstractWarp):
            raise TypeError(f"Warped needs an AbstractWarp, got {type(warp).__name__}")
        self.kernel = kernel
        self.warp = warp

    def features(self, x):
        return self.kernel.features(self.warp(x))

    def pair(self, fx, fy):
        return self.kernel.pair(fx, fy)
