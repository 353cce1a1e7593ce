"""Bilevel kernel-hyperparameter learning with a Gauss-Newton linearized inner step."""

from ._learner import OUTER_LOSSES as OUTER_LOSSES
from ._learner import check_outer_loss as check_outer_loss
from ._learner import BATCH_REDRAWS as BATCH_REDRAWS
from ._learner import check_batch_redraw as check_batch_redraw
from ._learner import BilevelLearner as BilevelLearner
from ._learner import LearnResult as LearnResult
from ._learner import OuterRecord as OuterRecord
from ._learner import linearized_validation_loss as linearized_validation_loss
from ._learner import linearized_validation_residuals as linearized_validation_residuals
from ._learner import optimizer_step as optimizer_step
from ._learner import scalar_hyperparameters as scalar_hyperparameters
