"""Where gpde finds its reference data.

Shipped data (the Eikonal reference, the bilevel benchmarks' optima) is package data of
`gpde.data`, read with importlib.resources, so a wheel or a read-only install works. Anything
computed on first use is cached in the user's cache directory (platformdirs; override with the
environment variable GPDE_CACHE_DIR), never inside the installed package.
"""

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import platformdirs

#: Environment variable that moves the cache directory (tests, shared clusters).
CACHE_ENVIRONMENT = "GPDE_CACHE_DIR"


def shipped_file(name: str) -> Traversable | None:
    """The data file `name` shipped inside the package, or None if the package has no such file."""
    candidate = resources.files("gpde.data").joinpath(name)
    return candidate if candidate.is_file() else None


def cache_directory() -> Path:
    """The user cache directory of gpde (not created here)."""
    override = os.environ.get(CACHE_ENVIRONMENT)
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("gpde", appauthor=False))


def find_data_file(name: str) -> Traversable | None:
    """The data file `name`: shipped with the package, else from the cache, else None."""
    shipped = shipped_file(name)
    if shipped is not None:
        return shipped
    cached = cache_directory() / name
    return cached if cached.is_file() else None


def source_data_directory() -> Path:
    """The repository's data/ directory (the source of the shipped data): where the rebuild
    commands write, for a developer to commit. Only meaningful in a source checkout."""
    return Path(str(resources.files("gpde.data")))
