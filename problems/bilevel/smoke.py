"""The smoke problem of docs/references.md §5, in d + d dimensions (d = 1 and 5 in the catalogue).

    upper  f(x, θ) = |x|² + |θ|²
    lower  g(x, θ) = |x − θ|² + θ₁²          x, θ ∈ [−1, 1]^d

g is a strictly convex quadratic in θ: θ*(x) = (x₁/2, x₂, …, x_d) (always inside the box), so
F(x) = f(x, θ*(x)) = |x|² + x₁²/4 + x₂² + … + x_d² with minimum F(x*) = 0 at x* = 0.
"""

import functools
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from gpde import ConfigError
from gpde.bljes import AbstractBilevelBenchmark


class Smoke(AbstractBilevelBenchmark):
    dim: int = 1

    name: ClassVar[str] = "smoke"
    summary: ClassVar[str] = "f = |x|² + |θ|², g = |x − θ|² + θ₁² on [−1,1]^(d+d); θ*(x) = (x₁/2, x₂…), F* = 0 at x = 0"

    def __check_init__(self):
        if not (isinstance(self.dim, int) and self.dim >= 1):
            raise ConfigError(f"smoke problem: dim must be an integer >= 1, got {self.dim!r}")

    @property
    def x_bounds(self):
        return np.stack([-np.ones(self.dim), np.ones(self.dim)])

    @property
    def theta_bounds(self):
        return self.x_bounds

    def upper(self, x, theta):
        return jnp.sum(jnp.square(x)) + jnp.sum(jnp.square(theta))

    def lower(self, x, theta):
        return jnp.sum(jnp.square(x - theta)) + jnp.square(theta[0])

    def lower_optimum(self, x):
        theta = np.array(x, dtype=float)
        theta[0] = theta[0] / 2
        return theta

    @property
    def optimum(self):
        return np.zeros(self.dim), 0.0


BENCHMARKS = {
    "smoke-1+1": functools.partial(Smoke, dim=1),
    "smoke-5+5": functools.partial(Smoke, dim=5),
}
