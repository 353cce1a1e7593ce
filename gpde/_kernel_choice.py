"""The kernels that configuration files and the CLI can name, in one table."""

from collections.abc import Callable, Sequence

import jax

from kernels import AbstractKernel, Gaussian, Gibbs, Matern52, Matern72, RationalQuadratic

from ._errors import ConfigError


def _stationary(kernel_class):
    def build(lengthscale: Sequence[float], dim: int, seed: int) -> AbstractKernel:
        return kernel_class(_lengthscale_array(lengthscale, dim))

    return build


def _gibbs(lengthscale: Sequence[float], dim: int, seed: int) -> AbstractKernel:
    # The published Gibbs setups (REFERENCES.md §3): tanh MLP [d, 50, 50, 1], ℓ = softplus/3.
    # A single `lengthscale` value, if given, rescales the field; the initial network is random.
    scale = lengthscale[0] if lengthscale else 1.0 / 3.0
    return Gibbs(dim, key=jax.random.PRNGKey(seed), scale=scale, per_dimension=len(lengthscale) > 1)


def _lengthscale_array(lengthscale, dim):
    import jax.numpy as jnp

    values = tuple(float(v) for v in lengthscale)
    if len(values) == 1:
        return jnp.asarray(values[0])
    if len(values) != dim:
        raise ConfigError(f"give one lengthscale or one per dimension ({dim}), got {len(values)}: {values}")
    return jnp.asarray(values)


#: name → builder(lengthscale values, input dimension, seed)
KERNELS: dict[str, Callable[[Sequence[float], int, int], AbstractKernel]] = {
    "gaussian": _stationary(Gaussian),
    "matern52": _stationary(Matern52),
    "matern72": _stationary(Matern72),
    "rational-quadratic": _stationary(RationalQuadratic),
    "gibbs": _gibbs,
}


def make_kernel(name: str, lengthscale: Sequence[float], dim: int, seed: int = 0) -> AbstractKernel:
    """Build the kernel called `name`; ConfigError with the valid names if there is none."""
    if name not in KERNELS:
        raise ConfigError(f"unknown kernel '{name}'; choose one of: {', '.join(KERNELS)}")
    for value in lengthscale:
        if not (value > 0 and value < float("inf")):
            raise ConfigError(f"lengthscales must be finite and > 0, got {tuple(lengthscale)}")
    return KERNELS[name](lengthscale, dim, seed)
