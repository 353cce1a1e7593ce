"""Errors that gpde raises for conditions a user can fix. Each message names the fix."""


class GpdeError(Exception):
    """Base class of the errors that gpde reports to users (the CLI prints them without traceback)."""


class ConfigError(GpdeError, ValueError):
    """Invalid input: bad sizes, names, values or files. The CLI exits with code 2."""


class SolverError(GpdeError, RuntimeError):
    """A solve failed numerically (failed Cholesky, non-finite iterate). The CLI exits with code 1."""


class PrecisionError(GpdeError, RuntimeError):
    """gpde was asked to solve in float32."""
