"""BLJES speed per iteration (split by phase) and a first regret comparison BLJES vs random.

    python benchmarks/bljes.py                       # speed on smd1 (2 + 2), K = 30, 10 iterations
    python benchmarks/bljes.py --benchmark gp-2+2 --iterations 20 --paths 30 --out speed.md
    python benchmarks/bljes.py --regret smoke-1+1,smd1 --seeds 3 --evaluations 20 --out regret.md

Speed: one BLJES run of `initial + iterations` queries; the first BLJES iteration (which compiles
everything: the shapes never change afterwards, the data are padded to the budget) is reported
separately, the table shows the median over the others of each phase's wall seconds: fit (all
surrogates), paths (K posterior sample paths), optima (K bilevel sample optima), acquisition
(conditioning, lower bounds a_k(x), truncated moments on the candidate grid), recommendation (the
bilevel optimum of the posterior means), evaluation (the benchmark). The load average is printed
with the table: on a shared machine wall times grow with it; the process CPU seconds per iteration
(summed over threads) do not, and bound the wall time on idle cores from above.

`--tiny` shrinks every size (iterations, initial points, paths, features, seeds, evaluations) to a
smoke test of the script that runs in seconds; the numbers then mean nothing:
    python benchmarks/bljes.py --tiny
    python benchmarks/bljes.py --tiny --regret smoke-1+1

Regret: bilevel simple regret (median and quartiles over seeds) of each method after
`evaluations` queries (`initial` of them uniform), coupled, noiseless, and after each of the
`--checkpoints` query counts of the same runs. Methods take options in brackets (ablations):
    python benchmarks/bljes.py --regret smd1 --methods 'bljes,bljes[value_bound=True],random' --seeds 3
"""

import argparse
import os
import re
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np

from gpde.bljes import METHODS, PHASES, make_method, run_optimization
from gpde.app import parse_options
from gpde.problems.bilevel import get_benchmark


#: The sizes of --tiny: two timed BLJES iterations (a first one that compiles, one more), a few
#: paths and features, two seeds of four queries.
TINY = {"iterations": 2, "initial": 2, "paths": 4, "features": 64, "seeds": 2, "evaluations": 4}


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def speed(args) -> str:
    benchmark = get_benchmark(args.benchmark)
    method = make_method("bljes", paths=args.paths, features=args.features)
    cpu = [time.process_time()]
    start = time.perf_counter()
    run = run_optimization(
        benchmark, method, evaluations=args.initial + args.iterations, initial=args.initial, seed=0,
        progress=lambda _: cpu.append(time.process_time()),
    )
    total = time.perf_counter() - start
    cpu_per_iteration = np.diff(cpu)[args.initial :]
    bljes = slice(args.initial, None)
    per_iteration = sum(run.seconds[p][bljes] for p in PHASES)
    lines = [
        (f"BLJES speed on {benchmark.name} ({benchmark.x_dim} + {benchmark.theta_dim} dims), K = {args.paths}, "
        f"{args.features} features, {args.iterations} BLJES iterations after {args.initial} initial; "
        f"{os.cpu_count()} CPUs, load average {_load()}, total {total:.0f} s"),
        "",
        "| phase | first iteration (compiles) [s] | median of the others [s] |",
        "|---|---|---|",
    ]
    for phase in PHASES:
        seconds = run.seconds[phase][bljes]
        lines.append(f"| {phase} | {seconds[0]:.2f} | {np.median(seconds[1:]):.2f} |")
    lines.append(f"| **total per iteration** | {per_iteration[0]:.2f} | {np.median(per_iteration[1:]):.2f} |")
    lines.append(
        f"| process CPU seconds per iteration (all threads; load-independent) | {cpu_per_iteration[0]:.2f} | "
        f"{np.median(cpu_per_iteration[1:]):.2f} |"
    )
    lines.append(f"\nfinal regret {run.regret[-1]:.3g}")
    return "\n".join(lines)


def _method(spec: str, args):
    """'bljes' or 'bljes[value_bound=True,paths=10]': a method with options (an ablation). A method
    that has `paths` and `features` takes them from --paths and --features unless its options set
    them (as the speed run does, so that --tiny shrinks them too)."""
    name, _, options = spec.partition("[")
    options = parse_options(options.rstrip("]"))
    sizes = {key: getattr(args, key) for key in ("paths", "features")
             if hasattr(METHODS.get(name), key) and key not in options}
    return make_method(name, **sizes, **options)


def regret(args) -> str:
    """One table of the regret after every `--checkpoints` query count (the last: the final one)."""
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if c} | {args.evaluations})
    if checkpoints[0] < 1 or checkpoints[-1] > args.evaluations:
        raise SystemExit(f"--checkpoints must lie in 1..{args.evaluations}")
    cells = {c: [] for c in checkpoints}
    names = args.regret.split(",")
    for name in names:
        benchmark = get_benchmark(name)
        for method_name in args.methods:
            regrets = []
            for seed in range(args.seeds):
                start = time.perf_counter()
                run = run_optimization(
                    benchmark, _method(method_name, args), evaluations=args.evaluations, initial=args.initial, seed=seed
                )
                regrets.append([run.regret[c - 1] for c in checkpoints])
                history = ", ".join(f"{c}: {run.regret[c - 1]:.3g}" for c in checkpoints)
                print(f"{name} {method_name} seed {seed}: regret after {history} ({time.perf_counter() - start:.0f} s)", flush=True)
            for c, column in zip(checkpoints, np.transpose(regrets)):
                q1, q2, q3 = np.percentile(column, [25, 50, 75])
                cells[c].append(f"{q2:.3g} [{q1:.2g}, {q3:.2g}]")
    lines = []
    for c in checkpoints:
        lines += [
            "",
            (f"Bilevel simple regret after {c} queries ({args.initial} initial), coupled, noiseless, {args.seeds} "
             f"seeds (median [25%, 75%]); load average {_load()}"),
            "",
            "| benchmark | " + " | ".join(args.methods) + " |",
            "|---|" + "---|" * len(args.methods),
        ]
        per_benchmark = len(args.methods)
        for i, name in enumerate(names):
            lines.append(f"| {name} | " + " | ".join(cells[c][i * per_benchmark : (i + 1) * per_benchmark]) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="smd1", help="benchmark of the speed measurement")
    parser.add_argument("--iterations", type=int, default=10, help="BLJES iterations timed")
    parser.add_argument("--initial", type=int, default=3)
    parser.add_argument("--paths", type=int, default=30, help="K, posterior sample paths")
    parser.add_argument("--features", type=int, default=1000, help="random Fourier features per path")
    parser.add_argument("--regret", default=None, help="comma-separated benchmarks: run the regret comparison instead")
    parser.add_argument("--methods", default="bljes,random",
                        help="methods of the regret comparison; options in brackets, e.g. 'bljes[value_bound=True]'")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--evaluations", type=int, default=20)
    parser.add_argument("--checkpoints", default="", help="comma-separated query counts with a table each (and the last)")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--tiny", action="store_true", help="smoke-test sizes: " + ", ".join(
        f"--{name} {value}" for name, value in TINY.items()))
    args = parser.parse_args(argv)
    if args.tiny:
        for name, value in TINY.items():
            setattr(args, name, value)
    args.methods = [m.strip() for m in re.split(r",(?![^\[]*\])", args.methods)]
    table = regret(args) if args.regret else speed(args)
    print(table)
    if args.out:
        with open(args.out, "w") as out:
            out.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
