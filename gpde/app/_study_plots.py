"""Regret curves of a BLJES study file (used by `gpde plot STUDY.h5`).

One panel per benchmark in a grid; in each, one curve per method/setting: the median over seeds of
the bilevel simple regret after each evaluation, with the band between the first and third
quartiles, on a log scale. Regrets below `FLOOR` (an exact hit, or below float64 resolution) are
drawn at `FLOOR`. Only what the file holds is drawn; nothing is recomputed.
"""

import math
from pathlib import Path

import numpy as np

from ._plotting import _pyplot, save_figure
from ._study import StudyRun, method_label, read_study, setting_label

FLOOR = 1e-12


def regret_quantiles(runs: list[StudyRun]) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation index (1 … T) and the (3, T) quartiles (25 %, median, 75 %) of the regret over
    `runs` (T = the shortest run)."""
    length = min(len(run.arrays["regret"]) for run in runs)
    regrets = np.stack([run.arrays["regret"][:length] for run in runs])
    return np.arange(1, length + 1), np.quantile(np.maximum(regrets, FLOOR), [0.25, 0.5, 0.75], axis=0)


def plot_study(path: str | Path, out: str | Path) -> Path:
    """Regret curves of every benchmark of the study at `path`, one panel each, written to `out`."""
    runs = read_study(path)
    if not runs:
        raise ValueError(f"{path} holds no finished runs yet")
    by_benchmark: dict[str, dict[str, list[StudyRun]]] = {}
    for run in runs:
        label = f"{method_label(run.config)} ({setting_label(run.config)})"
        by_benchmark.setdefault(run.config["benchmark"], {}).setdefault(label, []).append(run)
    plt = _pyplot()
    columns = min(3, len(by_benchmark))
    rows = math.ceil(len(by_benchmark) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.4 * rows), squeeze=False)
    for ax, (benchmark, curves) in zip(axes.flat, sorted(by_benchmark.items())):
        for label, members in sorted(curves.items()):
            steps, (q1, median, q3) = regret_quantiles(members)
            (line,) = ax.plot(steps, median, label=f"{label}, {len(members)} seeds")
            ax.fill_between(steps, q1, q3, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_yscale("log")
        ax.set_title(benchmark)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("simple regret")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(by_benchmark):]:
        ax.set_visible(False)
    figure.tight_layout()
    out = save_figure(figure, out, dpi=120)
    plt.close(figure)
    return out
