"""Why the published outer loss does not learn the Eikonal kernel: the mean squared validation
residual against the lengthscale, with and without the validation points near the boundary.

For a Gaussian kernel of constant lengthscale ℓ (the Gibbs kernel with a constant field) it prints
the re-solve error on train ∪ validation points (what the learner is judged by), and the outer
loss of BilevelLearner around a frozen converged iterate u_k (made with ℓ₀), averaged over all
validation points, over those at least 0.01 / 0.03 from the boundary, and the median squared
residual. Published sizes (900 + 300 training, 900 validation points, seed 0), nugget 1e-8.

    OPENBLAS_NUM_THREADS=1 python benchmarks/eikonal_outer_loss.py [--out table.md]
    python benchmarks/eikonal_outer_loss.py --tiny     # smoke test: 100 + 33 + 100 points, ℓ = 0.1, 0.2
"""

import argparse
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from gpde import GaussNewton, error_metrics
from gpde.learn import linearized_validation_residuals
from gpde.solve import values_at
from gpde.kernels import Gaussian
from gpde.problems.eikonal import Eikonal

LENGTHSCALES = (0.05, 0.07, 0.1, 0.14, 0.2, 0.3)
NUGGET = 1e-8
#: The published point counts (training interior = validation; boundary a third of it).
POINTS = 900
#: --tiny: a smoke test of the script in seconds: the two ℓ₀ of the tables (0.1, 0.2) only.
TINY_POINTS = 100
TINY_LENGTHSCALES = (0.1, 0.2)


# Compiled once: the lengthscale is an array leaf, so every ℓ reuses the same executable.
_validation_residuals = eqx.filter_jit(linearized_validation_residuals)
_values_at = eqx.filter_jit(values_at)


def squared_validation_residuals(kernel, train, validation, train_values, validation_values):
    """The linearized residual² at every validation point for the inner solution with `kernel`
    (the terms whose mean is BilevelLearner's outer loss)."""
    (residuals,) = _validation_residuals(kernel, train, validation, train_values, validation_values, NUGGET, True)
    return np.asarray(residuals) ** 2


def operator_values(solution, constraints):
    """Each constraint's operator values of `solution`, every operator on its own field."""
    return _values_at(solution.kernels, tuple(constraints), solution.constraints, solution.weights,
                      solution.coefficients)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the tables (markdown) to this file")
    parser.add_argument("--tiny", action="store_true", help=f"smoke test: {TINY_POINTS} training and validation "
                        f"points, lengthscales {', '.join(map(str, TINY_LENGTHSCALES))}")
    args = parser.parse_args(argv)
    n_points = TINY_POINTS if args.tiny else POINTS
    lengthscales = TINY_LENGTHSCALES if args.tiny else LENGTHSCALES

    problem = Eikonal()
    keys = jax.random.split(jax.random.PRNGKey(0), 3)  # as gpde learn eikonal, seed 0
    interior = problem.domain.interior_points(n_points, "random", keys[0])
    boundary = problem.domain.boundary_points(n_points // 3, "random", keys[1])
    validation_points = problem.domain.interior_points(n_points, "random", keys[2])
    train = problem.constraints(interior, boundary)
    validation = problem.constraints(validation_points, boundary)[:1]
    grid, _ = problem.domain.grid(100)
    reference = problem.reference(grid)
    points = np.asarray(validation_points)
    distance = np.minimum(points, 1.0 - points).min(axis=1)  # to the boundary

    lines = ["| ℓ | " + " | ".join(f"{ell:g}" for ell in lengthscales) + " |",
             "|---|" + "---|" * len(lengthscales)]
    solver = GaussNewton(nugget=NUGGET, max_steps=30)
    resolve = [error_metrics(solver.solve(Gaussian(ell), problem.constraints(
        jnp.concatenate([interior, validation_points]), boundary))[0](grid), reference)["rms"] for ell in lengthscales]
    lines.append("| re-solve RMS (train ∪ validation) | " + " | ".join(f"{v:.2e}" for v in resolve) + " |")
    for ell0 in (0.1, 0.2):
        frozen, _ = solver.solve(Gaussian(ell0), train)
        train_values, validation_values = operator_values(frozen, train), operator_values(frozen, validation)
        squares = [squared_validation_residuals(Gaussian(ell), train, validation, train_values, validation_values)
                   for ell in lengthscales]
        rows = {
            "mean r², all (published loss)": [s.mean() for s in squares],
            "mean r², ≥ 0.01 from boundary": [s[distance >= 0.01].mean() for s in squares],
            "mean r², ≥ 0.03 from boundary": [s[distance >= 0.03].mean() for s in squares],
            "median r²": [np.median(s) for s in squares],
        }
        for name, values in rows.items():
            best = lengthscales[int(np.argmin(values))]
            lines.append(f"| u_k(ℓ₀ = {ell0:g}): {name}, argmin {best:g} | " + " | ".join(f"{v:.2e}" for v in values) + " |")
        order = np.sort(squares[lengthscales.index(ell0)])[::-1]
        near = distance < 0.01
        lines.append(f"| u_k(ℓ₀ = {ell0:g}), ℓ = ℓ₀: share of the loss from the 5 largest terms / from the "
                     f"{near.sum()} points < 0.01 from the boundary | {order[:5].sum() / order.sum():.2f} / "
                     f"{squares[lengthscales.index(ell0)][near].sum() / order.sum():.2f} |" + " |" * (len(lengthscales) - 1))
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
