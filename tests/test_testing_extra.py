"""Without the ``testing`` extra, the suite says which ``pip install`` to run.

A user who installed only the library (the README's first command) and then runs
``python -m kvstore.testing`` gets one line naming the install, not a ``ModuleNotFoundError``
traceback. The extra is hidden from a child interpreter by a ``None`` entry in ``sys.modules``,
which makes its import fail exactly as if it were not installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kvstore.testing.extra import EXTRA_MODULES, INSTALL_HINT

HIDE_AND_RUN = """
import runpy, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = ["kvstore.testing", "memory://"]
runpy.run_module("kvstore.testing", run_name="__main__", alter_sys=True)
"""

HIDE_AND_IMPORT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from kvstore.errors import MissingDependency
try:
    from kvstore.testing import DriverConformance
except MissingDependency as error:
    print(error)
"""


def _run(code: str, hidden: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, hidden],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("hidden", ["hypothesis", "pytest", "pytest_timeout"])
def test_the_command_line_names_the_pip_install_when_the_extra_is_missing(
    hidden: str, tmp_path: Path
) -> None:
    done = _run(HIDE_AND_RUN, hidden, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().endswith(INSTALL_HINT)
    assert hidden.replace("_", "-") in done.stderr
    assert done.stdout == ""


def test_importing_the_suite_without_the_extra_names_the_pip_install(tmp_path: Path) -> None:
    done = _run(HIDE_AND_IMPORT, "hypothesis", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(INSTALL_HINT)
    assert "hypothesis" in done.stdout


def test_the_check_covers_every_package_of_the_extra() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    declared = pyproject["project"]["optional-dependencies"]["testing"]
    names = {re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0] for requirement in declared}
    assert names == set(EXTRA_MODULES.values())
