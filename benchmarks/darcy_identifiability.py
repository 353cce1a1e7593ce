"""How well do the Darcy data determine a? Cramér–Rao lower bounds on the relative L2 error of the
recovered log-permeability, for families that know more and more about a, at several noise levels.

The Darcy goal is a relative L2 error ≤ 5e-2 after learning, from 60 observations of u with
noise σ = 1e-3. A bound above 5e-2 in a row means no unbiased method restricted to that family can
reach the goal from these data; gpde's GP prior (a smooth but otherwise unknown a) assumes less than
every family below. See problems/_darcy_identifiability.py for the formula.

    python benchmarks/darcy_identifiability.py [--noise 1e-3 1e-4 1e-5] [--out table.md]
    python benchmarks/darcy_identifiability.py --tiny     # a smoke test: a 20² grid, no 25-mode family
"""

import argparse
import platform
from pathlib import Path

import numpy as np

from gpde.problems.darcy import (
    Darcy,
    constant_basis,
    cramer_rao_relative_l2,
    fourier_basis,
    level_and_amplitude_basis,
    true_log_permeability,
)

GOAL = 5e-2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[1e-3, 1e-4, 1e-5],
                        help="observation noise std σ values (the problem's is 1e-3)")
    parser.add_argument("--grid", type=int, default=100, help="evaluation grid per side (gpde's default 100)")
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke test: a 20 × 20 evaluation grid and the Fourier family up to frequency 1 only")
    args = parser.parse_args(argv)
    if args.tiny:
        args.grid = 20

    problem = Darcy()
    grid_points, _ = problem.domain.grid(args.grid)
    grid_points = np.asarray(grid_points)
    level = float(np.mean(true_log_permeability(grid_points)))
    families = [
        ("level c₀ (a known up to a constant)", constant_basis()),
        ("level + amplitude (the exact shape of a known)", level_and_amplitude_basis(true_log_permeability, level)),
        ("Fourier modes up to frequency 1", fourier_basis(1)),
        ("Fourier modes up to frequency 2", fourier_basis(2)),
    ][: 3 if args.tiny else None]
    lines = [
        f"Darcy: {problem.n_observations} observations (data seed {problem.data_seed}, {problem.data_grid}² grid), "
        f"error on the {args.grid}² grid; machine {platform.node()}",
        "",
        "| family (unknowns) | " + " | ".join(f"σ = {noise:g}" for noise in args.noise) + " |",
        "|---|" + "---|" * len(args.noise),
    ]
    for name, basis in families:
        # The bound is proportional to σ (F = JᵀJ/σ²): one computation at σ = 1 serves every row.
        unit_bound = cramer_rao_relative_l2(problem, basis, grid_points, noise=1.0)
        bounds = [unit_bound * noise for noise in args.noise]
        lines.append(f"| {name} ({len(basis)}) | " + " | ".join(
            f"**{bound:.3g}**" if bound > GOAL else f"{bound:.3g}" for bound in bounds) + " |")
    lines += ["", f"Bold: above the goal {GOAL:g} (relative L2 of a)."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
