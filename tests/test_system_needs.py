"""Every Debian package the code or the tests need is named in scripts/setup.sh.

setup.sh installs with --no-install-recommends, so a package that only came along on a
developer's machine (poppler-data did: the PDFs' text layer needed it) must fail here first.
"""

from __future__ import annotations

import ast
import glob
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devservices.system_needs import NEEDS, PRESENT_ANYWAY, commands

REPO = Path(__file__).resolve().parents[1]
SETUP = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
SOURCE_DIRS = ("benchmarks", "catalog", "cli", "devservices", "intake", "ocr", "pipeline", "sample_scans", "search",
               "stages", "storage", "tests", "transfer", "web")
RUNNERS = {"run", "Popen", "check_call", "check_output", "call", "which", "_run"}
COMMAND_NAMES = {"cmd", "command", "argv"}


def _packages(block: str) -> set[str]:
    """Package names of a bash array or `+=(...)` block, comments stripped."""
    return {word for line in block.splitlines() for word in line.split("#", 1)[0].split()}


def setup_packages() -> tuple[set[str], set[str]]:
    """(always installed, installed for the tests) by scripts/setup.sh."""
    always = re.search(r"APT_PACKAGES=\((.*?)\n\)", SETUP, re.S)
    tests = re.search(r"APT_PACKAGES\+=\((.*?)\)", SETUP, re.S)
    assert always and tests, "scripts/setup.sh no longer has APT_PACKAGES=( ... ) and APT_PACKAGES+=( ... )"
    return _packages(always.group(1)), _packages(tests.group(1))


def commands_in_source() -> dict[str, str]:
    """Command names the source runs as literals: the first argument of subprocess's functions,
    shutil.which and LocalPostgres._run, or the first item of a list assigned to `cmd`."""
    found = {}
    for folder in SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and any(getattr(t, "id", "") in COMMAND_NAMES for t in node.targets):
                    first = node.value  # cmd = ["runuser", ...]
                elif isinstance(node, ast.Call) and node.args and (
                        node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                ) in RUNNERS:
                    first = node.args[0]
                else:
                    continue
                if isinstance(first, ast.List | ast.Tuple) and first.elts:
                    first = first.elts[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value:
                    found[first.value] = f"{path.relative_to(REPO)}:{node.lineno}"
    return found


def test_every_command_the_source_runs_is_a_known_need():
    found = commands_in_source()
    assert {"tesseract", "pdftotext", "runuser", "pg_ctl"} <= set(found), found  # the scan sees them
    unknown = {c: where for c, where in found.items() if c not in commands() | PRESENT_ANYWAY}
    assert not unknown, f"add these to devservices/system_needs.py NEEDS and scripts/setup.sh: {unknown}"


def test_every_need_is_installed_by_setup_and_nothing_else_is():
    always, tests = setup_packages()
    for need in NEEDS:
        where = always | tests if need.tests_only else always
        assert need.package in where, f"{need.what} ({need.why}) needs {need.package}, not in scripts/setup.sh"
    assert always | tests <= {n.package for n in NEEDS}, \
        f"setup.sh installs what nothing needs: {(always | tests) - {n.package for n in NEEDS}}"


@pytest.mark.skipif(not shutil.which("dpkg"), reason="not a Debian machine")
def test_each_need_comes_from_its_package_on_this_machine():
    for need in NEEDS:
        if need.is_command:
            found = shutil.which(need.what)
            assert found, f"{need.what} is not on PATH: run `make setup`"
            paths = [found, str(Path(found).resolve())]  # a package may ship the link, another its target
        else:
            paths = glob.glob(need.what)
            assert paths, f"{need.what} is missing: run `make setup`"
        # merged /usr: dpkg may have recorded /sbin/x for /usr/sbin/x
        candidates = paths + [p.removeprefix("/usr") for p in paths]
        owners = subprocess.run(["dpkg", "-S", *candidates], capture_output=True, text=True).stdout
        assert re.search(rf"^{re.escape(need.package)}(:\w+)?: ", owners, re.M), \
            f"{need.what} does not come from {need.package} here: {owners.strip() or 'no package'}"
