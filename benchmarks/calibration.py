"""Calibration of the posterior standard deviation of every solved field against the reference.

    python benchmarks/calibration.py [--problems elliptic,burgers,eikonal,darcy] [--sizes small|medium|large|huge|tiny]
                                     [--grid 100] [--seed 0] [--learned] [--out table.md]
                                     [--solver dense|sparse] [--results FOLDER]

For each problem × size: solve with the problem's default settings (`gpde.app.run_solve`: kernel,
lengthscale, nugget, steps, layout) at the given point counts. The run file holds σ of every field
on the evaluation grid from the posterior at the last Gauss-Newton linearization
(`gpde.solve.Posterior`) and its calibration against the reference (`gpde.solve.calibration`):
coverage of |e| ≤ zσ for z = 1, 2, 3 (ideal 68.3 / 95.4 / 99.7 %), mean and spread of e/σ (ideal 0
and 1), Gaussian NLL (mean per point, nats).

Two amplitudes s² are reported per run; neither looks at the reference:
  ml        s² = bᵀ(K + η)⁻¹b / N, maximum likelihood on the collocation system;
  held-out  s² fitted to the PDE residual at held-out interior points (`Posterior.held_out_amplitude`,
            `gpde.app.held_out_points`: a quarter as many as the interior points, at most 1024), the one
            stored as fields/u_std.
The last column says whether the 2σ coverage meets the goal 0.90–0.99 (over-confident: σ too
small; under-confident: σ too large). `--solver sparse` solves with the sparse solver instead (single-field problems: elliptic, burgers,
eikonal), whose σ is the posterior through the solve's factors (`gpde.sparse.SparsePosterior`), with the settings
of SPARSE_OVERRIDES; `--sizes large` has the sizes where the sparse solver is meant to run,
`--sizes medium` smaller ones where its σ (a CG solve per point) takes minutes, `--sizes huge`
one elliptic size past 10⁵ points for the cost of σ there. The last two columns are the seconds of
the whole run (solve, evaluation, σ) and of σ alone.
`--learned` adds a bilevel learning of the elliptic lengthscale
at a small size and the calibration of solves with its initial and its learned kernel.
"""

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from gpde.app import LearnConfig, learned_kernel, resolve, run_learn, run_solve, uncertainty_names  # noqa: E402
from gpde.io import field_names, write_run  # noqa: E402
from gpde.problems import get_problem_class  # noqa: E402
from gpde.solve import Calibration, coverage_verdict  # noqa: E402

# (interior, boundary) points. Elliptic: its grid layout (m² interior, 4(m + 1) boundary);
# Burgers and Eikonal: random, three interior points per boundary point up to the published
# 900 + 300; Darcy: up to its default 400 + 100 (the 60 observations are fixed by the problem).
SIZES = {
    "small": {
        "elliptic": [(100, 44), (400, 84), (900, 124)],
        "burgers": [(150, 50), (600, 200), (900, 300)],
        "eikonal": [(150, 50), (600, 200), (900, 300)],
        "darcy": [(100, 40), (225, 60), (400, 100)],
    },
    "medium": {  # the sparse path's σ where it takes minutes, not hours (a CG solve per point)
        "burgers": [(1800, 600)],
        "eikonal": [(1800, 600)],
    },
    "large": {
        "elliptic": [(3844, 252), (15876, 508)],
        "burgers": [(7500, 2500)],
        "eikonal": [(7500, 2500)],
    },
    "huge": {  # the cost of the sparse σ past 10⁵ points (one size: about half an hour on one core)
        "elliptic": [(102400, 1284)],
    },
    "tiny": {
        "elliptic": [(36, 28)],
        "burgers": [(60, 20)],
        "eikonal": [(60, 20)],
        "darcy": [(49, 28)],
    },
}
PROBLEMS = ("elliptic", "burgers", "eikonal", "darcy")
# The sparse solver diverges with the Gaussian kernel of the elliptic and Burgers defaults (the
# ρ = 5 factor is too coarse for its conditioning); these are the scale benchmark's Matérn
# settings (benchmarks/scale-results.md). Eikonal keeps its default kernel.
SPARSE_OVERRIDES = {
    "elliptic": dict(kernel="matern72", lengthscale=(0.3,), nugget=1e-10, steps=6),
    "burgers": dict(kernel="matern72", lengthscale=(0.3, 0.05), nugget=1e-10, steps=8),
    "eikonal": dict(steps=10),
}
CALIBRATION_KEYS = tuple(field.name for field in dataclasses.fields(Calibration))


def measure(problem_name: str, n_interior: int, n_boundary: int, grid: int, seed: int, label: str = "",
            results: Path | None = None, **overrides) -> list[dict]:
    """One solve (`run_solve`, which stores σ and the calibration numbers) with the problem's
    defaults and `overrides`; one row per field and amplitude. With `results` (a folder) the run's
    result file is kept there, for `gpde show` / `gpde plot` or a look at where σ misses."""
    problem_class = get_problem_class(problem_name)
    config = resolve(problem_name, problem_class.defaults, dict(n_interior=n_interior, n_boundary=n_boundary,
                                                                grid=grid, seed=seed), overrides)
    start = time.perf_counter()
    run = run_solve(problem_class, config)
    seconds = time.perf_counter() - start
    if results is not None:
        write_run(results / f"{problem_name}-{n_interior}+{n_boundary}-{config.solver}.h5", run.record)
    rows = []
    for index, field in enumerate(problem_class.fields):
        errors_key = field_names(field, index == 0)[3]
        attrs = run.record.group_attrs[uncertainty_names(field, index == 0)[1]]
        for name, prefix, amplitude in (("ml", "ml_", attrs["ml_amplitude"]), ("held-out", "", attrs["amplitude"])):
            rows.append(dict(problem=problem_name + label, field=field, n_interior=n_interior, n_boundary=n_boundary,
                             amplitude=name, s2=float(amplitude), rms_error=run.record.group_attrs[errors_key]["rms"],
                             mean_std=attrs["mean_std"] * np.sqrt(amplitude / attrs["amplitude"]), seconds=seconds,
                             uncertainty_seconds=attrs["seconds"],
                             **{key: attrs[prefix + key] for key in CALIBRATION_KEYS}))
    return rows


def learned_rows(grid: int, seed: int, folder: Path) -> list[dict]:
    """Bilevel learning of the elliptic Gaussian lengthscale at a small size (`run_learn`: σ₀ = 0.5,
    100 + 40 training and 100 validation points, 3 outer iterations of 20 steps), then solves at
    400 + 84 with the initial σ₀ and with the learned kernel."""
    problem_class = get_problem_class("elliptic")
    config = resolve("elliptic", problem_class.learn_defaults,
                     dict(n_interior=100, n_boundary=40, n_validation=100, gn_steps=3, inner_steps=20, grid=grid,
                          seed=seed), config_class=LearnConfig)
    learned = write_run(folder / "elliptic-learned.h5", run_learn(problem_class, config).record)
    sigma = float(np.exp(learned_kernel(learned).log_lengthscale))
    sigma0 = config.lengthscale
    return (measure("elliptic", 400, 84, grid, seed, f" σ₀ = {sigma0[0]:g}", lengthscale=sigma0)
            + measure("elliptic", 400, 84, grid, seed, f" learned σ = {sigma:.3g}", kernel_from=str(learned)))


def table(rows: list[dict]) -> str:
    header = ("| problem | field | points | amplitude | s² | RMS error | mean σ | 1σ | 2σ | 3σ | mean e/σ | std e/σ "
              "| NLL | 2σ goal | run s | σ s |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['field']} | {r['n_interior']} + {r['n_boundary']} | {r['amplitude']} "
            f"| {r['s2']:.3g} | {r['rms_error']:.2e} | {r['mean_std']:.2e} | {r['coverage_1']:.3f} "
            f"| {r['coverage_2']:.3f} | {r['coverage_3']:.3f} | {r['z_mean']:+.3f} | {r['z_std']:.3g} "
            f"| {r['nll']:.2f} | {coverage_verdict(r['coverage_2'])} | {r['seconds']:.0f} | {r['uncertainty_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--sizes", choices=sorted(SIZES), default="small")
    parser.add_argument("--grid", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learned", action="store_true",
                        help="also learn the elliptic lengthscale (small) and compare σ₀ with the learned kernel")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) to this file")
    parser.add_argument("--results", type=Path, default=None,
                        help="also keep every solve's result file (σ, errors) in this folder")
    parser.add_argument("--solver", choices=("dense", "sparse"), default="dense",
                        help="linear solver of the Gauss-Newton steps (sparse: σ from the local posterior)")
    args = parser.parse_args(argv)
    problems = [p for p in args.problems.split(",") if p]
    unknown = sorted(set(problems) - set(PROBLEMS))
    if unknown:
        parser.error(f"unknown problem(s) {unknown}; choose from {', '.join(PROBLEMS)}")
    if args.results is not None:
        args.results.mkdir(parents=True, exist_ok=True)
    rows = []
    for problem in problems:
        overrides = {} if args.solver == "dense" else dict(solver="sparse", sparse_std=True, **SPARSE_OVERRIDES.get(problem, {}))
        for n_interior, n_boundary in SIZES[args.sizes].get(problem, []):
            new = measure(problem, n_interior, n_boundary, args.grid, args.seed, results=args.results, **overrides)
            print("\n".join(table(new).splitlines()[2:]), file=sys.stderr, flush=True)
            rows.extend(new)
    if args.learned:
        with tempfile.TemporaryDirectory() as folder:
            new = learned_rows(args.grid, args.seed, Path(folder))
        print("\n".join(table(new).splitlines()[2:]), file=sys.stderr, flush=True)
        rows.extend(new)
    text = table(rows)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
