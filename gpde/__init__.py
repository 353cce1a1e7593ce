"""gpde: Gaussian-process collocation for nonlinear PDEs.

The public API is re-exported here; the modules themselves are private.
"""

from ._constraint import Constraint as Constraint
from ._constraint import OnField as OnField
from ._domain import Box as Box
from ._errors import ConfigError as ConfigError
from ._errors import GpdeError as GpdeError
from ._errors import PrecisionError as PrecisionError
from ._errors import SolverError as SolverError
from ._gram import feature_jets as feature_jets
from ._gram import operator_gram as operator_gram
from ._metrics import error_metrics as error_metrics
from ._operators import AbstractOperator as AbstractOperator
from ._operators import Evaluation as Evaluation
from ._operators import Laplacian as Laplacian
from ._operators import Partial as Partial
from ._operators import SecondPartial as SecondPartial
from ._problem import AbstractProblem as AbstractProblem
from ._problem import LearnDefaults as LearnDefaults
from ._problem import SolveDefaults as SolveDefaults
from ._solution import CollocationSolution as CollocationSolution
from ._solver import GaussNewton as GaussNewton
from ._solver import SolveHistory as SolveHistory
from ._solver import StepRecord as StepRecord

__version__ = "0.1.0"
