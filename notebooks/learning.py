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
# # Learning the Gaussian lengthscale of the nonlinear elliptic problem
#
# Bilevel learning (REFERENCES.md §3) of the lengthscale σ of a Gaussian kernel for
# −Δu + u³ = f, started from several σ₀. Each run is evaluated by the published protocol: a
# plain Gauss-Newton re-solve on training ∪ validation points with the initial σ₀ ("before") and
# with the learned σ ("after"). The notebook shows
#
# * a before/after table of RMS, relative L2 and L∞ errors with the learned σ;
# * the outer loss and the grid errors per outer iteration, and σ per outer iteration;
# * the error maps before and after learning for σ₀ = 0.5.
#
# Every number and figure is read from the HDF5 result files in `RESULTS/learning/SETTING/`,
# computed only when missing (delete a file to recompute it).

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
from matplotlib.ticker import MaxNLocator

from gpde import _analysis as analysis

if SETTING not in ("quick", "full"):
    raise ValueError(f"GPDE_NOTEBOOK_SETTING must be 'quick' or 'full', got {SETTING!r}")

PROBLEM = "elliptic"
if SETTING == "quick":
    SIGMA0 = (0.3, 0.5)
    # Tiny sizes: enough for the learned σ to beat σ₀ = 0.5, not for published accuracy.
    SETTINGS = dict(n_interior=64, n_boundary=32, n_validation=40, gn_steps=2, inner_steps=5, eval_steps=6, grid=20)
else:
    SIGMA0 = (0.05, 0.1, 0.5, 1.0, 2.0, 3.0)
    SETTINGS = {}  # the published setup: the problem's learn_defaults
#: The start whose improvement the notebook checks.
CHECKED_SIGMA0 = 0.5

FOLDER = RESULTS / "learning" / SETTING
FIGURES = RESULTS / "figures"
FIGURES.mkdir(parents=True, exist_ok=True)
print(f"setting {SETTING!r}: result files in {FOLDER}, figures in {FIGURES}")

# %% [markdown]
# ## Result files
#
# Learn what is missing (this is the only cell that computes), then read every file back.

# %%
paths = {
    sigma0: analysis.ensure_learn(FOLDER / f"{PROBLEM}-gaussian-sigma0-{sigma0:g}.h5", PROBLEM, kernel="gaussian",
                                  lengthscale=sigma0, trainable="lengthscale", **SETTINGS)
    for sigma0 in SIGMA0
}
runs = dict(zip(paths, analysis.load_runs(paths.values())))
for sigma0, path in paths.items():
    print(f"σ₀ = {sigma0:g}: {path.name}")

# %% [markdown]
# ## Before and after learning
#
# "before": re-solve with σ₀; "after": re-solve with the learned σ (last outer iteration).

# %%
rows = []
for sigma0, run in runs.items():
    sigmas = analysis.learned_lengthscales(run)
    before, after = run.group_attrs["before/errors"], run.group_attrs["after/errors"]
    row = {"σ₀": f"{sigma0:g}", "learned σ": float(sigmas[-1]), "outer iterations": analysis.steps_taken(run)}
    row.update({f"before {analysis.ERROR_LABELS[key]}": float(before[key]) for key in analysis.ERROR_KEYS})
    row.update({f"after {analysis.ERROR_LABELS[key]}": float(after[key]) for key in analysis.ERROR_KEYS})
    rows.append(row)
print(analysis.markdown_table(rows))
for sigma0, run in runs.items():
    print(f"σ₀ = {sigma0:g}: stopped because {run.group_attrs['history']['stopped_because']}")

# Every displayed number is finite, and σ stays positive.
for row in rows:
    for key, value in row.items():
        if isinstance(value, float):
            assert math.isfinite(value), f"σ₀ = {row['σ₀']}: {key} = {value}"
    assert row["learned σ"] > 0
# Learning from σ₀ = 0.5 lowers the RMS error of the re-solve.
checked = runs[CHECKED_SIGMA0].group_attrs
assert checked["after/errors"]["rms"] < checked["before/errors"]["rms"], (
    f"σ₀ = {CHECKED_SIGMA0}: RMS before {checked['before/errors']['rms']:.3g}, after {checked['after/errors']['rms']:.3g}"
)

# %% [markdown]
# ## Outer loss, errors and σ per outer iteration
#
# The errors per outer iteration are those of the learner's own Gauss-Newton iterate (built on the
# training points only), so they differ from the before/after re-solves in the table above.

# %%
figure, axes = plt.subplots(1, len(runs) + 1, figsize=(5 * (len(runs) + 1), 4.2), constrained_layout=True)
for ax, (sigma0, run) in zip(axes, runs.items()):
    analysis.plot_learning_history(ax, run)
    ax.set_title(f"σ₀ = {sigma0:g}")
    ax.legend(fontsize="small")
for sigma0, run in runs.items():
    sigmas = analysis.learned_lengthscales(run)
    axes[-1].semilogy(np.arange(len(sigmas) + 1), np.concatenate([[sigma0], sigmas]), marker="o", label=f"σ₀ = {sigma0:g}")
axes[-1].set_xlabel("outer iteration (0: σ₀)")
axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
axes[-1].set_ylabel("lengthscale σ")
axes[-1].set_title("learned σ")
axes[-1].grid(True, which="both", alpha=0.3)
axes[-1].legend(fontsize="small")
figure.savefig(FIGURES / f"learning-history-{SETTING}.png", dpi=110)

# %% [markdown]
# ## Error maps before and after learning (σ₀ = 0.5)

# %%
figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
checked_run = runs[CHECKED_SIGMA0]
# One colour scale for both maps, so that they compare.
limit = max(float(np.max(np.abs(checked_run.groups[group]["error"]))) for group in ("before/fields", "fields"))
analysis.plot_error_map(axes[0], checked_run, which="error", group="before/fields", limit=limit)
analysis.plot_error_map(axes[1], checked_run, which="error", limit=limit)
axes[0].set_title(f"before: σ₀ = {CHECKED_SIGMA0:g}")
axes[1].set_title(f"after: learned σ = {analysis.learned_lengthscales(checked_run)[-1]:.3g}")
figure.savefig(FIGURES / f"learning-error-maps-{SETTING}.png", dpi=110)
print("checked: every number finite, σ > 0, RMS after < RMS before for σ₀ = 0.5")
