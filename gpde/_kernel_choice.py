"""The kernels that configuration files and the CLI can name, in one table."""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .kernels import (
    AbstractKernel, Gaussian, Gibbs, Matern52, Matern72, PeriodicGaussian, Polynomial, RationalQuadratic, Scaled, Sum,
)

from ._errors import ConfigError


def _stationary(kernel_class):
    def build(lengthscale: Sequence[float], dim: int, seed: int) -> AbstractKernel:
        return kernel_class(_lengthscale_array(lengthscale, dim))

    return build


def _gibbs(lengthscale: Sequence[float], dim: int, seed: int) -> AbstractKernel:
    # The published Gibbs setups (docs/references.md §3): tanh MLP [d, 50, 50, 1], ℓ = softplus/3.
    # A single `lengthscale` value, if given, rescales the field; the initial network is random.
    scale = lengthscale[0] if lengthscale else 1.0 / 3.0
    return Gibbs(dim, key=jax.random.PRNGKey(seed), scale=scale, per_dimension=len(lengthscale) > 1)


def _gaussian_plus_polynomial(lengthscale: Sequence[float], dim: int, seed: int) -> AbstractKernel:
    # The published "additive" kernel for the elliptic problem (docs/references.md §3):
    # σ² exp(−|x−y|²/(2ℓ²)) + (α x·y + c)², starting from σ² = α = c = 1.
    return Sum(Scaled(Gaussian(_lengthscale_array(lengthscale, dim)), 1.0), Polynomial(1.0, 1.0, degree=2))


def _periodic_in_last(period: float):
    # A Gaussian periodic in the last input coordinate (x of space-time problems with inputs
    # (t, x)). The registry passes no problem settings to a builder, so the period is part of the
    # name: "periodic-gaussian-10" is the kernel of the Schrödinger problem on x ∈ [−5, 5].
    def build(lengthscale: Sequence[float], dim: int, seed: int) -> AbstractKernel:
        return PeriodicGaussian(_lengthscale_array(lengthscale, dim), period=period, periodic_dims=(dim - 1,))

    return build


def _lengthscale_array(lengthscale, dim):
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
    "additive": _gaussian_plus_polynomial,
    "periodic-gaussian-10": _periodic_in_last(10.0),
}


def make_kernel(name: str, lengthscale: Sequence[float], dim: int, seed: int = 0) -> AbstractKernel:
    """Build the kernel called `name`; ConfigError with the valid names if there is none."""
    if name not in KERNELS:
        raise ConfigError(f"unknown kernel '{name}'; choose one of: {', '.join(KERNELS)}")
    for value in lengthscale:
        if not (value > 0 and value < float("inf")):
            raise ConfigError(f"lengthscales must be finite and > 0, got {tuple(lengthscale)}")
    return KERNELS[name](lengthscale, dim, seed)


def kernel_arrays(kernel: AbstractKernel) -> dict[str, np.ndarray]:
    """Every array leaf of a kernel by its pytree path (how learned kernels are stored: plain
    arrays, never pickles)."""
    leaves = jax.tree_util.tree_flatten_with_path(kernel)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves if hasattr(leaf, "shape")}


def kernel_with_arrays(skeleton: AbstractKernel, arrays: dict) -> AbstractKernel:
    """`skeleton` (built by make_kernel with the stored settings) with its array leaves replaced
    by `arrays`; ConfigError if the stored arrays do not fit the skeleton."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(skeleton)
    replaced = []
    for path, leaf in leaves:
        key = jax.tree_util.keystr(path)
        if hasattr(leaf, "shape"):
            if key not in arrays or tuple(arrays[key].shape) != tuple(leaf.shape):
                raise ConfigError(
                    f"the stored kernel does not match a '{type(skeleton).__name__}' kernel (parameter {key}); "
                    "was the result written by another kernel or gpde version?"
                )
            replaced.append(jnp.asarray(arrays[key]))
        else:
            replaced.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, replaced)


def make_field_kernels(
    name: str,
    lengthscale: Sequence[float],
    field_lengthscales: dict[str, Sequence[float]],
    fields: Sequence[str],
    dim: int,
    seed: int = 0,
) -> AbstractKernel | tuple[AbstractKernel, ...]:
    """The kernel of each unknown field (all of type `name`): field f gets
    `field_lengthscales[f]` if given, else `lengthscale`. One field: the kernel itself (the
    single-field API); several: a tuple in the order of `fields`."""
    unknown = sorted(set(field_lengthscales) - set(fields))
    if unknown:
        raise ConfigError(
            f"field_lengthscales names unknown field(s) {unknown}; this problem's fields are: {', '.join(fields)}"
        )
    kernels = tuple(
        make_kernel(name, tuple(field_lengthscales.get(f, lengthscale)), dim, seed + i) for i, f in enumerate(fields)
    )
    return kernels[0] if len(kernels) == 1 else kernels
