"""The problem catalogue: every module in this package that defines `PROBLEM` is a problem.

Adding a PDE is adding one file here; nothing else changes.
"""

import importlib
import pkgutil

from gpde import AbstractProblem, ConfigError

DEFAULT_PROBLEM = "eikonal"


def catalogue() -> dict[str, type[AbstractProblem]]:
    """name → problem class, for every public module of this package with a PROBLEM."""
    found = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        problem = getattr(module, "PROBLEM", None)
        if problem is not None:
            found[problem.name] = problem
    return dict(sorted(found.items()))


def get_problem_class(name: str) -> type[AbstractProblem]:
    """The problem class called `name`; ConfigError listing the valid names otherwise."""
    problems = catalogue()
    if name not in problems:
        raise ConfigError(f"unknown problem '{name}'; choose one of: {', '.join(problems)}")
    return problems[name]
