"""The `gpde` command (gpde/_cli.py): one end-to-end run of the console script, the rest in-process.

Exit codes: 0 success, 1 numerical failure, 2 bad input; errors are one line on stderr without a
traceback. In-process, "no traceback" means that `main` returns the code instead of raising.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import gpde
from gpde.io import _store as store
from gpde.app._cli import main

GPDE = Path(sys.executable).with_name("gpde")


def _elliptic_exact(points, amplitude=4.0):
    x, y = points[:, 0], points[:, 1]
    return np.sin(np.pi * x) * np.sin(np.pi * y) + amplitude * np.sin(4 * np.pi * x) * np.sin(4 * np.pi * y)


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(err, *fragments):
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gpde: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


# --------------------------------------------------------------------------------------------
# End to end, through the installed console script
# --------------------------------------------------------------------------------------------


def test_solve_show_plot_end_to_end(tmp_path, capsys):
    assert GPDE.exists(), f"console script not installed at {GPDE}"
    argv = [str(GPDE), "solve", "elliptic", "--n-interior", "100", "--n-boundary", "40", "--steps", "5",
            "--grid", "20", "--out", "tmp.h5"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    for label in ("RMS error", "relative L2 error", "L∞ error", "assembly", "compile", "median step", "evaluation"):
        assert label in out, (label, out)
    assert "step   1" in out and "wrote tmp.h5" in out

    path = tmp_path / "tmp.h5"
    run = store.read_run(path)
    assert run.gpde_version == gpde.__version__
    assert run.problem == "elliptic" and run.seed == 0
    assert run.config["n_interior"] == 100 and run.config["n_boundary"] == 40
    assert run.config["steps"] == 5 and run.config["grid"] == 20
    assert run.config["kernel"] == "gaussian" and run.config["parameters"] == {"amplitude": 4.0}
    points = run.groups["points"]
    assert points["interior"].shape == (100, 2) and points["boundary"].shape == (40, 2)
    fields = run.groups["fields"]
    assert fields["points"].shape == (400, 2)
    assert run.group_attrs["fields"]["grid_shape"] == [20, 20]
    for name in ("u", "u_ref", "error"):
        assert fields[name].shape == (20, 20)
    # The stored reference is the manufactured solution on the stored grid (computed here), the
    # stored error is u − u_ref, and the error attributes are the norms of that error.
    np.testing.assert_allclose(fields["u_ref"].ravel(), _elliptic_exact(fields["points"]), atol=1e-12)
    np.testing.assert_allclose(fields["error"], fields["u"] - fields["u_ref"], atol=1e-14)
    error, reference = fields["error"].ravel(), fields["u_ref"].ravel()
    errors = run.group_attrs["errors"]
    assert errors["rms"] == pytest.approx(np.sqrt(np.mean(error**2)), rel=1e-10)
    assert errors["l2_relative"] == pytest.approx(np.linalg.norm(error) / np.linalg.norm(reference), rel=1e-10)
    assert errors["linf"] == pytest.approx(np.max(np.abs(error)), rel=1e-10)
    assert errors["linf"] < 0.08  # 100 + 40 points: measured L∞ 2.6e-2 (see test_solver.py)
    # The printed table shows the stored numbers.
    printed = {line.split()[0]: line.split()[-1] for line in out.splitlines() if "error" in line}
    assert float(printed["RMS"]) == pytest.approx(errors["rms"], rel=1e-3)
    assert float(printed["L∞"]) == pytest.approx(errors["linf"], rel=1e-3)
    history = run.groups["history"]
    steps = len(history["step"])
    assert 1 <= steps <= 5
    for column in ("residual_rms", "residual_max", "update", "seconds"):
        assert history[column].shape == (steps,)
    np.testing.assert_array_equal(history["step"], np.arange(1, steps + 1))

    code, out, err = _run(capsys, ["show", str(path)])
    assert code == 0 and err == ""
    assert "problem elliptic" in out and f"error linf        {errors['linf']:.3e}" in out
    assert f"Gauss-Newton steps: {steps}" in out

    code, out, err = _run(capsys, ["show", str(path), "--json"])
    assert code == 0
    shown = json.loads(out)
    assert shown["problem"] == "elliptic" and shown["seed"] == 0 and shown["gpde_version"] == gpde.__version__
    assert shown["config"] == run.config
    assert shown["errors"]["linf"] == pytest.approx(errors["linf"], rel=1e-12)

    figure = tmp_path / "x.png"
    code, out, err = _run(capsys, ["plot", str(path), "--out", str(figure)])
    assert code == 0, err
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.stat().st_size > 10_000


def test_list(capsys):
    code, out, err = _run(capsys, ["list"])
    assert code == 0 and err == ""
    for name in ("burgers", "eikonal", "elliptic"):
        assert f"  {name}" in out
    kernels = out.split("kernels:")[1]
    for name in ("gaussian", "matern52", "matern72", "rational-quadratic", "gibbs"):
        assert name in kernels


# --------------------------------------------------------------------------------------------
# Configuration precedence: problem defaults < TOML file < flags
# --------------------------------------------------------------------------------------------


def test_toml_config_and_flag_precedence(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        'problem = "elliptic"\nn_interior = 16\nn_boundary = 8\nsteps = 3\ngrid = 6\nlengthscale = 0.3\n'
        "seed = 5\n[parameters]\namplitude = 2.0\n"
    )
    out_file = tmp_path / "r.h5"
    code, out, err = _run(capsys, ["solve", "--config", str(config), "--steps", "1", "--out", str(out_file)])
    assert code == 0, err
    run = store.read_run(out_file)
    assert run.problem == "elliptic" and run.seed == 5
    assert run.config["n_interior"] == 16 and run.config["grid"] == 6
    assert run.config["lengthscale"] == [0.3]
    assert run.config["steps"] == 1  # the flag wins over the file
    assert run.config["nugget"] == gpde_default_nugget()  # the problem default where neither says
    assert run.config["parameters"] == {"amplitude": 2.0}
    assert len(run.groups["history"]["step"]) == 1
    fields = run.groups["fields"]
    np.testing.assert_allclose(fields["u_ref"].ravel(), _elliptic_exact(fields["points"], amplitude=2.0), atol=1e-12)


def gpde_default_nugget():
    from gpde.problems.elliptic import NonlinearElliptic

    return NonlinearElliptic.defaults.nugget


# --------------------------------------------------------------------------------------------
# Bad input: exit code 2, one line, no traceback, no file
# --------------------------------------------------------------------------------------------


BAD_TOML = "n_interior = [\n"


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["solve", "nope"], ["unknown problem 'nope'", "burgers", "eikonal", "elliptic"]),
        (["solve", "elliptic", "--kernel", "nope"], ["unknown kernel 'nope'", "gaussian", "matern52", "gibbs"]),
        (["solve", "elliptic", "--n-interior", "0"], ["n_interior must be a positive integer", "0"]),
        (["solve", "elliptic", "--n-boundary", "-3"], ["n_boundary must be a positive integer"]),
        (["solve", "elliptic", "--lengthscale", "-1"], ["lengthscale", "> 0", "-1"]),
        (["solve", "elliptic", "--nugget", "0"], ["nugget must be finite, > 0"]),
        (["solve", "elliptic", "--layout", "hexagonal"], ["unknown layout 'hexagonal'", "grid, random"]),
        (["solve", "elliptic", "--grid", "1"], ["grid"]),
        (["solve", "elliptic", "--lengthscale", "0.2,0.1,0.3"], ["one lengthscale or one per dimension (2)"]),
        (["solve", "elliptic", "--param", "amplitud=2"], ["bad parameters", "amplitud"]),
        (["solve", "eikonal", "--param", "epsilon=-1"], ["epsilon must be finite and > 0"]),
        (["solve", "eikonal", "--param", "epsilon=1e-9"], ["epsilon must be >=", "underflows"]),
        (["solve", "burgers", "--param", "viscosity=inf"], ["viscosity must be a finite number"]),
        (["solve", "elliptic", "--nugget", "1e300"], ["nugget must be finite, > 0 and < 1"]),
        (["solve", "elliptic", "--kernel", "gibbs", "--lengthscale", "1,2,3"], ["one per dimension (2)", "gibbs"]),
        (["solve", "elliptic", "--seed", "18446744073709551616"], ["seed must be an integer 0 … 4294967295"]),
        (["solve", "elliptic", "--n-interior", "100000000"], ["needs about", "of memory", "use fewer points"]),
        (["solve", "elliptic", "--grid", "200000"], ["evaluation grid", "needs about", "smaller --grid"]),
        (["solve", "elliptic", "--steps"], ["expected one argument", "see gpde solve --help"]),
        (["solve", "elliptic", "--bogus"], ["unrecognized arguments: --bogus", "see gpde solve --help"]),
        (["solve", "elliptic", "--n-interior", "99"], ["perfect", "99", "100", "--layout random"]),
        (["learn", "elliptic", "--start-steps", "-1"], ["start_steps must be an integer >= 0", "-1"]),
        (["learn", "elliptic", "--outer-loss", "median"], ["--outer-loss", "median", "geometric-mean-square"]),
        (["learn", "elliptic", "--batch-redraw", "never"], ["--batch-redraw", "never", "every-outer-iteration"]),
        (["learn", "schrodinger", "--inner-steps", "0"], ["inner_steps = 0", "--axis-search"]),
        (["learn", "eikonal", "--axis-search"], ["gibbs", "drop --axis-search"]),
        (["solve", "burgers", "--stretch", "1,0,0.05"], ["AXIS,CENTRE,WIDTH,RATIO"]),
        (["solve", "burgers", "--stretch", "2,0,0.05,3"], ["stretch axis 2 does not exist"]),
        (["solve", "burgers", "--stretch", "1,0,0.05,0.5"], ["stretch", "ratio must be >= 1"]),
        (["solve", "burgers", "--continuation", "nu=0.1"], ["bad parameters", "nu"]),
        (["solve", "burgers", "--continuation", "viscosity"], ["NAME=V1,V2"]),
        (["learn", "eikonal", "--continuation", "eps=0.1"], ["bad parameters", "eps"]),
        (["learn", "eikonal", "--continuation", "epsilon=-0.1"], ["epsilon must be finite and > 0"]),
    ],
)
def test_bad_flags(tmp_path, capsys, argv, fragments):
    out_file = tmp_path / "r.h5"
    code, out, err = _run(capsys, [*argv, "--out", str(out_file)])
    assert code == 2, (out, err)
    _assert_one_line_error(err, *fragments)
    assert not out_file.exists()


def test_unwritable_out(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "r.h5"
    code, out, err = _run(capsys, ["solve", "elliptic", "--out", str(target)])
    assert code == 2
    _assert_one_line_error(err, "does not exist", str(target.parent))
    assert "Gauss-Newton" not in out  # refused before any work
    code, out, err = _run(capsys, ["solve", "elliptic", "--out", str(tmp_path)])
    assert code == 2
    _assert_one_line_error(err, "is a directory")


@pytest.mark.parametrize(
    "text, names_file, fragments",
    [
        (BAD_TOML, True, ["is not valid TOML"]),
        ("n_interior = 100\nfoo = 1\n", True, ["unknown keys ['foo']", "valid keys"]),
        ('kernel = "nope"\n', False, ["unknown kernel 'nope'"]),
        ('n_interior = "many"\n', False, ["n_interior must be a positive integer", "'many'"]),
    ],
)
def test_bad_toml(tmp_path, capsys, text, names_file, fragments):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    out_file = tmp_path / "r.h5"
    code, out, err = _run(capsys, ["solve", "elliptic", "--config", str(config), "--out", str(out_file)])
    assert code == 2, (out, err)
    _assert_one_line_error(err, *fragments, *([str(config)] if names_file else []))
    assert not out_file.exists()


def test_missing_toml(tmp_path, capsys):
    code, out, err = _run(capsys, ["solve", "elliptic", "--config", str(tmp_path / "none.toml")])
    assert code == 2
    _assert_one_line_error(err, "does not exist")


# Bugs (see the test report): these inputs crash with a traceback instead of exit code 2.


def test_toml_parameters_that_are_not_a_table(tmp_path, capsys):
    # `parameters = 5` reaches `{**{}, **5}` in gpde/_config.py resolve(): TypeError.
    config = tmp_path / "bad.toml"
    config.write_text("parameters = 5\n")
    code, out, err = _run(capsys, ["solve", "elliptic", "--config", str(config), "--out", str(tmp_path / "r.h5")])
    assert code == 2
    _assert_one_line_error(err, "parameters")


def test_config_path_that_is_a_directory(tmp_path, capsys):
    # load_toml catches FileNotFoundError only: a directory raises IsADirectoryError.
    code, out, err = _run(capsys, ["solve", "elliptic", "--config", str(tmp_path), "--out", str(tmp_path / "r.h5")])
    assert code == 2
    _assert_one_line_error(err, str(tmp_path))


def test_config_file_that_is_not_utf8(tmp_path, capsys):
    # tomllib decodes UTF-8 itself and raises UnicodeDecodeError, which load_toml does not catch.
    config = tmp_path / "latin1.toml"
    config.write_bytes('kernel = "gau\xdfian"\n'.encode("latin-1"))
    code, out, err = _run(capsys, ["solve", "elliptic", "--config", str(config), "--out", str(tmp_path / "r.h5")])
    assert code == 2
    _assert_one_line_error(err, str(config))


def test_show_and_plot_bad_input(tmp_path, capsys):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    code, out, err = _run(capsys, ["show", str(text)])
    assert code == 2
    _assert_one_line_error(err, "not a readable HDF5 file")
    code, out, err = _run(capsys, ["show", str(tmp_path / "missing.h5")])
    assert code == 2
    _assert_one_line_error(err, "no result file")
    # A bad input with a good output path: refused for what is wrong with the input.
    code, out, err = _run(capsys, ["plot", str(text), "--out", str(tmp_path / "x.png")])
    assert code == 2
    _assert_one_line_error(err, "not a readable HDF5 file")
    # A good input with a bad output path: refused for the output.
    good = store.write_run(tmp_path / "good.h5", store.solve_record(
        problem="elliptic", seed=0, config={}, points={}, grid_points=np.zeros((4, 2)), grid_shape=(2, 2),
        fields={"u": np.zeros((2, 2)), "u_ref": np.zeros((2, 2)), "error": np.zeros((2, 2))},
        field_errors={"errors": {"rms": 0.0, "l2_relative": 0.0, "linf": 0.0}}, history={}, history_attrs={}))
    code, out, err = _run(capsys, ["plot", str(good), "--out", str(tmp_path / "nodir" / "x.png")])
    assert code == 2
    _assert_one_line_error(err, "does not exist")
    code, out, err = _run(capsys, ["plot", str(good), "--out", str(tmp_path / "x.xyz")])
    assert code == 2
    _assert_one_line_error(err, "figure format", ".xyz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.h5", "notes.h5"]
    code, out, err = _run(capsys, ["plot", str(good), "--out", str(tmp_path / "x.png")])
    assert code == 0, err
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_solve_refuses_to_replace_a_study_unless_told(tmp_path, capsys):
    study = tmp_path / "study.h5"
    with h5py.File(study, "w") as out:
        out.attrs["kind"] = "gpde-bljes-study"
    before = study.read_bytes()
    code, out, err = _run(capsys, ["solve", "elliptic", "--out", str(study)])
    assert code == 2
    _assert_one_line_error(err, "is a BLJES study file", "--overwrite")
    assert study.read_bytes() == before
    argv = ["solve", "elliptic", "--n-interior", "16", "--n-boundary", "8", "--steps", "1", "--grid", "5",
            "--out", str(study), "--overwrite"]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert store.read_run(study).problem == "elliptic"


def test_diverging_solve_exits_1(tmp_path, capsys):
    out_file = tmp_path / "r.h5"
    # ℓ = 1e3 on the unit square: every Gauss-Newton step models the PDE badly; the residual RMS
    # ends at 3.3e12 against 606 for u = 0 (measured 2026-11-29).
    argv = ["solve", "elliptic", "--n-interior", "100", "--n-boundary", "40", "--grid", "20", "--lengthscale", "1e3",
            "--out", str(out_file)]
    code, out, err = _run(capsys, argv)
    assert code == 1, (out, err)
    _assert_one_line_error(err, "solver failed", "diverged", "lengthscale")
    assert not out_file.exists() and not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# A failed solve: exit code 1, the step and the fix named, the existing file kept
# --------------------------------------------------------------------------------------------


def test_failed_solve_keeps_existing_file(tmp_path, capsys):
    out_file = tmp_path / "result.h5"
    sentinel = b"previous result, must survive a failed run\n"
    out_file.write_bytes(sentinel)
    # ℓ = 50 on the unit square with η = 1e-16: the Gram matrix is numerically singular (checked:
    # the Cholesky factorization of step 1 returns NaN).
    argv = ["solve", "elliptic", "--lengthscale", "50", "--nugget", "1e-16", "--n-interior", "100",
            "--n-boundary", "40", "--grid", "10", "--out", str(out_file)]
    code, out, err = _run(capsys, argv)
    assert code == 1, (out, err)
    _assert_one_line_error(err, "solver failed", "step 1", "Cholesky", "increase the nugget")
    assert out_file.read_bytes() == sentinel
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.h5"]


def test_out_of_memory_in_xla_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    """XLA reports a failed allocation as a runtime error, not a MemoryError; the command names it
    and what to reduce, without a traceback. Other XLA runtime errors are not swallowed."""
    import jax

    from gpde.app import _cli

    def exhausted(args):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 46342655536 bytes.")

    monkeypatch.setattr(_cli, "_learn", exhausted)
    code, out, err = _run(capsys, ["learn", "schrodinger", "--out", str(tmp_path / "r.h5")])
    assert code == 1, (out, err)
    _assert_one_line_error(err, "out of memory", "fewer points", "46342655536 bytes")

    def other(args):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(_cli, "_learn", other)
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        main(["learn", "schrodinger", "--out", str(tmp_path / "r.h5")])


def test_sparse_solver_from_the_command_line(tmp_path, capsys):
    """--solver sparse solves the elliptic problem like the dense solver (to the sparse factor's
    accuracy) and records the solver, ρ, the factor's size and CG per step."""
    common = ["solve", "elliptic", "--kernel", "matern72", "--lengthscale", "0.3", "--nugget", "1e-10",
              "--n-interior", "144", "--n-boundary", "48", "--grid", "12", "--steps", "4"]
    sparse, dense = tmp_path / "sparse.h5", tmp_path / "dense.h5"
    code, _, err = _run(capsys, [*common, "--solver", "sparse", "--rho", "5", "--out", str(sparse)])
    assert code == 0, err
    code, _, err = _run(capsys, [*common, "--out", str(dense)])
    assert code == 0, err
    with h5py.File(sparse) as f, h5py.File(dense) as g:
        history = f["history"]
        assert history.attrs["solver"] == "sparse" and history.attrs["rho"] == 5.0
        assert history.attrs["factor_nnz"] > 0
        assert np.all(history["cg_iterations"][()] >= 1)
        assert g["history"].attrs["solver"] == "dense"
        # Both solve the same collocation problem. At ρ = 5 the sparse factor's approximation
        # leaves the solution's error within 2× of the dense solver's at this size (1.07× at 4,356 points,
        # benchmarks/scale-results.md), and the two differ by a fraction of that error.
        dense_linf = g["errors"].attrs["linf"]
        assert f["errors"].attrs["linf"] < 2.0 * dense_linf
        gap = np.max(np.abs(f["fields/u"][()] - g["fields/u"][()]))
        assert gap < 0.25 * dense_linf, (gap, dense_linf)
    for argv, fragment in ((["--solver", "cholmod"], "--solver"), (["--solver", "sparse", "--rho", "-1"], "rho")):
        code, _, err = _run(capsys, [*common, *argv, "--out", str(tmp_path / "bad.h5")])
        assert code == 2
        _assert_one_line_error(err, fragment)


def test_stretch_and_continuation_from_the_command_line(tmp_path, capsys):
    """--stretch warps the kernel and moves the points (denser at the layer, the domain's ends
    kept); --continuation solves the stages first. Checked against the library calls they stand for."""
    import jax.numpy as jnp

    from gpde import GaussNewton
    from gpde.kernels import LayerStretch, Matern72, Warped
    from gpde.problems.burgers import Burgers

    out = tmp_path / "stretched.h5"
    argv = ["solve", "burgers", "--param", "viscosity=0.02", "--kernel", "matern72", "--lengthscale", "0.2,0.15",
            "--n-interior", "144", "--n-boundary", "48", "--layout", "grid", "--steps", "3", "--tolerance", "0",
            "--grid", "12", "--stretch", "1,0,0.1,3", "--continuation", "viscosity=0.05", "--out", str(out)]
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    with h5py.File(out) as f:
        config = json.loads(f.attrs["config"])
        u = f["fields/u"][()]
    assert config["stretch"]["ratio"] == 3.0 and config["continuation"] == {"viscosity": [0.05]}
    # The same solve through the library: a 12 × 12 grid uniform in the stretched x.
    stretch = LayerStretch(axis=1, centre=0.0, width=0.1, ratio=3.0)
    from gpde.app._run import collocation_points, configured_kernel
    from gpde.app._config import resolve
    problem = Burgers(viscosity=0.02)
    settings = resolve("burgers", Burgers.defaults, {}, dict(n_interior=144, n_boundary=48, layout="grid", kernel="matern72", lengthscale=(0.2, 0.15), stretch=dict(
        axis=1, centre=0.0, width=0.1, ratio=3.0), parameters={"viscosity": 0.02}))
    interior, boundary = collocation_points(problem, settings)
    x = np.unique(np.asarray(interior)[:, 1])
    assert x.size == 12 and np.all(np.diff(x)[5:6] < 0.5 * np.diff(x)[0])  # denser at the centre than at the ends
    np.testing.assert_allclose(np.diff(np.asarray(stretch.stretch(x))), np.diff(np.asarray(stretch.stretch(x)))[0],
                               rtol=1e-9)
    assert set(np.round(np.asarray(boundary)[:, 1], 12)) >= {-1.0, 1.0}
    kernel = configured_kernel(problem, settings)
    assert isinstance(kernel, Warped) and kernel.warp == stretch and isinstance(kernel.kernel, Matern72)
    solver = GaussNewton(nugget=settings.nugget, max_steps=3, tolerance=0.0)
    solution, history = solver.solve(kernel, problem.constraints(interior, boundary),
                                     continuation=[Burgers(viscosity=0.05).constraints(interior, boundary)])
    assert len(history.continuation_steps) == 4
    expected = np.asarray(solution(jnp.asarray(np.stack(np.meshgrid(np.linspace(0, 1, 12), np.linspace(-1, 1, 12),
                                                                      indexing="ij"), -1).reshape(-1, 2))))
    np.testing.assert_allclose(u.ravel(), expected, rtol=1e-6, atol=1e-8)
