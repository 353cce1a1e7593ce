"""The non-stationary Gibbs kernel with a neural-network lengthscale field."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._base import AbstractKernel


class Gibbs(AbstractKernel):
    """k(x, y) = Π_i sqrt(2 ℓ_i(x) ℓ_i(y) / (ℓ_i(x)² + ℓ_i(y)²)) exp(−(x_i − y_i)² / (ℓ_i(x)² + ℓ_i(y)²)).

    The lengthscale field is ℓ(x) = scale · softplus(MLP(x)): one output shared by all dimensions,
    or one per dimension. With a constant ℓ this is the Gaussian kernel exp(−|x−y|²/(2ℓ²)).
    The features of a point are (x, ℓ(x)), so Gram assembly runs the network once per point.
    """

    network: eqx.nn.MLP
    scale: float
    dim: int

    def __init__(
        self,
        dim: int,
        *,
        key: PRNGKeyArray,
        width: int = 50,
        depth: int = 2,
        per_dimension: bool = False,
        scale: float = 1.0 / 3.0,
        activation: Callable = jnp.tanh,
    ):
        if dim < 1 or width < 1 or depth < 0:
            raise ValueError(f"Gibbs needs dim >= 1, width >= 1, depth >= 0; got {dim}, {width}, {depth}")
        if not scale > 0:
            raise ValueError(f"Gibbs lengthscale scale must be > 0, got {scale}")
        self.network = eqx.nn.MLP(
            in_size=dim,
            out_size=dim if per_dimension else 1,
            width_size=width,
            depth=depth,
            activation=activation,
            key=key,
        )
        self.scale = float(scale)
        self.dim = int(dim)

    @property
    def shared_lengthscale(self) -> bool:
        """Whether one lengthscale field serves every input dimension."""
        return self.network.out_size == 1

    def lengthscale(self, x: Float[Array, " d"]) -> Float[Array, " d"]:
        """ℓ(x), one entry per input dimension (repeated when the field is shared)."""
        raw = self.network(x)
        return jnp.broadcast_to(self.scale * jax.nn.softplus(raw), (self.dim,))

    def features(self, x):
        return (x, self.lengthscale(x))

    def pair(self, fx, fy):
        x, lx = fx
        y, ly = fy
        square_sum = lx**2 + ly**2
        prefactor = jnp.prod(jnp.sqrt(2.0 * lx * ly / square_sum))
        return prefactor * jnp.exp(-jnp.sum((x - y) ** 2 / square_sum))
