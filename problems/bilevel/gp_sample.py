"""GP sample-path bilevel problems: f and g are draws from a Gaussian-process prior on the unit box.

    f(x, θ), g(x, θ) on [0, 1]^(d + d), d = 1 ("gp-1+1") and d = 2 ("gp-2+2"),

each an independent draw of a zero-mean GP with the squared-exponential kernel
k(z, z') = exp(−|z − z'|² / (2ℓ²)), represented EXACTLY by N = 1024 random Fourier features:

    h(z) = √(2/N) Σᵢ wᵢ cos(ωᵢ·z + bᵢ),   ωᵢ ~ N(0, ℓ⁻² I), bᵢ ~ U[0, 2π), wᵢ ~ N(0, 1)

(so Cov h = k up to the Monte-Carlo error of N features; the benchmark IS this function, so its
optimum is exact for it). A fixed seed fixes the draw.

Truth by dense search: writing ωᵢ·z + bᵢ = αᵢ(x) + βᵢ(θ) with αᵢ = ωᵢ,ₓ·x + bᵢ and βᵢ = ωᵢ,θ·θ,
cos(α + β) = cos α cos β − sin α sin β turns h on a grid of x times a grid of θ into two matrix
products, so dense searches are cheap:
- θ*(x): g(x, ·) on a θ-grid (1001 points for d = 1, 81² for d = 2), the 5 best grid points refined
  by L-BFGS-B in the box with the exact gradient and polished by Newton's method with the exact
  Hessian (to machine precision); the best refined point.
- x*: F(x) ≈ f(x, grid argmin of g(x, ·)) on the joint grid (401 × 401 for d = 1, 41² × 41² for
  d = 2); the 8 best grid x refined by Nelder–Mead on F(x) = f(x, θ*(x)) with the refined θ*(x).
  This takes ~1 min for d = 2, so the result is stored in data/bljes_gp_sample_optima.json (with the
  parameters it belongs to) and memoized per process; without a matching entry it is recomputed.
  `python -m gpde.problems.bilevel.gp_sample` recomputes every entry and rewrites the file.

Which draws are benchmarks: BLJES, like the bilevel methods it is compared with, assumes the
lower-level optimum θ*(x) is unique (docs/references.md §4, "optimistic setting"). About four draws in
ten violate that where it matters: the upper level's minimum sits exactly where θ*(x) jumps between
two basins of g, the two basins tie at x* (`lower_level_gap` ≈ 1e-7 … 1e-12), and F is
discontinuous there (F − F* of 0.2–3 within 0.005 of x*). On such a draw the regret of every
method measures on which side of the jump its recommendation lands, not how well it optimized.
So "gp-1+1" and "gp-2+2" are the first seeds, counting from 0, whose lower-level gap at x* is at
least `MIN_LOWER_LEVEL_GAP` (prior sd of g: 1): seed 0 for both (gaps 1.30 and 0.36; seeds 0–9
for d = 1 give gaps 1.3, 1.5e-7, 0.99, 3.9e-8, 1.8e-7, 0.55, 0.42, 3.3e-8, 0.72, 0.028, seeds 0–3
for d = 2: 0.36, 1.7, 2.3e-12, 1.5e-12). The draws used before this rule, seed 1 (d = 1) and
seed 2 (d = 2), both with tied basins at x*, stay in the catalogue as "gp-1+1-tied" and
"gp-2+2-tied": their earlier regret tables refer to them, and they show what a tie does.
"""

import functools
import json
from pathlib import Path
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.optimize

from gpde import ConfigError
from gpde.bljes import AbstractBilevelBenchmark
from ._tables import default_table_path, read_table, write_json_atomically

_LOWER_GRID = {1: 1001, 2: 81}  # θ-grid nodes per side for θ*(x)
_JOINT_GRID = {1: 401, 2: 41}  # x- and θ-grid nodes per side for the search of x*
_REFINE_LOWER = 5
_REFINE_UPPER = 8
_NEWTON_STEPS = 20
#: Smallest admissible gap (in units of the prior sd of g) between the lowest and the second-lowest
#: basin of g(x*, ·) for a draw to be a catalogue benchmark (see the module docstring).
MIN_LOWER_LEVEL_GAP = 0.1
_DISTINCT_BASIN = 0.05  # local minima of g(x, ·) closer than this (in θ) are the same basin
OPTIMA_FILE = "bljes_gp_sample_optima.json"


def _grid(nodes: int, dim: int) -> np.ndarray:
    axis = np.linspace(0.0, 1.0, nodes)
    return np.stack(np.meshgrid(*[axis] * dim, indexing="ij"), axis=-1).reshape(-1, dim)


class GPSample(AbstractBilevelBenchmark):
    dim: int
    seed: int
    lengthscale: float
    n_features: int
    #: Features of f (row 0) and g (row 1): frequencies (2, N, 2d), phases (2, N), weights (2, N).
    frequencies: np.ndarray = eqx.field(repr=False)
    phases: np.ndarray = eqx.field(repr=False)
    weights: np.ndarray = eqx.field(repr=False)

    name: ClassVar[str] = "gp-sample"
    summary: ClassVar[str] = "f, g: draws of a squared-exponential GP (1024 Fourier features) on [0,1]^(d+d)"

    def __init__(self, dim: int, seed: int, lengthscale: float, n_features: int = 1024):
        if dim not in _LOWER_GRID:
            raise ConfigError(f"GP sample-path benchmark: dim must be 1 or 2 (dense search), got {dim}")
        if not lengthscale > 0 or n_features < 1:
            raise ConfigError(f"GP sample-path benchmark: need lengthscale > 0 and n_features >= 1, "
                              f"got {lengthscale}, {n_features}")
        self.dim, self.seed, self.lengthscale, self.n_features = dim, seed, float(lengthscale), n_features
        rng = np.random.default_rng(seed)
        self.frequencies = rng.normal(size=(2, n_features, 2 * dim)) / lengthscale
        self.phases = rng.uniform(0.0, 2 * np.pi, size=(2, n_features))
        self.weights = rng.normal(size=(2, n_features)) * np.sqrt(2.0 / n_features)

    @property
    def x_bounds(self):
        return np.stack([np.zeros(self.dim), np.ones(self.dim)])

    @property
    def theta_bounds(self):
        return self.x_bounds

    def _value(self, level, x, theta):
        z = jnp.concatenate([jnp.atleast_1d(x), jnp.atleast_1d(theta)])
        return jnp.cos(self.frequencies[level] @ z + self.phases[level]) @ self.weights[level]

    def upper(self, x, theta):
        return self._value(0, x, theta)

    def lower(self, x, theta):
        return self._value(1, x, theta)

    @property
    def _key(self):
        return self.dim, self.seed, self.lengthscale, self.n_features

    def _on_grid(self, level, xs, nodes):
        """h_level(xs[i], θ_j) for the θ-grid with `nodes` per side, an (n_x, n_θ) matrix, by the
        cos(α + β) split; the θ-grid tables are computed once per process."""
        omega, phase, weight = self.frequencies[level], self.phases[level], self.weights[level]
        alpha = xs @ omega[:, : self.dim].T + phase
        cos_beta, sin_beta = _theta_tables(self._key, level, nodes)
        return (np.cos(alpha) * weight) @ cos_beta - (np.sin(alpha) * weight) @ sin_beta

    def _lower_numpy(self, x, theta):
        """g(x, θ) and ∂g/∂θ in numpy (for the refinement)."""
        omega = self.frequencies[1]
        angle = omega @ np.concatenate([x, theta]) + self.phases[1]
        value = np.cos(angle) @ self.weights[1]
        gradient = -(np.sin(angle) * self.weights[1]) @ omega[:, self.dim:]
        return value, gradient

    def lower_optimum(self, x):
        x = np.asarray(x, dtype=float).reshape(self.dim)
        grid = _grid(_LOWER_GRID[self.dim], self.dim)
        values = self._on_grid(1, x[None], _LOWER_GRID[self.dim])[0]
        refined = [self._refine_lower(x, start) for start in grid[np.argsort(values)[:_REFINE_LOWER]]]
        return min(refined, key=lambda minimum: minimum[0])[1]

    def _lower_hessian(self, x, theta):
        """∂²g/∂θ² at (x, θ), exact (the features are cosines)."""
        omega = self.frequencies[1]
        angle = omega @ np.concatenate([x, theta]) + self.phases[1]
        omega_theta = omega[:, self.dim:]
        return -(omega_theta * (np.cos(angle) * self.weights[1])[:, None]).T @ omega_theta

    def _refine_lower(self, x, start) -> tuple[float, np.ndarray]:
        """A local minimum (g value, θ in the box) of g(x, ·): L-BFGS-B from `start`, then Newton
        steps with the exact Hessian on the coordinates that are not held at a bound.

        L-BFGS-B stops at ~1e-8 in θ, and where it stops depends on the CPU's rounding; the Newton
        polish converges quadratically to the minimizer at machine precision, so θ*(x), F(x) and the
        stored optimum are the same on every machine (to ~1e-14) and regrets near 1e-8 mean something.
        """
        result = scipy.optimize.minimize(lambda t: self._lower_numpy(x, t), start, jac=True,
                                         method="L-BFGS-B", bounds=[(0.0, 1.0)] * self.dim)
        theta = np.clip(result.x, 0.0, 1.0)
        for _ in range(_NEWTON_STEPS):
            _, gradient = self._lower_numpy(x, theta)
            # A coordinate at a bound whose gradient pushes outward stays there (KKT).
            held = ((theta <= 0.0) & (gradient > 0)) | ((theta >= 1.0) & (gradient < 0))
            free = ~held
            if not np.any(free):
                break
            hessian = self._lower_hessian(x, theta)[np.ix_(free, free)]
            try:
                factor = np.linalg.cholesky(hessian)
            except np.linalg.LinAlgError:
                break  # not a strict local minimum: keep the L-BFGS-B point
            step = np.zeros_like(theta)
            step[free] = -scipy.linalg.cho_solve((factor, True), gradient[free])
            theta = np.clip(theta + step, 0.0, 1.0)
            if np.max(np.abs(step)) < 1e-15:
                break
        return float(self._lower_numpy(x, theta)[0]), theta

    def lower_level_gap(self, x) -> float:
        """g of the second-lowest basin minus g of the lowest basin of g(x, ·) (inf if g(x, ·) has
        one basin): every local minimum of the θ-grid (no axis neighbour lower) refined by L-BFGS-B,
        minima closer than 0.05 counted once. ≈ 0 where θ*(x) is not unique."""
        x = np.asarray(x, dtype=float).reshape(self.dim)
        nodes = _LOWER_GRID[self.dim]
        values = self._on_grid(1, x[None], nodes)[0].reshape((nodes,) * self.dim)
        is_minimum = np.ones(values.shape, dtype=bool)
        for axis in range(self.dim):
            for shift in (1, -1):
                neighbour = np.roll(values, shift, axis=axis)
                wrapped = [slice(None)] * self.dim
                wrapped[axis] = 0 if shift == 1 else -1
                neighbour[tuple(wrapped)] = np.inf  # the box edge is a wall, not a neighbour
                is_minimum &= values <= neighbour
        minima = sorted((self._refine_lower(x, start) for start in _grid(nodes, self.dim)[is_minimum.ravel()]),
                        key=lambda minimum: minimum[0])
        lowest_value, lowest_point = minima[0]
        others = [value for value, point in minima[1:] if np.linalg.norm(point - lowest_point) > _DISTINCT_BASIN]
        return others[0] - lowest_value if others else np.inf

    def upper_at_lower_optimum(self, x) -> float:
        """F(x) = f(x, θ*(x)) with the refined θ*(x)."""
        x = np.clip(np.asarray(x, dtype=float).reshape(self.dim), 0.0, 1.0)
        return float(self.upper(x, self.lower_optimum(x)))

    @property
    def optimum(self):
        return _optimum(self)


@functools.lru_cache(maxsize=16)
def _theta_tables(key, level, nodes):
    """cos and sin of ω_θ·θ_j, shape (N, n_θ) each, for the θ-grid with `nodes` per side."""
    problem = GPSample(*key)
    beta = problem.frequencies[level][:, problem.dim:] @ _grid(nodes, problem.dim).T
    return np.cos(beta), np.sin(beta)


@functools.lru_cache(maxsize=8)
def _cached_optimum(dim, seed, lengthscale, n_features):
    problem = GPSample(dim, seed, lengthscale, n_features)
    grid = _grid(_JOINT_GRID[dim], dim)
    g = problem._on_grid(1, grid, _JOINT_GRID[dim])
    f = problem._on_grid(0, grid, _JOINT_GRID[dim])
    approximate = f[np.arange(len(grid)), np.argmin(g, axis=1)]
    best_x, best_value = None, np.inf
    for start in grid[np.argsort(approximate)[:_REFINE_UPPER]]:
        if dim == 1:
            # Nelder–Mead in 1-D is a bracketing search; a bounded scalar search is as good and faster.
            step = 1.0 / (_JOINT_GRID[dim] - 1)
            result = scipy.optimize.minimize_scalar(
                lambda t: problem.upper_at_lower_optimum([t]),
                bounds=(max(0.0, start[0] - step), min(1.0, start[0] + step)), method="bounded",
                options={"xatol": 1e-10})
            candidate, value = np.array([result.x]), result.fun
        else:
            result = scipy.optimize.minimize(problem.upper_at_lower_optimum, start, method="Nelder-Mead",
                                             bounds=[(0.0, 1.0)] * dim, options={"xatol": 1e-8, "fatol": 1e-12})
            candidate, value = result.x, result.fun
        # The grid point itself is a valid candidate too (F may jump where θ*(x) switches basin).
        for point, point_value in ((candidate, value), (start, problem.upper_at_lower_optimum(start))):
            if point_value < best_value:
                best_x, best_value = np.clip(point, 0.0, 1.0), float(point_value)
    return best_x, best_value


def _stored_optima() -> dict:
    return read_table(OPTIMA_FILE) or {}


def _key_fields(key) -> dict:
    return dict(zip(("dim", "seed", "lengthscale", "n_features"), key))


def _optimum(problem: GPSample):
    for entry in _stored_optima().values():
        if {name: entry.get(name) for name in ("dim", "seed", "lengthscale", "n_features")} == _key_fields(problem._key):
            return np.array(entry["x"], dtype=float), float(entry["F"])
    x, value = _cached_optimum(*problem._key)
    return x.copy(), value


def write_optima(path: Path | None = None) -> dict:
    """Recompute the optimum of every catalogue GP sample-path benchmark by dense search and write
    them (atomically) to `path` as JSON: name → parameters, x*, F*."""
    optima = {}
    for name, factory in BENCHMARKS.items():
        problem = factory()
        x, value = _cached_optimum(*problem._key)
        optima[name] = {**_key_fields(problem._key), "x": x.tolist(), "F": value,
                        "theta": problem.lower_optimum(x).tolist(),
                        "lower_level_gap": problem.lower_level_gap(x),
                        "method": f"joint grid {_JOINT_GRID[problem.dim]}^{problem.dim} x {_JOINT_GRID[problem.dim]}^"
                                  f"{problem.dim}, {_REFINE_UPPER} best refined (Nelder-Mead / bounded scalar); "
                                  f"theta*(x): grid {_LOWER_GRID[problem.dim]}^{problem.dim} + L-BFGS-B from 5 best"}
    write_json_atomically(default_table_path(OPTIMA_FILE) if path is None else path, optima)
    return optima


BENCHMARKS = {
    "gp-1+1": functools.partial(GPSample, dim=1, seed=0, lengthscale=0.15),
    "gp-2+2": functools.partial(GPSample, dim=2, seed=0, lengthscale=0.25),
    # Draws whose lower-level basins tie at x* (see the module docstring); kept for comparison.
    "gp-1+1-tied": functools.partial(GPSample, dim=1, seed=1, lengthscale=0.15),
    "gp-2+2-tied": functools.partial(GPSample, dim=2, seed=2, lengthscale=0.25),
}


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)
    print(json.dumps(write_optima(), indent=1))
