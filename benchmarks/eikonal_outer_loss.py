"""Why the published outer loss does not learn the Eikonal kernel: the mean squared validation
residual against the lengthscale, with and without the validation points near the boundary.

For a Gaussian kernel of constant lengthscale ℓ (the Gibbs kernel with a constant field) it prints
the re-solve error on train ∪ validation points (what the learner is judged by), and the outer
loss of BilevelLearner around a frozen converged iterate u_k (made with ℓ₀), averaged over all
validation points, over those at least 0.01 / 0.03 from the boundary, and the median squared
residual. Published sizes (900 + 300 training, 900 validation points, seed 0), nugget 1e-8.

    OPENBLAS_NUM_THREADS=1 python benchmarks/eikonal_outer_loss.py [--out table.md]
"""

import argparse
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

from gpde import GaussNewton, error_metrics
from gpde.learn._learner import linearized_validation_residuals
from gpde.kernels import Gaussian
from gpde.problems.eikonal import Eikonal

LENGTHSCALES = (0.05, 0.07, 0.1, 0.14, 0.2, 0.3)
NUGGET = 1e-8


def squared_validation_residuals(kernel, train, validation, train_values, validation_values):
    """The linearized residual² at every validation point for the inner solution with `kernel`
    (the terms whose mean is BilevelLearner's outer loss)."""
    (residuals,) = linearized_validation_residuals(kernel, train, validation, train_values, validation_values,
                                                   NUGGET, True)
    return np.asarray(residuals) ** 2


def operator_values(solution, constraints):
    return tuple(jnp.stack([solution.apply(op, c.points) for op in c.operators]) for c in constraints)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the tables (markdown) to this file")
    args = parser.parse_args()

    problem = Eikonal()
    keys = jax.random.split(jax.random.PRNGKey(0), 3)  # as gpde learn eikonal, seed 0
    interior = problem.domain.interior_points(900, "random", keys[0])
    boundary = problem.domain.boundary_points(900 // 3, "random", keys[1])
    validation_points = problem.domain.interior_points(900, "random", keys[2])
    train = problem.constraints(interior, boundary)
    validation = problem.constraints(validation_points, boundary)[:1]
    grid, _ = problem.domain.grid(100)
    reference = problem.reference(grid)
    points = np.asarray(validation_points)
    distance = np.minimum(points, 1.0 - points).min(axis=1)  # to the boundary

    lines = ["| ℓ | " + " | ".join(f"{ell:g}" for ell in LENGTHSCALES) + " |",
             "|---|" + "---|" * len(LENGTHSCALES)]
    solver = GaussNewton(nugget=NUGGET, max_steps=30)
    resolve = [error_metrics(solver.solve(Gaussian(ell), problem.constraints(
        jnp.concatenate([interior, validation_points]), boundary))[0](grid), reference)["rms"] for ell in LENGTHSCALES]
    lines.append("| re-solve RMS (train ∪ validation) | " + " | ".join(f"{v:.2e}" for v in resolve) + " |")
    for ell0 in (0.1, 0.2):
        frozen, _ = solver.solve(Gaussian(ell0), train)
        train_values, validation_values = operator_values(frozen, train), operator_values(frozen, validation)
        squares = [squared_validation_residuals(Gaussian(ell), train, validation, train_values, validation_values)
                   for ell in LENGTHSCALES]
        rows = {
            "mean r², all (published loss)": [s.mean() for s in squares],
            "mean r², ≥ 0.01 from boundary": [s[distance >= 0.01].mean() for s in squares],
            "mean r², ≥ 0.03 from boundary": [s[distance >= 0.03].mean() for s in squares],
            "median r²": [np.median(s) for s in squares],
        }
        for name, values in rows.items():
            best = LENGTHSCALES[int(np.argmin(values))]
            lines.append(f"| u_k(ℓ₀ = {ell0:g}): {name}, argmin {best:g} | " + " | ".join(f"{v:.2e}" for v in values) + " |")
        order = np.sort(squares[LENGTHSCALES.index(ell0)])[::-1]
        near = distance < 0.01
        lines.append(f"| u_k(ℓ₀ = {ell0:g}), ℓ = ℓ₀: share of the loss from the 5 largest terms / from the "
                     f"{near.sum()} points < 0.01 from the boundary | {order[:5].sum() / order.sum():.2f} / "
                     f"{squares[LENGTHSCALES.index(ell0)][near].sum() / order.sum():.2f} |" + " |" * (len(LENGTHSCALES) - 1))
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
