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
# # BLJES: regret of bilevel Bayesian optimization
#
# Bilevel joint entropy search (docs/references.md §4, derivation in `docs/bljes.md`) against random
# search, trusted-random search and the BILBO-style baseline on the bilevel benchmarks of
# `problems/bilevel/`. The notebook shows
#
# * the median (and quartiles) over seeds of the bilevel simple regret F(x̂_t) − F(x*) after each
#   evaluation, per benchmark and method, F evaluated with the TRUE lower-level optimum at x̂_t;
# * the final-regret table;
# * coupled against decoupled queries, and the ablations over the number of sample paths K and the
#   lower-optimality tolerance τ;
# * the time per BLJES iteration, split by phase;
# * beyond the noiseless, unconstrained, coupled setting: noise relative to each output's range,
#   the constrained smd12 (feasibility of the recommendations), decoupled queries with per-level
#   costs (regret against the cost spent), BLJES with hyperparameters drawn per sample path, and
#   the darcy PDE black box (each query a Gauss-Newton solve; the final table gives the wall time).
#
# Every number and figure is read from the HDF5 study files in `RESULTS/bljes/SETTING/`; only the
# runs that are missing are computed (`gpde.app.run_study` skips finished runs).

# %% tags=["parameters"]
import os
from pathlib import Path

SETTING = os.environ.get("GPDE_NOTEBOOK_SETTING", "quick")  # "quick" (tiny, for tests) or "full" (the 10-seed study)
RESULTS = Path(os.environ.get("GPDE_RESULTS", "results"))  # folder of result files and figures

# %%
import math

import jax

jax.config.update("jax_enable_x64", True)  # the surrogates are fitted in float64

import matplotlib.pyplot as plt
import numpy as np

from gpde.app import analysis
from gpde.app import final_regret_table, plan_study, plot_study, read_study, run_study
from gpde.app import checkpoint_table, markdown_checkpoints, setting_label

if SETTING not in ("quick", "full"):
    raise ValueError(f"GPDE_NOTEBOOK_SETTING must be 'quick' or 'full', got {SETTING!r}")

if SETTING == "quick":
    # Tiny budgets: the pipeline end to end, not the published comparison.
    BUDGET = dict(evaluations=5, initial=3)
    MAIN = [dict(benchmarks="smoke-1+1", methods="random,bljes", seeds=1)]
    DECOUPLED = [dict(benchmarks="smoke-1+1", methods="bljes", seeds=1)]
    ABLATION = [dict(benchmarks="smoke-1+1", seeds=1, options=("paths=2", "tau=0.1"))]
    # Same sizes as MAIN (nothing new to compile): noise, costs; smd12 and the hyperparameter
    # draws compile new shapes and functions, so they are left to the full setting.
    NOISY = [dict(benchmarks="smoke-1+1[noise=0.05]", methods="random", seeds=1)]
    CONSTRAINED = []
    COSTS = [dict(benchmarks="smoke-1+1", methods="random", seeds=1, costs=("f=1,g=0.1",))]
    HYPER = []
    PDE = []  # each darcy query is a Gauss-Newton solve: full setting only
else:
    # The full study: 60 evaluations (3 initial), 10 seeds on all six benchmarks, plus the two
    # GP draws whose lower-level basins tie at the optimum (problems/bilevel/gp_sample.py); decoupled
    # queries and the K and τ ablations on 3 seeds (CPU time on two cores is the limit: a BLJES
    # run takes 1.5-6 min, the whole study ~5 h of one core).
    BUDGET = dict(evaluations=60, initial=3)
    MAIN = [dict(benchmarks="smd1,smd2,smd6,gp-2+2,smoke-1+1,gp-1+1,gp-2+2-tied,gp-1+1-tied", methods="all", seeds=10)]
    DECOUPLED = [dict(benchmarks="smd1,smd2", methods="bljes,random", seeds=3)]
    ABLATION = [dict(benchmarks="smd1", seeds=3, options=("paths=1", "paths=10", "tau=0.001", "tau=0.1"))]
    NOISY = [dict(benchmarks=",".join(f"{b}[noise={level}]" for b in ("smd1", "smd2", "gp-2+2") for level in (0.01, 0.05)),
                  methods="all", seeds=10)]
    CONSTRAINED = [dict(benchmarks="smd12", methods="all", seeds=10)]
    COSTS = [dict(benchmarks="smd1,smd2", methods="all", seeds=10, costs=("f=1,g=1", "f=1,g=0.1"))]
    HYPER = [dict(benchmarks="smd1,smd2,smd6,gp-2+2,gp-2+2-tied", seeds=10)]
    PDE = [dict(benchmarks="darcy", methods="all", seeds=10)]

FOLDER = RESULTS / "bljes" / SETTING
FOLDER.mkdir(parents=True, exist_ok=True)
FIGURES = RESULTS / "figures"
FIGURES.mkdir(parents=True, exist_ok=True)
print(f"setting {SETTING!r}: study files in {FOLDER}, figures in {FIGURES}")

# %% [markdown]
# ## Study files
#
# Three studies: the method comparison (coupled queries), BLJES with decoupled queries (compared
# with its coupled runs of the first study), and the K and τ ablations of BLJES (each option a
# separate cell). This is the only cell that computes.

# %%
planned = {
    "main": [spec for g in MAIN for spec in plan_study(g["benchmarks"], g["methods"], "coupled", g["seeds"], **BUDGET)],
    "decoupled": [spec for g in DECOUPLED
                  for spec in plan_study(g["benchmarks"], g["methods"], "decoupled", g["seeds"], **BUDGET)],
    "ablation": [spec for g in ABLATION for options in g["options"]
                 for spec in plan_study(g["benchmarks"], "bljes", "coupled", g["seeds"], options=options, **BUDGET)],
    "noisy": [spec for g in NOISY for spec in plan_study(g["benchmarks"], g["methods"], "coupled", g["seeds"], **BUDGET)],
    "constrained": [spec for g in CONSTRAINED
                    for spec in plan_study(g["benchmarks"], g["methods"], "coupled", g["seeds"], **BUDGET)],
    "costs": [spec for g in COSTS for costs in g["costs"]
              for spec in plan_study(g["benchmarks"], g["methods"], "decoupled", g["seeds"], costs=costs, **BUDGET)],
    "hyper": [spec for g in HYPER
              for spec in plan_study(g["benchmarks"], "bljes", "coupled", g["seeds"], options="hyperposterior=True", **BUDGET)],
    "darcy": [spec for g in PDE for spec in plan_study(g["benchmarks"], g["methods"], "coupled", g["seeds"], **BUDGET)],
}
planned = {name: specs for name, specs in planned.items() if specs}
studies = {name: FOLDER / f"{name}.h5" for name in planned}
for name, path in studies.items():
    run_study(planned[name], path, progress=False)
runs = {name: read_study(path) for name, path in studies.items()}
print({name: len(members) for name, members in runs.items()})

# %% [markdown]
# ## Final regret
#
# Median and quartiles over seeds of the regret after the last evaluation, per benchmark, method
# (with its options) and setting.

# %%
def regret_rows(study_runs):
    return [{"benchmark": benchmark, "method": method, "setting": setting, "seeds": cell["seeds"],
             "evaluations": cell["evaluations"], "median": cell["median"], "q1": cell["q1"], "q3": cell["q3"],
             "wall s (median)": cell["seconds"]}
            for (benchmark, method, setting), cell in final_regret_table(study_runs).items()]


tables = {name: regret_rows(members) for name, members in runs.items()}
# Decoupled against coupled: the coupled rows of the main study for the same benchmarks and methods.
decoupled_cells = {(row["benchmark"], row["method"]) for row in tables["decoupled"]}
tables["decoupled"] += [row for row in tables["main"] if (row["benchmark"], row["method"]) in decoupled_cells]
for name, rows in tables.items():
    print(f"### {name}\n{analysis.markdown_table(rows)}\n")

# Regret is F(x̂) − F(x*) with the true lower-level optimum: finite and never negative (up to the
# accuracy of the stored optimum), for every run and every evaluation.
for name, members in runs.items():
    for run in members:
        regret = run.arrays["regret"]
        assert regret.shape == (BUDGET["evaluations"],), (name, run.config, regret.shape)
        assert np.all(np.isfinite(regret)) and np.all(regret >= -1e-9), (name, run.config, regret)
# Every planned cell (benchmark, method with options, setting) is in its table; the decoupled table
# also holds the matching coupled cells.
expected_cells = {name: len({(spec.benchmark, spec.label, setting_label(spec.config())) for spec in specs})
                  for name, specs in planned.items()}
expected_cells["decoupled"] *= 2
for name, count in expected_cells.items():
    assert len(tables[name]) == count, (name, count, tables[name])

# %% [markdown]
# ## Regret curves
#
# Median over seeds (line) and quartiles (band) after each evaluation, log scale; one panel per
# benchmark (`gpde plot STUDY.h5` draws the same figure).

# %%
for name, path in studies.items():
    figure_path = plot_study(path, FIGURES / f"bljes-{name}-{SETTING}.png")
    print(f"{name}: {figure_path}")
figure, ax = plt.subplots(figsize=(6, 4))
ax.imshow(plt.imread(FIGURES / f"bljes-main-{SETTING}.png"))
ax.set_axis_off()

# %% [markdown]
# ## Noise, constraints, costs and hyperparameter draws
#
# Regret median [q1, q3] (seeds) after a number of evaluations. Noisy benchmarks are named
# `NAME[noise=L]` (sd L × each output's range; the regret is that of the true F). On smd12 the
# regret of an infeasible recommendation is the worst regret on the box, so the table also gives
# the fraction of infeasible recommendations and the median regret of the feasible ones. The
# decoupled runs with costs are compared at equal cost spent (budgets every run reached), the
# hyperparameter draws (`bljes[hyperposterior=True]`) against the plain BLJES runs of the main
# study. The darcy study (full setting only) has its own table.

# %%
CHECKPOINTS = (3, BUDGET["evaluations"]) if SETTING == "quick" else (15, 30, BUDGET["evaluations"])
for name in ("noisy", "constrained", "hyper", "darcy"):
    if name not in runs:
        continue
    members = runs[name]
    if name == "hyper":
        hyper_benchmarks = {run.config["benchmark"] for run in members}
        members = members + [run for run in runs["main"]
                             if run.config["benchmark"] in hyper_benchmarks and run.config["method"] == "bljes"]
    table = checkpoint_table(members, CHECKPOINTS)
    print(f"### {name}\n{markdown_checkpoints(table, CHECKPOINTS, feasibility=name == 'constrained')}\n")
    for row in table.values():
        assert all(row[c]["seeds"] >= 1 and 0.0 <= row[c]["infeasible"] <= 1.0 for c in CHECKPOINTS), (name, row)
if "costs" in runs:
    spent = min(run.arrays["cost"][-1] for run in runs["costs"])
    budgets = (math.floor(5 * spent) / 10, math.floor(10 * spent) / 10)  # half and all of it, rounded down
    table = checkpoint_table(runs["costs"], budgets, by_cost=True)
    print(f"### costs (regret after the cost budgets {budgets})\n{markdown_checkpoints(table, budgets)}\n")
    for row in table.values():
        assert all(row[budget]["seeds"] >= 1 for budget in budgets), row

# %% [markdown]
# ## Time per BLJES iteration
#
# Median over the BLJES iterations (after the initial design) of the wall seconds of each phase:
# surrogate fit, sample paths, sample optima, acquisition maximization, and the recommendation.

# %%
phase_rows = []
for run in runs["main"]:
    if run.config["method"] != "bljes":
        continue
    start = run.config["initial"]
    seconds = {phase: np.asarray(values)[start:] for phase, values in run.seconds.items()}
    total = sum(seconds.values())
    row = {"benchmark": run.config["benchmark"], "seed": run.config["seed"], "total s": float(np.median(total))}
    row.update({f"{phase} s": float(np.median(values)) for phase, values in seconds.items()})
    phase_rows.append(row)
print(analysis.markdown_table(phase_rows))
for row in phase_rows:
    assert all(math.isfinite(value) and value >= 0 for key, value in row.items() if key.endswith(" s")), row
