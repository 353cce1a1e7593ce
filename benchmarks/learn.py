"""Speed of bilevel kernel learning: seconds per outer optimizer step, one case per row.

    python benchmarks/learn.py [--cases NAME,...] [--repeat N] [--out table.md] [--json rows.json]
    python benchmarks/learn.py --tiny        # the tiny cases: a smoke test of the script (seconds)

Each case runs in a fresh subprocess: it builds the published point sets (training interior and
boundary, validation) of a problem, compiles one optimizer step of gpde's BilevelLearner
(`gpde.learn.optimizer_step`: validation loss, hypergradient by autodiff through the closed-form
inner Gauss-Newton step, Adam update), times `--repeat` further steps, and reports the compile time,
the median and minimum step time and the peak resident set. A full run costs about
gn_steps × inner_steps steps plus one Gauss-Newton step and one grid evaluation per outer iteration.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import optax

from gpde import make_kernel
from gpde.app import LearnConfig, learning_points, resolve, trainable_filter
from gpde.learn import optimizer_step
from gpde.problems import get_problem_class
from gpde.solve import initial_values

ROOT = Path(__file__).resolve().parent.parent
_MARKER = "@@LEARN@@ "

#: name → (problem, kernel, lengthscale, interior, boundary, validation)
CASES = {
    "elliptic-gaussian-published": ("elliptic", "gaussian", (0.5,), 900, 300, 900),
    "elliptic-additive-published": ("elliptic", "additive", (0.2,), 900, 300, 900),
    "elliptic-gaussian-400": ("elliptic", "gaussian", (0.5,), 400, 120, 400),
    "eikonal-gaussian-published": ("eikonal", "gaussian", (0.2,), 900, 300, 900),
    "burgers-gaussian-published": ("burgers", "gaussian", (0.3, 0.05), 900, 300, 900),
    "eikonal-gibbs-60": ("eikonal", "gibbs", (1.0 / 3.0,), 60, 20, 60),
    # The published Gibbs setups (docs/references.md §3, the problems' learn_defaults): shared ℓ = softplus/3
    # for Eikonal, (ℓ_t, ℓ_x) = softplus/4 for Burgers.
    "eikonal-gibbs-published": ("eikonal", "gibbs", (1.0 / 3.0,), 900, 300, 900),
    "burgers-gibbs-published": ("burgers", "gibbs", (0.25, 0.25), 900, 300, 900),
}
#: A few dozen points: every code path of the script in seconds (the timings mean little). No
#: Gibbs kernel: compiling its step takes half a minute at any size.
TINY_CASES = {
    "elliptic-gaussian-tiny": ("elliptic", "gaussian", (0.5,), 36, 20, 36),
    "burgers-gaussian-tiny": ("burgers", "gaussian", (0.3, 0.05), 36, 12, 36),
}
CASES.update(TINY_CASES)
DEFAULT_CASES = ("elliptic-gaussian-400", "elliptic-gaussian-published", "elliptic-additive-published",
                 "eikonal-gaussian-published", "burgers-gaussian-published")


def worker(name: str, repeat: int) -> dict:
    problem_name, kernel_name, lengthscale, n_interior, n_boundary, n_validation = CASES[name]
    problem_class = get_problem_class(problem_name)
    config = resolve(problem_name, problem_class.learn_defaults,
                     dict(kernel=kernel_name, lengthscale=lengthscale, n_interior=n_interior, n_boundary=n_boundary,
                          n_validation=n_validation), config_class=LearnConfig)
    problem = problem_class()
    interior, boundary, validation = learning_points(problem, config)
    train = problem.constraints(interior, boundary)
    valid = problem.validation_constraints(validation, boundary)
    kernel = make_kernel(config.kernel, config.lengthscale, problem.domain.dim, config.seed)
    params, static = eqx.partition(kernel, trainable_filter(kernel, "all"))
    optimizer = optax.adam(config.learning_rate)
    state = optimizer.init(params)
    # Full batch around u = 0 (the learner's first frozen iterate without a start solve).
    rest = (optimizer, train, valid, initial_values(train), initial_values(valid), config.nugget, True, None)
    start = time.perf_counter()
    compiled = optimizer_step.lower(params, static, state, *rest).compile()
    compile_seconds = time.perf_counter() - start
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        params, state, loss, finite = jax.block_until_ready(compiled(params, static, state, *rest))
        times.append(time.perf_counter() - start)
    times = sorted(times[1:])
    return {
        "case": name, "points": f"{n_interior} + {n_boundary} + {n_validation}", "compile_s": compile_seconds,
        "step_median_s": times[len(times) // 2], "step_min_s": times[0],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "finite": bool(finite),
        "loss": float(loss),
    }


def table(rows: list[dict]) -> str:
    lines = ["| case | points (train + boundary + validation) | compile s | s per optimizer step (median / min) "
             "| 500 steps (min) | peak RSS MiB |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['points']} | {r['compile_s']:.1f} | {r['step_median_s']:.3f} / "
                     f"{r['step_min_s']:.3f} | {500 * r['step_median_s'] / 60:.1f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Run the cases; 0 if every case ran, 1 if any failed (its error goes to stderr)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated subset of " + ",".join(CASES))
    parser.add_argument("--tiny", action="store_true", help="run the tiny cases " + ",".join(TINY_CASES)
                        + " instead (a smoke test of the script)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    parser.add_argument("--json", help="also write the rows (every measurement) to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.worker:
        print(_MARKER + json.dumps(worker(args.worker, args.repeat)), flush=True)
        return 0
    names = list(TINY_CASES) if args.tiny else [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    rows, failed = [], []
    for name in names:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
        done = subprocess.run([sys.executable, __file__, "--worker", name, "--repeat", str(args.repeat)],
                              capture_output=True, text=True, env=env, cwd=ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith(_MARKER)]
        if not lines:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            failed.append(name)
            continue
        rows.append(json.loads(lines[-1][len(_MARKER):]))
        print(f"{name}: {rows[-1]['step_median_s']:.3f} s per step", flush=True)
    text = f"Load average at end: {os.getloadavg()[0]:.2f} (2-core machine; other jobs inflate timings)\n\n" + table(rows)
    if failed:
        text += "\n\nFailed: " + ", ".join(failed)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
