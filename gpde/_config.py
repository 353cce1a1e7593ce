"""The resolved configuration of a solve: problem defaults, then a TOML file, then CLI flags."""

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ._domain import LAYOUTS
from ._errors import ConfigError
from ._kernel_choice import KERNELS
from ._problem import SolveDefaults


@dataclass(frozen=True)
class SolveConfig:
    """Everything that determines a solve. Stored as JSON in every result file."""

    problem: str
    kernel: str
    lengthscale: tuple[float, ...]
    n_interior: int
    n_boundary: int
    layout: str
    nugget: float
    steps: int
    tolerance: float
    adaptive_nugget: bool = True
    seed: int = 0
    grid: int = 100
    parameters: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise ConfigError(f"unknown kernel '{self.kernel}'; choose one of: {', '.join(KERNELS)}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"unknown layout '{self.layout}'; choose one of: {', '.join(LAYOUTS)}")
        for name in ("n_interior", "n_boundary", "steps", "grid"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.grid < 2:
            raise ConfigError(f"grid must be >= 2 nodes per side, got {self.grid}")
        if not self.lengthscale or not all(_positive(v) for v in self.lengthscale):
            raise ConfigError(f"lengthscale must be one or more finite values > 0, got {self.lengthscale}")
        if not _positive(self.nugget):
            raise ConfigError(f"nugget must be finite and > 0 (typical 1e-13 … 1e-5), got {self.nugget}")
        if not (isinstance(self.tolerance, (int, float)) and math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ConfigError(f"tolerance must be >= 0, got {self.tolerance}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


_FIELDS = {f.name for f in dataclasses.fields(SolveConfig)}


def load_toml(path: str | Path) -> dict:
    """Read a TOML configuration file; ConfigError (one line) if missing or malformed."""
    path = Path(path)
    try:
        with open(path, "rb") as source:
            table = tomllib.load(source)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    unknown = set(table) - _FIELDS
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown keys {sorted(unknown)}; valid keys: {sorted(_FIELDS)}"
        )
    return table


def resolve(problem: str, defaults: SolveDefaults, *overrides: dict) -> SolveConfig:
    """Problem defaults, updated by each override mapping in turn (None values are skipped)."""
    values = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    values["problem"] = problem
    for override in overrides:
        for key, value in override.items():
            if value is None:
                continue
            if key == "parameters":
                values["parameters"] = {**values.get("parameters", {}), **value}
            else:
                values[key] = value
    if isinstance(values.get("lengthscale"), (int, float)):
        values["lengthscale"] = (values["lengthscale"],)
    values["lengthscale"] = tuple(values["lengthscale"])
    return SolveConfig(**values)
