"""Test-run set-up: float64, one JAX compilation cache shared by every process of the run, and JAX's
in-memory caches dropped after each module."""

import atexit
import os
import shutil
import tempfile

import pytest

try:
    import jax
except ImportError:  # the layer and packaging tests run without JAX
    jax = None

#: Environment variable naming the run's compilation cache; set by the first process (the pytest
#: controller under xdist) and inherited by its workers, notebook kernels and CLI subprocesses.
_CACHE_VARIABLE = "GPDE_TESTS_JAX_CACHE"

if jax is not None:
    jax.config.update("jax_enable_x64", True)
    # One persistent compilation cache for the whole test run. Many tests compile a program that
    # another test, another xdist worker, a notebook kernel or a `gpde` subprocess has already
    # compiled: the same solver at the same sizes, built from new Python objects so that no jit
    # cache in memory can find it. XLA's own cache key (the program, its shapes and the compiler
    # flags) then finds the compiled program on disk, so every test still runs exactly the program
    # it would compile itself. The process that created the folder removes it when it ends.
    if _CACHE_VARIABLE not in os.environ:
        os.environ[_CACHE_VARIABLE] = tempfile.mkdtemp(prefix="gpde-tests-jax-cache-")
        atexit.register(shutil.rmtree, os.environ[_CACHE_VARIABLE], ignore_errors=True)
    # JAX reads these in every process it starts in (subprocesses and notebook kernels inherit them).
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ[_CACHE_VARIABLE]
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    # A size limit turns on JAX's file lock around every read and write of the cache (filelock,
    # a test dependency): without it a process may read an entry another is still writing, and
    # then warns and compiles anyway. The limit (8 GB) is far above what tests write: the notebook,
    # install, fault and BLJES-feature tests together wrote 21 MB.
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(8 * 2**30)
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_VARIABLE])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", 8 * 2**30)


@pytest.fixture(autouse=True, scope="module")
def _jax_caches_cleared_after_each_module():
    """Drop JAX's in-memory caches (traced and compiled programs) when a test module ends.

    A test process runs hundreds of tests; without this every compiled program of every earlier
    module stays alive, the process grows to several GB and later tests run measurably slower (a
    full run took 10 % longer). A program needed again later is read back from the persistent
    compilation cache above instead of being compiled anew."""
    yield
    if jax is not None:
        jax.clear_caches()
