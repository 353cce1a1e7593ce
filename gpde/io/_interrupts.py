"""Interrupts (Ctrl-C, SIGTERM) as KeyboardInterrupt, never inside the HDF5 library.

`terminate_as_interrupt` makes SIGTERM raise KeyboardInterrupt like Ctrl-C, so that `kill` runs
the same clean-up (temporary and lock files removed) as Ctrl-C. `deferred_interrupts` holds
SIGINT and SIGTERM back while a file is written: an exception raised inside an h5py call can
leave the library's objects half-closed, and a KeyboardInterrupt swallowed by a callback would
let the run end with exit code 0. The interrupt is raised as soon as the block ends, before the
temporary file would be renamed, so the interrupted write leaves the old file in place.

Both are no-ops outside the main thread (Python delivers signals only there).
"""

import contextlib
import signal
import threading
from collections.abc import Iterator

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside the block (the previous handler is restored)."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT / SIGTERM received inside the block raise KeyboardInterrupt when it ends."""
    if not _main_thread():
        yield
        return
    received = []
    previous = {number: signal.signal(number, lambda signum, frame: received.append(signum)) for number in _SIGNALS}
    try:
        yield
    except BaseException as error:
        if received:  # the interrupt wins over the write's own failure
            raise KeyboardInterrupt(signal.Signals(received[0]).name) from error
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt(signal.Signals(received[0]).name)
