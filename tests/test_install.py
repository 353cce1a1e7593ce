"""The package as a user gets it: build the wheel of this checkout, install it into a fresh virtual
environment, and run the `gpde` command from an empty directory.

Nothing is downloaded: the wheel is built without build isolation by this interpreter's
setuptools, installed without dependencies, and the new environment sees this environment's
dependencies (numpy, jax, …) through a .pth file. It skips only when this interpreter cannot
build a wheel offline (setuptools older than 70.1 and no `wheel` package: `make setup` installs a
newer setuptools)."""

import importlib.metadata
import os
import shutil
import site
import stat
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpde.io import read_run

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
#: Top-level names that must never land in site-packages (the repository's own top-level folders).
FORBIDDEN_TOP_LEVEL = ("kernels", "problems", "data")
TINY_SOLVE = ["solve", "elliptic", "--n-interior", "25", "--n-boundary", "16", "--grid", "10"]


def _can_build_wheels() -> bool:
    version = tuple(int(part) for part in importlib.metadata.version("setuptools").split(".")[:2])
    if version >= (70, 1):  # bdist_wheel is part of setuptools from 70.1 on
        return True
    try:
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _run(command, cwd, env, timeout=600):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _source_folders() -> list[str]:
    """The repository folders that the packages are built from (gpde/ and the package-dir mapping)."""
    return sorted({"gpde", *SETUPTOOLS.get("package-dir", {}).values()})


class Installed:
    """A wheel of this checkout installed into a fresh virtual environment."""

    def __init__(self, base: Path):
        source = base / "source"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        for folder in _source_folders():
            shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
        dist = base / "dist"
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
              "--quiet", "-w", str(dist), str(source)], cwd=base, env=os.environ.copy())
        (self.wheel,) = dist.glob("gpde-*.whl")
        self.version = self.wheel.name.split("-")[1]

        self.venv = base / "venv"
        _run([sys.executable, "-m", "venv", "--without-pip", str(self.venv)], cwd=base, env=os.environ.copy())
        self.python = self.venv / "bin" / "python"
        _run([sys.executable, "-m", "pip", "--python", str(self.python), "install", "--no-deps", "--no-index",
              "--quiet", str(self.wheel)], cwd=base, env=os.environ.copy())
        purelib = _run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                       cwd=base, env=os.environ.copy()).stdout.strip()
        self.site_packages = Path(purelib)
        # The dependencies: this environment's site-packages, appended to the new one's sys.path
        # (a path line in a .pth file: the .pth files of that folder, such as the editable
        # install of this checkout, are not run).
        dependencies = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()}
        (self.site_packages / "gpde_test_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")

        self.home = base / "home"
        self.cache = base / "cache"
        self.home.mkdir()

    def environment(self) -> dict:
        """The user's environment: this venv first on PATH, a fresh home and cache directory,
        nothing that points at the checkout."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "GPDE_CACHE_DIR", "PYTHONHOME")}
        env.update(PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(self.home),
                   XDG_CACHE_HOME=str(self.cache), MPLCONFIGDIR=str(self.home / "matplotlib"))
        return env

    def gpde(self, *args, cwd: Path, env: dict | None = None):
        return _run([str(self.venv / "bin" / "gpde"), *args], cwd=cwd, env=env or self.environment())


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    if not _can_build_wheels():
        pytest.skip("this interpreter's setuptools cannot build a wheel without downloading "
                    "(needs setuptools >= 70.1 or the wheel package; `make setup` installs it)")
    return Installed(tmp_path_factory.mktemp("install"))


def _empty_directory(tmp_path: Path, name: str = "work") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_wheel_holds_only_gpde_and_its_data(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"gpde", f"gpde-{installed.version}.dist-info"}
    # Every package of the source tree (a folder with __init__.py) is in the wheel.
    mapping = {folder: package for package, folder in SETUPTOOLS.get("package-dir", {}).items()}
    for folder in _source_folders():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder)
            prefix = mapping.get(folder, folder).replace(".", "/")
            assert f"{prefix}/{relative.as_posix()}/__init__.py".replace("/./", "/") in names, (
                f"{init.parent.relative_to(ROOT)} is a package of the source tree but not in the wheel "
                f"(add it to [tool.setuptools] packages)")
    # The shipped reference data.
    data = sorted(p.name for p in (ROOT / "data").iterdir() if p.suffix in (".json", ".npz"))
    assert data, "data/ holds no .json or .npz file"
    for name in data:
        assert f"gpde/data/{name}" in names


def test_site_packages_has_no_top_level_kernels_problems_or_data(installed):
    entries = {p.name for p in installed.site_packages.iterdir()}
    assert "gpde" in entries
    for name in FORBIDDEN_TOP_LEVEL:
        assert name not in entries and f"{name}.py" not in entries
    top_level = (installed.site_packages / f"gpde-{installed.version}.dist-info" / "top_level.txt")
    if top_level.exists():
        assert top_level.read_text().split() == ["gpde"]


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_cli_runs_read_only_from_an_empty_directory(installed, tmp_path):
    """`gpde --version`, `gpde list` and tiny solves from an empty directory, with the installed
    package read-only and a fresh home and cache: nothing is written into site-packages, and the
    Eikonal reference is read from the package, not computed into the cache."""
    package = installed.site_packages / "gpde"
    work = _empty_directory(tmp_path)
    env = {**installed.environment(), "PYTHONDONTWRITEBYTECODE": "1"}
    before = _snapshot(installed.site_packages)
    for path in [package, *package.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        assert installed.gpde("--version", cwd=work, env=env).stdout.strip() == f"gpde {installed.version}"
        listing = installed.gpde("list", cwd=work, env=env).stdout
        installed.gpde(*TINY_SOLVE, "--out", "r.h5", cwd=work, env=env)
        installed.gpde("solve", "eikonal", "--n-interior", "25", "--n-boundary", "12", "--grid", "10",
                       "--steps", "2", "--out", "eikonal.h5", cwd=work, env=env)
    finally:
        for path in [package, *package.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    for problem in ("eikonal", "burgers", "elliptic", "darcy"):
        assert problem in listing
    run = read_run(work / "r.h5")
    assert run.problem == "elliptic" and run.gpde_version == installed.version
    assert (run.config["n_interior"], run.config["n_boundary"], run.config["grid"]) == (25, 16, 10)
    assert all(np.isfinite(run.group_attrs["errors"][name]) for name in ("rms", "linf", "l2_relative"))
    assert read_run(work / "eikonal.h5").problem == "eikonal"
    assert _snapshot(installed.site_packages) == before
    assert not [p for p in installed.cache.rglob("*") if "eikonal" in p.name]
    assert sorted(p.name for p in work.iterdir()) == ["eikonal.h5", "r.h5"]


def test_the_installed_package_is_imported_and_user_files_do_not_shadow_it(installed, tmp_path):
    # `python -c` puts the current directory first on sys.path: files named like the repository's
    # top-level folders must not replace gpde's subpackages.
    work = _empty_directory(tmp_path)
    for name in FORBIDDEN_TOP_LEVEL:
        (work / f"{name}.py").write_text(f"raise RuntimeError('the user file {name}.py was imported')\n")
    script = ("import gpde, gpde.app, gpde.kernels, gpde.problems, gpde.data; "
              "print(gpde.__file__, gpde.__version__, len(gpde.problems.catalogue()))")
    located, version, count = _run([str(installed.python), "-c", script], cwd=work,
                                   env=installed.environment()).stdout.split()
    assert Path(located).is_relative_to(installed.site_packages / "gpde")
    assert version == installed.version and int(count) >= 4
