"""Helpers shared by several test files: running the benchmark scripts and reading their tables,
and the finite-difference reference for operator Gram blocks.

Imported as `helpers` (pytest puts tests/ on sys.path, there is no package)."""

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gpde import Evaluation, Laplacian, Partial, SecondPartial

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


# --------------------------------------------------------------------------------------------
# Benchmark scripts and their markdown tables
# --------------------------------------------------------------------------------------------


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as a module (its `main(argv)` runs it in this process). A fresh module
    each call; scripts that start workers run them from the script's file (`__file__`)."""
    path = BENCHMARKS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every markdown table in `text`: a list of rows (header first, the |---| line dropped), each
    row the list of its stripped cells."""
    tables, current = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            cells = [cell.strip() for cell in line[1:-1].split("|")]
            if all(set(cell) <= set("-: ") and cell for cell in cells):
                continue  # the separator line
            if current is None:
                current = []
                tables.append(current)
            current.append(cells)
        else:
            current = None
    return tables


def table_with_header(text: str, first_cell: str) -> list[list[str]]:
    """The rows below the header of the one table in `text` whose first header cell starts with
    `first_cell`."""
    found = [table for table in markdown_tables(text) if table[0][0].startswith(first_cell)]
    assert len(found) == 1, f"expected one table headed '{first_cell}…', found {len(found)} in:\n{text}"
    return found[0][1:]


def number(cell: str) -> float:
    """The number in a table cell ('1.2e-03', '**0.113**', '7 (max 20, not conv.)' → 7.0); fails
    the test on anything that is not a finite number."""
    value = float(cell.strip("* ").split()[0])
    assert math.isfinite(value), f"non-finite table entry {cell!r}"
    return value


# --------------------------------------------------------------------------------------------
# Operator Gram blocks by finite differences (2-D inputs)
# --------------------------------------------------------------------------------------------

# Stencil offsets: the 3×3 grid {−h, 0, h}² around a point, numbered u = 3 (i0 + 1) + (i1 + 1).
STENCIL_OFFSETS = np.array([(i0, i1) for i0 in (-1, 0, 1) for i1 in (-1, 0, 1)], dtype=float)


def stencil_weights(operator, h: float) -> np.ndarray:
    """Central-difference weights (9,) of `operator` on the 3×3 stencil (second order accurate)."""
    w = np.zeros((3, 3))  # w[i0 + 1, i1 + 1]
    e = [np.array([1, 0]), np.array([0, 1])]

    def add_first(i):
        w[tuple(1 + e[i])] += 1 / (2 * h)
        w[tuple(1 - e[i])] -= 1 / (2 * h)

    def add_second(i, j):
        if i == j:
            w[tuple(1 + e[i])] += 1 / h**2
            w[tuple(1 - e[i])] += 1 / h**2
            w[1, 1] -= 2 / h**2
        else:
            for si in (1, -1):
                for sj in (1, -1):
                    w[tuple(1 + si * e[i] + sj * e[j])] += si * sj / (4 * h**2)

    if isinstance(operator, Evaluation):
        w[1, 1] = 1.0
    elif isinstance(operator, Partial):
        add_first(operator.index)
    elif isinstance(operator, SecondPartial):
        add_second(operator.first, operator.second)
    elif isinstance(operator, Laplacian):
        for i in operator.coordinates if operator.coordinates is not None else (0, 1):
            add_second(i, i)
    else:
        raise AssertionError(f"no stencil for {operator!r}")
    return w.ravel()


@eqx.filter_jit
def _stencil_kernel_matrix(kernel, x, y, h):
    """K[a, u, b, v] = k(x_a + h·offset_u, y_b + h·offset_v), the plain kernel function."""
    offsets = h * jnp.asarray(STENCIL_OFFSETS)
    xs = (x[:, None, :] + offsets[None]).reshape(-1, 2)
    ys = (y[:, None, :] + offsets[None]).reshape(-1, 2)
    matrix = jax.vmap(lambda a: jax.vmap(lambda b: kernel(a, b))(ys))(xs)
    return matrix.reshape(x.shape[0], 9, y.shape[0], 9)


def finite_difference_gram(kernel, operators_x, x, y, h: float, operators_y=None) -> np.ndarray:
    """out[j, l, a, b] ≈ L_jˣ L_lʸ k(x_a, y_b) by nested central differences of the kernel
    function (`operators_y` defaults to `operators_x`)."""
    operators_y = operators_x if operators_y is None else operators_y
    matrix = np.asarray(_stencil_kernel_matrix(kernel, x, y, h))
    left = np.stack([stencil_weights(op, h) for op in operators_x])  # (m, 9)
    right = np.stack([stencil_weights(op, h) for op in operators_y])
    return np.einsum("ju,aubv,lv->jlab", left, matrix, right)


def paired_points(seed: int, nx: int, ny: int, shared: int, low: float = 0.0, high: float = 1.0):
    """x (nx, 2) and y (ny, 2) uniform in [low, high]²; the first `shared` y points coincide with x
    points (the r = 0 diagonal, where kernels need their safe norm)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, (nx, 2))
    y = np.concatenate([x[:shared], rng.uniform(low, high, (ny - shared, 2))])
    return jnp.asarray(x), jnp.asarray(y)
