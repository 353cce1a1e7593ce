"""Gray-Scott reaction-diffusion in one space dimension, solved in space-time (docs/references.md §8):

    u_t = D_u u_xx − u v² + F (1 − u),   v_t = D_v v_xx + u v² − (F + k) v,   (t, x) ∈ [0, 1]²,
    u(0, x) = −cos 3πx,   v(0, x) = cos 2πx,   u_x = v_x = 0 at x = 0 and x = 1,

D_u = 1e-3, D_v = 2e-3, F = 0.04, k = 0.06. Inputs are (t, x). The unknowns u (field 0) and v
(field 1) are independent GPs with their own (anisotropic) kernels. Each PDE is one interior
constraint that involves both fields; the boundary points on t = 0 carry the initial values of u
and of v, those on x = 0 and x = 1 the zero Neumann data as derivative functionals ∂ₓu and ∂ₓv.
Nothing is imposed at t = 1.

Reference: cosine pseudo-spectral method of lines with Radau in time (`_gray_scott_reference.py`,
refinement-verified to ~4e-12).

Measured (2026-11-29, seed 0, 600 + 400 random points, nugget 1e-10, t 101 × x 201 test grid;
`python benchmarks/space_time_solves.py gray-scott 600 400 …`), RMS / L∞ of u and of v:
  ℓ = (0.7071, 0.7071) both (the published start (1, 1)):  u 5.44e-2 / 0.148,  v 1.02e-1 / 0.303
  ℓ_u = (0.745, 0.083), ℓ_v = (1.063, 0.079) (published learned): u 1.48e-5 / 1.20e-4, v 3.92e-5 / 5.54e-4
  ℓ = (0.7, 0.1) both (the solve default):                u 1.70e-5 / 1.17e-4, v 1.34e-5 / 1.29e-4
Published (u): learned 1.30e-4 / 4.2e-4, from (1, 1) 5.28e-2 / 0.184 (docs/references.md §8).
Learned from (0.7071, 0.7071) (BilevelLearner, 8 × 20 Adam steps, lr 0.05, lengthscale scan off):
ℓ_u = (0.393, 0.073), ℓ_v = (0.451, 0.076); re-solve on 1200 + 400 points u 1.71e-6 / 2.45e-5
(benchmarks/learn-published.md, which also says why `gpde learn gray-scott` with the learner's
default lengthscale scan does not get there).
"""

from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from gpde import AbstractProblem, Box, Constraint, Evaluation, LearnDefaults, OnField, Partial, SecondPartial, SolveDefaults

from ._gray_scott_reference import cached_gray_scott

T, X = 0, 1  # coordinate indices
U, V = 0, 1  # field indices


def equation_u(x, z, coefficients):
    """u_t − D_u u_xx + u v² − F (1 − u) from z = (u, u_t, u_xx, v); coefficients (D_u, D_v, F, k)."""
    u, u_t, u_xx, v = z
    du, _, feed, _ = coefficients
    return u_t - du * u_xx + u * v**2 - feed * (1.0 - u)


def equation_v(x, z, coefficients):
    """v_t − D_v v_xx − u v² + (F + k) v from z = (v, v_t, v_xx, u); coefficients (D_u, D_v, F, k)."""
    v, v_t, v_xx, u = z
    _, dv, feed, kill = coefficients
    return v_t - dv * v_xx - u * v**2 + (feed + kill) * v


def initial_u_residual(x, z):
    """u(0, x) + cos 3πx."""
    return z[0] + jnp.cos(3 * jnp.pi * x[X])


def initial_v_residual(x, z):
    """v(0, x) − cos 2πx."""
    return z[0] - jnp.cos(2 * jnp.pi * x[X])


def neumann_residual(x, z):
    """The x-derivative itself (zero Neumann data)."""
    return z[0]


class GrayScott(AbstractProblem):
    diffusion_u: float = 1e-3
    diffusion_v: float = 2e-3
    feed: float = 0.04
    kill: float = 0.06

    name: ClassVar[str] = "gray-scott"
    summary: ClassVar[str] = "u_t = D_u u_xx − uv² + F(1−u), v_t = D_v v_xx + uv² − (F+k)v on [0,1]², Neumann in x"
    boundary_faces: ClassVar = ((T, 0), (X, 0), (X, 1))
    fields: ClassVar[tuple[str, ...]] = ("u", "v")
    defaults: ClassVar[SolveDefaults] = SolveDefaults(
        kernel="gaussian", lengthscale=(0.7, 0.1), n_interior=600, n_boundary=400, layout="random",
        nugget=1e-10, steps=20,
    )
    # The published setup: 600 interior + 400 initial/boundary points, 600 validation points,
    # anisotropic Gaussians from (1, 1), nugget 1e-10, 20 outer iterations. The published kernel
    # is exp(−Σ (h_i/ℓ'_i)²), gpde's exp(−Σ h_i²/(2ℓ_i²)): ℓ = ℓ'/√2, so (1, 1) is (0.7071, 0.7071).
    learn_defaults: ClassVar[LearnDefaults] = LearnDefaults(
        kernel="gaussian", lengthscale=(0.7071, 0.7071), n_interior=600, n_boundary=400, n_validation=600,
        layout="random", nugget=1e-10, gn_steps=20, inner_steps=50, learning_rate=1e-2, eval_steps=20,
        # No lengthscale scan: around the first iterate u = 0 the outer loss is lowest at ~32× the
        # start (1.5e-8 vs 2.6e-6), where the solutions are poor (u RMS 0.55); the scan would jump
        # there. From the published start, gradient steps alone reach u RMS 1.7e-6.
        lengthscale_scan=False,
    )

    def __check_init__(self):
        for name in ("diffusion_u", "diffusion_v"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Gray-Scott {name} must be > 0, got {getattr(self, name)}")
        for name in ("feed", "kill"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"Gray-Scott {name} must be >= 0, got {getattr(self, name)}")

    @property
    def domain(self) -> Box:
        return Box((0.0, 0.0), (1.0, 1.0))

    def _pdes(self, points) -> tuple[Constraint, Constraint]:
        # The coefficients are the residuals' traced parameters and the residuals module-level
        # functions, so a problem built anew runs the programs compiled for the first.
        coefficients = jnp.array([self.diffusion_u, self.diffusion_v, self.feed, self.kill])
        on_v = lambda op: OnField(op, V)  # noqa: E731
        return (
            Constraint("pde_u", points, (Evaluation(), Partial(T), SecondPartial(X, X), on_v(Evaluation())), equation_u,
                       parameters=coefficients),
            Constraint("pde_v", points, (on_v(Evaluation()), on_v(Partial(T)), on_v(SecondPartial(X, X)), Evaluation()),
                       equation_v, parameters=coefficients),
        )

    def constraints(self, interior, boundary):
        boundary = np.asarray(boundary)
        initial = boundary[boundary[:, T] == 0.0]
        walls = boundary[boundary[:, T] != 0.0]
        constraints = list(self._pdes(interior))
        if initial.shape[0]:
            constraints += [
                Constraint("initial_u", initial, (Evaluation(),), initial_u_residual),
                Constraint("initial_v", initial, (OnField(Evaluation(), V),), initial_v_residual),
            ]
        if walls.shape[0]:
            if not np.all((walls[:, X] == 0.0) | (walls[:, X] == 1.0)):
                raise ValueError("Gray-Scott boundary points must lie on t = 0, x = 0 or x = 1")
            constraints += [
                Constraint("neumann_u", walls, (Partial(X),), neumann_residual),
                Constraint("neumann_v", walls, (OnField(Partial(X), V),), neumann_residual),
            ]
        return tuple(constraints)

    def validation_constraints(self, validation, boundary):
        return self._pdes(validation)

    def _reference(self):
        return cached_gray_scott(float(self.diffusion_u), float(self.diffusion_v), float(self.feed), float(self.kill))

    def reference(self, points):
        points = np.asarray(points)
        return self._reference()(points[:, T], points[:, X])[U]

    def field_reference(self, field, points):
        if field not in self.fields:
            raise NotImplementedError(f"Gray-Scott has fields u and v, not '{field}'")
        points = np.asarray(points)
        return self._reference()(points[:, T], points[:, X])[self.fields.index(field)]


PROBLEM = GrayScott
