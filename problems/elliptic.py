"""Nonlinear elliptic: −Δu + u³ = f on [0,1]², u = g on the boundary (REFERENCES.md §2).

Manufactured solution u = sin(πx)sin(πy) + A sin(4πx)sin(4πy), A = 4 (one published code uses 2);
f and g are computed from u, so the reference is exact.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from gpde import AbstractProblem, Box, Constraint, Evaluation, Laplacian, LearnDefaults, SolveDefaults


class NonlinearElliptic(AbstractProblem):
    amplitude: float = 4.0

    name: ClassVar[str] = "elliptic"
    summary: ClassVar[str] = "−Δu + u³ = f on [0,1]², manufactured u = sin πx sin πy + A sin 4πx sin 4πy"
    boundary_faces: ClassVar = None
    defaults: ClassVar[SolveDefaults] = SolveDefaults(
        kernel="gaussian", lengthscale=(0.2,), n_interior=900, n_boundary=124, layout="grid",
        nugget=1e-12, steps=10,
    )
    learn_defaults: ClassVar[LearnDefaults] = LearnDefaults(
        kernel="gaussian", lengthscale=(0.5,), n_interior=900, n_boundary=300, n_validation=900, layout="random",
        nugget=1e-12, gn_steps=10, inner_steps=50, learning_rate=0.05, eval_steps=20, scale_search=True,
    )

    @property
    def domain(self) -> Box:
        return Box((0.0, 0.0), (1.0, 1.0))

    def exact(self, x):
        pi = jnp.pi
        return jnp.sin(pi * x[0]) * jnp.sin(pi * x[1]) + self.amplitude * jnp.sin(4 * pi * x[0]) * jnp.sin(
            4 * pi * x[1]
        )

    def source(self, x):
        return -jnp.trace(jax.hessian(self.exact)(x)) + self.exact(x) ** 3

    def constraints(self, interior, boundary):
        return (
            Constraint("interior", interior, (Evaluation(), Laplacian()), lambda x, z: -z[1] + z[0] ** 3 - self.source(x)),
            Constraint("boundary", boundary, (Evaluation(),), lambda x, z: z[0] - self.exact(x)),
        )

    def reference(self, points):
        return np.asarray(jax.vmap(self.exact)(jnp.asarray(points)))


PROBLEM = NonlinearElliptic
