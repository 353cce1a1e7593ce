"""The catalogue of bilevel black-box benchmarks (BLJES, docs/references.md §4-§5).

Every public module of this package that defines `BENCHMARKS` (a dict: name → zero-argument
factory returning an `AbstractBilevelBenchmark`) or a single `BENCHMARK` (such a factory, e.g. the
class) contributes its benchmarks. Adding a benchmark is adding one file here; nothing else changes.

    smoke-1+1, smoke-5+5   quadratic smoke problem (closed-form optimum)      problems/bilevel/smoke.py
    smd1, smd2, smd6       SMD suite, 2 + 2 dimensions (closed-form optimum)   problems/bilevel/smd.py
    smd12                  SMD12, constrained, 2 + 3 dimensions                problems/bilevel/smd.py
    gp-1+1, gp-2+2         GP sample paths (optimum by dense search, cached)   problems/bilevel/gp_sample.py
    gp-1+1-tied, gp-2+2-tied  draws whose lower-level basins tie at x*         problems/bilevel/gp_sample.py
    darcy                  PDE black box: GP solver lengthscale × permeability problems/bilevel/darcy.py
"""

import importlib
import pkgutil
from collections.abc import Callable

from gpde import ConfigError
from gpde.bljes import AbstractBilevelBenchmark


def catalogue() -> dict[str, Callable[[], AbstractBilevelBenchmark]]:
    """name → factory, for every public module of this package with BENCHMARKS or BENCHMARK."""
    found = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        found.update(getattr(module, "BENCHMARKS", {}))
        single = getattr(module, "BENCHMARK", None)
        if single is not None:
            found[single.name] = single
    return dict(sorted(found.items()))


def get_benchmark(name: str) -> AbstractBilevelBenchmark:
    """The benchmark called `name`, constructed; ConfigError listing the valid names otherwise."""
    benchmarks = catalogue()
    if name not in benchmarks:
        raise ConfigError(f"unknown benchmark '{name}'; choose one of: {', '.join(benchmarks)} (or 'all')")
    return benchmarks[name]()
