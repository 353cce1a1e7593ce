"""A generated matrix of bad inputs to every command, run in-process through `gpde.app.main`.

Each case must end with the documented exit code (2 for bad input), exactly one line on stderr
starting with "gpde: ", no traceback, and no output file. Validation happens before any
computation, so the whole matrix runs in seconds (no JAX compilation). The crafted result and
study files are built here, by mutating valid files written through the schema's builders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from gpde.app import main
from gpde.io import _schema as schema
from gpde.io import _store as store

# --------------------------------------------------------------------------------------------
# Valid files to start from
# --------------------------------------------------------------------------------------------

GRID = 4


def _solve_record(problem: str = "elliptic") -> schema.RunFile:
    axis = np.linspace(0.0, 1.0, GRID)
    points = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    u = np.sin(points[:, 0]).reshape(GRID, GRID)
    return schema.solve_record(
        problem=problem, seed=0, config={"kernel": "gaussian", "lengthscale": [0.2], "grid": GRID},
        points={"interior": points, "boundary": points[:4]}, grid_points=points, grid_shape=(GRID, GRID),
        fields={"u": u, "u_ref": u + 1e-3, "error": u * 0 - 1e-3},
        field_errors={"errors": {"rms": 1e-3, "l2_relative": 1e-2, "linf": 1e-3}},
        history={"step": np.arange(1, 4), "residual_rms": np.array([1.0, 1e-2, 1e-4]),
                 "residual_max": np.array([2.0, 2e-2, 2e-4]), "update": np.array([1.0, 0.1, 1e-9]),
                 "seconds": np.full(3, 1e-3)},
        history_attrs={"converged": 1, "stalled": 0},
    )


def _learn_record() -> schema.RunFile:
    """A learning result whose stored kernel is a Gaussian with ℓ = 0.2 on the unit square."""
    solve = _solve_record()
    return schema.learn_record(
        problem="elliptic", seed=0, config=solve.config, points=dict(solve.groups["points"]),
        grid_points=solve.groups["fields"]["points"], grid_shape=(GRID, GRID),
        fields_after={k: v for k, v in solve.groups["fields"].items() if k != "points"},
        fields_before={k: v for k, v in solve.groups["fields"].items() if k != "points"},
        errors_before={"errors": {"rms": 1.0, "l2_relative": 1.0, "linf": 1.0}},
        errors_after={"errors": {"rms": 1e-3, "l2_relative": 1e-2, "linf": 1e-3}}, errors_from_iterate={},
        history={"iteration": np.arange(1, 3), "loss": np.array([1.0, 0.5])},
        history_attrs={"learn_seconds": 1.0},
        kernel_arrays={".log_lengthscale": np.log(np.array(0.2))},
        kernel_attrs={"name": "gaussian", "lengthscale": np.array([0.2]), "dim": 2, "seed": 0,
                      "fields": json.dumps(["u"]), "field_lengthscales": "{}"},
    )


def _study(path: Path) -> Path:
    from gpde.app import _study as study

    spec = study.plan_study("smoke-1+1", "random", "coupled", 1, evaluations=4, initial=3)[0]
    arrays = {name: np.zeros((4, 1)) for name in ("x", "theta", "recommendation")}
    arrays.update(observed=np.ones((4, 2), bool), y_f=np.zeros(4), y_g=np.zeros(4), y_c=np.zeros((4, 0)),
                  regret=np.array([1.0, 0.5, 0.1, 0.01]))
    study.append_run(path, spec, {"arrays": arrays, "seconds": {"fit": np.zeros(4)}, "wall_seconds": 0.1,
                                  "optimum": 0.0})
    return path


# --------------------------------------------------------------------------------------------
# Crafted HDF5 files: each is a valid file with one thing broken
# --------------------------------------------------------------------------------------------


def _del_attr(where, name):
    def edit(f):
        del f[where].attrs[name]
    return edit


def _set_attr(where, name, value):
    def edit(f):
        f[where].attrs[name] = value
    return edit


def _replace_dataset(name, value, **options):
    def edit(f):
        del f[name]
        f.create_dataset(name, data=value, **options)
    return edit


def _delete(name):
    def edit(f):
        del f[name]
    return edit


def _bomb(f):
    """A 200000 × 10000 float64 dataset (14.9 GiB) stored in a few KB: never written, all fill."""
    del f["history/residual_rms"]
    f.create_dataset("history/residual_rms", shape=(200_000, 10_000), dtype="f8", chunks=(1000, 1000),
                     compression="gzip")


def _bomb_field(f):
    del f["fields/u"]
    f.create_dataset("fields/u", shape=(200_000, 10_000), dtype="f8", chunks=(1000, 1000), compression="gzip")


#: (name, edit of a valid run file, commands that must refuse it: "show", "plot")
RUN_EDITS = [
    ("no-config", _del_attr("/", "config"), ("show", "plot")),
    ("config-not-json", _set_attr("/", "config", "{not json"), ("show", "plot")),
    ("config-json-list", _set_attr("/", "config", "[1, 2]"), ("show", "plot")),
    ("config-number", _set_attr("/", "config", 5), ("show", "plot")),
    ("config-bytes-garbage", _set_attr("/", "config", np.void(b"\x00\xff")), ("show", "plot")),
    ("no-problem", _del_attr("/", "problem"), ("show", "plot")),
    ("problem-number", _set_attr("/", "problem", 3.5), ("show", "plot")),
    ("problem-array", _set_attr("/", "problem", np.arange(3)), ("show", "plot")),
    ("no-seed", _del_attr("/", "seed"), ("show", "plot")),
    ("seed-text", _set_attr("/", "seed", "zero"), ("show", "plot")),
    ("seed-float", _set_attr("/", "seed", 0.5), ("show", "plot")),
    ("seed-array", _set_attr("/", "seed", np.arange(2)), ("show", "plot")),
    ("version-number", _set_attr("/", "gpde_version", 1), ("show", "plot")),
    ("huge-attribute", lambda f: f.create_group("notes").attrs.__setitem__("blob", np.zeros(200_000)),
     ("show", "plot")),
    ("errors-missing-rms", _del_attr("errors", "rms"), ("show", "plot")),
    ("errors-rms-text", _set_attr("errors", "rms", "small"), ("show", "plot")),
    ("errors-linf-array", _set_attr("errors", "linf", np.arange(3.0)), ("show", "plot")),
    ("history-column-2d", _replace_dataset("history/residual_rms", np.ones((3, 2))), ("show",)),
    ("history-column-empty", _replace_dataset("history/update", np.zeros(0)), ("show",)),
    ("history-lengths-differ", _replace_dataset("history/update", np.ones(5)), ("show",)),
    ("history-column-text", _replace_dataset("history/residual_rms", np.array([b"a", b"b", b"c"])), ("show",)),
    ("history-missing-update", _delete("history/update"), ("show",)),
    ("bomb-history", _bomb, ("show",)),
    ("bomb-field", _bomb_field, ("plot",)),
    ("no-grid-shape", _del_attr("fields", "grid_shape"), ("plot",)),
    ("grid-shape-text", _set_attr("fields", "grid_shape", "4x4"), ("plot",)),
    ("grid-shape-wrong-product", _set_attr("fields", "grid_shape", np.array([5, 5])), ("plot",)),
    ("grid-shape-negative", _set_attr("fields", "grid_shape", np.array([-4, -4])), ("plot",)),
    ("grid-shape-3d", _set_attr("fields", "grid_shape", np.array([2, 2, 4])), ("plot",)),
    ("grid-points-1d", _replace_dataset("fields/points", np.zeros(16)), ("plot",)),
    ("grid-points-3-columns", _replace_dataset("fields/points", np.zeros((16, 3))), ("plot",)),
    ("no-u", _delete("fields/u"), ("plot",)),
    ("u-wrong-shape", _replace_dataset("fields/u", np.zeros((3, 3))), ("plot",)),
    ("u-text", _replace_dataset("fields/u", np.array([[b"x"] * GRID] * GRID)), ("plot",)),
    ("error-wrong-shape", _replace_dataset("fields/error", np.zeros(16)), ("plot",)),
    ("no-fields-group", _delete("fields"), ("plot",)),
    ("interior-1-column", _replace_dataset("points/interior", np.zeros((5, 1))), ("plot",)),
    ("interior-scalar", _replace_dataset("points/interior", np.float64(1.0)), ("plot",)),
    ("calibration-incomplete", lambda f: f.create_group("calibration").attrs.__setitem__("nll", 1.0),
     ("show",)),
    ("calibration-text", lambda f: f.create_group("calibration").attrs.__setitem__("coverage_1", "most"),
     ("show",)),
    ("u-is-group", lambda f: (f.__delitem__("fields/u"), f.create_group("fields/u")), ("plot",)),
]

#: (name, edit of a valid learn file) that `solve --kernel-from` must refuse
KERNEL_EDITS = [
    ("no-name", _del_attr("kernel", "name")),
    ("name-number", _set_attr("kernel", "name", 7)),
    ("name-unknown", _set_attr("kernel", "name", "no-such-kernel")),
    ("no-lengthscale", _del_attr("kernel", "lengthscale")),
    ("lengthscale-negative", _set_attr("kernel", "lengthscale", np.array([-1.0]))),
    ("lengthscale-text", _set_attr("kernel", "lengthscale", "short")),
    ("no-dim", _del_attr("kernel", "dim")),
    ("dim-text", _set_attr("kernel", "dim", "two")),
    ("dim-huge", _set_attr("kernel", "dim", 10**6)),
    ("seed-float", _set_attr("kernel", "seed", 0.5)),
    ("fields-not-json", _set_attr("kernel", "fields", "[u")),
    ("fields-dict", _set_attr("kernel", "fields", '{"u": 1}')),
    ("field-lengthscales-list", _set_attr("kernel", "field_lengthscales", "[1]")),
    ("array-missing", _delete("kernel/.log_lengthscale")),
    ("array-wrong-shape", _replace_dataset("kernel/.log_lengthscale", np.zeros(3))),
    ("array-text", _replace_dataset("kernel/.log_lengthscale", np.array(b"abc"))),
    ("no-kernel-group", _delete("kernel")),
    ("config-not-json", _set_attr("/", "config", "{")),
]


def _study_run(f):
    return next(name for name, item in _walk(f) if isinstance(item, h5py.Group) and "config" in item.attrs)


def _walk(f):
    found = []
    f.visititems(lambda name, item: found.append((name, item)))
    return found


def _study_edit(change):
    def edit(f):
        change(f, _study_run(f))
    return edit


STUDY_EDITS = [
    ("run-config-not-json", _study_edit(lambda f, run: f[run].attrs.__setitem__("config", "{"))),
    ("run-config-list", _study_edit(lambda f, run: f[run].attrs.__setitem__("config", "[]"))),
    ("run-config-no-benchmark", _study_edit(lambda f, run: f[run].attrs.__setitem__(
        "config", json.dumps({"method": "random", "setting": "coupled", "seed": 0})))),
    ("run-config-seed-text", _study_edit(lambda f, run: f[run].attrs.__setitem__(
        "config", json.dumps({"benchmark": "b", "method": "random", "setting": "coupled", "seed": "0"})))),
    ("run-no-regret", _study_edit(lambda f, run: f.__delitem__(f"{run}/regret"))),
    ("run-regret-2d", _study_edit(lambda f, run: (f.__delitem__(f"{run}/regret"),
                                                  f.create_dataset(f"{run}/regret", data=np.ones((2, 2)))))),
    ("run-regret-empty", _study_edit(lambda f, run: (f.__delitem__(f"{run}/regret"),
                                                     f.create_dataset(f"{run}/regret", data=np.zeros(0))))),
    ("run-regret-bomb", _study_edit(lambda f, run: (f.__delitem__(f"{run}/regret"), f.create_dataset(
        f"{run}/regret", shape=(200_000, 10_000), dtype="f8", chunks=(1000, 1000), compression="gzip")))),
    ("run-wall-seconds-text", _study_edit(lambda f, run: f[run].attrs.__setitem__("wall_seconds", "slow"))),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Valid and crafted files, built once for the module."""
    root = tmp_path_factory.mktemp("fuzz-files")
    valid_run = store.write_run(root / "run.h5", _solve_record())
    valid_learn = store.write_run(root / "learn.h5", _learn_record())
    valid_study = _study(root / "study.h5")
    built = {"run": valid_run, "learn": valid_learn, "study": valid_study, "root": root}
    for prefix, source, edits in (("run", valid_run, [(n, e) for n, e, _ in RUN_EDITS]),
                                  ("kernel", valid_learn, KERNEL_EDITS), ("study", valid_study, STUDY_EDITS)):
        for name, edit in edits:
            target = root / f"{prefix}-{name}.h5"
            target.write_bytes(source.read_bytes())
            with h5py.File(target, "a", libver="latest") as f:
                edit(f)
            built[f"{prefix}-{name}"] = target
    (root / "empty.h5").write_bytes(b"")
    (root / "text.h5").write_text("this is not HDF5\n")
    (root / "truncated.h5").write_bytes(valid_run.read_bytes()[:600])
    (root / "zeros.h5").write_bytes(bytes(4096))
    (root / "adir.h5").mkdir()
    os.mkfifo(root / "pipe.h5")
    with h5py.File(root / "foreign.h5", "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with h5py.File(root / "kind-unknown.h5", "w") as f:
        f.attrs["kind"] = "something-else"
    return built


# --------------------------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------------------------

SOLVE_FLAGS = [
    ["nope"], ["--kernel", "nope"], ["--kernel", ""], ["--n-interior", "0"], ["--n-interior", "-5"],
    ["--n-interior", "1.5"], ["--n-interior", "many"], ["--n-interior", "100000000"], ["--n-boundary", "0"],
    ["--n-boundary", "x"], ["--n-boundary", "10000000000"], ["--lengthscale", "-1"], ["--lengthscale", "0"],
    ["--lengthscale", "nan"], ["--lengthscale", "inf"], ["--lengthscale", "a,b"], ["--lengthscale", ""],
    ["--lengthscale", "0.2,0.1,0.3"], ["--kernel", "gibbs", "--lengthscale", "1,2,3"], ["--nugget", "0"],
    ["--nugget", "-1e-10"], ["--nugget", "nan"], ["--nugget", "inf"], ["--nugget", "1e300"], ["--nugget", "1"],
    ["--nugget", "x"], ["--layout", "hexagonal"], ["--layout", ""], ["--steps", "0"], ["--steps", "-1"],
    ["--steps", "2.5"], ["--tolerance", "-1"], ["--tolerance", "nan"], ["--tolerance", "inf"], ["--seed", "-1"],
    ["--seed", "18446744073709551616"], ["--seed", "4294967296"], ["--seed", "1.5"], ["--grid", "1"],
    ["--grid", "0"], ["--grid", "200000"], ["--grid", "-3"], ["--n-interior", "99"], ["--param"],
    ["--param", "amplitude"], ["--param", "=2"], ["--param", "amplitude=x"], ["--param", "amplitud=2"],
    ["--param", "amplitude=nan"], ["--param", "amplitude=inf"], ["--param", "amplitude=-inf"],
    ["--field-lengthscale", "a=0.1"], ["--field-lengthscale", "=0.1"], ["--field-lengthscale", "a"],
    ["--field-lengthscale", "u=-1"], ["--field-variance", "a=2"], ["--field-variance", "u=-1"],
    ["--field-variance", "u=x"], ["--field-variance", "=2"], ["--field-variance", "u=nan"],
    ["--bogus"], ["--steps"], ["extra", "args"], ["--config"], ["--kernel-from", "missing.h5"], ["--kernel-from", ""], ["--n-interior", "100", "--layout", "grid", "--grid", "1"],
]
PROBLEM_PARAMS = [
    ("eikonal", "epsilon=1e-9"), ("eikonal", "epsilon=0"), ("eikonal", "epsilon=-1"), ("eikonal", "epsilon=inf"),
    ("eikonal", "epsilon=nan"), ("burgers", "viscosity=inf"), ("burgers", "viscosity=0"), ("burgers", "viscosity=nan"),
    ("burgers", "viscosity=-0.1"), ("elliptic", "amplitude=nan"), ("elliptic", "amplitude=inf"),
    ("darcy", "noise=0"), ("darcy", "noise=inf"), ("darcy", "n_observations=0"), ("darcy", "n_observations=2.5"),
    ("darcy", "held_out=100"), ("darcy", "data_grid=1"), ("darcy", "bogus=1"), ("burgers", "epsilon=0.1"),
]
LEARN_FLAGS = [
    ["nope"], ["--kernel", "nope"], ["--gn-steps", "0"], ["--gn-steps", "x"], ["--inner-steps", "0", "--kernel", "gibbs"],
    ["--axis-search", "--kernel", "gibbs"],
    ["--inner-steps", "-2"], ["--lr", "0"], ["--lr", "-1"], ["--lr", "nan"], ["--lr", "inf"],
    ["--trainable", "some"], ["--n-validation", "0"], ["--n-validation", "1000000000"], ["--batch-size", "0"],
    ["--batch-size", "-4"], ["--validation-margin", "-0.1"], ["--validation-margin", "nan"],
    ["--start-steps", "-1"], ["--outer-loss", "median"], ["--batch-redraw", "never"], ["--update-steps", "0"], ["--nugget", "0"], ["--nugget", "nan"], ["--eval-steps", "0"],
    ["--seed", "-3"],
    ["--seed", "99999999999999999999"], ["--grid", "1"], ["--grid", "100000"], ["--param", "amplitude=nan"],
    ["--param", "x=1"], ["--lengthscale", "-0.5"], ["--lengthscale", "1,2,3"], ["--n-interior", "100000000"],
    ["--kernel-from", "x.h5"], ["--bogus"], ["--config"],
]
BLJES_FLAGS = [
    ["nope"], [""], ["smoke-1+1", "--method", "bogus"], ["smoke-1+1", "--method", ""],
    ["smoke-1+1", "--setting", "sideways"], ["smoke-1+1", "--iters", "0"], ["smoke-1+1", "--iters", "x"],
    ["smoke-1+1", "--init", "0"], ["smoke-1+1", "--init", "9", "--iters", "4"], ["smoke-1+1", "--seeds", "0"],
    ["smoke-1+1", "--seeds", "-2"], ["smoke-1+1", "--seeds", "1000000000"], ["smoke-1+1", "--seeds", "1.5"],
    ["smoke-1+1", "--iters", "100000000"], ["smoke-1+1", "--noise", "-0.1"], ["smoke-1+1", "--noise", "nan"],
    ["smoke-1+1", "--noise", "inf"], ["smoke-1+1", "--method", "bljes", "--options", "paths"],
    ["smoke-1+1", "--method", "bljes", "--options", "no_such_option=3"],
    ["smoke-1+1", "--method", "bljes", "--options", "paths=0"], ["smoke-1+1", "--bogus"], [],
    ["nope,smoke-1+1"], ["smoke-1+1", "--setting", ""],
]
#: TOML texts for solve and learn: (text, commands that reject it)
TOML_CASES = [
    "n_interior = [\n", "foo = 1\n", 'kernel = "nope"\n', 'n_interior = "many"\n', "n_interior = 1.5\n",
    "n_interior = -1\n", "n_interior = 100000000\n", "n_interior = true\n", 'problem = ["burgers"]\n',
    "problem = 5\n", 'problem = "nope"\n', 'problem = ""\n', "kernel = 3\n", "kernel = [\"gaussian\"]\n",
    "lengthscale = []\n", 'lengthscale = "short"\n', "lengthscale = [[0.2]]\n", "lengthscale = -1\n",
    "lengthscale = nan\n", "lengthscale = inf\n", "lengthscale = true\n", "lengthscale = {a = 1}\n",
    "layout = 3\n", 'layout = ["grid"]\n', "nugget = 0\n", "nugget = nan\n", 'nugget = "small"\n', "nugget = 1e300\n",
    "tolerance = -1\n", 'tolerance = "x"\n', "seed = -1\n", "seed = 1.5\n", "seed = 9223372036854775807\n",
    "grid = 1\n", "grid = 2.5\n", "grid = 200000\n", "adaptive_nugget = 1\n", "parameters = 5\n",
    'parameters = "amplitude"\n', "[parameters]\namplitude = nan\n", '[parameters]\namplitude = "big"\n',
    "[parameters]\namplitude = [1]\n", "[parameters]\nnope = 1\n", "[parameters]\namplitude = true\n",
    "field_lengthscales = 3\n", "[field_lengthscales]\na = -1\n", '[field_lengthscales]\nu = "x"\n',
    "[field_lengthscales]\nzz = 0.1\n", "x = \"unterminated\n", "= 1\n", "\x00\x01\x02",
]
SOLVE_ONLY_TOML = ["steps = 0\n", "steps = \"ten\"\n", "kernel_from = 5\n", 'kernel_from = ""\n',
                   'kernel_from = "missing.h5"\n', "kernel_from = [\"a.h5\"]\n", "field_variances = 3\n",
                   '[field_variances]\nu = "big"\n', "[field_variances]\nzz = 2\n", "[field_variances]\nu = -1\n"]
LEARN_ONLY_TOML = ["gn_steps = 0\n", "inner_steps = -1\n", "learning_rate = 0\n", 'learning_rate = "fast"\n',
                   "eval_steps = 0\n", 'trainable = "some"\n', "trainable = 1\n", "batch_size = 0\n", 'batch_redraw = "never"\n', "update_steps = 0\n",
                   "scale_search = 1\n", "loss_tolerance = -1\n", "validation_margin = -1\n",
                   "start_steps = -1\n", "start_steps = 1.5\n", "n_validation = 0\n", "kernel_from = \"x.h5\"\n"]


def _cases():
    cases = []
    for flags in SOLVE_FLAGS:
        cases.append(pytest.param("solve", ["solve", "elliptic", *flags], None, id=f"solve:{' '.join(flags)}"))
    for problem, param in PROBLEM_PARAMS:
        for command in ("solve", "learn"):
            cases.append(pytest.param(command, [command, problem, "--param", param], None,
                                      id=f"{command}:{problem} --param {param}"))
    for flags in LEARN_FLAGS:
        cases.append(pytest.param("learn", ["learn", "elliptic", *flags], None, id=f"learn:{' '.join(flags)}"))
    for flags in BLJES_FLAGS:
        cases.append(pytest.param("bljes", ["bljes", *flags], None, id=f"bljes:{' '.join(flags)}"))
    for index, text in enumerate(TOML_CASES):
        for command in ("solve", "learn"):
            cases.append(pytest.param(command, [command, "--config", "{toml}"], text, id=f"{command}:toml{index}"))
    for index, text in enumerate(SOLVE_ONLY_TOML):
        cases.append(pytest.param("solve", ["solve", "elliptic", "--config", "{toml}"], text, id=f"solve:toml-s{index}"))
    for index, text in enumerate(LEARN_ONLY_TOML):
        cases.append(pytest.param("learn", ["learn", "elliptic", "--config", "{toml}"], text, id=f"learn:toml-l{index}"))
    for name, _, commands in RUN_EDITS:
        for command in commands:
            argv = ["show", "{run-" + name + "}"] if command == "show" else ["plot", "{run-" + name + "}", "--out", "{fig}"]
            cases.append(pytest.param(command, argv, None, id=f"{command}:run-{name}"))
    for name, _ in STUDY_EDITS:
        for command in ("show", "plot"):
            argv = [command, "{study-" + name + "}"] + (["--out", "{fig}"] if command == "plot" else [])
            cases.append(pytest.param(command, argv, None, id=f"{command}:study-{name}"))
        cases.append(pytest.param("bljes", ["bljes", "smoke-1+1", "--method", "random", "--seeds", "2", "--iters", "4",
                                            "--out", "{study-" + name + "}"], None, id=f"bljes:--out study-{name}"))
    for name, _ in KERNEL_EDITS:
        cases.append(pytest.param("solve", ["solve", "elliptic", "--kernel-from", "{kernel-" + name + "}"], None,
                                  id=f"solve:--kernel-from kernel-{name}"))
    special = ["empty", "text", "truncated", "zeros", "adir", "pipe", "foreign", "kind-unknown", "missing"]
    for name in special:
        path = "{root}/" + name + ".h5"
        cases.append(pytest.param("show", ["show", path], None, id=f"show:{name}"))
        cases.append(pytest.param("show", ["show", path, "--json"], None, id=f"show-json:{name}"))
        cases.append(pytest.param("plot", ["plot", path, "--out", "{fig}"], None, id=f"plot:{name}"))
        cases.append(pytest.param("solve", ["solve", "elliptic", "--kernel-from", path], None,
                                  id=f"solve:--kernel-from {name}"))
        if name not in ("missing", "empty"):  # an empty TOML file is a valid (empty) configuration
            cases.append(pytest.param("solve", ["solve", "elliptic", "--config", path], None, id=f"solve:--config {name}"))
    # Output paths and kinds.
    for command, argv in (("solve", ["solve", "elliptic"]), ("learn", ["learn", "elliptic"])):
        for out, label in (("", "empty"), ("{root}/adir.h5", "directory"), ("{root}/pipe.h5", "pipe"),
                           ("{root}/nodir/r.h5", "no directory"), ("/proc/gpde-test.h5", "/proc"),
                           ("{study}", "a study"), ("{root}/text.h5/r.h5", "under a file")):
            cases.append(pytest.param(command, [*argv, "--out", out], None, id=f"{command}:--out {label}"))
    for out, label in (("", "empty"), ("{run}", "a run file"), ("{root}/text.h5", "a text file"),
                       ("{root}/adir.h5", "directory"), ("/proc/gpde-test.h5", "/proc"), ("{root}/pipe.h5", "pipe")):
        cases.append(pytest.param("bljes", ["bljes", "smoke-1+1", "--seeds", "1", "--iters", "4", "--out", out], None,
                                  id=f"bljes:--out {label}"))
    for out, label in (("{root}/fig.xyz", "unknown format"), ("{root}/fig", "no suffix"), ("", "empty"),
                       ("{root}/nodir/fig.png", "no directory"), ("{root}/adir.h5", "directory"),
                       ("/proc/fig.png", "/proc")):
        cases.append(pytest.param("plot", ["plot", "{run}", "--out", out], None, id=f"plot:--out {label}"))
        cases.append(pytest.param("plot", ["plot", "{study}", "--out", out], None, id=f"plot-study:--out {label}"))
    cases.append(pytest.param("solve", ["solve", "elliptic", "--kernel-from", "{study}"], None, id="solve:--kernel-from study"))
    cases.append(pytest.param("solve", ["solve", "elliptic", "--kernel-from", "{run}"], None, id="solve:--kernel-from run"))
    for argv in (["list", "extra"], ["list", "--bogus"], ["list", "--json"], ["list", "-x", "1"], ["show"], ["plot", "{run}"], ["frobnicate"], [],
                 ["show", "{run}", "--bogus"]):
        cases.append(pytest.param(argv[0] if argv else "(none)", argv, None, id=f"misc:{' '.join(argv)}"))
    return cases


CASES = _cases()


@pytest.fixture(autouse=True)
def no_computation(monkeypatch):
    """Any case that got past validation fails at once instead of computing."""
    from gpde.app import _learn_run, _run, _study

    def refuse(*args, **kwargs):
        raise AssertionError("validation let a bad input through to the computation")

    monkeypatch.setattr(_run, "run_solve", refuse)
    monkeypatch.setattr(_learn_run, "run_learn", refuse)
    monkeypatch.setattr(_study, "run_one", refuse)


def test_matrix_is_large_and_covers_every_command():
    counts = {}
    for case in CASES:
        counts[case.values[0]] = counts.get(case.values[0], 0) + 1
    assert len(CASES) >= 250, len(CASES)
    assert {"solve", "learn", "bljes", "show", "plot", "list"} <= set(counts), counts


@pytest.mark.parametrize("command, argv, toml", CASES)
def test_bad_input_exits_2_with_one_line(files, tmp_path, capsys, command, argv, toml):
    names = {key: str(value) for key, value in files.items()}
    names["fig"] = str(tmp_path / "fig.png")
    if toml is not None:
        config = tmp_path / "bad.toml"
        config.write_bytes(toml.encode("utf-8", "surrogatepass"))
        names["toml"] = str(config)
    argv = [part.format(**names) if "{" in part else part for part in argv]
    outputs = [] if "--out" in argv else ["--out", str(tmp_path / "out.h5")]
    if command in ("solve", "learn", "bljes") and argv and argv[0] == command:
        argv = [*argv, *outputs]
    before = {p.name for p in tmp_path.iterdir()}
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, (argv, captured.out[-500:], captured.err)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpde: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert {p.name for p in tmp_path.iterdir()} == before, "a bad input left a file behind"
