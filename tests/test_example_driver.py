"""The README's example driver passes the conformance suite, as a third party's would, and the
command line finds a driver named on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.custom_driver import DictDriver
from kvstore.testing import DriverConformance, DriverFactory

REPO = Path(__file__).resolve().parents[1]


class TestDictDriver(DriverConformance):
    persistent = False

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        return DictDriver


def _run_cli(cwd: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), KVSTORE_HYPOTHESIS_PROFILE="quick")
    return subprocess.run(
        [sys.executable, "-m", "kvstore.testing", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_command_line_loads_a_driver_named_on_it(tmp_path: Path) -> None:
    done = _run_cli(
        tmp_path,
        "dict://",
        "--driver",
        "examples.custom_driver:from_url",
        "--ephemeral",
        "--",
        "-q",
        "-k",
        "exact_bytes or narrow_scan or state_machine",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
    assert not (tmp_path / ".hypothesis").exists(), "Hypothesis files stay out of the cwd"


def test_the_command_line_names_the_clause_that_broke(tmp_path: Path) -> None:
    (tmp_path / "listing_driver.py").write_text(
        "from tests.support.broken_drivers import ListsEverything\n"
        "def from_url(url):\n"
        "    return ListsEverything()\n"
    )
    done = _run_cli(
        tmp_path, "listing://", "--driver", "listing_driver:from_url", "--", "-q", "-k", "narrow"
    )
    assert done.returncode == 1
    assert "contract clauses broken" in done.stdout
    assert "keys, items and clear of a narrow prefix cost what its matches cost" in done.stdout
