"""Result files: one HDF5 file per run, its schema, and the atomic writer."""

from . import _schema as schema
from ._atomic import atomic_path as atomic_path
from ._data import cache_directory as cache_directory
from ._data import find_data_file as find_data_file
from ._data import source_data_directory as source_data_directory
from ._interrupts import deferred_interrupts as deferred_interrupts
from ._interrupts import terminate_as_interrupt as terminate_as_interrupt
from ._schema import RunFile as RunFile
from ._schema import field_names as field_names
from ._schema import file_kind as file_kind
from ._schema import learn_record as learn_record
from ._schema import read_run as read_run
from ._schema import solve_record as solve_record
from ._store import check_output as check_output
from ._store import check_writable as check_writable
from ._store import write_hdf5 as write_hdf5
from ._store import write_run as write_run
