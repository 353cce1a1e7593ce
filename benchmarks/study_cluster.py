"""A BLJES study in this process and on a LocalCluster of worker processes: wall time and bitwise equality.

    python benchmarks/study_cluster.py [--benchmarks smd1] [--methods bljes] [--seeds 8] [--iters 30]
                                       [--init 3] [--workers 4,8] [--single-threaded-xla] [--out table.md]

Runs the same study (every benchmark × method × seed, coupled) once with the runner's default
in-process client and once on `gpde.app.local_cluster(W)` for each W of `--workers` (W
single-threaded worker processes), each into its own study file. The workers' XLA uses as many threads
as this process's unless `--single-threaded-xla` (then W workers × cores threads do not compete for
the cores, but the runs may differ in the last bits from the in-process ones: XLA's CPU backend can
sum in another order on one thread).
Prints one row per scheduler: runs, wall seconds of the whole study (cluster start included),
speedup against the in-process study, and whether every run's arrays (`STUDY_ARRAYS`: queries, values,
recommendations, regret; the timings excepted) are bitwise equal to the in-process ones. The runs are
seeded, so they must be.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from gpde.app import STUDY_ARRAYS, local_cluster, plan_study, read_study, run_study

SINGLE_THREADED_XLA = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def identical(first: list, second: list) -> bool:
    """Whether two studies hold the same (at least one) runs, each with every array, bitwise equal."""
    if not first or [run.config for run in first] != [run.config for run in second]:
        return False
    if any(set(run.arrays) != set(STUDY_ARRAYS) for run in first + second):
        return False
    return all(a.arrays[name].dtype == b.arrays[name].dtype and a.arrays[name].tobytes() == b.arrays[name].tobytes()
               for a, b in zip(first, second) for name in STUDY_ARRAYS)


def timed_study(specs, path: Path, scheduler: str | None) -> float:
    start = time.perf_counter()
    run_study(specs, path, scheduler=scheduler, progress=False)
    return time.perf_counter() - start


def measure(benchmarks: str, methods: str, seeds: int, iters: int, init: int, workers: list[int],
            directory: Path, worker_env: dict | None = None, report=lambda row: None) -> list[dict]:
    """One row per scheduler; `report` is called with each row as soon as it is measured."""
    specs = plan_study(benchmarks, methods, seeds=seeds, evaluations=iters, initial=init)
    inline = directory / "in-process.h5"
    seconds = timed_study(specs, inline, None)
    reference = read_study(inline)
    if len(reference) != len(specs):
        raise RuntimeError(f"the in-process study stored {len(reference)} of {len(specs)} runs")
    rows = [{"scheduler": "this process", "workers": 1, "runs": len(specs), "seconds": seconds,
             "speedup": 1.0, "bitwise": True}]
    report(rows[-1])
    for count in workers:
        path = directory / f"cluster-{count}.h5"
        start = time.perf_counter()
        with local_cluster(count, dashboard_address=":0", env=worker_env) as cluster:
            run_study(specs, path, scheduler=cluster.scheduler_address, progress=False)
        elapsed = time.perf_counter() - start
        rows.append({"scheduler": "LocalCluster", "workers": count, "runs": len(specs), "seconds": elapsed,
                     "speedup": seconds / elapsed, "bitwise": identical(reference, read_study(path))})
        report(rows[-1])
    return rows


def format_rows(rows: list[dict], header: str) -> str:
    lines = [header, "", "| scheduler | worker processes | runs | wall s | speedup | arrays bitwise equal |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['scheduler']} | {r['workers']} | {r['runs']} | {r['seconds']:.1f} | {r['speedup']:.2f} | "
              f"{'yes' if r['bitwise'] else 'NO'} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmarks", default="smd1")
    parser.add_argument("--methods", default="bljes")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--init", type=int, default=3)
    parser.add_argument("--workers", default="4,8", help="comma-separated worker-process counts")
    parser.add_argument("--single-threaded-xla", action="store_true", help="one XLA thread per worker")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as directory:
        rows = measure(args.benchmarks, args.methods, args.seeds, args.iters, args.init, workers, Path(directory),
                       worker_env=SINGLE_THREADED_XLA if args.single_threaded_xla else None,
                       report=lambda row: print(f"measured: {row}", flush=True))
    header = (f"{args.benchmarks} × {args.methods}, {args.seeds} seeds, {args.iters} queries ({args.init} initial); "
              f"{os.cpu_count()} CPU cores; workers' XLA "
              f"{'on one thread' if args.single_threaded_xla else 'threaded as this process'}")
    table = format_rows(rows, header)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0 if all(r["bitwise"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
