"""Sparse-Cholesky Gauss-Newton at scale: time, memory and accuracy against N (docs/sparse.md).

    python benchmarks/scale.py [--problem elliptic|series|eikonal|burgers] [--sizes 10000,40000,160000]
                               [--rho 5] [--ordering follow_diracs] [--steps 4] [--dense-up-to 10000]
                               [--compare-orderings] [--tiny] [--out table.md]

Problems, each on a grid of about `size` interior points plus the boundary (or initial line and
walls), solved by a fixed number of Gauss-Newton steps from u = 0:

- `elliptic`: −Δu + u³ = f on [0,1]², gpde's manufactured solution (problems/elliptic.py),
  Matérn 7/2 ℓ = 0.3, nugget 1e-10, m × m interior and 4(m + 1) boundary points;
- `series`: the same equation with the smoother u = Σ_{k=1}^{600} sin(πkx) sin(πky)/k⁶ of
  Chen, Owhadi and Schäfer;
- `eikonal`: |∇u|² = 1 + εΔu, ε = 0.01, u = 0 on ∂[0,1]² (problems/eikonal.py, its reference
  by the Hopf-Cole transform), Matérn 5/2 ℓ = 0.2;
- `burgers`: u_t + u u_x = ν u_xx, ν = 0.02 (or `--viscosity`), in space-time (t, x) ∈ [0,1]×[−1,1],
  Cole-Hopf reference, Matérn 7/2 with ℓ = (0.3, 0.05) (or `--t-lengthscale`, `--x-lengthscale`), an
  m × round(a·m) interior grid (a = 2, or `--aspect`, any positive number);
  `--continuation K` first solves at K larger viscosities (from 0.02 down), each warm-starting the next;
  `--layer-ratio R --layer-width W` warp the kernel's x coordinate by `LayerStretch` (R times shorter
  x lengthscale within about W of the front x = 0) and space the x grid uniformly in the warped coordinate.

Every configuration runs in a fresh subprocess (its peak resident set is its own; compilation
caches do not leak) unless `--tiny`, which runs one small configuration of each solver in this
process (what the test suite does). Errors are at the interior collocation points, where the
iterate's values come out of the last step for free: RMS, relative L2 and L∞ against the reference.
The fitted exponent is the least-squares slope of log(total time) against log N over the sparse rows.
It runs unchanged on a GPU when JAX sees one (the factor's batched blocks run there; ordering,
triangular solves and CG stay on the CPU).

Columns: N (collocation points), solver, ρ, ordering, setup (ordering, pattern and factor of the
basis functionals, compilation included), s/step (mean Gauss-Newton step: linearization,
preconditioner factor, CG, new values), total, CPU (process CPU time: the machine may be shared),
peak RSS, RMS / relative L2 / L∞ error, nnz of the basis factor per functional, CG iterations of
each step.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

# The sparse path limits BLAS to one thread itself; a dense run gets the machine's default.

ROOT = Path(__file__).resolve().parent.parent
_MARKER = "@@SPARSE@@ "
TINY_SIDE = 14
#: Gauss-Newton steps from u = 0 that each problem needs to converge on fine grids.
STEPS = {"elliptic": 4, "series": 4, "eikonal": 10, "burgers": 8}
#: Gauss-Newton steps of each continuation stage (Burgers, `--continuation`).
CONTINUATION_STEPS = 4


def _problem_constraints(
    problem: str, side: int, viscosity: float = 0.02, x_lengthscale: float = 0.05, t_lengthscale: float = 0.3,
    aspect: float = 2, layer_ratio: float = 1.0, layer_width: float = 0.05,
):
    """(constraints, kernel, interior points, reference solution at them) on a grid of side m."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gpde import Box, Constraint, Evaluation, Laplacian
    from gpde.kernels import LayerStretch, Matern52, Matern72, Warped

    if problem == "burgers":
        from gpde.problems.burgers import Burgers

        burgers = Burgers(viscosity=viscosity)
        # x uniform in the warped coordinate s = w(x) of the kernel's layer stretch at the front
        # x = 0 (w the identity when layer_ratio = 1): the grid's spacing in x follows the local
        # lengthscale, so the layer gets `layer_ratio` times more points per unit length.
        stretch = LayerStretch(axis=1, centre=0.0, width=layer_width, ratio=layer_ratio)
        edge = float(stretch.stretch(1.0))
        t = (np.arange(side) + 1.0) / side  # t ∈ (0, 1], nothing imposed at t = 1
        columns = round(aspect * side)
        line = stretch.inverse(-edge + 2.0 * edge * np.arange(columns + 2) / (columns + 1))
        line[0], line[-1] = -1.0, 1.0
        x = line[1:-1]
        interior = np.stack(np.meshgrid(t, x, indexing="ij"), axis=-1).reshape(-1, 2)
        walls = np.concatenate([[[ti, -1.0] for ti in t], [[ti, 1.0] for ti in t]])
        boundary = np.concatenate([np.stack([np.zeros_like(line), line], axis=1), walls])
        interior, boundary = jnp.asarray(interior), jnp.asarray(boundary)
        kernel = Matern72(jnp.array([t_lengthscale, x_lengthscale]))
        if layer_ratio > 1.0:
            kernel = Warped(kernel, stretch)
        return burgers.constraints(interior, boundary), kernel, interior, np.asarray(burgers.reference(interior))
    box = Box((0.0, 0.0), (1.0, 1.0))
    interior = box.interior_points(side * side, "grid", jax.random.PRNGKey(0))
    boundary = box.boundary_points(4 * (side + 1), "grid", jax.random.PRNGKey(1))
    if problem == "eikonal":
        from gpde.problems.eikonal import Eikonal

        eikonal = Eikonal(epsilon=0.01)
        return eikonal.constraints(interior, boundary), Matern52(0.2), interior, np.asarray(eikonal.reference(interior))
    if problem == "elliptic":
        from gpde.problems.elliptic import NonlinearElliptic

        elliptic = NonlinearElliptic()
        return elliptic.constraints(interior, boundary), Matern72(0.3), interior, np.asarray(elliptic.reference(interior))
    k = jnp.arange(1, 601, dtype=jnp.float64)

    def exact(x):
        return jnp.sum(jnp.sin(jnp.pi * k * x[0]) * jnp.sin(jnp.pi * k * x[1]) / k**6)

    def laplacian(x):
        return -jnp.sum(2 * (jnp.pi * k) ** 2 * jnp.sin(jnp.pi * k * x[0]) * jnp.sin(jnp.pi * k * x[1]) / k**6)

    def in_batches(f, points):
        return jnp.concatenate([jax.jit(jax.vmap(f))(points[i : i + 20000]) for i in range(0, points.shape[0], 20000)])

    u_interior, lap_interior = in_batches(exact, interior), in_batches(laplacian, interior)
    source = -lap_interior + u_interior**3
    u_boundary = in_batches(exact, boundary)
    constraints = (
        Constraint("interior", interior, (Evaluation(), Laplacian()), lambda x, z: -z[1] + z[0] ** 3,
                   observations=source),
        Constraint("boundary", boundary, (Evaluation(),), lambda x, z: z[0], observations=u_boundary),
    )
    return constraints, Matern72(0.3), interior, np.asarray(u_interior)


def _grid(problem: str, size: int, aspect: float = 2) -> tuple[int, int]:
    """(grid side m, collocation points N) for about `size` interior points."""
    if problem == "burgers":  # m × a·m interior, a·m + 2 initial and 2m wall points
        side = max(2, round((size / aspect) ** 0.5))
        columns = round(aspect * side)
        return side, side * columns + columns + 2 * side + 2
    side = max(2, round(size**0.5))
    return side, side * side + 4 * (side + 1)


def run_one(config: dict) -> dict:
    """Solve one configuration in this process; the row of the table as a dict."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    from gpde import GaussNewton, Evaluation
    from gpde.problems.burgers import Burgers
    from gpde.sparse import Dense, Sparse

    constraints, kernel, interior, exact = _problem_constraints(
        config["problem"], config["side"], config.get("viscosity", 0.02), config.get("x_lengthscale", 0.05),
        config.get("t_lengthscale", 0.3), config.get("aspect", 2), config.get("layer_ratio", 1.0),
        config.get("layer_width", 0.05),
    )
    if config["solver"] == "dense":
        solver = Dense()
    else:
        solver = Sparse(rho=config["rho"], ordering=config["ordering"])
    gauss_newton = GaussNewton(
        nugget=1e-10, max_steps=config["steps"], tolerance=0.0, stall_steps=0, linear_solver=solver
    )
    wall, cpu = time.perf_counter(), time.process_time()
    stages = [  # Burgers at decreasing ν, each warm-starting the next (one factorization for all)
        Burgers(viscosity=viscosity).constraints(constraints[0].points, constraints[1].points)
        for viscosity in _continuation(config)
    ]
    solution, history = gauss_newton.solve(kernel, constraints, continuation=stages,
                                           continuation_steps=CONTINUATION_STEPS)
    total, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if history.final_values is not None and isinstance(constraints[0].operators[0], Evaluation):
        u = np.asarray(history.final_values[0][0])
    else:  # the interior constraint does not evaluate u itself (Eikonal): the solution does
        u = np.asarray(solution(interior))
    error = u - np.asarray(exact)
    n = sum(c.size for c in constraints)
    grid = {}
    if config.get("grid_errors"):  # the solution between the collocation points, on a fixed grid
        start = time.perf_counter()
        points, reference = _test_grid(config["problem"], config.get("viscosity", 0.02),
                                       tuple(config.get("grid_shape", (100, 256))))
        grid_error = np.asarray(solution(points)) - reference
        grid = {"grid_relative_l2": float(np.linalg.norm(grid_error) / np.linalg.norm(reference)),
                "grid_linf": float(np.max(np.abs(grid_error))), "grid_points": int(points.shape[0]),
                "grid_s": time.perf_counter() - start}
    return {**grid,
        "problem": config["problem"],
        "N": n,
        "solver": config["solver"],
        "rho": config.get("rho"),
        "ordering": config.get("ordering") if config["solver"] == "sparse" else None,
        "setup_s": history.assembly_seconds + history.compile_seconds,
        "step_s": float(np.mean([s.seconds for s in history.steps])),
        "total_s": total,
        "cpu_s": cpu,
        "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rms": float(np.sqrt(np.mean(error**2))),
        "linf": float(np.max(np.abs(error))),
        "relative_l2": float(np.linalg.norm(error) / np.linalg.norm(exact)),
        "nnz": history.factor_nnz,
        "functionals": history.functionals,
        "cg": [s.cg_iterations for s in history.steps] if config["solver"] == "sparse" else None,
        "cg_residual": max(s.cg_residual for s in history.steps) if config["solver"] == "sparse" else None,
    }


def _test_grid(problem: str, viscosity: float, shape: tuple[int, int] = (100, 256)):
    """(points, reference) of Burgers' error grid, by default the PINN benchmark's: 100 t-values in
    [0, 1] × 256 x-values in [−1, 1] (`--tiny` uses a coarse one)."""
    import jax.numpy as jnp
    import numpy as np

    from gpde.problems.burgers import Burgers

    if problem != "burgers":
        raise ValueError(f"the error grid is Burgers', not {problem!r}")
    t, x = np.linspace(0.0, 1.0, shape[0]), np.linspace(-1.0, 1.0, shape[1])
    points = jnp.asarray(np.stack(np.meshgrid(t, x, indexing="ij"), axis=-1).reshape(-1, 2))
    return points, np.asarray(Burgers(viscosity=viscosity).reference(points))


def _continuation(config: dict) -> list[float]:
    """The viscosities solved before Burgers' own with `--continuation K`: K values falling
    geometrically from 0.02 towards ν (exclusive), each solved for CONTINUATION_STEPS steps from
    the previous solution. Gauss-Newton from u = 0 does not find the steep front at small ν."""
    stages, target = config.get("continuation", 0), config.get("viscosity", 0.02)
    if config["problem"] != "burgers" or not stages or target >= 0.02:
        return []
    return [0.02 * (target / 0.02) ** (k / stages) for k in range(stages)]


def _isolated(config: dict) -> dict:
    """run_one in a fresh interpreter (the same environment: it imports the gpde this one imports)."""
    result = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(config)], capture_output=True, text=True, cwd=ROOT
    )
    for line in result.stdout.splitlines():
        if line.startswith(_MARKER):
            return json.loads(line[len(_MARKER) :])
    raise RuntimeError(f"configuration {config} failed:\n{result.stderr[-3000:]}")


def table(rows: list[dict]) -> str:
    """The markdown table of the rows, and the fitted time exponent of the sparse rows."""
    import numpy as np

    header = ("| problem | N | solver | ρ | ordering | setup s | s/step | total s | CPU s | peak RSS GB "
              "| RMS error | rel. L2 | L∞ error | nnz | nnz/functional | CG iterations |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        sparse = r["solver"] == "sparse"
        lines.append(
            f"| {r['problem']} | {r['N']:,} | {r['solver']} | {r['rho'] if sparse else '–'} "
            f"| {r['ordering'] if sparse else '–'} | {r['setup_s']:.2f} | {r['step_s']:.2f} | {r['total_s']:.1f} "
            f"| {r['cpu_s']:.1f} | {r['rss_gb']:.2f} | {r['rms']:.2e} | {r['relative_l2']:.2e} | {r['linf']:.2e} "
            f"| {r['nnz']:,} | {r['nnz'] / r['functionals']:.0f} | {','.join(map(str, r['cg']))} |"
            if sparse else
            f"| {r['problem']} | {r['N']:,} | dense | – | – | {r['setup_s']:.2f} | {r['step_s']:.2f} "
            f"| {r['total_s']:.1f} | {r['cpu_s']:.1f} | {r['rss_gb']:.2f} | {r['rms']:.2e} | {r['relative_l2']:.2e} "
            f"| {r['linf']:.2e} | – | – | – |"
        )
    if any("grid_relative_l2" in r for r in rows):
        lines += ["", "| problem | N | solver | grid points | rel. L2 on the grid | L∞ on the grid | evaluation s |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['problem']} | {r['N']:,} | {r['solver']} | {r['grid_points']:,} | {r['grid_relative_l2']:.2e} "
                  f"| {r['grid_linf']:.2e} | {r['grid_s']:.1f} |" for r in rows if "grid_relative_l2" in r]
    sparse_rows = [r for r in rows if r["solver"] == "sparse"]
    for key in sorted({(r["problem"], r["rho"], r["ordering"]) for r in sparse_rows}):
        group = [r for r in sparse_rows if (r["problem"], r["rho"], r["ordering"]) == key]
        if len({r["N"] for r in group}) >= 2:
            slope = np.polyfit(np.log([r["N"] for r in group]), np.log([r["total_s"] for r in group]), 1)[0]
            lines.append("")
            lines.append(f"Fitted exponent of total time in N ({key[0]}, ρ = {key[1]}, {key[2]}): {slope:.2f}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,40000,160000", help="interior points (about)")
    parser.add_argument("--rho", type=float, default=5.0)
    parser.add_argument("--ordering", default="follow_diracs")
    parser.add_argument("--problem", default="elliptic", choices=("elliptic", "series", "eikonal", "burgers"))
    parser.add_argument("--viscosity", type=float, default=0.02, help="Burgers' ν")
    parser.add_argument("--x-lengthscale", type=float, default=0.05, help="Burgers' kernel lengthscale in x")
    parser.add_argument("--t-lengthscale", type=float, default=0.3, help="Burgers' kernel lengthscale in t")
    parser.add_argument("--aspect", type=float, default=2.0, help="Burgers' grid: points in x per point in t")
    parser.add_argument("--layer-ratio", type=float, default=1.0,
                        help="Burgers: magnify the kernel's x coordinate this much at the front x = 0 (LayerStretch)")
    parser.add_argument("--layer-width", type=float, default=0.05, help="Burgers: half-width of the magnified layer")
    parser.add_argument("--continuation", type=int, default=0,
                        help="Burgers: first solve at this many larger viscosities (from 0.02 down), warm-starting each")
    parser.add_argument("--grid-errors", action="store_true",
                        help="Burgers: also the errors on the PINN benchmark's 100 × 256 (t, x) grid, between the points")
    parser.add_argument("--steps", type=int, help="Gauss-Newton steps (default: per problem, STEPS)")
    parser.add_argument("--dense-up-to", type=int, default=10000, help="also run the dense solver up to this N")
    parser.add_argument("--compare-orderings", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="one small size of each solver, in this process")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.grid_errors and args.problem != "burgers":
        parser.error("--grid-errors is for --problem burgers")
    if args.one:
        print(_MARKER + json.dumps(run_one(json.loads(args.one))), flush=True)
        return ""

    base = {"problem": args.problem, "steps": args.steps or STEPS[args.problem], "rho": args.rho, "ordering": args.ordering,
            "viscosity": args.viscosity, "x_lengthscale": args.x_lengthscale, "t_lengthscale": args.t_lengthscale,
            "aspect": args.aspect, "continuation": args.continuation, "layer_ratio": args.layer_ratio,
            "layer_width": args.layer_width, "grid_errors": args.grid_errors}
    if args.tiny:
        base["grid_shape"] = (6, 20)
        configs = [dict(base, side=TINY_SIDE, solver="dense"), dict(base, side=TINY_SIDE, solver="sparse")]
        rows = [run_one(c) for c in configs]
    else:
        orderings = ("follow_diracs", "diracs_first") if args.compare_orderings else (args.ordering,)
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            side, points = _grid(args.problem, size, args.aspect)
            if points <= args.dense_up_to:
                rows.append(_isolated(dict(base, side=side, solver="dense")))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            for ordering in orderings:
                rows.append(_isolated(dict(base, side=side, solver="sparse", ordering=ordering)))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
