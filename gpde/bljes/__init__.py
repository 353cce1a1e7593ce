"""BLJES: Bayesian optimization for bilevel problems whose levels are expensive black boxes
(bilevel joint entropy search, docs/references.md §4), its baselines and the study runner."""

from ._benchmark import AbstractBilevelBenchmark as AbstractBilevelBenchmark
from ._loop import PHASES as PHASES
from ._loop import BilevelRun as BilevelRun
from ._loop import run_optimization as run_optimization
from ._methods import METHODS as METHODS
from ._methods import AbstractBilevelMethod as AbstractBilevelMethod
from ._methods import Query as Query
from ._methods import make_method as make_method
from ._noise import RelativeNoise as RelativeNoise
from ._noise import output_ranges as output_ranges
from ._sample_optimum import BilevelModel as BilevelModel
from ._sample_optimum import SolverOptions as SolverOptions
from ._sample_optimum import solve_bilevel as solve_bilevel
from ._state import SearchState as SearchState
from ._surrogate import GaussianProcess as GaussianProcess
from ._surrogate import fit_gp as fit_gp
