"""Errors that gpde raises for conditions a user can fix. Each message names the fix."""


class GpdeError(Exception):
    """Base class of the errors that gpde reports to users (the CLI prints them without traceback)."""


class ConfigError(GpdeError, ValueError):
    """Invalid input: bad sizes, names, values or files. The CLI exits with code 2."""


class SolverError(GpdeError, RuntimeError):
    """A solve failed numerically (failed Cholesky, non-finite iterate, divergence). The CLI exits
    with code 1. `result` is the `gpde.RESULTS` member that names the failure (None where the
    failure has no member, e.g. the sparse factor of the basis functionals)."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result

    def __reduce__(self):  # keep `result` when the error crosses a process boundary
        return type(self), (*self.args, self.result)


class PrecisionError(GpdeError, RuntimeError):
    """gpde was asked to solve in float32."""
