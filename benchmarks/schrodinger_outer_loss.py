"""Why learning does not find the Schrödinger kernel: the learner's outer loss against the
lengthscales, around iterates of different quality, and what dominates it.

BilevelLearner's outer loss is the mean squared linearized PDE residual at the validation points
after one Gauss-Newton step from a frozen iterate u_k. This script scales both fields' lengthscales
(ℓ_t, or ℓ_x) of the published learned kernels by factors and prints the loss around three
iterates: u_k = 0 (the learner's first outer iteration), the solve with the starting kernels (ℓ'
= 1) and the solve with the published learned kernels (the resolved one). Then, for the resolved
iterate, how the squared residual at the validation points is distributed (mean, median, largest,
share of the largest 1 %, and where the largest one sits). Then two tables for the starting
kernels with every lengthscale scaled by one factor (the path a learner from ℓ' = 1 would take):
the linearized outer loss around u_k = 0 and around the start solve as the arithmetic mean (the
published loss), the median and the geometric mean of the squared residuals; and converged
Gauss-Newton solves (20 steps from u = 0) with those kernels, their u RMS error against the
nonlinear validation residual's mean, median and geometric mean. Last, the published learner's
loss on random batches of `--batch` validation points (the published code draws one batch per
outer iteration): along the same path, how many of 50 batches put the minimum of the batch's
mean at each factor. Seed 0 as `gpde learn
schrodinger`, nugget 1e-10, lengthscales in gpde's units (docs/references.md §8); errors on a t 51
× x 64 grid.

    OPENBLAS_NUM_THREADS=1 python benchmarks/schrodinger_outer_loss.py [--points 1000] [--batch 200] [--out table.md]
    python benchmarks/schrodinger_outer_loss.py --tiny    # smoke test: 120 + 40 + 120 points
"""

import argparse
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from gpde import GaussNewton, SolverError
from gpde.kernels import PeriodicGaussian
from gpde.learn import linearized_validation_residuals
from gpde.solve import values_at
from gpde.problems.schrodinger import Schrodinger

NUGGET = 1e-10
#: (ℓ_t, ℓ_x) of u and of v: the published learned kernels and the published start ℓ' = 1.
PUBLISHED = ((0.174, 0.232), (0.175, 0.213))
START = ((0.7071, 1.5915), (0.7071, 1.5915))
FACTORS = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.7)
#: Common factors of every starting lengthscale (the published learned ones are 0.25 (ℓ_t) and
#: 0.15 (ℓ_x) times the start).
START_FACTORS = (2.0, 1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.13)
TINY_START_FACTORS = (1.0, 0.5)
#: Interior training points = validation points; initial points a quarter of them (the published ratio).
POINTS = 1000
TINY_POINTS = 120
TINY_FACTORS = (0.7, 1.0, 1.4)
#: Validation points per batch (the published code's batch) and the number of random batches.
BATCH = 200
BATCHES = 50

_validation_residuals = eqx.filter_jit(linearized_validation_residuals)
_values_at = eqx.filter_jit(values_at)


def periodic_kernels(lengthscales):
    return tuple(PeriodicGaussian(jnp.array(ell), period=10.0, periodic_dims=(1,)) for ell in lengthscales)


def operator_values(solution, constraints):
    """Each constraint's operator values of `solution`, every operator on its own field."""
    return _values_at(solution.kernels, tuple(constraints), solution.constraints, solution.weights,
                      solution.coefficients)


def statistics(residuals) -> tuple[float, float, float]:
    """Σ over validation constraints of the arithmetic mean, the median and the geometric mean of
    the squared residuals (the first and last are the learner's two outer losses)."""
    squares = [np.asarray(r) ** 2 for r in residuals]
    tiny = np.finfo(np.float64).tiny
    return (sum(float(q.mean()) for q in squares), sum(float(np.median(q)) for q in squares),
            sum(float(np.exp(np.mean(np.log(q + tiny)))) for q in squares))


def batch_argmins(squares_per_factor, batch: int, batches: int, seed: int = 0) -> np.ndarray:
    """For `batches` random sets of `batch` validation point indices (one set for every
    constraint, as the published code evaluates both equations at the same points), the index of
    the factor whose batch loss (Σ over constraints of the mean squared residual over the batch)
    is smallest. `squares_per_factor[f][c]`: the squared residuals of constraint c at factor f."""
    rng = np.random.default_rng(seed)
    size = len(squares_per_factor[0][0])
    argmins = []
    for _ in range(batches):
        chosen = rng.choice(size, min(batch, size), replace=False)
        losses = [sum(float(q[chosen].mean()) for q in squares) for squares in squares_per_factor]
        argmins.append(int(np.argmin(losses)))
    return np.array(argmins)


def start_scaled(factor: float):
    """The starting lengthscales, every one times `factor`."""
    return tuple(tuple(ell * factor for ell in field) for field in START)


def scaled(axis: int, factor: float):
    """The published lengthscales with axis `axis` (0: t, 1: x) of both fields times `factor`."""
    return tuple(tuple(ell * factor if i == axis else ell for i, ell in enumerate(field)) for field in PUBLISHED)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=POINTS, help=f"interior and validation points (default {POINTS})")
    parser.add_argument("--tiny", action="store_true", help=f"smoke test: {TINY_POINTS} points, factors {TINY_FACTORS}")
    parser.add_argument("--batch", type=int, default=BATCH,
                        help=f"validation points per random batch (default {BATCH}, the published batch)")
    parser.add_argument("--out", help="also write the tables (markdown) to this file")
    args = parser.parse_args(argv)
    n_points = TINY_POINTS if args.tiny else args.points
    factors = TINY_FACTORS if args.tiny else FACTORS
    start_factors = TINY_START_FACTORS if args.tiny else START_FACTORS

    problem = Schrodinger()
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    interior = problem.domain.interior_points(n_points, "random", keys[0])
    boundary = problem.domain.boundary_points(n_points // 4, "random", keys[1], problem.boundary_faces)
    validation_points = problem.domain.interior_points(n_points, "random", keys[2])
    train = problem.constraints(interior, boundary)
    validation = problem.validation_constraints(validation_points, boundary)
    t, x = np.linspace(0.0, 1.0, 51), np.linspace(-5.0, 5.0, 64, endpoint=False)
    grid = jnp.asarray(np.stack(np.meshgrid(t, x, indexing="ij"), -1).reshape(-1, 2))
    reference = np.asarray(problem.reference(grid))

    zero = tuple(jnp.zeros((len(c.operators), c.points.shape[0])) for c in (*train, *validation))
    iterates = {"u_k = 0": (zero[:len(train)], zero[len(train):], None)}
    solver = GaussNewton(nugget=NUGGET, max_steps=20, tolerance=1e-8)
    solves = {}

    def converged(lengthscales):
        """The Gauss-Newton solve with these lengthscales, or its SolverError (each solved once: the
        start and the published kernels appear in two tables)."""
        if lengthscales not in solves:
            try:
                solves[lengthscales] = solver.solve(periodic_kernels(lengthscales), train)[0]
            except SolverError as error:
                solves[lengthscales] = error
        return solves[lengthscales]

    resolved = None
    for label, lengthscales in (("start ℓ' = 1", START), ("published learned ℓ", PUBLISHED)):
        solution = converged(lengthscales)
        if isinstance(solution, SolverError):
            print(f"{label}: no iterate ({str(solution).split(':')[0]})")
            continue
        rms = float(np.sqrt(np.mean((np.asarray(solution(grid)) - reference) ** 2)))
        iterates[f"solve with {label}"] = (operator_values(solution, train), operator_values(solution, validation), rms)
        resolved = solution if lengthscales is PUBLISHED else resolved

    lines = []
    for axis, name in ((0, "ℓ_t"), (1, "ℓ_x")):
        lines += [f"| u_k (u RMS) \\ {name} × | " + " | ".join(f"{f:g}" for f in factors) + " | argmin |",
                  "|---|" + "---|" * (len(factors) + 1)]
        for label, (train_values, validation_values, rms) in iterates.items():
            losses = []
            for factor in factors:
                residuals = _validation_residuals(periodic_kernels(scaled(axis, factor)), train, validation,
                                                  train_values, validation_values, NUGGET, True)
                losses.append(float(sum(jnp.mean(r**2) for r in residuals)))
            rms_text = "—" if rms is None else f"{rms:.2e}"
            lines.append(f"| {label} ({rms_text}) | " + " | ".join(f"{v:.2e}" for v in losses)
                         + f" | {factors[int(np.argmin(losses))]:g} |")
        lines.append("")
    if resolved is not None:
        lines += ["| solve with published learned ℓ: squared PDE residual at the validation points | mean | median | largest | "
                  "share of the largest 1 % | largest at (t, x) |", "|---|---|---|---|---|---|"]
        for constraint, values in zip(validation, operator_values(resolved, validation)):
            squares = np.asarray(constraint.residuals_and_weights(values)[0]) ** 2
            top = np.sort(squares)[::-1][:max(len(squares) // 100, 1)]
            where = np.asarray(constraint.points)[int(np.argmax(squares))]
            lines.append(f"| {constraint.name} | {squares.mean():.3g} | {np.median(squares):.3g} | {squares.max():.3g} | "
                         f"{top.sum() / squares.sum():.2f} | ({where[0]:.3f}, {where[1]:.3f}) |")
    lines += ["", "| u_k \\ every ℓ × | " + " | ".join(f"{f:g}" for f in start_factors) + " | argmin |",
              "|---|" + "---|" * (len(start_factors) + 1)]
    linearized = {key: iterates[key] for key in ("u_k = 0", "solve with start ℓ' = 1") if key in iterates}
    squares_along_path = {}
    for label, (train_values, validation_values, _) in linearized.items():
        rows, squares_along_path[label] = [], []
        for factor in start_factors:
            residuals = _validation_residuals(periodic_kernels(start_scaled(factor)), train, validation,
                                              train_values, validation_values, NUGGET, True)
            rows.append(statistics(residuals))
            squares_along_path[label].append([np.asarray(r) ** 2 for r in residuals])
        for index, name in enumerate(("mean", "median", "geometric mean")):
            values = [row[index] for row in rows]
            lines.append(f"| {label}: {name} | " + " | ".join(f"{v:.2e}" for v in values)
                         + f" | {start_factors[int(np.argmin(values))]:g} |")
    lines += ["", "| converged solve, every ℓ × | u RMS | validation residual² mean | median | geometric mean |",
              "|---|---|---|---|---|"]
    for label, lengthscales in [*((f"{f:g}", start_scaled(f)) for f in start_factors), ("published learned", PUBLISHED)]:
        solution = converged(lengthscales)
        if isinstance(solution, SolverError):
            lines.append(f"| {label} | failed: {str(solution).split(':')[0]} | | | |")
            continue
        rms = float(np.sqrt(np.mean((np.asarray(solution(grid)) - reference) ** 2)))
        residuals = [c.residuals_and_weights(v)[0] for c, v in zip(validation, operator_values(solution, validation))]
        lines.append(f"| {label} | {rms:.2e} | " + " | ".join(f"{v:.2e}" for v in statistics(residuals)) + " |")
    lines += ["", f"| u_k: of {BATCHES} batches of {min(args.batch, n_points)} validation points, how many have "
              "their smallest mean at every ℓ × | " + " | ".join(f"{f:g}" for f in start_factors) + " |",
              "|---|" + "---|" * len(start_factors)]
    for label, squares_per_factor in squares_along_path.items():
        counts = np.bincount(batch_argmins(squares_per_factor, args.batch, BATCHES), minlength=len(start_factors))
        lines.append(f"| {label} | " + " | ".join(str(c) for c in counts) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
