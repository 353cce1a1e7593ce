"""What a PDE problem declares: domain, constraints, reference solution and solver defaults.

A new problem is one file in `problems/` with a final subclass of AbstractProblem and a
module-level `PROBLEM = ThatClass`; the catalogue finds it by itself.
"""

import abc
import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float

from ._constraint import Constraint
from ._domain import Box, Face


@dataclass(frozen=True)
class SolveDefaults:
    """The settings `gpde solve PROBLEM` uses unless told otherwise (the ones that reach the
    accuracy targets in benchmarks/*.md)."""

    kernel: str
    lengthscale: tuple[float, ...]
    n_interior: int
    n_boundary: int
    layout: str
    nugget: float
    steps: int
    tolerance: float = 1e-8
    #: Lengthscales of the fields after the first, by field name (default: `lengthscale`).
    field_lengthscales: dict = dataclasses.field(default_factory=dict)
    #: A continuation in one problem parameter, {"name": (v₁, v₂, …)}, solved first (None: none).
    continuation: dict | None = None


@dataclass(frozen=True)
class LearnDefaults:
    """The settings `gpde learn PROBLEM` uses unless told otherwise (the published setups,
    docs/references.md §3). `eval_steps` Gauss-Newton steps re-solve with the learned kernel."""

    kernel: str
    lengthscale: tuple[float, ...]
    n_interior: int
    n_boundary: int
    n_validation: int
    layout: str
    nugget: float
    gn_steps: int
    inner_steps: int
    learning_rate: float
    eval_steps: int
    #: Initial lengthscales of the fields after the first, by field name (default: `lengthscale`).
    field_lengthscales: dict = dataclasses.field(default_factory=dict)
    #: Search a common lengthscale factor at every outer iteration (BilevelLearner.scale_search).
    scale_search: bool = False
    #: Search one lengthscale factor per input axis at every outer iteration (BilevelLearner.axis_search).
    axis_search: bool = False
    #: Before the first step, try the lengthscales scaled up by 2 … 64 (BilevelLearner.lengthscale_scan).
    lengthscale_scan: bool = True
    #: Draw the validation points at least this far from the boundary (0: anywhere inside).
    #: Why: the outer loss is a mean of squared residuals, and a few validation points within a
    #: boundary-point spacing of the boundary dominate it (Eikonal, 900 + 300 + 900 points: the five
    #: largest of 900 squared residuals are 40-70 % of the loss, all within 0.01 of the boundary),
    #: so the loss follows how the kernel interpolates between boundary points instead of how well it
    #: solves the PDE, and it prefers the longest lengthscale (benchmarks/learn-published.md).
    validation_margin: float = 0.0
    #: Gauss-Newton steps with the initial kernel before learning, whose solution is the learner's
    #: first frozen iterate u_0 (0: u_0 = 0, as published). Why one might: from u_0 = 0 the first
    #: outer iterations learn against iterates far from any solution (Eikonal: iterate RMS 3.9, 1.9,
    #: 0.83, 0.34, 0.11 in outer iterations 1-5). Measured, it does not pay there (Eikonal, full
    #: schedule, 30 start steps: seed 0 after / after* RMS 5.9e-3 / 3.29e-3 vs 6.1e-3 / 3.30e-3 from
    #: u_0 = 0; seed 2 6.8e-3 vs 4.4e-3), so every problem keeps 0 (benchmarks/learn-published.md).
    start_steps: int = 0
    #: A continuation in one problem parameter for the protocol's re-solves from u = 0 (before and
    #: after), {"name": (v₁, v₂, …)}; None: none. Where Gauss-Newton from u = 0 has more than one
    #: fixed point for a learned kernel, the continuation picks the one the solutions of the easier
    #: problems lead to (Eikonal: the viscosity solution's branch, from larger ε).
    continuation: dict | None = None
    #: Validation points per outer-loss evaluation (None: all) and when a new batch is drawn
    #: (BilevelLearner.batch_size, batch_redraw).
    batch_size: int | None = None
    batch_redraw: str = "every-step"
    #: Gauss-Newton steps with the new θ per outer iteration (BilevelLearner.update_steps; published: 1).
    update_steps: int = 1
    #: How the learner averages the squared validation residuals (BilevelLearner.outer_loss):
    #: "mean-square" (published) or "geometric-mean-square".
    outer_loss: str = "mean-square"


class AbstractProblem(eqx.Module):
    """A PDE on a box with interior and boundary constraints and an independent reference."""

    name: eqx.AbstractClassVar[str]
    summary: eqx.AbstractClassVar[str]
    defaults: eqx.AbstractClassVar[SolveDefaults]
    learn_defaults: eqx.AbstractClassVar[LearnDefaults]
    #: Faces of the domain that carry boundary points; None for all of them.
    boundary_faces: eqx.AbstractClassVar[tuple[Face, ...] | None]
    #: Names of the unknown fields, in the order of their kernels (field 0 is the solution u,
    #: compared with `reference`; a multi-field problem names more and gives `field_reference`).
    fields: ClassVar[tuple[str, ...]] = ("u",)

    @property
    @abc.abstractmethod
    def domain(self) -> Box:
        """The box the problem lives on."""

    @abc.abstractmethod
    def constraints(self, interior: Float[Array, "ni d"], boundary: Float[Array, "nb d"]) -> tuple[Constraint, ...]:
        """The PDE at the interior points and the boundary (and initial) conditions."""

    @abc.abstractmethod
    def reference(self, points: np.ndarray) -> np.ndarray:
        """The independent reference solution at points of shape (n, d)."""

    def field_reference(self, field: str, points: np.ndarray) -> np.ndarray:
        """The independent reference of the field called `field` at points of shape (n, d)."""
        if field == self.fields[0]:
            return self.reference(points)
        raise NotImplementedError(f"problem '{self.name}' has no reference for field '{field}'")

    def data_points(self) -> dict[str, np.ndarray]:
        """Point sets the problem carries itself (e.g. observation locations), by name, for
        result files and plots; none by default."""
        return {}

    def training_constraints(self, interior: Float[Array, "ni d"], boundary: Float[Array, "nb d"]):
        """The constraints that kernel learning solves (the inner problem): all of `constraints`
        by default; a problem with data may hold some of it out for the outer loss."""
        return self.constraints(interior, boundary)

    def validation_constraints(self, validation: Float[Array, "nv d"], boundary: Float[Array, "nb d"]):
        """The constraints whose residual is the outer loss of kernel learning: the interior PDE
        at the validation points."""
        return self.constraints(validation, boundary)[:1]

    def parameters(self) -> dict:
        """The problem's own parameters (ε, ν, …) as plain values, for result files."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
