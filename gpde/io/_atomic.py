"""The one way gpde writes a file: into a temporary file beside the target, renamed over it
only when the write has finished. A crash, kill or full disk therefore never leaves a half-written
file and never destroys an existing one; the temporary file is removed on every exit path that
Python sees (exceptions, KeyboardInterrupt, SystemExit)."""

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Mode of written files: mkstemp makes files private (0600); results and data are shared.
FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, copy_of_existing: bool = False) -> Iterator[Path]:
    """Yield a temporary path in `path`'s directory; rename it to `path` when the block ends
    without an exception, remove it otherwise.

    With `copy_of_existing`, the temporary file starts as a copy of `path` (if it exists), for
    writers that append to a file (e.g. a study). Creating the temporary file first also proves,
    before any work, that the directory is writable.
    """
    path = Path(path)
    directory = path.resolve().parent
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(handle)
    temporary = Path(name)
    try:
        if copy_of_existing and path.exists():
            shutil.copyfile(path, temporary)
        yield temporary
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
