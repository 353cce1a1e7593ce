"""The application layer: the `gpde` command, configuration, the solve / learn / study runners,
result analysis and plots. The only layer that imports the problem catalogue."""

from . import _analysis as analysis
from ._cli import main as main
from ._config import LearnConfig as LearnConfig
from ._config import SolveConfig as SolveConfig
from ._config import load_toml as load_toml
from ._config import resolve as resolve
from ._learn_run import LearnRun as LearnRun
from ._learn_run import learning_points as learning_points
from ._learn_run import run_learn as run_learn
from ._learn_run import trainable_filter as trainable_filter
from ._plotting import plot_fields as plot_fields
from ._run import SolveRun as SolveRun
from ._run import build_problem as build_problem
from ._run import collocation_points as collocation_points
from ._run import configured_kernel as configured_kernel
from ._run import held_out_points as held_out_points
from ._run import learned_kernel as learned_kernel
from ._run import run_solve as run_solve
from ._run import uncertainty_names as uncertainty_names
from ._study import ARRAYS as STUDY_ARRAYS
from ._study import RunSpec as RunSpec
from ._study import StudyRun as StudyRun
from ._study import final_regret_table as final_regret_table
from ._study import local_cluster as local_cluster
from ._study import format_table as format_table
from ._study import parse_options as parse_options
from ._study import plan_study as plan_study
from ._study import read_study as read_study
from ._study import run_study as run_study
from ._study import setting_label as setting_label
from ._study_tables import checkpoint_table as checkpoint_table
from ._study_tables import markdown_checkpoints as markdown_checkpoints
from ._study_plots import plot_study as plot_study
