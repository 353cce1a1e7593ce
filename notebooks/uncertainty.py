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
# # Uncertainty: the posterior standard deviation of every solved field, and its calibration
#
# The last Gauss-Newton step is a GP regression on linear functionals of u (docs/references.md §9):
# its posterior gives a standard deviation σ(x) for every field besides the mean. `gpde solve`
# stores σ of each field on the evaluation grid (`fields/u_std`, `fields/a_std`, …) and how well it
# predicts the actual error against the reference (attribute groups `calibration`, `calibration_a`):
#
# * coverage: the fraction of grid points with |u − u_ref| ≤ zσ for z = 1, 2, 3 (a calibrated
#   Gaussian gives 68.3 / 95.4 / 99.7 %); above it σ is too large (under-confident), below it too
#   small (over-confident);
# * the mean and spread of the standardized error (u − u_ref)/σ (ideal 0 and 1) and the Gaussian
#   negative log-likelihood per point.
#
# The kernel amplitude s² sets the scale of σ. gpde fits it to the PDE residual at held-out
# interior points (no reference involved); the maximum-likelihood s² on the collocation system is
# stored beside it, with the coverage it would give (`ml_*`). This notebook shows the table, maps of
# |error| and σ, and reliability diagrams (observed against nominal coverage).
#
# Every number and figure is read from the HDF5 result files in `RESULTS/uncertainty/SETTING/`.

# %% tags=["parameters"]
import os
from pathlib import Path

SETTING = os.environ.get("GPDE_NOTEBOOK_SETTING", "quick")  # "quick" (tiny, for tests) or "full"
RESULTS = Path(os.environ.get("GPDE_RESULTS", "results"))  # folder of result files and figures

# %%
import math

import jax

jax.config.update("jax_enable_x64", True)  # gpde solves in float64 only

import matplotlib.pyplot as plt
import numpy as np

from gpde.app import analysis, uncertainty_names
from gpde.io import _store as store
from gpde.solve import NOMINAL_COVERAGE, calibration, reliability

if SETTING not in ("quick", "full"):
    raise ValueError(f"GPDE_NOTEBOOK_SETTING must be 'quick' or 'full', got {SETTING!r}")

# Runs: overrides of each problem's defaults. "full" is the largest size of
# benchmarks/calibration.py for each problem (default settings otherwise).
if SETTING == "quick":
    RUNS = [
        ("elliptic", dict(n_interior=64, n_boundary=36, grid=25, steps=6)),
        ("burgers", dict(n_interior=100, n_boundary=40, grid=25, steps=8)),
    ]
else:
    RUNS = [
        ("elliptic", dict(n_interior=900, n_boundary=124)),
        ("burgers", dict(n_interior=900, n_boundary=300)),
        ("eikonal", dict(n_interior=900, n_boundary=300)),
        ("darcy", dict(n_interior=400, n_boundary=100)),
    ]

FOLDER = RESULTS / "uncertainty" / SETTING
FIGURES = RESULTS / "figures"
FIGURES.mkdir(parents=True, exist_ok=True)
print(f"setting {SETTING!r}: result files in {FOLDER}, figures in {FIGURES}")

# %% [markdown]
# ## Result files
#
# Solve what is missing (the only cell that computes), then read every file back.

# %%
paths = [analysis.ensure_solve(FOLDER / f"{problem}-{run['n_interior']}+{run['n_boundary']}.h5", problem, **run)
         for problem, run in RUNS]
runs = analysis.load_runs(paths)
print([path.name for path in paths])


def field_arrays(run, field: str, primary: bool):
    """(value, reference, σ) of a field on the grid, as stored."""
    fields = run.groups[store.FIELDS]
    value_key, reference_key, _, _ = store.field_names(field, primary)
    return fields[value_key], fields[reference_key], fields[uncertainty_names(field, primary)[0]]


def fields_of(run):
    """The run's fields (u first), read from its σ datasets."""
    stored = run.groups[store.FIELDS]
    names = [store.U] + sorted(key[:-len("_std")] for key in stored if key.endswith("_std") and key != f"{store.U}_std")
    return [(name, index == 0) for index, name in enumerate(names)]


# %% [markdown]
# ## Calibration table
#
# `s²` is the held-out amplitude that σ uses; the last columns give the 2σ coverage and NLL with the
# maximum-likelihood s² instead.

# %%
rows = []
for run in runs:
    for field, primary in fields_of(run):
        numbers = run.group_attrs[uncertainty_names(field, primary)[1]]
        rows.append({
            "problem": run.problem, "field": field,
            "points": f"{run.config['n_interior']} + {run.config['n_boundary']}",
            "s²": f"{numbers['amplitude']:.3g}", "1σ": f"{numbers['coverage_1']:.3f}",
            "2σ": f"{numbers['coverage_2']:.3f}", "3σ": f"{numbers['coverage_3']:.3f}",
            "mean e/σ": f"{numbers['z_mean']:+.2f}", "std e/σ": f"{numbers['z_std']:.3g}", "NLL": f"{numbers['nll']:.2f}",
            "ML s²": f"{numbers['ml_amplitude']:.3g}", "ML 2σ": f"{numbers['ml_coverage_2']:.3f}",
            "ML NLL": f"{numbers['ml_nll']:.2f}",
        })
        # The stored numbers are those of the stored fields.
        value, reference, std = field_arrays(run, field, primary)
        recomputed = calibration(value, std, reference)
        assert math.isclose(recomputed.coverage_2, numbers["coverage_2"]), (run.problem, field)
        assert math.isclose(recomputed.nll, numbers["nll"], rel_tol=1e-9), (run.problem, field)
        assert np.all(np.isfinite(std)) and np.all(std >= 0), (run.problem, field)
        assert math.isfinite(numbers["nll"]) and math.isfinite(numbers["ml_nll"]), (run.problem, field)
print(analysis.markdown_table(rows))
print("nominal coverage at 1/2/3σ:", " / ".join(f"{p:.3f}" for p in NOMINAL_COVERAGE))

# %% [markdown]
# ## Where the error exceeds σ
#
# Per run and field: |error| (log scale), σ (log scale, same colour range) and |error|/σ (saturated
# at 3: the bright regions are where σ is too small).

# %%
panels = [(run, field, primary) for run in runs for field, primary in fields_of(run)]
figure, axes = plt.subplots(len(panels), 3, figsize=(15, 4.3 * len(panels)), constrained_layout=True, squeeze=False)
for row, (run, field, primary) in zip(axes, panels):
    value, reference, std = field_arrays(run, field, primary)
    points = run.groups[store.FIELDS][store.GRID_POINTS]
    shape = value.shape
    x, y = points[:, 0].reshape(shape), points[:, 1].reshape(shape)
    error = np.abs(value - reference)
    positive = np.concatenate([error[error > 0], std[std > 0]])
    low, high = np.percentile(positive, 1), positive.max()
    for axis, values, title in ((row[0], error, f"|error {field}|"), (row[1], std, f"σ_{field}")):
        mesh = axis.pcolormesh(x, y, np.clip(values, low, None), shading="auto", cmap="magma",
                               norm=plt.matplotlib.colors.LogNorm(vmin=low, vmax=high))
        figure.colorbar(mesh, ax=axis)
        axis.set_title(f"{run.problem} {run.config['n_interior']}+{run.config['n_boundary']}: {title}")
    ratio = np.divide(error, std, out=np.full(shape, np.nan), where=std > 0)
    mesh = row[2].pcolormesh(x, y, ratio, shading="auto", cmap="cividis", vmin=0.0, vmax=3.0)
    figure.colorbar(mesh, ax=row[2])
    row[2].set_title(f"|error {field}| / σ_{field}")
figure.savefig(FIGURES / f"uncertainty-maps-{SETTING}.png", dpi=110)

# %% [markdown]
# ## Reliability diagram
#
# The observed fraction of grid points inside the central interval of nominal probability p,
# against p: on the diagonal σ is calibrated, above it under-confident, below it over-confident.
# Dashed: the same with the maximum-likelihood amplitude.

# %%
probabilities = np.linspace(0.05, 0.995, 40)
figure, axis = plt.subplots(figsize=(6, 6), constrained_layout=True)
axis.plot([0, 1], [0, 1], color="0.6", linewidth=1)
for (run, field, primary), color in zip(panels, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4):
    value, reference, std = field_arrays(run, field, primary)
    numbers = run.group_attrs[uncertainty_names(field, primary)[1]]
    label = f"{run.problem} {field} ({run.config['n_interior']}+{run.config['n_boundary']})"
    observed = reliability(value, std, reference, probabilities)
    ml = reliability(value, std * np.sqrt(numbers["ml_amplitude"] / numbers["amplitude"]), reference, probabilities)
    axis.plot(probabilities, observed, color=color, label=label)
    axis.plot(probabilities, ml, color=color, linestyle="--")
    assert np.all(np.diff(observed) >= 0) and np.all((observed >= 0) & (observed <= 1)), label
axis.set_xlabel("nominal coverage p")
axis.set_ylabel("observed coverage")
axis.set_title("reliability (solid: held-out s², dashed: ML s²)")
axis.legend(fontsize=8)
figure.savefig(FIGURES / f"uncertainty-reliability-{SETTING}.png", dpi=110)
print("checked: stored calibration numbers match the stored fields; σ finite and >= 0; NLL finite")
