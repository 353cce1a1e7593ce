"""The BLJES study runner (gpde/bljes/_study.py), its plots and the `gpde bljes` command.

Every run of the real method uses the same sizes (smoke-1+1, 4 evaluations, 3 initial), so the
method compiles once for the whole file.
"""

import h5py
import numpy as np
import pytest

from gpde import ConfigError, GpdeError
from gpde.app._cli import main
from gpde.app import _study as study
from gpde.app._study_plots import plot_study

SIZES = {"evaluations": 4, "initial": 3}


def _specs(seeds, methods="random"):
    return study.plan_study("smoke-1+1", methods, "coupled", seeds, **SIZES)


def _arrays(path, run_path):
    with h5py.File(path, "r") as source:
        return {key: source[run_path][key][()] for key in study.ARRAYS}


def test_study_runs_in_process_and_writes_the_file(tmp_path, capsys):
    out = tmp_path / "study.h5"
    report = study.run_study(_specs(2), out)
    assert len(report.ran) == 2 and not report.skipped
    assert study.is_study(out)
    runs = study.read_study(out)
    assert [run.config["seed"] for run in runs] == [0, 1]
    for run in runs:
        assert run.arrays["x"].shape == (4, 1) and run.arrays["theta"].shape == (4, 1)
        assert run.arrays["observed"].all()
        assert np.all(run.arrays["regret"] >= 0)
        # Stored regret is the benchmark's regret of the stored recommendation (independent of the run).
        x_hat = run.arrays["recommendation"][-1, 0]
        assert run.arrays["regret"][-1] == pytest.approx(x_hat**2 + x_hat**2 / 4, abs=1e-12)
        assert set(run.seconds) >= {"fit", "evaluation", "recommendation"}
        assert run.attrs["wall_seconds"] > 0
    assert "2/2 runs" in capsys.readouterr().err
    # Same seeds differ only by seed: the initial designs differ.
    assert not np.allclose(runs[0].arrays["x"], runs[1].arrays["x"])


def test_killed_study_resumes_without_redoing_finished_runs(tmp_path, monkeypatch):
    out = tmp_path / "study.h5"
    real_append = study.append_run
    written = []

    def append_then_die(path, spec, result, **options):
        if len(written) == 2:
            # Ctrl-C between two appends; a kill -9 inside an append is tests/test_faults.py's.
            raise KeyboardInterrupt
        written.append(spec.seed)
        return real_append(path, spec, result, **options)

    monkeypatch.setattr(study, "append_run", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        study.run_study(_specs(4), out, progress=False)
    finished = study.finished_runs(out)
    assert len(finished) == 2  # readable, both finished runs kept, nothing half-written
    kept = {path: _arrays(out, path) for path in finished}
    assert not list(tmp_path.glob(".study.h5.*.tmp"))

    monkeypatch.setattr(study, "append_run", real_append)
    report = study.run_study(_specs(4), out, progress=False)
    # Only the unfinished runs were submitted (tasks are serialized to the worker, so the driver's
    # report is where to count them).
    assert sorted(spec.seed for spec in report.ran) == sorted(set(range(4)) - set(written))
    assert len(report.skipped) == 2 and len(study.finished_runs(out)) == 4
    for path, arrays in kept.items():
        for key, value in _arrays(out, path).items():
            np.testing.assert_array_equal(value, arrays[key])


def test_same_out_adds_runs_and_rejects_other_settings(tmp_path):
    out = tmp_path / "study.h5"
    first = study.run_study(_specs(1), out, progress=False)
    second = study.run_study(_specs(2), out, progress=False)
    assert [spec.seed for spec in first.ran] == [0] and [spec.seed for spec in second.ran] == [1]
    assert len(study.read_study(out)) == 2
    other = study.plan_study("smoke-1+1", "random", "coupled", 1, evaluations=5, initial=3)
    with pytest.raises(ConfigError, match="other settings: evaluations=4"):
        study.run_study(other, out, progress=False)


def test_failed_run_is_reported_and_the_others_are_kept(tmp_path, monkeypatch):
    def fake_run(spec):
        if spec.seed == 1:
            raise RuntimeError("simulated failure")
        regret = np.array([1.0, 0.5, 0.1, 0.01]) * (spec.seed + 1)
        arrays = {name: np.zeros((4, 1)) for name in ("x", "theta", "recommendation")}
        arrays.update(observed=np.ones((4, 2), bool), y_f=np.zeros(4), y_g=np.zeros(4), y_c=np.zeros((4, 0)),
                      regret=regret)
        return {"arrays": arrays, "seconds": {"fit": np.zeros(4)}, "wall_seconds": 0.1, "optimum": 0.0}

    monkeypatch.setattr(study, "run_one", fake_run)
    out = tmp_path / "study.h5"
    with pytest.raises(GpdeError, match="1 of 3 runs failed .*seed1.*simulated failure"):
        study.run_study(_specs(3), out, progress=False)
    assert sorted(run.config["seed"] for run in study.read_study(out)) == [0, 2]
    table = study.final_regret_table(study.read_study(out))
    cell = table[("smoke-1+1", "random", "coupled")]
    assert cell["seeds"] == 2 and cell["median"] == pytest.approx((0.01 + 0.03) / 2)
    assert cell["infeasible"] == 0 and "infeasible" not in study.format_table(table)


def test_final_table_counts_the_runs_that_end_infeasible():
    def run(seed, final_feasible):
        arrays = {"regret": np.array([5.0, 1.0 + seed]), "feasible": np.array([False, final_feasible])}
        return study.StudyRun({"benchmark": "smd12", "method": "random", "setting": "coupled", "seed": seed}, arrays, {}, {})

    table = study.final_regret_table([run(0, True), run(1, False), run(2, False)])
    assert table[("smd12", "random", "coupled")]["infeasible"] == 2
    assert "2 (3, 2 infeasible)" in study.format_table(table)  # median regret 2 over 3 seeds


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"benchmarks": "nope"}, "unknown benchmark 'nope'"),
        ({"methods": "nope"}, "unknown method 'nope'"),
        ({"settings": "sideways"}, "unknown setting 'sideways'"),
        ({"seeds": 0}, "--seeds must be a positive integer"),
        ({"seeds": "4-3"}, "or a range A-B"),
        ({"seeds": "2,3"}, "or a range A-B"),
        ({"evaluations": 0}, "--iters"),
        ({"initial": -1}, "--init"),
        ({"initial": 9, "evaluations": 4}, "must not exceed --iters"),
        ({"noise": -0.1}, "--noise"),
        ({"methods": "bljes", "options": "paths"}, "NAME=VALUE"),
        ({"methods": "bljes", "options": "no_such_option=3"}, "bad options"),
        ({"methods": "bljes", "options": "paths=0"}, "paths"),
    ],
)
def test_plan_study_rejects_bad_arguments(kwargs, message):
    arguments = {"benchmarks": "smoke-1+1", "methods": "random", "settings": "coupled", "seeds": 1, "evaluations": 4,
                     "initial": 3} | kwargs
    with pytest.raises(ConfigError, match=message):
        study.plan_study(**arguments)


def test_method_options_make_separate_cells():
    plain = study.plan_study("smoke-1+1", "bljes", "coupled", 1, evaluations=4, initial=3)
    ablation = study.plan_study("smoke-1+1", "bljes", "coupled", 1, evaluations=4, initial=3, options="tau=0.05, paths=10")
    assert ablation[0].options == "paths=10,tau=0.05"  # one spelling, whatever the order given
    assert ablation[0].label == "bljes[paths=10,tau=0.05]"
    assert plain[0].path != ablation[0].path and "bljes[paths=10,tau=0.05]" in ablation[0].path
    assert study.parse_options(ablation[0].options) == {"paths": 10, "tau": 0.05}


def test_seed_ranges_extend_a_study():
    assert [spec.seed for spec in study.plan_study("smoke-1+1", "random", "coupled", "3", evaluations=4, initial=3)] == [0, 1, 2]
    extra = study.plan_study("smoke-1+1", "random", "coupled", "3-4", evaluations=4, initial=3)
    assert [spec.seed for spec in extra] == [3, 4]
    first = study.plan_study("smoke-1+1", "random", "coupled", 5, evaluations=4, initial=3)
    assert [spec.path for spec in first[3:]] == [spec.path for spec in extra]  # the same runs, so a file resumes


def test_plan_study_expands_lists_and_all():
    specs = study.plan_study("smoke-1+1,smd1", "random", "all", 2, evaluations=4, initial=3)
    assert len(specs) == 2 * 2 * 2
    assert {spec.setting for spec in specs} == {"coupled", "decoupled"}
    assert len({spec.path for spec in specs}) == len(specs)


def test_cli_bljes_show_and_plot(tmp_path, capsys):
    out = tmp_path / "study.h5"
    code = main(["bljes", "smoke-1+1", "--method", "random", "--seeds", "2", "--iters", "4", "--init", "3",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "smoke-1+1" in captured.out and "random/coupled" in captured.out
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "BLJES study, 2 runs" in shown and "smoke-1+1" in shown
    figure = tmp_path / "regret.png"
    assert main(["plot", str(out), "--out", str(figure)]) == 0
    assert figure.stat().st_size > 10_000
    assert plot_study(out, tmp_path / "again.png").exists()


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["bljes", "nope"], "unknown benchmark 'nope'"),
        (["bljes", "smoke-1+1", "--method", "bogus"], "unknown method 'bogus'"),
        (["bljes", "smoke-1+1", "--iters", "0"], "--iters"),
        (["bljes", "smoke-1+1", "--seeds", "-2"], "--seeds"),
        (["bljes", "smoke-1+1", "--init", "0"], "--init"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and fragment in err


def test_result_file_is_not_a_study(tmp_path):
    from gpde.io import _store as store

    path = tmp_path / "run.h5"
    store.write_run(path, store.RunFile(problem="elliptic", seed=0, config={}))
    assert not study.is_study(path)
    with pytest.raises(ConfigError, match="not a BLJES study file"):
        study.run_study(_specs(1), path, progress=False)
