"""The README's example driver passes the conformance suite, as a third party's would, and the
command line finds a driver named on it. The README's opt-in to conditional writes, on the same
driver, passes the conditional-write clauses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from examples.custom_driver import DictDriver
from kvstore.conditional import Action, Change, Versioned, new_version
from kvstore.driver import conflict
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.conditional_clauses import ConditionalClauses
from kvstore.testing.conditional_races import ConditionalRaceClauses
from kvstore.testing.conditional_support import SKIP_REASON

REPO = Path(__file__).resolve().parents[1]


class TestDictDriver(DriverConformance):
    persistent = False

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        return DictDriver


class VersionedDictDriver(DictDriver):
    """The README's opt-in: a version per value, a versioned read, and an atomic commit."""

    conditional_writes = True

    def __init__(self) -> None:
        super().__init__()
        self._versions: dict[str, int] = {}

    async def set(self, key: str, value: bytes) -> None:
        await super().set(key, value)
        self._versions[key] = new_version()  # every write, conditional or not

    async def delete(self, key: str) -> None:
        await super().delete(key)
        self._versions.pop(key, None)  # the version goes with the value

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        value = await self.get(key)
        return None if value is None else Versioned(value, self._versions[key])

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        self.ensure_open()
        # Nothing below awaits, so no other task runs between the checks and the writes.
        failing = [c.key for c in changes if not c.holds_for(self._versions.get(c.key))]
        if failing:
            raise conflict(failing)  # and write nothing
        versions: list[int | None] = []
        for change in changes:
            if change.action is Action.WRITE:
                assert change.value is not None
                await self.set(change.key, change.value)
                versions.append(self._versions[change.key])
            else:
                if change.action is Action.DELETE:
                    await self.delete(change.key)
                versions.append(None)
        return versions


class TestVersionedDictDriver(ConditionalClauses, ConditionalRaceClauses):
    """Only the conditional-write clauses: the rest of the suite is TestDictDriver's."""

    persistent = False

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def batch_path(self) -> str:
        return "native"

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        return VersionedDictDriver

    @pytest.fixture
    def make_driver(self) -> DriverFactory:
        return VersionedDictDriver

    @pytest.fixture
    def make_native_driver(self) -> DriverFactory:
        return VersionedDictDriver


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
        "-rs",
        "-k",
        "exact_bytes or narrow_scan or state_machine or create_writes or every_call_is_refused",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
    # The example has no conditional writes: their clauses skip, saying why.
    assert SKIP_REASON in done.stdout.replace("\n", " ")
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
