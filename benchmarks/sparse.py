"""Sparse-Cholesky Gauss-Newton at scale: time, memory and accuracy against N (docs/sparse.md).

    python benchmarks/sparse.py [--sizes 4900,10000,40000,99856] [--rho 3] [--ordering follow_diracs]
                                [--problem elliptic|series] [--steps 4] [--dense-up-to 10000]
                                [--compare-orderings] [--tiny] [--out table.md]

The problem is −Δu + u³ = f on [0,1]² on a grid of m × m interior points and 4(m + 1) boundary
points, Matérn 7/2 with ℓ = 0.3, nugget 1e-10, a fixed number of Gauss-Newton steps from u = 0:
`elliptic` is gpde's manufactured solution (problems/elliptic.py), `series` the smoother
u = Σ_{k=1}^{600} sin(πkx) sin(πky)/k⁶ of Chen, Owhadi and Schäfer. Every configuration runs in a
fresh subprocess (its peak resident set is its own; compilation caches do not leak) unless
`--tiny`, which runs one small configuration of each solver in this process (what the test suite
does). Errors are at the interior collocation points, where the iterate's values come out of the
last step for free: RMS and L∞ against the exact solution. `--compare-orderings` runs both
functional orderings ("follow_diracs", "diracs_first") at every size. The fitted exponent is the
least-squares slope of log(total time) against log N over the sparse rows.

Columns: N (collocation points, interior + boundary), solver, ρ, ordering, setup (ordering, pattern
and factor of the basis functionals, compilation included), s/step (mean Gauss-Newton step:
linearization, preconditioner factor, CG, new values), total, CPU (process CPU time: the machine
may be shared), peak RSS, RMS and L∞ error, nnz of the basis factor and per functional, CG
iterations of each step.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# The sparse path limits BLAS to one thread itself; a dense run gets the machine's default.

ROOT = Path(__file__).resolve().parent.parent
_MARKER = "@@SPARSE@@ "
TINY_SIDE = 14


def _problem_constraints(problem: str, side: int):
    """(constraints, interior points, exact solution at them) for an m × m interior grid."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gpde import Box, Constraint, Evaluation, Laplacian
    from gpde.problems.elliptic import NonlinearElliptic

    box = Box((0.0, 0.0), (1.0, 1.0))
    interior = box.interior_points(side * side, "grid", jax.random.PRNGKey(0))
    boundary = box.boundary_points(4 * (side + 1), "grid", jax.random.PRNGKey(1))
    if problem == "elliptic":
        elliptic = NonlinearElliptic()
        return elliptic.constraints(interior, boundary), interior, elliptic.reference(interior)
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
    return constraints, interior, np.asarray(u_interior)


def run_one(config: dict) -> dict:
    """Solve one configuration in this process; the row of the table as a dict."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    from gpde import GaussNewton
    from gpde.kernels import Matern72
    from gpde.sparse import Dense, Sparse

    constraints, interior, exact = _problem_constraints(config["problem"], config["side"])
    if config["solver"] == "dense":
        solver = Dense()
    else:
        solver = Sparse(rho=config["rho"], ordering=config["ordering"])
    gauss_newton = GaussNewton(
        nugget=1e-10, max_steps=config["steps"], tolerance=0.0, stall_steps=0, linear_solver=solver
    )
    wall, cpu = time.perf_counter(), time.process_time()
    solution, history = gauss_newton.solve(Matern72(0.3), constraints)
    total, cpu = time.perf_counter() - wall, time.process_time() - cpu
    u = np.asarray(history.final_values[0][0]) if history.final_values is not None else np.asarray(solution(interior))
    error = u - np.asarray(exact)
    n = sum(c.size for c in constraints)
    return {
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
        "nnz": history.factor_nnz,
        "functionals": history.functionals,
        "cg": [s.cg_iterations for s in history.steps] if config["solver"] == "sparse" else None,
        "cg_residual": max(s.cg_residual for s in history.steps) if config["solver"] == "sparse" else None,
    }


def _isolated(config: dict) -> dict:
    """run_one in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(config)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    for line in result.stdout.splitlines():
        if line.startswith(_MARKER):
            return json.loads(line[len(_MARKER) :])
    raise RuntimeError(f"configuration {config} failed:\n{result.stderr[-3000:]}")


def table(rows: list[dict]) -> str:
    """The markdown table of the rows, and the fitted time exponent of the sparse rows."""
    import numpy as np

    header = ("| problem | N | solver | ρ | ordering | setup s | s/step | total s | CPU s | peak RSS GB "
              "| RMS error | L∞ error | nnz | nnz/functional | CG iterations |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        sparse = r["solver"] == "sparse"
        lines.append(
            f"| {r['problem']} | {r['N']:,} | {r['solver']} | {r['rho'] if sparse else '–'} "
            f"| {r['ordering'] if sparse else '–'} | {r['setup_s']:.2f} | {r['step_s']:.2f} | {r['total_s']:.1f} "
            f"| {r['cpu_s']:.1f} | {r['rss_gb']:.2f} | {r['rms']:.2e} | {r['linf']:.2e} "
            f"| {r['nnz']:,} | {r['nnz'] / r['functionals']:.0f} | {','.join(map(str, r['cg']))} |"
            if sparse else
            f"| {r['problem']} | {r['N']:,} | dense | – | – | {r['setup_s']:.2f} | {r['step_s']:.2f} "
            f"| {r['total_s']:.1f} | {r['cpu_s']:.1f} | {r['rss_gb']:.2f} | {r['rms']:.2e} | {r['linf']:.2e} | – | – | – |"
        )
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
    parser.add_argument("--sizes", default="4900,10000,40000,99856", help="interior points (perfect squares)")
    parser.add_argument("--rho", type=float, default=5.0)
    parser.add_argument("--ordering", default="follow_diracs")
    parser.add_argument("--problem", default="elliptic", choices=("elliptic", "series"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--dense-up-to", type=int, default=10000, help="also run the dense solver up to this N")
    parser.add_argument("--compare-orderings", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="one small size of each solver, in this process")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(_MARKER + json.dumps(run_one(json.loads(args.one))), flush=True)
        return ""

    base = {"problem": args.problem, "steps": args.steps, "rho": args.rho, "ordering": args.ordering}
    if args.tiny:
        configs = [dict(base, side=TINY_SIDE, solver="dense"), dict(base, side=TINY_SIDE, solver="sparse", steps=2)]
        rows = [run_one(c) for c in configs]
    else:
        orderings = ("follow_diracs", "diracs_first") if args.compare_orderings else (args.ordering,)
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            side = round(size**0.5)
            if side * side + 4 * (side + 1) <= args.dense_up_to:
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
