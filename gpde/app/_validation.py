"""The input checks of the application boundary, made before any work starts.

Every flag, TOML key and `--param` reaches the runners only through `SolveConfig` /
`LearnConfig` (types, finiteness, ranges) and the checks here: the problem and kernel that the
configuration names can be built, the sizes fit in memory, and the output can be written.
A failed check is a ConfigError: one line naming the problem and the fix, exit code 2.
"""

import argparse
import math
import os

from .._errors import ConfigError
from ..sparse import AUTO_SPARSE_FROM, Sparse

#: Seeds are 32-bit (what jax.random.PRNGKey takes on every platform).
MAX_SEED = 2**32 - 1
#: Bytes per float64.
FLOAT = 8
#: A run may plan for at most this fraction of the machine's memory.
MEMORY_FRACTION = 0.8


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one ConfigError line plus where to find help,
    instead of printing the usage text and exiting."""

    def error(self, message: str):
        raise ConfigError(f"{message}; see {self.prog} --help")


def memory_limit() -> int:
    """Bytes a run may plan to allocate: `MEMORY_FRACTION` of the physical memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # not available on this platform: do not block
        return 2**62
    return int(MEMORY_FRACTION * total)


def _size(nbytes: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes / 2**10:.3g} KiB"


def check_memory(estimate: float, what: str, fix: str, limit: int | None = None):
    """ConfigError if `estimate` bytes exceed the memory limit."""
    limit = memory_limit() if limit is None else limit
    if not math.isfinite(estimate) or estimate > limit:
        raise ConfigError(f"{what} needs about {_size(estimate)} of memory, more than the {_size(limit)} this "
                          f"machine allows; {fix}")


def solve_memory(n_functionals: int, grid_points: int) -> float:
    """A lower bound on the bytes of a solve: the Gram matrix of the collocation functionals, its
    Cholesky factor and one work copy, and the covariance between the evaluation grid and the
    functionals (the grid's posterior mean and reference)."""
    return FLOAT * (3.0 * n_functionals**2 + float(grid_points) * (n_functionals + 4))


def check_sizes(config, dim: int, extra_points: int = 0):
    """Memory estimate of a solve or learn configuration (`extra_points`: data rows the problem
    adds, e.g. observations), checked against the limit."""
    n = float(config.n_interior) + config.n_boundary + getattr(config, "n_validation", 0) + extra_points
    grid_points = float(config.grid) ** dim
    what = f"{config.n_interior} interior + {config.n_boundary} boundary points" + (
        f" + {config.n_validation} validation points" if hasattr(config, "n_validation") else "")
    if getattr(config, "solver", "dense") == "sparse" or (
            getattr(config, "solver", "dense") == "auto" and n >= AUTO_SPARSE_FROM):
        # Sparse path: per functional, its factor column and its padded supernode block
        # (~ (ρ + 1)^d neighbours), and the grid evaluated in tiles.
        rho = config.rho or Sparse().rho
        check_memory(FLOAT * 64.0 * n * (rho + 1.0) ** dim + FLOAT * 8.0 * grid_points, what,
                     "use fewer points (--n-interior, --n-boundary) or a smaller --rho")
        return
    check_memory(FLOAT * 3.0 * n**2, what, "use fewer points (--n-interior, --n-boundary), or --solver sparse")
    check_memory(solve_memory(n, grid_points), f"the {config.grid}^{dim} evaluation grid with {what}",
                 "use a smaller --grid")


def check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer 0 … {MAX_SEED}, got {seed!r}")


def check_parameters(parameters) -> dict:
    """Problem parameters: a table of finite numbers by name (the problem checks the ranges)."""
    if not isinstance(parameters, dict):
        raise ConfigError(f"problem parameters must be a table NAME = number, got {parameters!r}")
    for name, value in parameters.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"problem parameter {name} must be a finite number, got {value!r}; e.g. --param "
                              f"{name}=0.1")
    return parameters


def check_lengthscale_count(kernel: str, lengthscale, dim: int, what: str = "lengthscale"):
    """One lengthscale, or one per dimension of the problem (every kernel, Gibbs included)."""
    if len(lengthscale) not in (1, dim):
        raise ConfigError(f"give one {what} or one per dimension ({dim}) for the {kernel} kernel, got "
                          f"{len(lengthscale)}: {tuple(lengthscale)}")


def check_problem_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"problem must be a name such as \"eikonal\" (see `gpde list`), got {name!r}")
    return name


def check_path_setting(name: str, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a file name, got {value!r}")
    return value
