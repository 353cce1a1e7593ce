"""gpde: Gaussian-process collocation for nonlinear PDEs.

Layers (imports point down only):
    gpde.kernels   pointwise kernels as Equinox modules (knows nothing of PDEs)
    gpde (core)    operators, Gram assembly, the Gauss-Newton solver (gpde.solve), the bilevel
                   learner (gpde.learn), the BLJES algorithms (gpde.bljes), result files (gpde.io)
    gpde.problems  the catalogue of PDEs and bilevel benchmarks
    gpde.app       the command line, configuration, run / learn / study runners, analysis, plots

The core API is re-exported here; the modules themselves are private.
"""

from ._errors import ConfigError as ConfigError
from ._errors import GpdeError as GpdeError
from ._errors import PrecisionError as PrecisionError
from ._errors import SolverError as SolverError
from ._kernel_choice import KERNELS as KERNELS
from ._kernel_choice import make_kernel as make_kernel
from ._results import RESULTS as RESULTS
from .learn import BilevelLearner as BilevelLearner
from .learn import LearnResult as LearnResult
from .solve import AbstractOperator as AbstractOperator
from .solve import AbstractProblem as AbstractProblem
from .solve import Box as Box
from .solve import CollocationSolution as CollocationSolution
from .solve import Constraint as Constraint
from .solve import Evaluation as Evaluation
from .solve import GaussNewton as GaussNewton
from .solve import Laplacian as Laplacian
from .solve import LearnDefaults as LearnDefaults
from .solve import OnField as OnField
from .solve import Partial as Partial
from .solve import SecondPartial as SecondPartial
from .solve import SolveDefaults as SolveDefaults
from .solve import SolveHistory as SolveHistory
from .solve import StepRecord as StepRecord
from .solve import error_metrics as error_metrics
from .solve import feature_jets as feature_jets
from .solve import operator_gram as operator_gram
from .sparse import Dense as Dense
from .sparse import Sparse as Sparse
from ._version import __version__ as __version__
