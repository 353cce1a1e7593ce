"""The sparse solver's posterior variance against the dense posterior: accuracy and time.

    python benchmarks/sparse_posterior.py [--sides 20,32,64] [--points 512] [--out table.md]

For each side m: the elliptic problem (m² grid interior points, 4(m + 1) boundary points), Matérn
7/2 ℓ = 0.3, nugget 1e-10, 6 sparse Gauss-Newton steps at ρ = 5. At `--points` random points of a
50 × 50 grid: the variance of u (amplitude 1) by `gpde.sparse.SparsePosterior` with its two methods
('factor': every functional through the solve's factors; 'local': the k = 300 nearest sites) and by
the dense `gpde.solve.Posterior` at the same linearization with the same per-functional nugget
(`SparsePosterior.nugget`). Prints, per method, the ratio to the dense variance (median, min, max)
and the seconds each took (one process; the dense one factorizes the N × N reduced system).
"""

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gpde import GaussNewton, Sparse  # noqa: E402
from gpde.kernels import Matern72  # noqa: E402
from gpde.problems.elliptic import NonlinearElliptic  # noqa: E402
from gpde.solve import CollocationSolution, Posterior, operator_blocks, reduced_gram  # noqa: E402
from gpde.sparse import SparsePosterior  # noqa: E402

NUGGET = 1e-10


def dense_posterior(solution, nugget_diagonal) -> Posterior:
    """The dense posterior at the sparse solution's linearization, its factor built with the
    sparse posterior's per-functional nugget."""
    dense = Posterior.at(CollocationSolution(solution.kernels, solution.constraints, solution.weights,
                                             solution.coefficients), NUGGET, True)
    gram = reduced_gram(operator_blocks(solution.kernels, solution.constraints), solution.weights)
    factor = jnp.linalg.cholesky(gram + jnp.diag(jnp.asarray(nugget_diagonal)))
    return eqx.tree_at(lambda p: p.factor, dense, factor).with_amplitude(1.0)


def measure(side: int, points: int, seed: int = 0) -> list[dict]:
    problem = NonlinearElliptic()
    interior = problem.domain.interior_points(side * side, "grid", jax.random.PRNGKey(0))
    boundary = problem.domain.boundary_points(4 * (side + 1), "grid", jax.random.PRNGKey(1))
    solution, _ = GaussNewton(nugget=NUGGET, max_steps=6, linear_solver=Sparse()).solve(
        Matern72(0.3), problem.constraints(interior, boundary))
    grid = np.asarray(problem.domain.grid(50)[0])
    targets = grid[np.random.default_rng(seed).choice(grid.shape[0], min(points, grid.shape[0]), replace=False)]
    posterior = SparsePosterior.at(solution, NUGGET, True).with_amplitude(1.0)
    variances, seconds = {}, {}
    for name, method in (("factor", posterior), ("local", posterior.with_method("local")),
                         ("dense", None)):
        start = time.perf_counter()
        if method is None:
            method = dense_posterior(solution, np.asarray(posterior.nugget))
        variances[name] = np.asarray(method.variance(targets))
        seconds[name] = time.perf_counter() - start
    rows = []
    for name in ("factor", "local", "dense"):
        ratio = variances[name] / variances["dense"]
        rows.append(dict(sites=int(solution.sites.shape[0]), points=int(targets.shape[0]), method=name,
                         median=float(np.median(ratio)), low=float(ratio.min()), high=float(ratio.max()),
                         seconds=seconds[name]))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| sites N | points | method | variance / dense: median | min | max | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sites']:,} | {r['points']} | {r['method']} | {r['median']:.4g} | {r['low']:.4g} "
                     f"| {r['high']:.4g} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="20,32,64", help="interior grid sides m (m² interior points)")
    parser.add_argument("--points", type=int, default=512, help="evaluation points")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)
    rows = []
    for side in (int(s) for s in args.sides.split(",") if s):
        rows.extend(measure(side, args.points))
        print("\n".join(table(rows[-3:]).splitlines()[2:]), file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
