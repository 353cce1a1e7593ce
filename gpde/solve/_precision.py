"""The PDE solver works in float64 only; the library never switches precision by itself."""

import jax

from .._errors import PrecisionError


def require_float64() -> None:
    """Raise PrecisionError unless JAX's 64-bit mode is on."""
    if not jax.config.jax_enable_x64:
        raise PrecisionError(
            "gpde solves PDEs in float64, but JAX is in float32 mode. Turn 64-bit mode on before "
            "creating any array: `import jax; jax.config.update('jax_enable_x64', True)`, or set "
            "the environment variable JAX_ENABLE_X64=1 (the gpde command does this for you)."
        )
