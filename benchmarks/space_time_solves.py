"""Errors of fixed-kernel solves of the two-field space-time problems on the published test grids.

    python benchmarks/space_time_solves.py gray-scott 600 400 0.7071,0.7071 0.745,0.083,1.063,0.079
    python benchmarks/space_time_solves.py schrodinger 2000 500 0.174,0.232,0.175,0.213

Each lengthscale argument is (ℓ_t, ℓ_x) for both fields or (ℓ_t, ℓ_x) of u then of v, in gpde's
units (benchmarks/learn-published.md converts the published ones). Seed 0, random points, nugget
1e-10, 20 Gauss-Newton steps. Test grids: Gray-Scott t 101 × x 201 on [0, 1]²; Schrödinger t 101 ×
x 128 (x = −5 + 10 j/128, the periodic grid), against the problems' own references.
"""

import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gpde import GaussNewton  # noqa: E402
from gpde.kernels import Gaussian, PeriodicGaussian  # noqa: E402
from gpde.problems.gray_scott import GrayScott  # noqa: E402
from gpde.problems.schrodinger import Schrodinger  # noqa: E402


def _setup(name):
    if name == "gray-scott":
        tt, xx = np.meshgrid(np.linspace(0, 1, 101), np.linspace(0, 1, 201), indexing="ij")
        return GrayScott(), np.column_stack([tt.ravel(), xx.ravel()]), lambda ell: Gaussian(jnp.asarray(ell))
    if name == "schrodinger":
        tt, xx = np.meshgrid(np.linspace(0, 1, 101), np.linspace(-5, 5, 129)[:-1], indexing="ij")
        return (Schrodinger(), np.column_stack([tt.ravel(), xx.ravel()]),
                lambda ell: PeriodicGaussian(jnp.asarray(ell), period=10.0, periodic_dims=(1,)))
    raise SystemExit(f"unknown problem {name!r}: gray-scott or schrodinger")


def main(name, n_interior, n_boundary, *lengthscales):
    problem, grid, kernel = _setup(name)
    keys = jax.random.split(jax.random.PRNGKey(0))
    interior = problem.domain.interior_points(int(n_interior), "random", keys[0])
    boundary = problem.domain.boundary_points(int(n_boundary), "random", keys[1], problem.boundary_faces)
    references = [problem.field_reference(f, grid) for f in problem.fields]
    print(f"{name}: {n_interior} + {n_boundary} points, test grid {grid.shape[0]} points")
    for text in lengthscales:
        ell = [float(v) for v in text.split(",")]
        per_field = (ell[:2], ell[2:]) if len(ell) == 4 else (ell, ell)
        start = time.perf_counter()
        solution, history = GaussNewton(nugget=1e-10, max_steps=20).solve(
            tuple(kernel(e) for e in per_field), problem.constraints(interior, boundary))
        row = []
        for field, reference in enumerate(references):
            error = np.asarray(solution(jnp.asarray(grid), field)) - reference
            row.append(f"{problem.fields[field]} RMS {np.sqrt(np.mean(error**2)):.3e} L∞ {np.abs(error).max():.3e}")
        print(f"  ℓ_u = {per_field[0]}, ℓ_v = {per_field[1]}: {' | '.join(row)} | {len(history.steps)} steps, "
              f"{history.stop_reason}, {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
