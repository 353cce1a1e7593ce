"""Randomized-MAP σ against the linearized posterior σ: calibration on a nonlinear problem.

    python benchmarks/randomized_map.py [--problem darcy] [--n-interior 225] [--n-boundary 60]
                                        [--grid 20] [--draws 100] [--field-variance a=1,16]
                                        [--starts prior,solution] [--seed 0] [--out table.md]

One solve with the problem's defaults at the given sizes (kernel, lengthscales, nugget, steps),
then on the evaluation grid: σ of every field from the posterior at the last Gauss-Newton
linearization (`gpde.solve.Posterior`) with three amplitudes s² — maximum likelihood, held out
(what `gpde solve` stores) and 1 (the model the solve itself uses) — and from `--draws`
randomized-MAP re-solves at s² = 1 (`gpde.solve.randomized_map`: prior and data perturbed, the
full nonlinear problem solved per draw), once for each `--starts` entry: each re-solve from u = u_p
(`prior`, what `gpde solve --std-draws` does; a draw that fails is solved again from the solution)
or from the solution (`solution`, w₀ = û − u_p).
Where Gauss-Newton converges to one minimizer both give the same draws; where the perturbed
problem is flat in some directions (Darcy's a) the draws end where the iteration stalls, and the
two spreads differ. The calibration of the solution's error against the
reference: 2σ coverage (goal 0.90-0.99) and the Gaussian NLL per point.

`--field-variance NAME=c1,c2,…` repeats everything with the prior variance of field NAME scaled by
each c (its kernel wrapped in `Scaled`; this changes the solution too). Columns `seconds`: the
solve, and the draws.
"""

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from gpde import GaussNewton  # noqa: E402
from gpde.app import build_problem, collocation_points, configured_kernel, held_out_points, resolve  # noqa: E402
from gpde.kernels import Scaled  # noqa: E402
from gpde.problems import get_problem_class  # noqa: E402
from gpde.solve import Posterior, calibration, randomized_map  # noqa: E402


def measure(problem_name: str, n_interior: int, n_boundary: int, grid: int, draws: int, seed: int,
            field: str | None = None, variance: float = 1.0, starts: tuple[str, ...] = ("prior", "solution")) -> list[dict]:
    problem_class = get_problem_class(problem_name)
    config = resolve(problem_name, problem_class.defaults,
                     dict(n_interior=n_interior, n_boundary=n_boundary, grid=grid, seed=seed))
    problem = build_problem(problem_class, config.parameters)
    interior, boundary = collocation_points(problem, config)
    kernel = configured_kernel(problem, config)
    kernels = list(kernel) if isinstance(kernel, tuple) else [kernel]
    if field is not None:
        index = problem.fields.index(field)
        kernels[index] = Scaled(kernels[index], variance)
    constraints = problem.constraints(interior, boundary)
    solver = GaussNewton(nugget=config.nugget, adaptive_nugget=config.adaptive_nugget, max_steps=config.steps,
                         tolerance=config.tolerance)
    start = time.perf_counter()
    solution, _ = solver.solve(tuple(kernels), constraints)
    solve_seconds = time.perf_counter() - start
    held_out = problem.constraints(held_out_points(problem, config), boundary)[:1]
    posterior = Posterior.at(solution, config.nugget, config.adaptive_nugget, held_out)
    points = problem.domain.grid(grid)[0]
    ensembles = {}
    for name in starts:
        start = time.perf_counter()
        ensemble = randomized_map(solver, tuple(kernels), constraints, points, jax.random.PRNGKey(seed + 1), draws,
                                  start=name, solution=solution)
        ensembles[name] = (ensemble, time.perf_counter() - start)

    label = "" if field is None else f"{field} variance × {variance:g}"
    rows = []
    amplitudes = (("linearized", "ml", float(posterior.ml_amplitude)),
                  ("linearized", "held-out", float(posterior.amplitude)),
                  ("linearized", "1", 1.0),
                  *((f"randomized MAP, {draws} draws from the {name}", "1", name) for name in starts))
    for source, amplitude_name, amplitude in amplitudes:
        drawn = isinstance(amplitude, str)
        row = dict(problem=problem_name, points=f"{n_interior} + {n_boundary}", change=label, source=source,
                   amplitude=amplitude_name, s2=1.0 if drawn else amplitude,
                   seconds=ensembles[amplitude][1] if drawn else solve_seconds)
        for index, name in enumerate(problem.fields):
            value = np.asarray(solution(points, index))
            reference = np.asarray(problem.field_reference(name, np.asarray(points)))
            if drawn:
                std = np.asarray(ensembles[amplitude][0].std(index))
            else:
                std = np.asarray(posterior.with_amplitude(amplitude).std(points, field=index))
            numbers = calibration(value, std, reference)
            row[name] = dict(rms=float(np.sqrt(np.mean((value - reference) ** 2))), coverage_2=numbers.coverage_2,
                             nll=numbers.nll, mean_std=float(np.mean(std)))
        rows.append(row)
    return rows


def table(rows: list[dict], fields: tuple[str, ...]) -> str:
    header = "| problem | points | change | σ from | s² | " + " | ".join(
        f"{f} RMS error | {f} 2σ | {f} NLL | {f} mean σ" for f in fields) + " | seconds |"
    lines = [header, "|" + "---|" * (6 + 4 * len(fields))]
    for r in rows:
        cells = [r["problem"], r["points"], r["change"] or "none", r["source"], f"{r['s2']:.3g} ({r['amplitude']})"]
        for f in fields:
            v = r[f]
            cells += [f"{v['rms']:.3g}", f"{v['coverage_2']:.3f}", f"{v['nll']:.2f}", f"{v['mean_std']:.3g}"]
        cells.append(f"{r['seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="darcy")
    parser.add_argument("--n-interior", type=int, default=225)
    parser.add_argument("--n-boundary", type=int, default=60)
    parser.add_argument("--grid", type=int, default=20, help="evaluation grid nodes per side")
    parser.add_argument("--draws", type=int, default=100, help="randomized-MAP draws")
    parser.add_argument("--field-variance", default=None, metavar="NAME=c1,c2",
                        help="also scale the prior variance of field NAME by each c")
    parser.add_argument("--starts", default="prior,solution",
                        help="where each draw's re-solve starts: prior (u = u_p), solution (w = û − u_p), or both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)
    fields = get_problem_class(args.problem).fields
    changes = [(None, 1.0)]
    if args.field_variance:
        name, _, values = args.field_variance.partition("=")
        if name not in fields or not values:
            parser.error(f"--field-variance must be NAME=c1,c2 with NAME one of {', '.join(fields)}")
        changes = [(name, float(v)) for v in values.split(",") if v]
    starts = tuple(name for name in args.starts.split(",") if name)
    if not starts or any(name not in ("prior", "solution") for name in starts):
        parser.error(f"--starts must list prior and/or solution, got {args.starts!r}")
    rows = []
    for field, variance in changes:
        rows.extend(measure(args.problem, args.n_interior, args.n_boundary, args.grid, args.draws, args.seed,
                            field, variance, starts))
        print("\n".join(table(rows[-3 - len(starts):], fields).splitlines()[2:]), file=sys.stderr, flush=True)
    text = table(rows, fields)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
