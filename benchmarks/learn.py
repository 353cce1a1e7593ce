"""Speed of bilevel kernel learning: seconds per outer optimizer step, one case per row.

    python benchmarks/learn.py [--cases NAME,...] [--repeat N] [--out table.md]

Each case runs in a fresh subprocess: it builds the published point sets (training interior and
boundary, validation) of a problem, compiles one optimizer step of gpde's BilevelLearner (validation
loss, hypergradient by autodiff through the closed-form inner Gauss-Newton step, Adam update),
times `--repeat` further steps, and reports the compile time, the median and minimum step time and
the peak resident set. A full run costs about gn_steps × inner_steps steps plus one Gauss-Newton step
and one grid evaluation per outer iteration.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

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
DEFAULT_CASES = ("elliptic-gaussian-400", "elliptic-gaussian-published", "elliptic-additive-published",
                 "eikonal-gaussian-published", "burgers-gaussian-published")


def worker(name: str, repeat: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import numpy as np
    import optax

    from gpde.learn._learner import _optimizer_step, _subset, _subset_values
    from gpde.app._config import LearnConfig, resolve
    from gpde._kernel_choice import make_kernel
    from gpde.app._learn_run import learning_points, trainable_filter
    from gpde.solve._linearize import initial_values
    from gpde.problems import get_problem_class

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
    indices = tuple(np.arange(c.size) for c in valid)
    args = (static, optimizer, train, _subset(valid, indices), initial_values(train),
            _subset_values(initial_values(valid), indices), config.nugget, True, None)
    start = time.perf_counter()
    compiled = _optimizer_step.lower(params, static, state, *args[1:]).compile()
    compile_seconds = time.perf_counter() - start
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        params, state, loss, finite = jax.block_until_ready(compiled(params, static, state, *args[1:]))
        times.append(time.perf_counter() - start)
    times = sorted(times[1:])
    return {
        "case": name, "points": f"{n_interior} + {n_boundary} + {n_validation}", "compile_s": compile_seconds,
        "step_median_s": times[len(times) // 2], "step_min_s": times[0],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "finite": bool(finite),
    }


def table(rows: list[dict]) -> str:
    lines = ["| case | points (train + boundary + validation) | compile s | s per optimizer step (median / min) "
             "| 500 steps (min) | peak RSS MiB |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['points']} | {r['compile_s']:.1f} | {r['step_median_s']:.3f} / "
                     f"{r['step_min_s']:.3f} | {500 * r['step_median_s'] / 60:.1f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES), help="comma-separated subset of " + ",".join(CASES))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(_MARKER + json.dumps(worker(args.worker, args.repeat)), flush=True)
        return
    rows = []
    for name in args.cases.split(","):
        if name not in CASES:
            parser.error(f"unknown case '{name}'; choose from {', '.join(CASES)}")
        env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")}
        done = subprocess.run([sys.executable, __file__, "--worker", name, "--repeat", str(args.repeat)],
                              capture_output=True, text=True, env=env, cwd=ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith(_MARKER)]
        if not lines:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(lines[-1][len(_MARKER):]))
        print(f"{name}: {rows[-1]['step_median_s']:.3f} s per step", flush=True)
    text = f"Load average at end: {os.getloadavg()[0]:.2f} (2-core machine; other jobs inflate timings)\n\n" + table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
