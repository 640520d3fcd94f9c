"""The installed package holds every package of the checkout: a new one left out of
pyproject.toml works from the repository (pytest's path) and fails on `make demo`."""

import tomllib
from fnmatch import fnmatch

from tests.conftest import REPO


def test_every_package_is_installed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name not in ("tests", "benchmarks"))
    missing = [p for p in packages if not any(fnmatch(p, pattern) for pattern in include)]
    assert not missing, f"add to [tool.setuptools.packages.find] include: {missing}"
