"""Test-run set-up: XLA's quickest backend optimization level, float64, a persistent JAX
compilation cache per test process, and JAX's in-memory caches dropped after each module."""

import atexit
import os
import shutil
import tempfile

import pytest

#: The tests solve tiny problems, so most of their time is XLA compiling programs: at backend
#: optimization level 0 the compiler skips LLVM's optimization passes and compiles 30-45 % faster,
#: while the programs compute the same floating-point operations (no fast-math at any level).
#: Measured 2026-11-30 on one core: bljes_features + benchmarks + uncertainty + cli + solver tests
#: 731 → 532 s, the learning notebook 216 → 157 s; only long-running loops lose (the sparse
#: solver's kriging evaluation with a full pattern, 20 → 55 s, which the sparse tests therefore
#: run on coarse grids). Set before JAX starts its CPU backend, and inherited by every process the
#: tests start (CLI and fault-injection children, notebook kernels, Dask workers).
QUICK_COMPILE_FLAG = "--xla_backend_optimization_level=0"
if QUICK_COMPILE_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE_FLAG}".strip()

try:
    import jax
except ImportError:  # the layer and packaging tests run without JAX
    jax = None

if jax is not None:
    jax.config.update("jax_enable_x64", True)
    # One persistent compilation cache per test process (xdist worker): many tests compile the
    # same program again only because its Python objects are new (a kernel or solver built anew);
    # XLA's own cache key then finds the compiled program. Removed when the process ends. (One
    # cache shared by all processes of the run, locked through filelock, made the whole run slower
    # on two cores: the workers waited.)
    _cache = tempfile.mkdtemp(prefix="gpde-tests-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # The same cache for the processes this one starts (CLI and fault-injection children, Dask
    # workers): they compile the programs this process has compiled, and read them back instead.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


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


#: Test files whose tests take a minute or more each (notebooks run end to end; the package is
#: built and installed). They run first: with `pytest -n 2` the last test a worker gets decides when
#: the run ends, and a minute-long test handed out last can leave the other worker idle for that
#: minute (longest-first is the classic remedy for this scheduling problem).
LONGEST_FIRST = ("test_notebooks.py", "test_install.py")


def pytest_collection_modifyitems(items):
    """Run the files of LONGEST_FIRST before all others, each file's tests kept together and in order."""
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other test keeps its collected order
