"""The kernel interface: a kernel is a pointwise function k(x, y) of two input points.

A kernel is split into a per-point part (`features`) and a per-pair part (`pair`), with
k(x, y) = pair(features(x), features(y)). For stationary kernels the features are the point itself.
For the Gibbs kernel they include the lengthscale field ℓ(x), a neural network: Gram-matrix assembly
evaluates (and differentiates) the features once per point instead of once per pair of points.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree


class AbstractKernel(eqx.Module):
    """A positive semi-definite kernel k: R^d × R^d → R."""

    @abc.abstractmethod
    def features(self, x: Float[Array, " d"]) -> PyTree[Float[Array, "..."]]:
        """Per-point quantities that k depends on; computed once per point in Gram assembly."""

    @abc.abstractmethod
    def pair(self, fx: PyTree, fy: PyTree) -> Float[Array, ""]:
        """k(x, y) from the features of x and of y."""

    def __call__(self, x: Float[Array, " d"], y: Float[Array, " d"]) -> Float[Array, ""]:
        return self.pair(self.features(x), self.features(y))


class AbstractPointKernel(AbstractKernel):
    """A kernel whose features are the input point itself (all stationary kernels)."""

    def features(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        return x


class AbstractStationaryKernel(AbstractPointKernel):
    """k(x, y) = κ(s) with s = Σ_i ((x_i − y_i) / ℓ_i)², one lengthscale or one per dimension.

    Exposing the profile κ lets Gram assembly differentiate the kernel in closed form (chain rule
    through s) instead of by nested autodiff per pair of points.
    """

    log_lengthscale: eqx.AbstractVar[Float[Array, "*d"]]

    @abc.abstractmethod
    def profile(self, s: Float[Array, ""]) -> Float[Array, ""]:
        """κ(s), smooth in s ≥ 0 to at least fourth order at s = 0."""

    def profile_derivatives(self, s: Float[Array, "*n"], order: int) -> list[Float[Array, "*n"]]:
        """[κ(s), κ′(s), …, κ⁽ᵒʳᵈᵉʳ⁾(s)] elementwise, by nested autodiff of the profile. Kernels with
        closed forms override this: a Gram entry then costs one exponential instead of the
        transcendental functions of every nested derivative."""
        derivatives, f = [], self.profile
        for _ in range(order + 1):
            derivatives.append(f(s))
            f = jax.grad(lambda t, f=f: jnp.sum(f(t)))
        return derivatives

    @property
    def lengthscale(self) -> Float[Array, "*d"]:
        return jnp.exp(self.log_lengthscale)

    def pair(self, fx, fy):
        scaled = (fx - fy) / jnp.exp(self.log_lengthscale)
        return self.profile(jnp.sum(scaled**2))


class AbstractSeparableKernel(AbstractPointKernel):
    """k(x, y) = Π_i φ_i(x_i − y_i), a product of one-dimensional stationary factors.

    Every derivative of such a kernel is a product of one-dimensional derivatives,
    ∂^α k(h) = Π_i φ_i^(α_i)(h_i), so Gram assembly needs only the factors' derivatives per pair
    (a handful of elementwise expressions) instead of nested autodiff of k.
    """

    @abc.abstractmethod
    def factor_derivatives(self, h: Float[Array, "d *n"], order: int) -> list[list[Float[Array, "*n"]]]:
        """[[φ_i(h_i), φ_i′(h_i), …, φ_i⁽ᵒʳᵈᵉʳ⁾(h_i)] for each dimension i], elementwise; order ≤ 4."""
