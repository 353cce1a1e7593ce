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

Any of them with observation noise: `NAME[noise=0.05]` (sd 5 % of each output's range, see
`get_benchmark`).
"""

import importlib
import pkgutil
from collections.abc import Callable

from gpde import ConfigError
from gpde.bljes import AbstractBilevelBenchmark, RelativeNoise


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
    """The benchmark called `name`, constructed; ConfigError listing the valid names otherwise.

    `name[noise=L]` is that benchmark observed with Gaussian noise of sd L × each output's range
    (`gpde.bljes.RelativeNoise`; e.g. `smd1[noise=0.05]`): noise is a benchmark option, so the
    noisy and noiseless versions are separate benchmarks of a study."""
    base, option, level = _split_option(name)
    benchmarks = catalogue()
    if base not in benchmarks:
        raise ConfigError(f"unknown benchmark '{base}'; choose one of: {', '.join(benchmarks)} (or 'all')")
    benchmark = benchmarks[base]()
    return benchmark if option is None else RelativeNoise(benchmark, level)


def _split_option(name: str) -> tuple[str, str | None, float]:
    """'smd1[noise=0.05]' → ('smd1', 'noise', 0.05); 'smd1' → ('smd1', None, 0.0)."""
    if "[" not in name:
        return name, None, 0.0
    base, _, rest = name.partition("[")
    option, sep, value = rest.removesuffix("]").partition("=")
    if not rest.endswith("]") or not sep or option.strip() != "noise":
        raise ConfigError(f"benchmark '{name}': the only benchmark option is [noise=LEVEL], e.g. '{base}[noise=0.05]'")
    try:
        level = float(value)
    except ValueError:
        raise ConfigError(f"benchmark '{name}': noise level must be a number (a fraction of each output's range), "
                          f"got '{value}'") from None
    return base, "noise", level
