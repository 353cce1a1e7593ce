"""Darcy inverse problem (docs/references.md §2): recover the log-permeability a and the pressure u from
noisy point values of u, where −∇·(e^{a}∇u) = 1 on [0,1]², u = 0 on the boundary.

Unknowns u (field 0) and a (field 1) are independent GPs with their own kernels. Dividing the PDE
by −e^{a} gives the interior constraint ∇a·∇u + Δu + e^{−a} = 0 (operators ∂₀u, ∂₁u, Δu on u and
δ, ∂₀, ∂₁ on a); u = 0 at the boundary points; and the observations u(x_i) = y_i as a noisy data
constraint (noise variance σ², so Gauss-Newton minimizes ‖u‖² + ‖a‖² + |u(X) − y|²/σ² subject to
the PDE and the boundary condition).

Data (reproducible from `data_seed`): the true a(x) = exp(s) + exp(−s), s = sin 2πx₁ + sin 2πx₂;
u from the 5-point finite-difference solve on an 80×80 interior grid (`_darcy_reference.py`);
`n_observations` distinct grid nodes drawn at random, observed with N(0, σ²) noise, σ = 1e-3
(u itself is at most 3.2e-3: the data are noisy). References: a in closed form; u from a
199×199 finite-difference solve (h = 1/200; it differs from the 399×399 solve by 6e-7 max, 1.6e-4
relative L2, far below the collocation errors).

Kernel learning holds the last `held_out` observations out of the inner solve: the outer loss is
the PDE residual² at the validation points plus σ⁻²·misfit² at the held-out observations. Data
that the inner solve has fitted says little about the lengthscales (a shorter lengthscale fits it
better, noise included), while held-out data measures how well u predicts between the
observations, and the PDE residual couples that to a. The re-solve of the evaluation protocol
uses all observations.

Measured (seed 0, 400 + 100 random points, 100×100 grid; `gpde solve darcy`, `gpde learn darcy`):
with the specified noise σ = 1e-3 (about 30 % of max u) the data, not the solver, limit a:
  solve, ℓ_u = ℓ_a = 0.3 (defaults):  u rel. L2 0.27, a rel. L2 0.34 (RMS 1.20, L∞ 3.9)
  solve, ℓ_u = 0.2, ℓ_a = 0.14:       u rel. L2 0.36, a rel. L2 0.42
  learn from ℓ = 1.0 (10 × 50 Adam):  ℓ_u → 0.61, ℓ_a → 0.36; a rel. L2 0.42 → 0.38
How much the data can say (benchmarks/darcy_identifiability.py, problems/_darcy_identifiability.py):
the Cramér–Rao bound on a's relative L2 error from these 60 observations at σ = 1e-3 is 0.023 if a
were known up to a constant, 0.113 if only its level and amplitude were unknown (its exact shape
known), 0.24 for the 9 Fourier modes up to frequency 1, 1.2 for the 25 up to frequency 2. So the
goal (≤ 5e-2 after learning) is out of reach of any unbiased estimate that does not
already know the shape of a; the GP prior knows less than all of these families. At σ = 1e-5 the
bounds are 100× smaller (0.0024 for 9 modes, 0.012 for 25), and the goal is reached:
With nearly exact data (`--param noise=1e-5`) the same machinery recovers a:
  solve, ℓ_u = 0.2, ℓ_a = 0.14:       u rel. L2 0.014, a rel. L2 0.041
  learn from ℓ = 1.0 (5 × 30 Adam):   ℓ_u → 0.14, ℓ_a → 0.19; a rel. L2 0.37 → 0.037
"""

import functools
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from gpde import (
    AbstractProblem,
    Box,
    Constraint,
    Evaluation,
    Laplacian,
    LearnDefaults,
    OnField,
    Partial,
    SolveDefaults,
)

# Public: how much the data can say about a (Cramér–Rao bounds, benchmarks/darcy_identifiability.py).
from ._darcy_identifiability import constant_basis as constant_basis
from ._darcy_identifiability import cramer_rao_relative_l2 as cramer_rao_relative_l2
from ._darcy_identifiability import fourier_basis as fourier_basis
from ._darcy_identifiability import level_and_amplitude_basis as level_and_amplitude_basis
from ._darcy_reference import grid_interpolant, solve_darcy_fd

U, A = 0, 1  # field indices
#: Interior nodes per side of the finite-difference solve of the u reference (h = 1/200).
REFERENCE_GRID = 199


def true_log_permeability(points) -> np.ndarray:
    """a(x) = exp(sin 2πx₁ + sin 2πx₂) + exp(−sin 2πx₁ − sin 2πx₂) at points (n, 2)."""
    points = np.asarray(points, dtype=float)
    s = np.sin(2 * np.pi * points[:, 0]) + np.sin(2 * np.pi * points[:, 1])
    return np.exp(s) + np.exp(-s)


@functools.lru_cache(maxsize=8)
def _observations(n_observations: int, noise: float, data_seed: int, data_grid: int):
    nodes, u = solve_darcy_fd(true_log_permeability, data_grid)
    rng = np.random.default_rng(data_seed)
    chosen = rng.choice(nodes.shape[0], n_observations, replace=False)
    return nodes[chosen], u[chosen] + noise * rng.standard_normal(n_observations)


@functools.lru_cache(maxsize=1)
def _reference_u():
    _, u = solve_darcy_fd(true_log_permeability, REFERENCE_GRID)
    return grid_interpolant(u, REFERENCE_GRID)


def _count(name, value, minimum):
    if not (float(value).is_integer() and value >= minimum):
        raise ValueError(f"Darcy {name} must be an integer >= {minimum}, got {value}")
    return int(value)


# The residuals are module-level functions, so a problem built anew (every re-solve) runs the
# programs compiled for the first.
def darcy_residual(x, z):
    """∇a·∇u + Δu + e^{−a} from z = (u_x, u_y, Δu, a, a_x, a_y): −∇·(e^{a}∇u) = 1 divided by −e^{a}."""
    u_x, u_y, laplacian_u, a, a_x, a_y = z
    return a_x * u_x + a_y * u_y + laplacian_u + jnp.exp(-a)


def point_value(x, z):
    """u itself (zero boundary data; observations subtract their values)."""
    return z[0]


class Darcy(AbstractProblem):
    n_observations: int = 60
    noise: float = 1e-3
    data_seed: int = 0
    data_grid: int = 80
    held_out: int = 12

    name: ClassVar[str] = "darcy"
    summary: ClassVar[str] = "inverse −∇·(e^a ∇u) = 1 on [0,1]²: recover a and u from 60 noisy values of u"
    boundary_faces: ClassVar = None
    fields: ClassVar[tuple[str, ...]] = ("u", "a")
    defaults: ClassVar[SolveDefaults] = SolveDefaults(
        kernel="gaussian", lengthscale=(0.3,), field_lengthscales={"a": (0.3,)}, n_interior=400, n_boundary=100,
        layout="random", nugget=1e-10, steps=30,
    )
    learn_defaults: ClassVar[LearnDefaults] = LearnDefaults(
        kernel="gaussian", lengthscale=(1.0,), n_interior=400, n_boundary=100, n_validation=400, layout="random",
        nugget=1e-10, gn_steps=10, inner_steps=50, learning_rate=0.05, eval_steps=20,
    )

    def __check_init__(self):
        _count("n_observations", self.n_observations, 1)
        _count("data_seed", self.data_seed, 0)
        _count("data_grid", self.data_grid, 2)
        _count("held_out", self.held_out, 0)
        if not (np.isfinite(self.noise) and self.noise > 0):
            raise ValueError(f"Darcy noise (observation std σ) must be finite and > 0, got {self.noise}")
        if self.held_out >= self.n_observations:
            raise ValueError(
                f"Darcy held_out ({self.held_out}) must be below n_observations ({self.n_observations})"
            )
        if self.n_observations > int(self.data_grid) ** 2:
            raise ValueError(f"Darcy n_observations must be <= data_grid² = {int(self.data_grid) ** 2}")

    @property
    def domain(self) -> Box:
        return Box((0.0, 0.0), (1.0, 1.0))

    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Observation locations (n_observations, 2) and noisy values of u there."""
        return _observations(int(self.n_observations), float(self.noise), int(self.data_seed), int(self.data_grid))

    def _pde(self, points) -> Constraint:
        operators = (Partial(0), Partial(1), Laplacian(),
                     OnField(Evaluation(), A), OnField(Partial(0), A), OnField(Partial(1), A))
        return Constraint("interior", points, operators, darcy_residual)

    def _data(self, which: slice) -> Constraint:
        points, values = self.observations()
        return Constraint("observations", points[which], (Evaluation(),), point_value,
                          noise_variance=float(self.noise) ** 2, observations=values[which])

    def constraints(self, interior, boundary):
        return (
            self._pde(interior),
            Constraint("boundary", boundary, (Evaluation(),), point_value),
            self._data(slice(None)),
        )

    def training_constraints(self, interior, boundary):
        constraints = self.constraints(interior, boundary)
        return constraints[:2] + (self._data(slice(0, int(self.n_observations) - int(self.held_out))),)

    def validation_constraints(self, validation, boundary):
        held_out = (self._data(slice(int(self.n_observations) - int(self.held_out), None)),) if self.held_out else ()
        return (self._pde(validation),) + held_out

    def reference(self, points):
        return _reference_u()(points)

    def field_reference(self, field, points):
        references = {"u": self.reference, "a": true_log_permeability}
        if field not in references:
            raise NotImplementedError(f"Darcy has fields u and a, not '{field}'")
        return references[field](points)

    def data_points(self):
        return {"observations": self.observations()[0]}


PROBLEM = Darcy
