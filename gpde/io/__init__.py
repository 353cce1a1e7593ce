"""Result files: one HDF5 file per run, its schema, and the atomic writer."""

from ._store import RunFile as RunFile
from ._store import check_writable as check_writable
from ._store import field_names as field_names
from ._store import read_run as read_run
from ._store import write_run as write_run
from ._atomic import atomic_path as atomic_path
from ._data import cache_directory as cache_directory
from ._data import find_data_file as find_data_file
from ._data import source_data_directory as source_data_directory
