"""Viscous Burgers: u_t + u u_x − ν u_xx = 0, (t, x) ∈ [0,1]×[−1,1], u(0,x) = −sin πx,
u(t,±1) = 0, solved in space-time (docs/references.md §2). Input coordinates are (t, x).

Reference: the Cole-Hopf solution by Gauss-Hermite quadrature (`_cole_hopf.py`).
"""

from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from gpde import AbstractProblem, Box, Constraint, Evaluation, Partial, SecondPartial, LearnDefaults, SolveDefaults

from ._cole_hopf import burgers_cole_hopf

T, X = 0, 1  # coordinate indices


def burgers_residual(x, z, viscosity):
    """u_t + u u_x − ν u_xx from z = (u, u_t, u_x, u_xx)."""
    u, u_t, u_x, u_xx = z
    return u_t + u * u_x - viscosity * u_xx


def initial_and_walls_residual(x, z):
    """u + sin πx: −sin πx is the initial condition and vanishes on the walls x = ±1."""
    return z[0] + jnp.sin(jnp.pi * x[X])


class Burgers(AbstractProblem):
    viscosity: float = 0.02

    name: ClassVar[str] = "burgers"
    summary: ClassVar[str] = "u_t + u u_x − ν u_xx = 0 on [0,1]×[−1,1], u(0,x) = −sin πx (space-time)"
    # The initial line t = 0 and the walls x = ±1; nothing is imposed at t = 1.
    boundary_faces: ClassVar = ((T, 0), (X, 0), (X, 1))
    defaults: ClassVar[SolveDefaults] = SolveDefaults(
        kernel="gaussian", lengthscale=(0.3, 0.05), n_interior=900, n_boundary=300, layout="random",
        nugget=1e-10, steps=20,
    )
    learn_defaults: ClassVar[LearnDefaults] = LearnDefaults(
        kernel="gibbs", lengthscale=(0.25, 0.25), n_interior=900, n_boundary=300, n_validation=900, layout="random",
        nugget=1e-10, gn_steps=20, inner_steps=50, learning_rate=1e-3, eval_steps=10,
    )

    def __check_init__(self):
        if not (np.isfinite(self.viscosity) and self.viscosity > 0):
            raise ValueError(f"Burgers viscosity must be finite and > 0, got {self.viscosity}")

    @property
    def domain(self) -> Box:
        return Box((0.0, -1.0), (1.0, 1.0))

    def constraints(self, interior, boundary):
        # ν is the residual's traced parameter and the residuals are module-level functions, so
        # a viscosity continuation and every re-solve run the programs compiled for the first.
        return (
            Constraint("interior", interior, (Evaluation(), Partial(T), Partial(X), SecondPartial(X, X)),
                       burgers_residual, parameters=self.viscosity),
            Constraint("boundary", boundary, (Evaluation(),), initial_and_walls_residual),
        )

    def reference(self, points):
        points = np.asarray(points)
        return burgers_cole_hopf(points[:, T], points[:, X], self.viscosity)


PROBLEM = Burgers
