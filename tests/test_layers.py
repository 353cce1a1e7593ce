"""The package's layers, read from the source: kernels ← core (solve, learn, bljes, io, sparse)
← problems ← app; imports point down only, there is no import cycle, and the library does not hide
imports inside functions (except heavy optional dependencies that only some commands need)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Source folder → the package it installs as (pyproject.toml's package-dir mapping).
SOURCES = {"gpde": "gpde", "kernels": "gpde.kernels", "problems": "gpde.problems"}
#: Function-local imports the library may use: heavy dependencies that only some commands need,
#: imported where they are needed so that `gpde --help` and input errors answer at once.
LAZY_ALLOWED = ("jax", "matplotlib", "distributed", "dask")


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The gpde modules an import statement in `module` loads (its target, and each imported name
    that is itself a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in MODULES]
    if node.level:
        base = module.split(".") if _is_package(module) else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target not in MODULES:
        return []
    loaded = [target]
    for alias in node.names:
        if f"{target}.{alias.name}" in MODULES:
            loaded.append(f"{target}.{alias.name}")
    return loaded


def _imports(module: str) -> tuple[list[str], list[tuple[int, str]]]:
    """(gpde modules imported at module level, (line, text) of every function-local import)."""
    tree = ast.parse(MODULES[module].read_text())
    top, local = [], []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            top += _resolve(module, node)
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    local += [(node.lineno, alias.name) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    local.append((node.lineno, "." * node.level + (node.module or "")))
    return top, local


def _layer(module: str) -> int:
    if module.startswith("gpde.kernels"):
        return 0
    if module.startswith("gpde.problems"):
        return 2
    if module.startswith("gpde.app") or module == "gpde.__main__":
        return 3
    return 1  # the core: gpde, gpde.solve, gpde.learn, gpde.bljes, gpde.io, gpde.sparse, gpde._*


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_only(module):
    top, _ = _imports(module)
    upward = [target for target in top if _layer(target) > _layer(module)]
    assert not upward, f"{module} (layer {_layer(module)}) imports a higher layer: {upward}"


def test_no_import_cycle():
    graph = {module: set(_imports(module)[0]) - {module} for module in MODULES}
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            # Importing a package's submodule first runs the package's __init__: not a cycle.
            if module.startswith(target + "."):
                continue
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(MODULES):
        if module not in state:
            visit(module)


def test_no_function_local_imports_in_the_library():
    hidden = []
    for module in sorted(MODULES):
        for line, name in _imports(module)[1]:
            if not name.split(".")[0] in LAZY_ALLOWED:
                hidden.append(f"{MODULES[module].relative_to(ROOT)}:{line}: {name}")
    assert not hidden, "function-local imports (move them to the top of the module):\n" + "\n".join(hidden)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The checks above read real import statements: a core module importing the app is caught."""
    source = "from ..app import main\n"
    node = ast.parse(source).body[0]
    assert _resolve("gpde.solve._solver", node) == ["gpde.app"]
    assert _layer("gpde.app") > _layer("gpde.solve._solver")
