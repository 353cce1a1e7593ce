"""SMD test problems (Sinha, Malo, Deb, Evolutionary Computation 22(3), 2014; docs/references.md §5).

Both levels are minimized. The upper variables are x = (x_u1, x_u2), the lower θ = (x_l1, x_l2);
in the catalogue versions every block is a scalar (p = q = r = 1, s = 0: "2 + 2") except SMD12
(q = 2: "2 + 3") and the SMD6 variant with the non-unique lower optimum (q = 0, s = 2: "2 + 3").
gpde's f is the SMD upper objective F, gpde's g the SMD lower objective f.

SMD1   f = x_u1² + x_l1² + x_u2² + (x_u2 − tan x_l2)²
       g = x_u1² + x_l1² + (x_u2 − tan x_l2)²
       x ∈ [−5, 10]², x_l1 ∈ [−5, 10], x_l2 ∈ [−1.5, 1.5]
       θ*(x) = (0, arctan x_u2); F(x) = |x|²; optimum x* = 0, θ* = 0, F* = 0.
SMD2   f = x_u1² − x_l1² + x_u2² − (x_u2 − ln x_l2)²
       g = x_u1² + x_l1² + (x_u2 − ln x_l2)²
       x_u1 ∈ [−5, 10], x_u2 ∈ [−5, 1], x_l1 ∈ [−5, 10], x_l2 ∈ [0.005, e]
       θ*(x) = (0, e^{x_u2}); F(x) = |x|²; optimum x* = 0, θ* = (0, 1), F* = 0.
SMD6   f = x_u1² − Σ_{i≤q} x_l1,i² + Σ_{i>q} x_l1,i² + x_u2² − (x_u2 − x_l2)²
       g = x_u1² + Σ_{i≤q} x_l1,i² + Σ_{pairs j} (x_l1,q+2j − x_l1,q+2j−1)² + (x_u2 − x_l2)²
       all variables in [−5, 10]. The s paired entries have a whole line of lower optima
       (x_l1,q+2j = x_l1,q+2j−1); gpde's lower_optimum returns the optimistic one (best for the
       upper level): 0. θ*(x) = (0, …, 0, x_u2); F(x) = |x|²; F* = 0 at x* = 0.
SMD12  (p = 1, q = 2, r = 1; θ = (x_l1,1, x_l1,2, x_l2))
       f = (x_u1 − 2)² + |x_l1|² + (x_u2 − 2)² + tan|x_l2| − (x_u2 − tan x_l2)²
       g₀ = x_u1² + |x_l1 − 2|² + (x_u2 − tan x_l2)²
       lower constraints  h₁ = x_l1,1 − x_l1,2³ ≥ 0,  h₂ = x_l1,2 − x_l1,1³ ≥ 0,  h₃ = 1 − (x_u2 − tan x_l2)² ≥ 0
       upper constraints  c₁ = x_u2 − tan x_l2 ≥ 0,  c₂ = x_u1 − x_u2³ ≥ 0,  c₃ = x_u2 − x_u1³ ≥ 0
       x_u1 ∈ [−5, 10], x_u2 ∈ [−14.1, 14.1], x_l1 ∈ [−5, 10]², x_l2 ∈ [−1.5, 1.5].

Deviations from the paper, and why:
- Box of x_l2 in SMD1/SMD12: [−1.5, 1.5] instead of the open (−π/2, π/2), and in SMD2 [0.005, e]
  instead of (0, e]: tan and ln diverge at the open ends, which would give g values of 10¹² that
  no surrogate can model. θ*(x) stays strictly inside the box for every x of the box
  (arctan 10 = 1.471, arctan 14.1 = 1.4999, e^{−5} = 0.0067).
- SMD12: the optimizers only see g, so the lower-level constraints are folded into it as an
  EXACT penalty, g = g₀ + 10 Σ max(0, −hᵢ). Its KKT multipliers at the lower optimum are 1 (h₁, h₂)
  and 0 (h₃), below 10, so the penalized and the constrained lower problems have the same
  minimizer θ*(x) = (1, 1, arctan x_u2) (h₃ is inactive there). Then c₁ = 0 at θ*(x) for every x,
  F(x) = (x_u1 − 2)² + 2 + (x_u2 − 2)² + |x_u2| on the feasible set {x_u1 ≥ x_u2³, x_u2 ≥ x_u1³},
  whose minimum is F* = 5 at x* = (1, 1) (a KKT point with both cubic constraints active; the
  tests check it against a dense grid). The paper reports F* = 3 at x_l2 = arctan(1/√(p+r−1) − 1/√r)
  = 0, but with these formulas x_l2 = 0 is not lower-optimal at x_u2 = 1 (g is 1 larger than at
  x_l2 = π/4), so that point is not bilevel feasible; gpde uses the value its own formulas give.
  The regret of a recommendation that violates a constraint at θ*(x̂) (by more than 1e-9,
  `feasible` is false) is the largest regret on the box, max F − F* = 334.31.
"""

import functools
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from gpde import ConfigError
from gpde.bljes import AbstractBilevelBenchmark

_TAN_BOUND = 1.5  # box of x_l2 where tan x_l2 appears


def _box(*intervals):
    """(2, n) bounds array from (low, high) pairs."""
    return np.array(intervals, dtype=float).T


class SMD1(AbstractBilevelBenchmark):
    name: ClassVar[str] = "smd1"
    summary: ClassVar[str] = "SMD1 (2 + 2): cooperative, convex; θ*(x) = (0, arctan x₂), F* = 0 at x = 0"

    @property
    def x_bounds(self):
        return _box((-5, 10), (-5, 10))

    @property
    def theta_bounds(self):
        return _box((-5, 10), (-_TAN_BOUND, _TAN_BOUND))

    def upper(self, x, theta):
        return x[0] ** 2 + theta[0] ** 2 + x[1] ** 2 + (x[1] - jnp.tan(theta[1])) ** 2

    def lower(self, x, theta):
        return x[0] ** 2 + theta[0] ** 2 + (x[1] - jnp.tan(theta[1])) ** 2

    def lower_optimum(self, x):
        return np.array([0.0, np.arctan(x[1])])

    @property
    def optimum(self):
        return np.zeros(2), 0.0


class SMD2(AbstractBilevelBenchmark):
    name: ClassVar[str] = "smd2"
    summary: ClassVar[str] = "SMD2 (2 + 2): conflicting, convex; θ*(x) = (0, e^x₂), F* = 0 at x = 0"

    @property
    def x_bounds(self):
        return _box((-5, 10), (-5, 1))

    @property
    def theta_bounds(self):
        return _box((-5, 10), (0.005, np.e))

    def upper(self, x, theta):
        return x[0] ** 2 - theta[0] ** 2 + x[1] ** 2 - (x[1] - jnp.log(theta[1])) ** 2

    def lower(self, x, theta):
        return x[0] ** 2 + theta[0] ** 2 + (x[1] - jnp.log(theta[1])) ** 2

    def lower_optimum(self, x):
        return np.array([0.0, np.exp(x[1])])

    @property
    def optimum(self):
        return np.zeros(2), 0.0


class SMD6(AbstractBilevelBenchmark):
    """SMD6 with block sizes p (x_u1), q + s (x_l1; s even), r (x_u2 and x_l2)."""

    p: int = 1
    q: int = 1
    r: int = 1
    s: int = 0

    name: ClassVar[str] = "smd6"
    summary: ClassVar[str] = "SMD6: conflicting, quadratic; θ*(x) = (0, …, 0, x_u2) (optimistic), F* = 0 at x = 0"

    def __check_init__(self):
        if min(self.p, self.q, self.r, self.s) < 0 or self.s % 2 or self.p + self.r == 0:
            raise ConfigError(f"SMD6 needs p, q, r, s >= 0, s even and p + r >= 1; got "
                              f"p={self.p}, q={self.q}, r={self.r}, s={self.s}")

    @property
    def x_bounds(self):
        return _box(*[(-5, 10)] * (self.p + self.r))

    @property
    def theta_bounds(self):
        return _box(*[(-5, 10)] * (self.q + self.s + self.r))

    def _split(self, x, theta):
        q, s = self.q, self.s
        return x[: self.p], x[self.p:], theta[:q], theta[q: q + s], theta[q + s:]

    def upper(self, x, theta):
        xu1, xu2, xl1, xl1_pairs, xl2 = self._split(x, theta)
        return (jnp.sum(xu1**2) - jnp.sum(xl1**2) + jnp.sum(xl1_pairs**2)
                + jnp.sum(xu2**2) - jnp.sum((xu2 - xl2) ** 2))

    def lower(self, x, theta):
        xu1, xu2, xl1, xl1_pairs, xl2 = self._split(x, theta)
        return (jnp.sum(xu1**2) + jnp.sum(xl1**2) + jnp.sum((xl1_pairs[1::2] - xl1_pairs[::2]) ** 2)
                + jnp.sum((xu2 - xl2) ** 2))

    def lower_optimum(self, x):
        return np.concatenate([np.zeros(self.q + self.s), np.asarray(x, dtype=float)[self.p:]])

    @property
    def optimum(self):
        return np.zeros(self.p + self.r), 0.0


class SMD12(AbstractBilevelBenchmark):
    name: ClassVar[str] = "smd12"
    summary: ClassVar[str] = ("SMD12 (2 + 3): constrained at both levels; θ*(x) = (1, 1, arctan x₂), "
                              "F* = 5 at x = (1, 1)")
    penalty: ClassVar[float] = 10.0

    @property
    def x_bounds(self):
        return _box((-5, 10), (-14.1, 14.1))

    @property
    def theta_bounds(self):
        return _box((-5, 10), (-5, 10), (-_TAN_BOUND, _TAN_BOUND))

    @property
    def n_constraints(self):
        return 3

    def upper(self, x, theta):
        mismatch = x[1] - jnp.tan(theta[2])
        return ((x[0] - 2) ** 2 + theta[0] ** 2 + theta[1] ** 2 + (x[1] - 2) ** 2
                + jnp.tan(jnp.abs(theta[2])) - mismatch**2)

    def lower(self, x, theta):
        mismatch = x[1] - jnp.tan(theta[2])
        objective = x[0] ** 2 + (theta[0] - 2) ** 2 + (theta[1] - 2) ** 2 + mismatch**2
        lower_constraints = jnp.stack([theta[0] - theta[1] ** 3, theta[1] - theta[0] ** 3, 1 - mismatch**2])
        return objective + self.penalty * jnp.sum(jnp.maximum(0.0, -lower_constraints))

    def constraints(self, x, theta):
        return jnp.stack([x[1] - jnp.tan(theta[2]), x[0] - x[1] ** 3, x[1] - x[0] ** 3])

    def lower_optimum(self, x):
        return np.array([1.0, 1.0, np.arctan(x[1])])

    @property
    def optimum(self):
        return np.array([1.0, 1.0]), 5.0

    def _upper_at_lower_optimum(self, x):
        return (x[0] - 2) ** 2 + 2 + (x[1] - 2) ** 2 + abs(x[1])

    def regret(self, x):
        x = np.asarray(x, dtype=float)
        theta = self.lower_optimum(x)
        if not self.feasible(x):
            # F at θ*(x) is separately convex in x₁ and x₂, so its maximum on the box is at a corner.
            lo, hi = self.x_bounds
            corners = [(a, b) for a in (lo[0], hi[0]) for b in (lo[1], hi[1])]
            return max(self._upper_at_lower_optimum(c) for c in corners) - self.optimum[1]
        return float(self.upper(x, theta)) - self.optimum[1]


BENCHMARKS = {
    "smd1": SMD1,
    "smd2": SMD2,
    "smd6": SMD6,
    "smd6-ridge": functools.partial(SMD6, p=1, q=0, r=1, s=2),
    "smd12": SMD12,
}
