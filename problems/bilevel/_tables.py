"""The benchmarks' stored optima (JSON tables shipped as package data `gpde.data`): reading them,
and rewriting them (atomically, into the repository's data/ directory) when they are rebuilt."""

import json
from pathlib import Path

from gpde.io import atomic_path, find_data_file, source_data_directory


def read_table(name: str) -> dict | None:
    """The stored table `name` (shipped with gpde, or in the user's cache), or None if absent or
    unreadable."""
    found = find_data_file(name)
    if found is None:
        return None
    try:
        return json.loads(found.read_text())
    except (OSError, ValueError):
        return None


def default_table_path(name: str) -> Path:
    """Where a rebuild writes table `name`: the repository's data/ directory."""
    return source_data_directory() / name


def write_json_atomically(path: str | Path, table: dict) -> None:
    """Write `table` as indented JSON to `path`, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(table, indent=1))
