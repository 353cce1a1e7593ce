"""Writing the benchmarks' stored optima (data/*.json) so that a killed rebuild never leaves a
half-written table behind."""

import json
import os
import tempfile
from pathlib import Path


def write_json_atomically(path: Path, table: dict) -> None:
    """Write `table` as indented JSON to a temporary file beside `path`, then rename it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(table, out, indent=1)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
