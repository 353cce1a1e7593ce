"""What a bilevel black-box benchmark declares (docs/references.md §4-§5).

    minimize over x   F(x) = f(x, θ*(x)),   θ*(x) = argmin over θ of g(x, θ),
    subject to        c(x, θ*(x)) ≥ 0 (only for constrained benchmarks),

on the box X × Θ. The optimizers see f, g and c only through noisy evaluations at points they choose;
the benchmark also knows the truth (θ*(x) and F(x*)) so that the regret of a recommendation can be
measured with the TRUE lower-level optimum.

A benchmark is one file in `problems/bilevel/`; the optimizers work in the unit box and map to the
benchmark's box with `to_box`.
"""

import abc

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float


#: Constraint violation below which a point counts as feasible (round-off of c at θ*(x)).
FEASIBILITY_TOLERANCE = 1e-9


class AbstractBilevelBenchmark(eqx.Module):
    """A bilevel problem with known (or accurately computed) optimum."""

    name: eqx.AbstractClassVar[str]
    summary: eqx.AbstractClassVar[str]
    #: Box of the upper variables x: row 0 lower bounds, row 1 upper bounds, shape (2, dx).
    x_bounds: eqx.AbstractVar[Float[np.ndarray, "2 dx"]]
    #: Box of the lower variables θ, shape (2, dθ).
    theta_bounds: eqx.AbstractVar[Float[np.ndarray, "2 dtheta"]]

    @property
    def x_dim(self) -> int:
        return int(np.shape(self.x_bounds)[1])

    @property
    def theta_dim(self) -> int:
        return int(np.shape(self.theta_bounds)[1])

    @property
    def n_constraints(self) -> int:
        """Number of upper-level black-box constraints c(x, θ) ≥ 0 (0: unconstrained)."""
        return 0

    @abc.abstractmethod
    def upper(self, x: Float[Array, " dx"], theta: Float[Array, " dtheta"]) -> Float[Array, ""]:
        """f(x, θ), noiseless, in the benchmark's own coordinates."""

    @abc.abstractmethod
    def lower(self, x: Float[Array, " dx"], theta: Float[Array, " dtheta"]) -> Float[Array, ""]:
        """g(x, θ), noiseless."""

    def constraints(self, x: Float[Array, " dx"], theta: Float[Array, " dtheta"]) -> Float[Array, " c"]:
        """c(x, θ) (feasible where every entry is ≥ 0); empty for unconstrained benchmarks."""
        return np.zeros((0,))

    @abc.abstractmethod
    def lower_optimum(self, x: Float[np.ndarray, " dx"]) -> Float[np.ndarray, " dtheta"]:
        """The true θ*(x) = argmin_θ g(x, θ) (closed form, or dense search plus refinement)."""

    @property
    @abc.abstractmethod
    def optimum(self) -> tuple[Float[np.ndarray, " dx"], float]:
        """(x*, F(x*)): the true bilevel optimum."""

    def feasible(self, x: Float[np.ndarray, " dx"]) -> bool:
        """Whether x is bilevel feasible: every constraint c(x, θ*(x)) ≥ −1e-9 at the TRUE θ*(x)
        (always true without constraints)."""
        if self.n_constraints == 0:
            return True
        x = np.asarray(x, dtype=float)
        values = np.asarray(self.constraints(x, self.lower_optimum(x)), dtype=float)
        return bool(np.min(values) >= -FEASIBILITY_TOLERANCE)

    def observation_noise(self) -> Float[np.ndarray, " n_out"]:
        """Standard deviation of the Gaussian noise on each observed output (f, g, c₁, …), in the
        benchmark's units, that belongs to the benchmark itself (zero: noiseless;
        `gpde.bljes.RelativeNoise` adds some). The loop's `noise` comes on top."""
        return np.zeros(2 + self.n_constraints)

    def regret(self, x: Float[np.ndarray, " dx"]) -> float:
        """Bilevel simple regret F(x) − F(x*), F evaluated with the TRUE lower-level optimum at x."""
        theta = self.lower_optimum(np.asarray(x, dtype=float))
        return float(self.upper(x, theta)) - self.optimum[1]

    def to_box(self, unit_x, unit_theta):
        """Map points of the unit box [0, 1]^(dx + dθ) to the benchmark's box."""
        lo_x, hi_x = np.asarray(self.x_bounds)
        lo_t, hi_t = np.asarray(self.theta_bounds)
        return lo_x + (hi_x - lo_x) * unit_x, lo_t + (hi_t - lo_t) * unit_theta
