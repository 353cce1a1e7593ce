"""Gram assembly of the periodic Gaussian kernel: closed form against nested autodiff.

    python benchmarks/periodic_gram.py [--sizes 500,1000,2000] [--out table.md]

`gpde.kernels.PeriodicGaussian` is separable (a product of one-dimensional factors), so
`gpde.operator_gram` builds its blocks from the factors' closed-form derivatives. The same kernel
written as a plain point kernel (a subclass of `AbstractPointKernel` with the same `pair`, what any
user-defined kernel gets) is assembled by nested autodiff of `pair` per pair of points. For n
random (t, x) points of the nonlinear Schrödinger domain (period 10 in x) and the operators of that
problem (u, ∂_t u, ∂_xx u: 3 × 3 blocks of n × n), the table gives the seconds of the compiled
assembly and of the gradient of Σ K² with respect to the two log-lengthscales (what kernel learning
differentiates), each the median of 3 calls after compilation, and the largest difference of the
two assemblies relative to the largest entry.
"""

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gpde import Evaluation, Partial, SecondPartial, operator_gram  # noqa: E402
from gpde.kernels import AbstractPointKernel, PeriodicGaussian  # noqa: E402

PERIOD = 10.0
OPERATORS = (Evaluation(), Partial(0), SecondPartial(1, 1))
LENGTHSCALE = (0.7071, 1.5915)


class AutodiffPeriodicGaussian(AbstractPointKernel):
    """The periodic Gaussian as a plain point kernel: Gram blocks by autodiff of `pair`."""

    kernel: PeriodicGaussian

    def pair(self, fx, fy):
        return self.kernel.pair(fx, fy)


def _median_seconds(function, argument, repeat=3) -> float:
    jax.block_until_ready(function(argument))  # compile
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        jax.block_until_ready(function(argument))
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def measure(n: int) -> dict:
    rng = np.random.default_rng(0)
    points = jnp.asarray(np.column_stack([rng.uniform(0.0, 1.0, n), rng.uniform(-5.0, 5.0, n)]))
    base = PeriodicGaussian(LENGTHSCALE, PERIOD, (1,))
    row = {"n": n}
    grams = {}
    for name, wrap in (("closed", lambda k: k), ("autodiff", AutodiffPeriodicGaussian)):

        def gram(log_lengthscale, wrap=wrap):
            kernel = eqx.tree_at(lambda k: k.log_lengthscale, base, log_lengthscale)
            return operator_gram(wrap(kernel), OPERATORS, points, OPERATORS, points)

        assemble = jax.jit(gram)
        gradient = jax.jit(jax.grad(lambda p, gram=gram: jnp.sum(gram(p) ** 2)))
        row[f"{name} s"] = _median_seconds(assemble, base.log_lengthscale)
        row[f"{name} gradient s"] = _median_seconds(gradient, base.log_lengthscale)
        grams[name] = np.asarray(assemble(base.log_lengthscale))
    row["max difference"] = float(np.max(np.abs(grams["closed"] - grams["autodiff"])) / np.max(np.abs(grams["autodiff"])))
    return row


def table(rows: list[dict]) -> str:
    lines = ["| n | closed form s | autodiff s | ratio | closed-form gradient s | autodiff gradient s | ratio | max difference |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['closed s']:.3f} | {r['autodiff s']:.3f} | {r['autodiff s'] / r['closed s']:.1f} "
            f"| {r['closed gradient s']:.3f} | {r['autodiff gradient s']:.3f} "
            f"| {r['autodiff gradient s'] / r['closed gradient s']:.1f} | {r['max difference']:.1e} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,2000", help="numbers of points n (blocks of n × n)")
    parser.add_argument("--tiny", action="store_true", help="n = 40 only: checks that the script runs")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)
    sizes = [40] if args.tiny else [int(s) for s in args.sizes.split(",") if s]
    rows = []
    for n in sizes:
        rows.append(measure(n))
        print("\n".join(table(rows[-1:]).splitlines()[2:]), file=sys.stderr, flush=True)
    text = table(rows)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
