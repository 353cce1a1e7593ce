import atexit
import shutil
import tempfile

try:
    import jax

    jax.config.update("jax_enable_x64", True)
    # One persistent compilation cache per test process (xdist worker): many tests compile the
    # same program again only because its Python objects are new (a kernel or solver built anew);
    # XLA's own cache key then finds the compiled program. Removed when the process ends.
    _cache = tempfile.mkdtemp(prefix="gpde-tests-jax-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
except ImportError:
    pass
