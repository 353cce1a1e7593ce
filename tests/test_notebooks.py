"""The analysis notebooks (notebooks/*.py, jupytext percent format) run end to end in quick mode,
and the helpers they use (gpde/app/_analysis.py) compute what they say.

Each notebook takes about a minute on two CPU cores, almost all of it JAX compilation (their
kernels, like every process of the test run, compile at XLA's quickest level: tests/conftest.py).
They run in the default suite on purpose, so a change that breaks a published figure is caught."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from gpde import ConfigError
from gpde.app import analysis
from gpde.io import _store as store

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _use_this_interpreter(monkeypatch, folder: Path) -> None:
    """Make the `python3` kernel this test's interpreter: a kernelspec in a folder put first on
    JUPYTER_PATH wins over any user-level or system one, and works on a machine where only the
    virtual environment exists."""
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (gpde tests)",
        "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(folder))


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory) -> Path:
    """A persistent JAX compilation cache shared by the notebook kernels of this module (one per
    test process). The notebooks are almost all JAX compilation, and much of it is the same
    programs again: the same solver at the same sizes in several notebooks, and the same learner
    for a second start or kernel whose jit cache misses only because its Python objects are new.
    Compiled programs are reused only for an identical program (XLA's own cache key), so every
    notebook still computes exactly what it computes without the cache."""
    return tmp_path_factory.mktemp("jax-compilation-cache")


def _execute(name: str, tmp_path: Path, monkeypatch, cache: Path, cell_timeout: int = 600) -> Path:
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    results = tmp_path / "results"
    _use_this_interpreter(monkeypatch, tmp_path / "jupyter")
    # The kernel inherits the environment of this process.
    monkeypatch.setenv("GPDE_NOTEBOOK_SETTING", "quick")
    monkeypatch.setenv("GPDE_RESULTS", str(results))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(cache))
    # Every compiled program, not only those that took a second or more to compile.
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    monkeypatch.chdir(tmp_path)

    notebook = jupytext.read(NOTEBOOKS / name)
    client = nbclient.NotebookClient(
        notebook, timeout=cell_timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    return results


def test_convergence_notebook(tmp_path, monkeypatch, compilation_cache):
    results = _execute("convergence.py", tmp_path, monkeypatch, compilation_cache)
    files = sorted(path.name for path in (results / "convergence" / "quick").glob("*.h5"))
    assert len(files) == 7, files
    figures = {path.name for path in (results / "figures").glob("*.png")}
    assert figures == {"convergence-errors-quick.png", "convergence-error-maps-quick.png",
                       "convergence-residuals-quick.png"}


def test_learning_notebook(tmp_path, monkeypatch, compilation_cache):
    results = _execute("learning.py", tmp_path, monkeypatch, compilation_cache)
    files = sorted(path.name for path in (results / "learning" / "quick").glob("*.h5"))
    assert files == ["eikonal-gibbs.h5", "elliptic-additive.h5", "elliptic-gaussian-sigma0-0.5.h5"]
    figures = {path.name for path in (results / "figures").glob("*.png")}
    assert figures == {"learning-history-quick.png", "learning-error-maps-quick.png", "learning-gibbs-history-quick.png",
                       "learning-gibbs-lengthscale-quick.png"}


@pytest.mark.slow  # compiling the Burgers Gibbs and the two-field learners takes about three minutes
def test_learning_notebook_with_every_problem(tmp_path, monkeypatch, compilation_cache):
    monkeypatch.setenv("GPDE_NOTEBOOK_EXTENDED", "1")
    # Its first cell learns five kernels (about 4 min on an idle core, more than 10 on a shared one).
    results = _execute("learning.py", tmp_path, monkeypatch, compilation_cache, cell_timeout=1800)
    files = sorted(path.name for path in (results / "learning" / "quick").glob("*.h5"))
    assert files == ["burgers-gibbs.h5", "eikonal-gibbs.h5", "elliptic-additive.h5", "elliptic-gaussian-sigma0-0.5.h5",
                     "gray-scott.h5"]


def test_inverse_notebook(tmp_path, monkeypatch, compilation_cache):
    results = _execute("inverse.py", tmp_path, monkeypatch, compilation_cache)
    files = sorted(path.name for path in (results / "inverse" / "quick").glob("*.h5"))
    assert files == ["darcy-learn.h5", "darcy-solve.h5"]
    figures = {path.name for path in (results / "figures").glob("*.png")}
    assert figures == {"inverse-permeability-quick.png", "inverse-learning-quick.png"}


def test_bljes_notebook(tmp_path, monkeypatch, compilation_cache):
    results = _execute("bljes.py", tmp_path, monkeypatch, compilation_cache)
    files = sorted(path.name for path in (results / "bljes" / "quick").glob("*.h5"))
    assert files == ["ablation.h5", "costs.h5", "decoupled.h5", "main.h5", "noisy.h5"]
    figures = {path.name for path in (results / "figures").glob("*.png")}
    assert figures == {f"bljes-{name}-quick.png" for name in ("main", "decoupled", "ablation", "noisy", "costs")}


def test_uncertainty_notebook(tmp_path, monkeypatch, compilation_cache):
    results = _execute("uncertainty.py", tmp_path, monkeypatch, compilation_cache)
    files = sorted(path.name for path in (results / "uncertainty" / "quick").glob("*.h5"))
    assert files == ["burgers-100+40.h5", "elliptic-64+36.h5"]
    figures = {path.name for path in (results / "figures").glob("*.png")}
    assert figures == {"uncertainty-maps-quick.png", "uncertainty-reliability-quick.png"}


def test_convergence_rate_recovers_a_power_law():
    n_points = np.array([100.0, 200.0, 400.0, 800.0])
    assert analysis.convergence_rate(n_points, 3.0 * n_points**-1.5) == pytest.approx(1.5)
    assert analysis.convergence_rate(n_points, n_points**0.5) == pytest.approx(-0.5)  # diverging
    with pytest.raises(ValueError, match="positive finite"):
        analysis.convergence_rate([10, 20], [1e-3, math.nan])
    with pytest.raises(ValueError, match="two or more"):
        analysis.convergence_rate([10], [1e-3])


def _fake_solve(config: dict) -> store.RunFile:
    """A small result file with the layout of `gpde solve` (no solve needed)."""
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 3), np.linspace(0, 1, 3), indexing="ij"), -1).reshape(-1, 2)
    return store.RunFile(
        problem=config["problem"], seed=config["seed"], config=config,
        groups={
            store.FIELDS: {store.GRID_POINTS: grid, store.U: np.zeros((3, 3)), store.U_REF: np.ones((3, 3)),
                           store.ERROR: -np.ones((3, 3))},
            store.HISTORY: {"step": np.arange(1, 4), "residual_rms": np.array([1.0, 1e-3, 1e-6])},
        },
        group_attrs={store.FIELDS: {store.GRID_SHAPE: np.array([3, 3])},
                     store.ERRORS: {"rms": 1.0, "l2_relative": 1.0, "linf": 1.0}},
    )


def test_ensure_solve_reuses_a_matching_file_and_refuses_a_different_one(tmp_path):
    from gpde.app._config import resolve
    from gpde.problems import get_problem_class

    settings = dict(n_interior=36, n_boundary=28, grid=3, steps=3)
    config = resolve("elliptic", get_problem_class("elliptic").defaults, settings).as_dict()
    path = store.write_run(tmp_path / "run.h5", _fake_solve(config))
    stamp = path.stat().st_mtime_ns

    # Same settings: the file is reused as it is (a real solve would replace the fake errors).
    assert analysis.ensure_solve(path, "elliptic", **settings) == path
    assert path.stat().st_mtime_ns == stamp
    # Other settings: an error that says which, never a silently reused file.
    with pytest.raises(ConfigError, match="n_interior: file has 36, wanted 64"):
        analysis.ensure_solve(path, "elliptic", **{**settings, "n_interior": 64, "n_boundary": 36})
    # A file written before a setting existed was computed with that setting's default.
    older = {key: value for key, value in config.items() if key not in ("std_draws", "field_variances")}
    old_path = store.write_run(tmp_path / "older.h5", _fake_solve(older))
    assert analysis.ensure_solve(old_path, "elliptic", **settings) == old_path
    with pytest.raises(ConfigError, match="std_draws: file has 0, wanted 4"):
        analysis.ensure_solve(old_path, "elliptic", **{**settings, "std_draws": 4})

    rows = analysis.error_table(analysis.load_runs([path]))
    assert rows == [{"problem": "elliptic", "n_interior": 36, "n_boundary": 28, "n_points": 64, "rms": 1.0,
                     "l2_relative": 1.0, "linf": 1.0, "steps": 3}]
    table = analysis.markdown_table(rows)
    assert table.splitlines()[0] == "| problem | n_interior | n_boundary | n_points | rms | l2_relative | linf | steps |"
    assert "| elliptic | 36 | 28 | 64 | 1.000e+00 |" in table


def test_plots_draw_what_the_file_holds(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = _fake_solve({"problem": "elliptic", "seed": 0, "n_interior": 9, "n_boundary": 8})
    figure, axes = plt.subplots(1, 3)
    mesh = analysis.plot_error_map(axes[0], run)
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).ravel(), -np.ones(9))
    line = analysis.plot_residual_history(axes[1], run)
    np.testing.assert_array_equal(line.get_ydata(), [1.0, 1e-3, 1e-6])
    rows = [{"problem": "elliptic", "n_points": n, "rms": 2.0 / n, "l2_relative": 1.0 / n, "linf": 4.0 / n}
            for n in (10, 20, 40)]
    rates = analysis.plot_error_vs_points(axes[2], rows, "elliptic")
    assert rates == pytest.approx({"rms": 1.0, "l2_relative": 1.0, "linf": 1.0})
    assert analysis.plot_lengthscale_field(axes[2], run) is None  # no Gibbs kernel, nothing drawn
    plt.close(figure)
