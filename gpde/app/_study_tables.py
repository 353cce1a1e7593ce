"""Regret tables of a BLJES study at checkpoints: after a number of queries, or at a cost budget,
with the share of infeasible recommendations on constrained benchmarks.

Every cell is (benchmark, method with options, setting with costs) → per checkpoint the median and
quartiles over seeds of the regret; `feasible_median` is the median over the runs whose
recommendation at that checkpoint is feasible (NaN if none), `infeasible` the fraction that is not
(the regret of an infeasible recommendation is the benchmark's worst case, so the plain median
mixes two scales).
"""

from collections.abc import Sequence

import numpy as np

from ..bljes._costs import regret_at_cost
from ._study import StudyRun, method_label, setting_label


def _cells(runs: Sequence[StudyRun]) -> dict[tuple[str, str, str], list[StudyRun]]:
    cells: dict[tuple[str, str, str], list[StudyRun]] = {}
    for run in runs:
        cells.setdefault((run.config["benchmark"], method_label(run.config), setting_label(run.config)), []).append(run)
    return dict(sorted(cells.items()))


def _summary(values, feasible) -> dict:
    values, feasible = np.asarray(values, dtype=float), np.asarray(feasible, dtype=bool)
    known = ~np.isnan(values)
    if not known.any():
        return {"median": np.nan, "q1": np.nan, "q3": np.nan, "seeds": 0, "infeasible": np.nan, "feasible_median": np.nan}
    q1, median, q3 = np.quantile(values[known], [0.25, 0.5, 0.75])
    ok = known & feasible
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "seeds": int(known.sum()),
            "infeasible": float(1.0 - ok.sum() / known.sum()),
            "feasible_median": float(np.median(values[ok])) if ok.any() else np.nan}


def checkpoint_table(runs: Sequence[StudyRun], checkpoints: Sequence[float], *, by_cost: bool = False) -> dict:
    """cell → {checkpoint: summary} (see the module docstring). Checkpoints count queries (the
    regret after query number c, the last one if the run is shorter) or, with `by_cost`, cost
    budgets (`regret_at_cost`; runs stored before costs existed cost 1 per evaluated level)."""
    table = {}
    for key, members in _cells(runs).items():
        row = {}
        for checkpoint in checkpoints:
            values, feasible = [], []
            for run in members:
                regret = run.arrays["regret"]
                ok = run.arrays.get("feasible", np.ones(regret.shape, dtype=bool))
                if by_cost:
                    cost = run.arrays.get("cost")
                    if cost is None:
                        cost = np.cumsum(run.arrays["observed"].sum(axis=1))
                    values.append(regret_at_cost(regret, cost, checkpoint))
                    index = int(np.searchsorted(cost, checkpoint * (1 + 1e-12), side="right")) - 1
                else:
                    index = min(int(checkpoint), regret.size) - 1
                    values.append(regret[index])
                feasible.append(bool(ok[max(index, 0)]))
            row[checkpoint] = _summary(values, feasible)
        table[key] = row
    return table


def markdown_checkpoints(table: dict, checkpoints: Sequence[float], *, feasibility: bool = False) -> str:
    """One markdown row per cell: median [q1, q3] per checkpoint (and, with `feasibility`, the
    fraction infeasible and the median over feasible recommendations)."""
    def number(value):
        return "—" if not np.isfinite(value) else f"{value:.3g}"

    headers = ["benchmark", "method", "setting"]
    for checkpoint in checkpoints:
        headers.append(f"{checkpoint:g}")
        if feasibility:
            headers += [f"infeasible @{checkpoint:g}", f"feasible median @{checkpoint:g}"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for (benchmark, method, setting), row in table.items():
        cells = [benchmark, method, setting]
        for checkpoint in checkpoints:
            s = row[checkpoint]
            cells.append(f"{number(s['median'])} [{number(s['q1'])}, {number(s['q3'])}] ({s['seeds']})")
            if feasibility:
                cells += [number(s["infeasible"]), number(s["feasible_median"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
