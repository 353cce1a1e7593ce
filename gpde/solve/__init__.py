"""The collocation solver: operators, Gram blocks, constraints, problems and Gauss-Newton."""

from ._constraint import Constraint as Constraint
from ._constraint import OnField as OnField
from ._domain import Box as Box
from ._gram import feature_jets as feature_jets
from ._gram import operator_gram as operator_gram
from ._linearize import gauss_newton_step as gauss_newton_step
from ._linearize import initial_values as initial_values
from ._linearize import operator_blocks as operator_blocks
from ._linearize import values_at as values_at
from ._metrics import error_metrics as error_metrics
from ._operators import AbstractOperator as AbstractOperator
from ._operators import Evaluation as Evaluation
from ._operators import Laplacian as Laplacian
from ._operators import Partial as Partial
from ._operators import SecondPartial as SecondPartial
from ._precision import require_float64 as require_float64
from ._problem import AbstractProblem as AbstractProblem
from ._problem import LearnDefaults as LearnDefaults
from ._problem import SolveDefaults as SolveDefaults
from ._solution import CollocationSolution as CollocationSolution
from ._solver import GaussNewton as GaussNewton
from ._solver import SolveHistory as SolveHistory
from ._solver import StepRecord as StepRecord
