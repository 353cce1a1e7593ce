"""The resolved configuration of a solve: problem defaults, then a TOML file, then CLI flags."""

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..kernels import LayerStretch
from ..solve._domain import LAYOUTS
from .._errors import ConfigError
from .._kernel_choice import KERNELS
from ..learn import check_batch_redraw, check_outer_loss
from ..solve._problem import LearnDefaults, SolveDefaults
from ..sparse import SOLVER_NAMES
from ._validation import check_parameters, check_path_setting, check_problem_name, check_seed


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
    #: A learning result file whose learned kernel replaces `kernel`/`lengthscale`.
    kernel_from: str | None = None
    #: Lengthscales of a multi-field problem's other fields by name, e.g. {"a": (0.14,)};
    #: fields not named use `lengthscale`.
    field_lengthscales: dict = field(default_factory=dict)
    #: Linear solver of each Gauss-Newton step: "dense" (exact Cholesky), "sparse" (sparse
    #: Cholesky + CG, docs/sparse.md) or "auto" (sparse from gpde.sparse.AUTO_SPARSE_FROM points).
    solver: str = "dense"
    #: Sparsity radius ρ of the sparse solver (None: gpde.Sparse's default).
    rho: float | None = None
    #: Whether a sparse solve also stores σ (the posterior through the solve's factors, a batched
    #: CG solve per grid point; docs/sparse-posterior.md). Dense solves always store σ.
    sparse_std: bool = False
    #: 0: each field's σ is the linearized posterior's (Posterior, held-out amplitude). N >= 2:
    #: σ is the spread of N randomized-MAP draws (gpde.solve.randomized_map: each draw a full
    #: nonlinear re-solve with the prior and the data perturbed, amplitude s² = 1), which keeps what
    #: one linearization loses on a weakly determined nonlinear problem (Darcy's a); dense solver only.
    std_draws: int = 0
    #: A stretch of the kernel's inputs at a layer of known position (docs/warped-kernels.md):
    #: {"axis": i, "centre": c, "width": w, "ratio": r} makes the kernel Warped(k, LayerStretch(...))
    #: and places the collocation points uniformly in the stretched coordinate; None: no stretch.
    stretch: dict | None = None
    #: A continuation in one problem parameter, {"name": [v₁, v₂, …]}: the problem is solved
    #: first with the parameter at v₁, v₂, … (CONTINUATION_STEPS Gauss-Newton steps each), each
    #: warm-starting the next and the last warm-starting the configured problem; None or {}: none.
    continuation: dict | None = None
    #: Prior variance factors of fields by name, {"a": 16} (the field's kernel becomes
    #: Scaled(kernel, 16); this changes the solution), or {"a": "auto"}: the factor among
    #: FIELD_VARIANCE_CANDIDATES with the largest profile log-likelihood of the collocation system
    #: (`Posterior.log_likelihood`, one solve per candidate). Fields not named keep factor 1.
    field_variances: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_common(self)
        _check_count("steps", self.steps)
        _check_field_variances(self.field_variances)
        check_path_setting("kernel_from", self.kernel_from)
        if self.solver not in SOLVER_NAMES:
            raise ConfigError(f"unknown solver {self.solver!r}; choose one of: {', '.join(SOLVER_NAMES)}")
        if self.rho is not None and (isinstance(self.rho, bool) or not isinstance(self.rho, (int, float))
                                     or not math.isfinite(self.rho) or not self.rho > 0):
            raise ConfigError(f"rho must be a finite number > 0 (typical 3 … 6), got {self.rho!r}")
        if not isinstance(self.sparse_std, bool):
            raise ConfigError(f"sparse_std must be true or false, got {self.sparse_std!r}")
        if not (isinstance(self.std_draws, int) and not isinstance(self.std_draws, bool)
                and (self.std_draws == 0 or self.std_draws >= 2)):
            raise ConfigError(f"std_draws must be 0 (linearized σ) or an integer >= 2 (randomized-MAP draws; "
                              f"100 is a good start), got {self.std_draws!r}")
        if self.std_draws and self.solver == "sparse":
            raise ConfigError("std_draws (randomized-MAP σ) needs the dense solver; use --solver dense, or "
                              "--sparse-std for the sparse solver's own σ")
        if self.stretch is not None:
            layer_stretch(self.stretch)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LearnConfig:
    """Everything that determines a bilevel learning run (docs/references.md §3)."""

    problem: str
    kernel: str
    lengthscale: tuple[float, ...]
    n_interior: int
    n_boundary: int
    n_validation: int
    layout: str
    nugget: float
    gn_steps: int
    inner_steps: int
    learning_rate: float
    eval_steps: int
    trainable: str = "all"
    batch_size: int | None = None
    loss_tolerance: float = 0.0
    tolerance: float = 1e-8
    adaptive_nugget: bool = True
    seed: int = 0
    grid: int = 100
    parameters: dict = field(default_factory=dict)
    #: Initial lengthscales of a multi-field problem's other fields by name (default `lengthscale`).
    field_lengthscales: dict = field(default_factory=dict)
    #: Search a common lengthscale factor at every outer iteration (BilevelLearner.scale_search).
    scale_search: bool = False
    #: Search one lengthscale factor per input axis at every outer iteration (BilevelLearner.axis_search).
    axis_search: bool = False
    #: Scan longer lengthscales before the first step (BilevelLearner.lengthscale_scan).
    lengthscale_scan: bool = True
    #: Validation points are drawn this far from the boundary (LearnDefaults.validation_margin).
    validation_margin: float = 0.0
    #: Gauss-Newton steps with the initial kernel on the training points before learning; the
    #: learner's first iterate u_0 is that solution. 0: u_0 = 0 (the published schedule).
    start_steps: int = 0
    #: A continuation in one problem parameter for the re-solves from u = 0 (before, after), as
    #: SolveConfig.continuation; the re-solve from the learner's iterate (after*) needs none.
    continuation: dict | None = None
    #: How the squared validation residuals are averaged (BilevelLearner.outer_loss, OUTER_LOSSES).
    outer_loss: str = "mean-square"
    #: With batch_size: a new validation batch every optimizer step or every outer iteration
    #: (BilevelLearner.batch_redraw, BATCH_REDRAWS).
    batch_redraw: str = "every-step"
    #: Gauss-Newton steps with the new θ per outer iteration (BilevelLearner.update_steps).
    update_steps: int = 1

    def __post_init__(self):
        _check_common(self)
        if not (isinstance(self.start_steps, int) and not isinstance(self.start_steps, bool) and self.start_steps >= 0):
            raise ConfigError(f"start_steps must be an integer >= 0, got {self.start_steps!r}")
        if not (isinstance(self.validation_margin, (int, float)) and math.isfinite(self.validation_margin)
                and self.validation_margin >= 0):
            raise ConfigError(f"validation_margin must be a finite distance >= 0, got {self.validation_margin!r}")
        for name in ("n_validation", "gn_steps", "eval_steps", "update_steps"):
            _check_count(name, getattr(self, name))
        if not (isinstance(self.inner_steps, int) and not isinstance(self.inner_steps, bool) and self.inner_steps >= 0):
            raise ConfigError(f"inner_steps must be an integer >= 0, got {self.inner_steps!r}")
        if self.inner_steps == 0 and not (self.scale_search is True or self.axis_search is True):
            raise ConfigError("inner_steps = 0 leaves the hyperparameters unchanged unless a search moves them: "
                              "add --axis-search (or scale_search = true), or give --inner-steps 1 or more")
        if self.batch_size is not None:
            _check_count("batch_size", self.batch_size)
        if not _positive(self.learning_rate):
            raise ConfigError(f"learning_rate must be finite and > 0, got {self.learning_rate}")
        if self.trainable not in TRAINABLE:
            raise ConfigError(f"unknown trainable '{self.trainable}'; choose one of: {', '.join(TRAINABLE)}")
        for name in ("scale_search", "axis_search"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.kernel == "gibbs" and (self.axis_search or self.inner_steps == 0):
            raise ConfigError("the searches (axis_search, scale_search) scale lengthscales and a gibbs kernel's "
                              "lengthscale is a network: drop --axis-search and give --inner-steps 1 or more")
        if not isinstance(self.lengthscale_scan, bool):
            raise ConfigError(f"lengthscale_scan must be true or false, got {self.lengthscale_scan!r}")
        check_outer_loss(self.outer_loss, "outer_loss")
        check_batch_redraw(self.batch_redraw, "batch_redraw")
        if not (isinstance(self.loss_tolerance, (int, float)) and self.loss_tolerance >= 0):
            raise ConfigError(f"loss_tolerance must be >= 0, got {self.loss_tolerance}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Which kernel leaves the learner trains: every floating-point array, or only lengthscales.
TRAINABLE = ("all", "lengthscale")


def _check_count(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_continuation(continuation):
    """None or {} (no continuation), or one parameter name with one or more finite values."""
    if continuation is None or continuation == {}:
        return
    if not (isinstance(continuation, dict) and len(continuation) == 1):
        raise ConfigError(f"continuation must name one parameter and its values, e.g. "
                          f"viscosity=0.02,0.01, got {continuation!r}")
    (name, values), = continuation.items()
    if not (isinstance(values, (list, tuple)) and values and all(_number(v) and math.isfinite(v) for v in values)):
        raise ConfigError(f"continuation values of {name!r} must be one or more numbers, got {values!r}")


def _check_common(config):
    """Checks shared by SolveConfig and LearnConfig."""
    check_problem_name(config.problem)
    if not isinstance(config.kernel, str) or config.kernel not in KERNELS:
        raise ConfigError(f"unknown kernel '{config.kernel}'; choose one of: {', '.join(KERNELS)}")
    if not isinstance(config.layout, str) or config.layout not in LAYOUTS:
        raise ConfigError(f"unknown layout '{config.layout}'; choose one of: {', '.join(LAYOUTS)}")
    for name in ("n_interior", "n_boundary", "grid"):
        _check_count(name, getattr(config, name))
    if config.grid < 2:
        raise ConfigError(f"grid must be >= 2 nodes per side, got {config.grid}")
    if not config.lengthscale or not all(_positive(v) for v in config.lengthscale):
        raise ConfigError(f"lengthscale must be one or more finite values > 0, got {config.lengthscale}")
    if not isinstance(config.field_lengthscales, dict):
        raise ConfigError(f"field_lengthscales must map field names to lengthscales, got {config.field_lengthscales!r}")
    for name, values in config.field_lengthscales.items():
        if not isinstance(name, str) or not values or not all(_positive(v) for v in values):
            raise ConfigError(f"lengthscale of field '{name}' must be one or more finite values > 0, got {values}")
    # The (adaptive) nugget is relative to the functionals' variance: at 1 it outweighs the data.
    if not (_positive(config.nugget) and config.nugget < 1):
        raise ConfigError(f"nugget must be finite, > 0 and < 1 (typical 1e-13 … 1e-5), got {config.nugget}")
    if not isinstance(config.adaptive_nugget, bool):
        raise ConfigError(f"adaptive_nugget must be true or false, got {config.adaptive_nugget!r}")
    if not (_number(config.tolerance) and math.isfinite(config.tolerance) and config.tolerance >= 0):
        raise ConfigError(f"tolerance must be >= 0, got {config.tolerance}")
    check_seed(config.seed)
    _check_continuation(config.continuation)
    check_parameters(config.parameters)


def layer_stretch(settings: dict):
    """The LayerStretch of a `stretch` setting; ConfigError naming the problem if it is not one."""
    keys = ("axis", "centre", "width", "ratio")
    if not (isinstance(settings, dict) and set(settings) == set(keys)
            and all(_number(settings[k]) and math.isfinite(settings[k]) for k in keys)
            and float(settings["axis"]).is_integer()):
        raise ConfigError(f"stretch needs axis (an input index), centre, width and ratio, e.g. "
                          f"--stretch 1,0,0.03,10; got {settings!r}")
    try:
        return LayerStretch(int(settings["axis"]), settings["centre"], settings["width"], settings["ratio"])
    except ValueError as error:
        raise ConfigError(f"stretch: {error}") from None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(value) -> bool:
    return _number(value) and math.isfinite(value) and value > 0


def load_toml(path: str | Path, config_class=SolveConfig) -> dict:
    """Read a TOML configuration file; ConfigError (one line) if missing or malformed."""
    path = Path(path)
    if path.exists() and not (path.is_file() or path.is_dir()):  # a pipe or device: reading could block
        raise ConfigError(f"config file {path} is not a regular file; give a TOML file on disk")
    try:
        with open(path, "rb") as source:
            table = tomllib.load(source)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not valid TOML (not UTF-8 text)") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    if "field_lengthscales" in table and not isinstance(table["field_lengthscales"], dict):
        raise ConfigError(
            f"config file {path}: 'field_lengthscales' must be a table of lengthscales by field name, "
            "e.g. a section '[field_lengthscales]' with a line 'a = 0.14'"
        )
    if "field_variances" in table and not isinstance(table["field_variances"], dict):
        raise ConfigError(
            f"config file {path}: 'field_variances' must be a table of prior variance factors by field name, "
            "e.g. a section '[field_variances]' with a line 'a = 16' or 'a = \"auto\"'"
        )
    if "parameters" in table and not isinstance(table["parameters"], dict):
        raise ConfigError(
            f"config file {path}: 'parameters' must be a table of problem parameters, "
            "e.g. a section '[parameters]' with a line 'epsilon = 0.1'"
        )
    valid = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(table) - valid
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {sorted(unknown)}; valid keys: {sorted(valid)}")
    return table


#: The prior variance factors that `field_variances = {"a": "auto"}` compares.
FIELD_VARIANCE_CANDIDATES = (0.25, 1.0, 4.0, 16.0, 64.0, 256.0)


def _check_field_variances(variances) -> None:
    if not isinstance(variances, dict):
        raise ConfigError(f"field_variances must map field names to a factor > 0 or 'auto', got {variances!r}")
    for name, value in variances.items():
        if value != "auto" and not _positive(value):
            raise ConfigError(f"prior variance factor of field '{name}' must be a finite number > 0 or 'auto' "
                              f"(e.g. a=16), got {value!r}")


def resolve(problem: str, defaults: SolveDefaults | LearnDefaults, *overrides: dict, config_class=SolveConfig):
    """Problem defaults, updated by each override mapping in turn (None values are skipped),
    as a validated `config_class` (SolveConfig or LearnConfig)."""
    values = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    values["problem"] = problem
    for override in overrides:
        for key, value in override.items():
            if value is None:
                continue
            if key in ("parameters", "field_lengthscales", "field_variances"):
                if not isinstance(value, dict):
                    raise ConfigError(f"'{key}' must be a table (name = value), got {value!r}")
                values[key] = {**values.get(key, {}), **value}
            else:
                values[key] = value
    if isinstance(values.get("lengthscale"), (int, float)):
        values["lengthscale"] = (values["lengthscale"],)
    values["lengthscale"] = tuple(values["lengthscale"])
    values["field_lengthscales"] = {
        name: (ls,) if isinstance(ls, (int, float)) else tuple(ls) for name, ls in values.get("field_lengthscales", {}).items()
    }
    try:
        return config_class(**values)
    except TypeError as error:
        raise ConfigError(f"invalid configuration: {error}") from None
