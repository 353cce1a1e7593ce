# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Convergence of gpde's collocation solver: RMS, relative L2 and L∞ errors
#
# For the three catalogue problems (nonlinear elliptic, viscous Burgers, regularized Eikonal), each
# with its default kernel, this notebook solves at increasing numbers of collocation points N and
# shows how the error against the independent reference falls:
#
# * a table of the errors (RMS = sqrt(mean err²), relative L2, L∞ on the evaluation grid);
# * log-log plots of the errors against N with fitted rates (error ≈ C N^(−rate));
# * error maps of the largest run of each problem;
# * the Gauss-Newton residual per step.
#
# Every number and figure is read from the HDF5 result files in `RESULTS/convergence/SETTING/`.
# A file is computed only when it is missing (an existing file made with other settings is an
# error, never silently reused); delete a file to recompute it.

# %% tags=["parameters"]
import os
from pathlib import Path

SETTING = os.environ.get("GPDE_NOTEBOOK_SETTING", "quick")  # "quick" (tiny, for tests) or "full" (published sizes)
RESULTS = Path(os.environ.get("GPDE_RESULTS", "results"))  # folder of result files and figures

# %%
import math

import jax

jax.config.update("jax_enable_x64", True)  # gpde solves in float64 only

import matplotlib.pyplot as plt
import numpy as np

from gpde.app import analysis

if SETTING not in ("quick", "full"):
    raise ValueError(f"GPDE_NOTEBOOK_SETTING must be 'quick' or 'full', got {SETTING!r}")


def elliptic_size(n_interior: int) -> dict:
    """A grid of m × m interior points and 4m + 4 boundary points (900 + 124 is the published
    setup)."""
    m = math.isqrt(n_interior)
    return {"n_interior": m * m, "n_boundary": 4 * m + 4}


# Per problem: the runs (overrides of the problem's defaults). "full" uses the default kernels,
# nuggets, step limits and evaluation grid, up to the published sizes (docs/references.md).
if SETTING == "quick":
    SIZES = {
        "elliptic": [dict(elliptic_size(n), grid=25, steps=6) for n in (36, 64, 100)],
        "burgers": [dict(n_interior=n, n_boundary=b, grid=25, steps=8) for n, b in ((100, 40), (200, 60))],
        "eikonal": [dict(n_interior=n, n_boundary=b, grid=25, steps=8) for n, b in ((100, 40), (200, 60))],
    }
else:
    SIZES = {
        "elliptic": [elliptic_size(n) for n in (100, 225, 400, 625, 900)],
        "burgers": [dict(n_interior=n, n_boundary=n // 3) for n in (150, 300, 600, 900)],
        "eikonal": [dict(n_interior=n, n_boundary=n // 3) for n in (150, 300, 600, 900)],
    }

FOLDER = RESULTS / "convergence" / SETTING
FIGURES = RESULTS / "figures"
FIGURES.mkdir(parents=True, exist_ok=True)
print(f"setting {SETTING!r}: result files in {FOLDER}, figures in {FIGURES}")

# %% [markdown]
# ## Result files
#
# Solve what is missing (this is the only cell that computes), then read every file back.

# %%
paths = {}
for problem, runs in SIZES.items():
    paths[problem] = [
        analysis.ensure_solve(FOLDER / f"{problem}-{run['n_interior']}+{run['n_boundary']}.h5", problem, **run)
        for run in runs
    ]
runs = {problem: analysis.load_runs(files) for problem, files in paths.items()}
for problem, files in paths.items():
    print(problem, [path.name for path in files])

# %% [markdown]
# ## Error table

# %%
rows = [row for problem in runs for row in analysis.error_table(runs[problem])]
print(analysis.markdown_table(rows))

# Every displayed error is a finite number.
for row in rows:
    for key in analysis.ERROR_KEYS:
        assert math.isfinite(row[key]), f"{row['problem']} N={row['n_points']}: {key} = {row[key]}"

# %% [markdown]
# ## Errors against the number of collocation points
#
# The legend gives the fitted rate r of error ≈ C N^(−r) (least squares in log-log).

# %%
figure, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.5), constrained_layout=True)
rates = {problem: analysis.plot_error_vs_points(ax, rows, problem) for ax, problem in zip(np.atleast_1d(axes), runs)}
figure.savefig(FIGURES / f"convergence-errors-{SETTING}.png", dpi=110)

rate_rows = [{"problem": problem, **{f"rate {analysis.ERROR_LABELS[key]}": f"{value:.2f}" for key, value in by_key.items()}}
             for problem, by_key in rates.items()]
print(analysis.markdown_table(rate_rows))

# The elliptic error decreases with N: its fitted RMS rate is positive.
assert rates["elliptic"]["rms"] > 0, f"elliptic RMS error does not decrease with N (rate {rates['elliptic']['rms']:.3g})"

# %% [markdown]
# ## Error maps of the largest run of each problem

# %%
figure, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.5), constrained_layout=True)
for ax, problem in zip(np.atleast_1d(axes), runs):
    largest = max(runs[problem], key=lambda run: run.config["n_interior"] + run.config["n_boundary"])
    analysis.plot_error_map(ax, largest, which="error")
figure.savefig(FIGURES / f"convergence-error-maps-{SETTING}.png", dpi=110)

# %% [markdown]
# ## Gauss-Newton residual per step

# %%
figure, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.5), constrained_layout=True)
for ax, problem in zip(np.atleast_1d(axes), runs):
    for run in runs[problem]:
        analysis.plot_residual_history(ax, run)
    ax.set_title(problem)
    ax.legend()
figure.savefig(FIGURES / f"convergence-residuals-{SETTING}.png", dpi=110)

# Every Gauss-Newton run ends with a smaller residual than it started with.
for problem in runs:
    for run in runs[problem]:
        residual = run.groups["history"]["residual_rms"]
        assert np.all(np.isfinite(residual)), f"{problem}: non-finite residual {residual}"
        assert residual[-1] < residual[0], f"{problem} N={run.config['n_interior']}: residual {residual[0]:.3g} -> {residual[-1]:.3g}"
print("checked: errors finite, elliptic RMS rate > 0, every final residual below its first")
