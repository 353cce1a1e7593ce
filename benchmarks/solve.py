"""Speed, memory and accuracy of the Gauss-Newton solver, one problem × size per row.

    python benchmarks/solve.py [--sizes tiny|small|published|all] [--problems elliptic,burgers,eikonal]
                               [--repeat N] [--out table.md] [--json results.json] [--breakdown]

Every configuration runs in a fresh subprocess (so that compilation caches and the peak resident
set of one run do not leak into the next) that

  1. solves the problem with `gpde.app.run_solve` and the problem's defaults (kernel, lengthscale,
     nugget, step limit, tolerance) at the requested point counts: errors against the reference,
     compile time of the Gauss-Newton step and the wall time of each step;
  2. times, on the solution's own kernel and constraints, the assembly of the operator Gram blocks
     (`gpde.solve.operator_blocks`, jitted), the compiled Gauss-Newton step
     (`gpde.solve.gauss_newton_step`) on fixed inputs, and one dense Cholesky factorization of an
     N×N SPD matrix (`jnp.linalg.cholesky` under `jax.jit`), each the median of `--repeat` calls
     after a warm-up call that compiles;
  3. reports its peak resident set (`ru_maxrss`) at the end.

`--breakdown` times, for each configuration, the pieces of one Gauss-Newton step
(`gpde.solve.gauss_newton_step`: `linearize`, `reduced_gram`, `nugget_diagonal`, Cholesky,
`operator_values`, …) both as separately jitted functions and as growing prefixes of the step
compiled as one function (the increments show what each piece costs inside the fused step).
`--sizes tiny` (a few dozen points) only checks that every part of the script runs.
See benchmarks/README.md for the columns.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import jax.numpy as jnp
import jaxlib
import numpy as np

from gpde.app import resolve, run_solve
from gpde.problems import get_problem_class
from gpde.solve import (
    gauss_newton_step,
    initial_values,
    linearize,
    nugget_diagonal,
    operator_blocks,
    operator_values,
    reduced_gram,
)

ROOT = Path(__file__).resolve().parent.parent
_MARKER = "@@BENCH@@ "

# Point counts (interior, boundary). The elliptic problem uses the published grid layout, whose
# interior count must be a perfect square; its boundary gets 4(m + 1) points for an m × m interior
# grid (the published 900 + 124 follows the same rule). Burgers and Eikonal use random points,
# three interior points per boundary point as in the published 900 + 300.
SMALL = {
    "elliptic": [(256, 68), (529, 96), (1089, 136)],
    "burgers": [(225, 75), (450, 150), (900, 300)],
    "eikonal": [(225, 75), (450, 150), (900, 300)],
}
# Smoke-test sizes: every code path in seconds (the numbers mean nothing at this size); errors on
# a TINY_GRID × TINY_GRID grid instead of the problem's default.
TINY_GRID = 20
TINY = {
    "elliptic": [(36, 28)],
    "burgers": [(60, 20)],
    "eikonal": [(60, 20)],
}
PUBLISHED = {
    "elliptic": [(900, 124)],
    "burgers": [(900, 300)],
    "eikonal": [(900, 300)],
}
PROBLEMS = ("elliptic", "burgers", "eikonal")


def _sizes(which: str, problem: str) -> list[tuple[int, int]]:
    if which == "tiny":
        return TINY[problem]
    if which == "small":
        return SMALL[problem]
    if which == "published":
        return PUBLISHED[problem]
    return sorted(set(SMALL[problem]) | set(PUBLISHED[problem]), key=sum)


# ----------------------------------------------------------------------------------------------
# Worker: one configuration, in its own process
# ----------------------------------------------------------------------------------------------


def _timed(function, repeat: int) -> list[float]:
    """Wall times of `repeat` calls of function() after one untimed warm-up call."""
    jax.block_until_ready(function())
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(function())
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float]) -> dict:
    return {"median": float(np.median(times)), "min": float(np.min(times)), "all": [float(t) for t in times]}


def _cholesky_times(n: int, repeat: int) -> list[float]:
    """One dense float64 Cholesky of an n × n SPD matrix, jitted, after compilation."""
    rng = np.random.default_rng(0)
    b = rng.standard_normal((n, n))
    matrix = jnp.asarray(b @ b.T / n + np.eye(n))
    factorize = jax.jit(jnp.linalg.cholesky)
    return _timed(lambda: factorize(matrix), repeat)


def _step_pieces(blocks, constraints, values, nugget: float, adaptive: bool, repeat: int) -> dict:
    """Time the pieces of `gauss_newton_step` (a) each jitted on its own, (b) as growing prefixes
    of the step compiled as one function. Inputs are the operator values `values` of an iterate."""
    sizes = [c.size for c in constraints]
    # The minimum over the calls: a piece's own cost, least disturbed by other processes.
    fastest = lambda f: _summary(_timed(f, repeat))["min"]  # noqa: E731

    # (a) each piece separately, on the intermediate results of the previous ones
    separate = {}
    linearize_alone = eqx.filter_jit(linearize)
    separate["linearize"] = fastest(lambda: linearize_alone(constraints, values))
    linear = linearize_alone(constraints, values)
    reduced_gram_alone = eqx.filter_jit(reduced_gram)
    separate["reduced_gram"] = fastest(lambda: reduced_gram_alone(blocks, linear.weights))
    gram = reduced_gram_alone(blocks, linear.weights)
    add_nugget = eqx.filter_jit(
        lambda b, w, g: g + jnp.diag(nugget_diagonal(b, w, jnp.diagonal(g), nugget, adaptive))
    )
    separate["nugget"] = fastest(lambda: add_nugget(blocks, linear.weights, gram))
    gram = add_nugget(blocks, linear.weights, gram)
    cholesky = jax.jit(jnp.linalg.cholesky)
    separate["cholesky"] = fastest(lambda: cholesky(gram))
    factor = cholesky(gram)
    targets = jnp.concatenate(linear.targets)
    cho_solve = jax.jit(lambda f, b: jax.scipy.linalg.cho_solve((f, True), b))
    separate["cho_solve"] = fastest(lambda: cho_solve(factor, targets))
    coefficients = _split(cho_solve(factor, targets), sizes)
    operator_values_alone = eqx.filter_jit(operator_values)
    separate["operator_values"] = fastest(lambda: operator_values_alone(blocks, linear.weights, coefficients))
    new_values = operator_values_alone(blocks, linear.weights, coefficients)
    residuals = eqx.filter_jit(
        lambda cs, vs: tuple(c.residuals(z) for c, z in zip(cs, vs))
    )
    separate["residuals"] = fastest(lambda: residuals(constraints, new_values))
    checks = jax.jit(
        lambda g, t, f, z: (jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(t)), jnp.all(jnp.isfinite(f)),
                            jnp.all(jnp.isfinite(z)))
    )
    flat_values = jnp.concatenate([z.ravel() for z in new_values])
    separate["finite checks"] = fastest(lambda: checks(gram, targets, factor, flat_values))

    # (b) prefixes of the step as one compiled function
    def prefix(stage):
        def step(blocks, constraints, values):
            linear = linearize(constraints, values)
            out = linear.targets
            if stage >= 1:
                gram = reduced_gram(blocks, linear.weights)
                out = gram
            if stage >= 2:
                gram = gram + jnp.diag(nugget_diagonal(blocks, linear.weights, jnp.diagonal(gram), nugget, adaptive))
                out = gram
            if stage >= 3:
                factor = jnp.linalg.cholesky(gram)
                out = factor
            if stage >= 4:
                targets = jnp.concatenate(linear.targets)
                coefficients = _split(jax.scipy.linalg.cho_solve((factor, True), targets), sizes)
                out = coefficients
            if stage >= 5:
                new_values = operator_values(blocks, linear.weights, coefficients)
                out = new_values
            if stage >= 6:
                out = (new_values, tuple(c.residuals(z) for c, z in zip(constraints, new_values)))
            if stage >= 7:
                finite = jnp.all(jnp.isfinite(gram)) & jnp.all(jnp.isfinite(factor))
                out = (out, finite & jnp.all(jnp.isfinite(jnp.concatenate([z.ravel() for z in new_values]))))
            return out

        return eqx.filter_jit(step)

    names = ["linearize", "reduced_gram", "nugget", "cholesky", "cho_solve", "operator_values", "residuals",
             "finite checks"]
    fused = {}
    for stage, name in enumerate(names):
        function = prefix(stage)
        fused[name] = fastest(lambda: function(blocks, constraints, values))
    increments, previous = {}, 0.0
    for name in names:
        increments[name] = fused[name] - previous
        previous = fused[name]
    return {"separate": separate, "fused_prefix": fused, "fused_increment": increments}


def _split(vector, sizes):
    """vector cut into consecutive pieces of the given sizes (one per constraint)."""
    return tuple(jnp.split(vector, np.cumsum(sizes)[:-1]))


def worker(spec: dict) -> dict:
    """Run one configuration; return its measurements (also printed as one JSON line)."""
    name, n_interior, n_boundary, repeat = spec["problem"], spec["n_interior"], spec["n_boundary"], spec["repeat"]
    load_start = os.getloadavg()[0]
    problem_class = get_problem_class(name)
    settings = {"n_interior": n_interior, "n_boundary": n_boundary}
    if spec.get("grid"):
        settings["grid"] = spec["grid"]
    config = resolve(name, problem_class.defaults, settings)

    # 1. the solve itself: errors, compile time, per-step times
    start = time.perf_counter()
    run = run_solve(problem_class, config)
    solve_seconds = time.perf_counter() - start
    history = run.history
    step_seconds = [s.seconds for s in history.steps]

    # 2. the same kernel and constraints again, piece by piece
    kernel, constraints = run.solution.kernels, run.solution.constraints
    n_total = sum(c.size for c in constraints)

    # assembly: the warm-up call of _timed compiles, the timed calls do not
    assemble = eqx.filter_jit(operator_blocks)
    assembly = _timed(lambda: assemble(kernel, constraints), max(repeat // 2, 1))
    blocks = jax.block_until_ready(assemble(kernel, constraints))
    block_bytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(blocks))

    # the compiled Gauss-Newton step on fixed inputs (the iterate after two steps from u = 0)
    values = initial_values(constraints)
    step = eqx.filter_jit(gauss_newton_step).lower(
        blocks, constraints, values, config.nugget, config.adaptive_nugget
    ).compile()
    for _ in range(min(2, config.steps)):
        outcome = step(blocks, constraints, values, config.nugget, config.adaptive_nugget)
        if np.all(np.isfinite(np.concatenate([np.asarray(z).ravel() for z in outcome.values]))):
            values = outcome.values
    step_repeat = _timed(lambda: step(blocks, constraints, values, config.nugget, config.adaptive_nugget), repeat)

    cholesky = _cholesky_times(n_total, repeat)

    result = {
        "problem": name,
        "n_interior": n_interior,
        "n_boundary": n_boundary,
        "n_total": n_total,
        "kernel": config.kernel,
        "lengthscale": list(config.lengthscale),
        "nugget": config.nugget,
        "grid": config.grid,
        "steps_taken": len(step_seconds),
        "max_steps": config.steps,
        "converged": history.converged,
        "errors": run.errors,
        "solve_seconds": solve_seconds,
        "evaluation_seconds": run.evaluation_seconds,
        "assembly_first_call_seconds": history.assembly_seconds,
        "assembly": _summary(assembly),
        "compile_seconds": history.compile_seconds,
        "step_solve": _summary(step_seconds),
        "step_repeat": _summary(step_repeat),
        "cholesky": _summary(cholesky),
        "block_bytes": block_bytes,
        "load_start": load_start,
    }
    # Peak resident set of the run so far (before the optional breakdown, which compiles more).
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    if spec.get("breakdown"):
        result["breakdown"] = _step_pieces(blocks, constraints, values, config.nugget, config.adaptive_nugget, repeat)
    result["load_end"] = os.getloadavg()[0]
    return result


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "XLA_FLAGS") if k in os.environ}
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "load_average": os.getloadavg(),
        "thread_env": threads,
    }


def thread_environment(threads: int | None) -> dict:
    """Environment variables that cap the threads of OpenBLAS (LAPACK: Cholesky, triangular solves)
    and, for one thread, of XLA's own CPU kernels."""
    if threads is None:
        return {}
    env = {name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def _run_worker(spec: dict, env: dict) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env})
    for line in completed.stdout.splitlines():
        if line.startswith(_MARKER):
            return json.loads(line[len(_MARKER) :])
    tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
    return {**spec, "failed": " | ".join(tail) or f"exit code {completed.returncode}"}


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}" if seconds >= 0.01 else f"{seconds * 1e3:.1f}"


def table(results: list[dict]) -> str:
    header = (
        "| problem | N (int + bnd) | assembly s | GN compile s | GN step ms (solve median) "
        "| GN step ms (repeat median / min) | Cholesky ms (median / min) | step / Cholesky (median / min) "
        "| peak RSS MiB | steps | RMS | L∞ | rel L2 |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        size = f"{r['n_interior'] + r['n_boundary']} ({r['n_interior']} + {r['n_boundary']})"
        if "failed" in r:
            lines.append(f"| {r['problem']} | {size} | failed: {r['failed'][-200:]} |" + " |" * 10)
            continue
        step, chol = r["step_repeat"], r["cholesky"]
        steps = f"{r['steps_taken']}" + ("" if r["converged"] else f" (max {r['max_steps']}, not conv.)")
        lines.append(
            f"| {r['problem']} | {size} | {r['assembly']['median']:.3f} | {r['compile_seconds']:.2f} "
            f"| {_ms(r['step_solve']['median'])} | {_ms(step['median'])} / {_ms(step['min'])} "
            f"| {_ms(chol['median'])} / {_ms(chol['min'])} "
            f"| {step['median'] / chol['median']:.1f} / {step['min'] / chol['min']:.1f} "
            f"| {r['peak_rss_mib']:.0f} | {steps} | {r['errors']['rms']:.2e} | {r['errors']['linf']:.2e} "
            f"| {r['errors']['l2_relative']:.2e} |"
        )
    return "\n".join(lines)


def breakdown_table(results: list[dict]) -> str:
    rows = [r for r in results if isinstance(r.get("breakdown"), dict)]
    if not rows:
        return ""
    names = list(rows[0]["breakdown"]["separate"])
    out = []
    for r in rows:
        b = r["breakdown"]
        out.append(f"\n{r['problem']}, N = {r['n_total']} ({r['n_interior']} + {r['n_boundary']}), "
                   f"Gram blocks {r['block_bytes'] / 2**20:.0f} MiB, whole step {_ms(r['step_repeat']['min'])} ms, "
                   f"Cholesky of a random SPD matrix {_ms(r['cholesky']['min'])} ms (minima)\n")
        out.append("| piece | jitted alone ms | increment inside the fused step ms | fused prefix ms |")
        out.append("|---|---|---|---|")
        for name in names:
            out.append(f"| {name} | {_ms(b['separate'][name])} | {_ms(b['fused_increment'][name])} "
                       f"| {_ms(b['fused_prefix'][name])} |")
    return "\n".join(out)


def main(argv=None) -> int:
    """Run the benchmark; 0 if every row ran, 1 if any failed (the table says which)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", choices=("tiny", "small", "published", "all"), default="small",
                        help="tiny: a smoke test of the script (seconds); all: small and published")
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated subset of " + ",".join(PROBLEMS))
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (median reported)")
    parser.add_argument("--out", help="write the markdown table (and machine info) to this file")
    parser.add_argument("--json", help="write all measurements (every timing sample) to this JSON file")
    parser.add_argument("--breakdown", action="store_true", help="also time the pieces of one Gauss-Newton step")
    parser.add_argument("--threads", type=int, help="cap the BLAS/LAPACK threads of the runs (and, with 1, XLA's "
                        "threads too); default: leave the environment as it is")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(_MARKER + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0

    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    unknown = set(problems) - set(PROBLEMS)
    if unknown:
        parser.error(f"unknown problems {sorted(unknown)}; choose from {', '.join(PROBLEMS)}")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    env = thread_environment(args.threads)
    os.environ.update(env)  # so that machine_info reports them; the workers inherit them too
    info = machine_info()
    preamble = [
        f"Machine: {info['cpu_model'] or 'unknown CPU'}, {info['cpu_count']} CPUs ({info['usable_cpus']} usable), "
        f"{info['platform']}, Python {info['python']}, jax {info['jax']} / jaxlib {info['jaxlib']}, float64."
        + (f" Thread settings: {info['thread_env']}." if info["thread_env"] else ""),
        f"Load average at start: {info['load_average'][0]:.2f}.",
    ]
    if (info["usable_cpus"] or 1) <= 4:
        preamble.append(
            f"Timings are noisy on a {info['usable_cpus']}-core machine: BLAS/LAPACK and XLA use all cores, so any "
            "other process (a test run, another benchmark) can slow a measurement several-fold. Compare the "
            "min columns, and rerun rows whose load average (in --json) was above ~0.5."
        )
    print("\n".join(preamble), flush=True)

    results = []
    started = time.perf_counter()
    for problem in problems:
        for n_interior, n_boundary in _sizes(args.sizes, problem):
            spec = {"problem": problem, "n_interior": n_interior, "n_boundary": n_boundary, "repeat": args.repeat,
                    "breakdown": args.breakdown, "grid": TINY_GRID if args.sizes == "tiny" else None}
            t0 = time.perf_counter()
            result = _run_worker(spec, env)
            results.append(result)
            if "failed" in result:
                status = "FAILED: " + result["failed"]
            else:
                status = (f"step {_ms(result['step_repeat']['median'])} ms, Cholesky {_ms(result['cholesky']['median'])}"
                          f" ms, L∞ {result['errors']['linf']:.2e}, load {result['load_start']:.1f}")
            print(f"  {problem} {n_interior}+{n_boundary}: {time.perf_counter() - t0:.0f} s ({status})", flush=True)

    text = "\n".join(preamble) + "\n\n" + table(results)
    extra = breakdown_table(results)
    if extra:
        text += "\n\nTime of the pieces of one Gauss-Newton step (minimum of --repeat calls):\n" + extra
    print()
    print(text)
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=1) + "\n")
    return 1 if any("failed" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
