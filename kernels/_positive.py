"""Positive hyperparameters are stored unconstrained (as logarithms) so that optimizers see plain
arrays and can never step out of the admissible set."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float


def log_of_positive(value: ArrayLike, name: str) -> Float[Array, "..."]:
    """log(value), after checking that every entry is finite and > 0 (when the value is concrete)."""
    array = jnp.asarray(value, dtype=float)
    try:
        concrete = np.asarray(array)
    except Exception:  # a tracer: it cannot be checked here, and it is not user input
        return jnp.log(array)
    if not np.all(np.isfinite(concrete)) or np.any(concrete <= 0):
        raise ValueError(
            f"{name} must be finite and > 0, got {concrete.tolist()}; pass a positive value"
        )
    return jnp.log(array)
