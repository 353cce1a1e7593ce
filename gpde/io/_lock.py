"""One writer at a time per output file, and the clean-up of what killed writers left behind.

`locked(path)` holds an exclusive lock on `<path>.lock` while a file is written, and removes the
lock file when it is released. A process killed with SIGKILL cannot clean up; its temporary
files (`atomic_path`'s `.<name>.*.tmp`) stay beside the target. Every gpde write of `path` happens
under this lock, so whoever holds it knows that any such temporary file belongs to a dead writer
and removes it (`remove_stale_temporaries`); the kernel releases a dead process's lock itself.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Exclusive lock for writing `path` (other gpde processes writing it wait)."""
    path = Path(path)
    lock = lock_path(path)
    while True:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.stat(lock).st_ino == os.fstat(handle).st_ino
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(handle)
            raise
        if current:
            break
        # The previous holder removed the lock file after we opened it: lock the new one.
        os.close(handle)
    try:
        remove_stale_temporaries(path)
        yield
    finally:
        # Unlink before unlocking: a waiter that then gets this (unlinked) file sees that it is
        # stale and opens the path again.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(handle)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files that writers of `path` left (call only under `locked`)."""
    removed = []
    directory = path.resolve().parent
    for candidate in directory.glob(f".{glob_escape(path.name)}.*"):
        if candidate.suffix in (".tmp", ".probe") and candidate.is_file():
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
