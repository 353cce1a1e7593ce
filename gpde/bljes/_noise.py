"""Observation noise relative to each output's range: a benchmark option.

`RelativeNoise(benchmark, level)` is the same bilevel problem whose evaluations the loop corrupts
with independent Gaussian noise of standard deviation `level` × (range of that output over the
box), separately for f, g and each constraint. An absolute `noise` (one standard deviation for
every output, `run_optimization(noise=…)`) treats outputs of very different spans alike; SMD1's f
spans ~900 units and its g ~800, smoke's ~10, so "5 %" only means the same thing on every benchmark
when it is relative.

The range of an output is max − min over a fixed design: 1024 scrambled-Sobol points (seed 0) and
the 2^(dx + dθ) corners of the box (where the SMD objectives peak). It is computed once per
benchmark name and process, from noiseless evaluations; the noise itself is drawn by the loop from
the run's seed, so noisy runs are reproducible. Everything that defines the truth (θ*(x), x*, F*,
the regret, feasibility) is the wrapped benchmark's: the regret is still that of the true F.
"""

import itertools

import numpy as np
from jaxtyping import Float
from scipy.stats import qmc

from .._errors import ConfigError
from ._benchmark import AbstractBilevelBenchmark

#: Points of the Sobol design that measures the output ranges (plus the box corners).
RANGE_POINTS = 1024

_RANGES: dict[str, np.ndarray] = {}


def output_ranges(benchmark: AbstractBilevelBenchmark) -> Float[np.ndarray, " n_out"]:
    """max − min of (f, g, c₁, …) over the design of the module docstring, benchmark units;
    memoized by benchmark name (a catalogue name fixes the benchmark)."""
    if benchmark.name not in _RANGES:
        dx, dt = benchmark.x_dim, benchmark.theta_dim
        unit = qmc.Sobol(dx + dt, scramble=True, seed=0).random(RANGE_POINTS)
        corners = np.array(list(itertools.product((0.0, 1.0), repeat=dx + dt)))
        values = []
        for point in np.concatenate([unit, corners]):
            x, theta = benchmark.to_box(point[:dx], point[dx:])
            c = np.asarray(benchmark.constraints(x, theta), dtype=float).reshape(benchmark.n_constraints)
            values.append([float(benchmark.upper(x, theta)), float(benchmark.lower(x, theta)), *c])
        values = np.asarray(values)
        _RANGES[benchmark.name] = values.max(axis=0) - values.min(axis=0)
    return _RANGES[benchmark.name]


class RelativeNoise(AbstractBilevelBenchmark):
    """`base` observed with Gaussian noise of sd `level` × output range (per output)."""

    base: AbstractBilevelBenchmark
    level: float

    def __check_init__(self):
        if isinstance(self.base, RelativeNoise):
            raise ConfigError("noise is given once per benchmark, not nested")
        if not (np.isfinite(self.level) and self.level > 0):
            raise ConfigError(f"benchmark {self.base.name!r}: relative noise must be > 0, got {self.level!r}")

    @property
    def name(self) -> str:
        return f"{self.base.name}[noise={self.level!r}]"

    @property
    def summary(self) -> str:
        return f"{self.base.summary}; noise sd {self.level:g} × each output's range"

    @property
    def x_bounds(self):
        return self.base.x_bounds

    @property
    def theta_bounds(self):
        return self.base.theta_bounds

    @property
    def n_constraints(self) -> int:
        return self.base.n_constraints

    def upper(self, x, theta):
        return self.base.upper(x, theta)

    def lower(self, x, theta):
        return self.base.lower(x, theta)

    def constraints(self, x, theta):
        return self.base.constraints(x, theta)

    def lower_optimum(self, x):
        return self.base.lower_optimum(x)

    @property
    def optimum(self):
        return self.base.optimum

    def regret(self, x) -> float:
        return self.base.regret(x)

    def feasible(self, x) -> bool:
        return self.base.feasible(x)

    def observation_noise(self) -> Float[np.ndarray, " n_out"]:
        return self.level * output_ranges(self.base)
