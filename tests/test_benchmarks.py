"""Every script in benchmarks/ runs at its tiny size and writes a complete table of finite numbers.

The scripts are run through their `main(argv)` in this process; solve.py and learn.py start one
worker process per row themselves. Timings at these sizes mean nothing: the tests check that each
script runs end to end on the current API and that its table has the expected rows."""

import json
import re

import jax
import numpy as np
import pytest

from gpde.problems import get_problem_class
from helpers import BENCHMARKS, load_benchmark, markdown_tables, number, table_with_header

# --------------------------------------------------------------------------------------------
# The benchmarks folder as a whole
# --------------------------------------------------------------------------------------------

_PRIVATE_IMPORT = re.compile(r"^[ \t]*(?:from|import)\s+gpde(?:\.\w+)*\._\w+", re.MULTILINE)


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_benchmark_uses_only_the_public_api(path):
    private = _PRIVATE_IMPORT.findall(path.read_text())
    assert not private, f"{path.name} imports private modules: {private}"


# --------------------------------------------------------------------------------------------
# solve.py
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["elliptic", "burgers", "eikonal"])
def test_solve_benchmark_tiny(problem, tmp_path, capsys):
    script = load_benchmark("solve")
    out, results = tmp_path / "table.md", tmp_path / "results.json"
    # The elliptic row also times the pieces of one Gauss-Newton step.
    breakdown = ["--breakdown"] if problem == "elliptic" else []
    argv = ["--sizes", "tiny", "--problems", problem, "--repeat", "1", "--out", str(out), "--json", str(results)]
    assert script.main(argv + breakdown) == 0
    assert out.read_text().strip() in capsys.readouterr().out

    ((n_interior, n_boundary),) = script.TINY[problem]
    (row,) = json.loads(results.read_text())["results"]
    assert "failed" not in row
    assert (row["problem"], row["n_interior"], row["n_boundary"]) == (problem, n_interior, n_boundary)
    for name in ("rms", "linf", "l2_relative"):
        assert np.isfinite(row["errors"][name]) and row["errors"][name] > 0
    for name in ("assembly", "step_solve", "step_repeat", "cholesky"):
        assert 0 < row[name]["min"] <= row[name]["median"]
    assert 1 <= row["steps_taken"] <= row["max_steps"]
    # Every stored Gram block: the full (Σ_g m_g n_g)² matrix of float64 operator-pair entries.
    instance = get_problem_class(problem)()
    key_interior, key_boundary = jax.random.split(jax.random.PRNGKey(0))
    constraints = instance.constraints(
        instance.domain.interior_points(n_interior, "random", key_interior),
        instance.domain.boundary_points(n_boundary, "random", key_boundary, instance.boundary_faces),
    )
    assert row["n_total"] == sum(c.size for c in constraints)
    assert row["block_bytes"] == 8 * sum(len(c.operators) * c.size for c in constraints) ** 2

    text = out.read_text()
    (cells,) = table_with_header(text, "problem")
    assert cells[0] == problem
    assert cells[1] == f"{n_interior + n_boundary} ({n_interior} + {n_boundary})"
    for cell in cells[2:5] + cells[8:]:
        assert number(cell) >= 0
    for cell in cells[5:8]:  # 'median / min', rounded: a tiny step can print as 0.0 ms
        assert all(number(part) >= 0 for part in cell.split("/"))
    assert number(cells[10]) == pytest.approx(row["errors"]["rms"], rel=5e-3)
    if breakdown:
        pieces = markdown_tables(text)[1]
        assert [r[0] for r in pieces[1:]] == ["linearize", "reduced_gram", "nugget", "cholesky", "cho_solve",
                                             "operator_values", "residuals", "finite checks"]
        for r in pieces[1:]:
            assert number(r[1]) >= 0 and number(r[3]) >= 0
            number(r[2])  # an increment, can be negative on a busy machine


# --------------------------------------------------------------------------------------------
# learn.py
# --------------------------------------------------------------------------------------------


def test_learn_benchmark_tiny(tmp_path, capsys):
    script = load_benchmark("learn")
    out, rows_file = tmp_path / "table.md", tmp_path / "rows.json"
    assert script.main(["--tiny", "--repeat", "2", "--out", str(out), "--json", str(rows_file)]) == 0
    assert out.read_text().strip() in capsys.readouterr().out

    rows = json.loads(rows_file.read_text())
    assert [r["case"] for r in rows] == list(script.TINY_CASES)
    for r in rows:
        assert r["finite"] and np.isfinite(r["loss"]) and r["loss"] > 0
        assert 0 < r["step_min_s"] <= r["step_median_s"] and r["compile_s"] > 0
    table = table_with_header(out.read_text(), "case")
    assert [cells[0] for cells in table] == list(script.TINY_CASES)
    for cells, (name, case) in zip(table, script.TINY_CASES.items()):
        assert cells[1] == " + ".join(str(n) for n in case[3:])
        assert number(cells[2]) > 0
        assert all(number(part) >= 0 for part in cells[3].split("/"))  # 3 decimals: 0.000 s at this size
        number(cells[4])
        assert number(cells[5]) > 0


def test_learn_benchmark_rejects_an_unknown_case():
    with pytest.raises(SystemExit) as exit_info:
        load_benchmark("learn").main(["--cases", "elliptic-gaussian-tiny,nonsense"])
    assert exit_info.value.code == 2


# --------------------------------------------------------------------------------------------
# bljes.py
# --------------------------------------------------------------------------------------------


def test_bljes_benchmark_tiny_speed_and_regret(tmp_path, capsys):
    script = load_benchmark("bljes")
    speed, regret = tmp_path / "speed.md", tmp_path / "regret.md"
    # One benchmark and one budget (initial + iterations = evaluations) for both runs, so the
    # regret runs reuse what the speed run compiled.
    assert script.main(["--tiny", "--benchmark", "smoke-1+1", "--out", str(speed)]) == 0
    rows = table_with_header(speed.read_text(), "phase")
    assert [r[0] for r in rows[: len(script.PHASES)]] == list(script.PHASES)
    assert len(rows) == len(script.PHASES) + 2  # + total per iteration, + CPU seconds per iteration
    for r in rows:
        assert number(r[1]) >= 0 and number(r[2]) >= 0
    assert number(rows[-2][1]) > 0
    final = re.search(r"final regret (\S+)", speed.read_text())
    assert final and number(final.group(1)) >= 0

    methods = ["bljes", "random"]
    assert script.main(["--tiny", "--regret", "smoke-1+1", "--methods", ",".join(methods), "--checkpoints", "3",
                        "--out", str(regret)]) == 0
    assert regret.read_text().strip() in capsys.readouterr().out
    tables = markdown_tables(regret.read_text())
    assert len(tables) == 2  # after 3 queries and after the last (tiny: 4)
    assert "after 4 queries" in regret.read_text()
    for table in tables:
        assert table[0] == ["benchmark", *methods]
        ((name, *cells),) = table[1:]
        assert name == "smoke-1+1"
        for cell in cells:  # 'median [25%, 75%]'
            median, low, high = (number(v) for v in re.findall(r"[-+0-9.e]+", cell))
            # The quartiles are printed to two digits, the median to three.
            assert 0 <= low <= high and 0.95 * low <= median <= 1.05 * high


# --------------------------------------------------------------------------------------------
# darcy_identifiability.py
# --------------------------------------------------------------------------------------------


def test_darcy_identifiability_tiny(tmp_path):
    out = tmp_path / "table.md"
    load_benchmark("darcy_identifiability").main(["--tiny", "--noise", "1e-3", "1e-5", "--out", str(out)])
    rows = table_with_header(out.read_text(), "family")
    assert [r[0].split(" (")[0] for r in rows] == ["level c₀", "level + amplitude", "Fourier modes up to frequency 1"]
    bounds = np.array([[number(cell) for cell in r[1:]] for r in rows])
    assert bounds.shape == (3, 2) and np.all(bounds > 0)
    # Nested families: the constant is in the other two, and more unknowns fixed by the same
    # data can only raise the bound.
    assert np.all(bounds[0] < bounds[1]) and np.all(bounds[0] < bounds[2])
    # Bold marks exactly the bounds above the goal.
    for r, values in zip(rows, bounds):
        for cell, value in zip(r[1:], values):
            assert cell.startswith("**") == (value > 5e-2)


# --------------------------------------------------------------------------------------------
# eikonal_outer_loss.py
# --------------------------------------------------------------------------------------------


def test_eikonal_outer_loss_tiny(tmp_path):
    script = load_benchmark("eikonal_outer_loss")
    out = tmp_path / "table.md"
    script.main(["--tiny", "--out", str(out)])
    (table,) = markdown_tables(out.read_text())
    lengthscales = [float(v) for v in table[0][1:]]
    assert lengthscales == list(script.TINY_LENGTHSCALES)
    rows = {r[0]: r[1:] for r in table[1:]}
    assert all(number(v) > 0 for v in rows["re-solve RMS (train ∪ validation)"])
    losses = [(name, cells) for name, cells in rows.items() if ", argmin " in name]
    assert len(losses) == 2 * 4  # four loss rows for each frozen iterate ℓ₀ = 0.1, 0.2
    for name, cells in losses:
        values = [number(v) for v in cells]
        assert all(v >= 0 for v in values)
        argmin = float(name.rsplit("argmin ", 1)[1])
        assert values[lengthscales.index(argmin)] == min(values)


# --------------------------------------------------------------------------------------------
# space_time_solves.py
# --------------------------------------------------------------------------------------------


def test_space_time_solves_tiny(capsys):
    load_benchmark("space_time_solves").main("gray-scott", "30", "24", "0.7,0.1")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("gray-scott: 30 + 24 points")
    values = [float(v) for v in re.findall(r"(?:RMS|L∞) ([0-9.e+-]+)", lines[1])]
    assert len(values) == 4 and all(np.isfinite(values)), lines[1]


def test_periodic_gram_benchmark_tiny(tmp_path, capsys):
    out = tmp_path / "gram.md"
    assert load_benchmark("periodic_gram").main(["--tiny", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| n | closed form s") and len(lines) == 3
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[0] == "40" and all(np.isfinite(float(c)) for c in cells[1:])
    assert float(cells[-1]) < 1e-10  # the two assemblies agree
    assert out.read_text().strip() == "\n".join(lines)


# --------------------------------------------------------------------------------------------
# randomized_map.py
# --------------------------------------------------------------------------------------------


def test_randomized_map_benchmark_tiny(tmp_path):
    out = tmp_path / "table.md"
    assert load_benchmark("randomized_map").main(["--problem", "elliptic", "--n-interior", "36", "--n-boundary", "28",
                                                  "--grid", "5", "--draws", "2", "--field-variance", "u=2",
                                                  "--out", str(out)]) == 0
    rows = table_with_header(out.read_text(), "problem")
    assert [(r[3], r[4].split(" (")[1]) for r in rows] == [
        ("linearized", "ml)"), ("linearized", "held-out)"), ("linearized", "1)"),
        ("randomized MAP, 2 draws from the prior", "1)"), ("randomized MAP, 2 draws from the solution", "1)")]
    assert all(r[2] == "u variance × 2" for r in rows)
    # One solve: the same solution error in every row; σ and the coverage differ by source.
    assert len({r[5] for r in rows}) == 1
    for r in rows:
        assert number(r[8]) > 0 and 0.0 <= number(r[6]) <= 1.0
    # Linear problem: the draws from the prior and from the solution are the same.
    assert rows[3][5:9] == rows[4][5:9]
    # The amplitude scales the linearized σ: s² = 1 against s²_ML.
    ml, unit = number(rows[0][4].split(" ")[0]), 1.0
    assert number(rows[2][8]) == pytest.approx(number(rows[0][8]) * np.sqrt(unit / ml), rel=2e-2)  # 3-digit cells


# --------------------------------------------------------------------------------------------
# schrodinger_outer_loss.py
# --------------------------------------------------------------------------------------------


def test_schrodinger_outer_loss_tiny(tmp_path):
    script = load_benchmark("schrodinger_outer_loss")
    out = tmp_path / "table.md"
    script.main(["--tiny", "--out", str(out)])
    t_scan, x_scan, residuals, start_scan, converged, batches = markdown_tables(out.read_text())
    for table in (t_scan, x_scan):
        assert [float(v) for v in table[0][1:-1]] == list(script.TINY_FACTORS)
        assert table[1][0].startswith("u_k = 0")
        for row in table[1:]:
            assert all(number(v) >= 0 for v in row[1:-1]) and float(row[-1]) in script.TINY_FACTORS
    assert [row[0] for row in residuals[1:]] == ["pde_u", "pde_v"]
    for row in residuals[1:]:
        mean, median, largest, share = (number(v) for v in row[1:5])
        assert 0 <= median <= largest and mean <= largest and 0 < share <= 1
    # Per iterate: mean, median and geometric mean of the same residuals; the geometric mean is at
    # most the mean (AM-GM) at every factor.
    assert [float(v) for v in start_scan[0][1:-1]] == list(script.TINY_START_FACTORS)
    assert len(start_scan) == 1 + 2 * 3
    for mean_row, geometric_row in ((start_scan[1], start_scan[3]), (start_scan[4], start_scan[6])):
        assert all(number(g) <= number(m) for m, g in zip(mean_row[1:-1], geometric_row[1:-1]))
    assert [row[0] for row in converged[1:]] == [f"{f:g}" for f in script.TINY_START_FACTORS] + ["published learned"]
    for row in converged[1:]:
        if not row[1].startswith("failed"):
            rms, mean, median, geometric = (number(v) for v in row[1:5])
            assert rms > 0 and 0 < geometric <= mean
    assert [row[0] for row in batches[1:]] == ["u_k = 0", "solve with start ℓ' = 1"]
    assert all(sum(int(v) for v in row[1:]) == script.BATCHES for row in batches[1:])


def test_operator_values_act_on_each_operators_own_field():
    from gpde import GaussNewton
    from gpde.problems.schrodinger import Schrodinger

    script = load_benchmark("schrodinger_outer_loss")
    problem = Schrodinger()
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    interior = problem.domain.interior_points(30, "random", keys[0])
    boundary = problem.domain.boundary_points(10, "random", keys[1], problem.boundary_faces)
    constraints = problem.constraints(interior, boundary)
    solution = GaussNewton(nugget=1e-8, max_steps=1).solve(script.periodic_kernels(script.PUBLISHED), constraints)[0]
    pde_u = script.operator_values(solution, constraints)[0]  # u, u_t, v, v_xx at the interior points
    np.testing.assert_allclose(pde_u[0], solution(interior, 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pde_u[2], solution(interior, 1), rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(np.asarray(solution(interior, 0) - solution(interior, 1)))) > 1e-3  # u and v differ


def test_batch_argmins_follow_the_batch_not_the_whole_set():
    script = load_benchmark("schrodinger_outer_loss")
    # Two factors, two constraints, 10 points: factor 0 is better at 9 points, factor 1 has one
    # point 100 times lower where factor 0 has an outlier that makes its full mean the larger.
    base = np.ones(10)
    outlier = base.copy()
    outlier[3] = 1e3
    squares = [[outlier, outlier], [2 * base, 2 * base]]
    assert set(script.batch_argmins(squares, batch=10, batches=5)) == {1}  # the whole set: the mean
    picks = script.batch_argmins(squares, batch=1, batches=200)
    # A batch of one point finds factor 0 better unless it is the outlier (1 in 10).
    assert 0.8 < np.mean(picks == 0) < 0.97
