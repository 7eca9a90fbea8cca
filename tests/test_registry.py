"""URL schemes reach their drivers, and a missing extra says what to install."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kvstore.registry import registered_schemes

# Each driver module with its client library hidden, as if its extra were not installed.
# (driver module, extra, URL, hidden client modules)
EXTRAS = [
    ("redis", "redis", "redis://127.0.0.1", ["redis"]),
    ("redis_cluster", "redis", "redis+cluster://127.0.0.1:7000", ["redis"]),
    ("postgresql", "postgresql", "postgresql://127.0.0.1/test", ["psycopg"]),
    ("mysql", "mysql", "mysql://root@127.0.0.1/test", ["pymysql"]),
    ("mongodb", "mongodb", "mongodb://127.0.0.1", ["pymongo", "bson"]),
]


@pytest.mark.parametrize(
    ("module", "extra", "url", "hidden"), EXTRAS, ids=[row[0] for row in EXTRAS]
)
def test_a_missing_extra_names_the_pip_install(
    module: str, extra: str, url: str, hidden: list[str]
) -> None:
    code = (
        "import sys\n"
        f"for name in {hidden!r}: sys.modules[name] = None\n"
        "from kvstore import MissingDependency, create_storage\n"
        "try:\n"
        f"    import kvstore.drivers.{module}\n"
        "except MissingDependency as error:\n"
        "    print(error)\n"
        "try:\n"
        f"    create_storage({url!r})\n"
        "except MissingDependency as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout + result.stderr
    for line in lines:
        assert f"pip install 'agentx-persistence[{extra}]'" in line


def test_other_drivers_import_without_any_extra() -> None:
    hidden = sorted({name for *_, names in EXTRAS for name in names})
    code = (
        "import sys\n"
        f"for name in {hidden!r}: sys.modules[name] = None\n"
        "import kvstore.drivers.memory, kvstore.drivers.sqlite, kvstore.drivers.fs\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_every_built_in_scheme_is_listed() -> None:
    expected = {
        "memory",
        "sqlite",
        "file",
        "redis",
        "rediss",
        "redis+cluster",
        "postgresql",
        "postgres",
        "mysql",
        "mariadb",
        "mongodb",
        "mongodb+srv",
    }
    assert expected <= set(registered_schemes())


def test_a_registered_scheme_reaches_its_factory() -> None:
    from kvstore import create_storage, register_driver
    from kvstore.drivers.memory import MemoryDriver

    made: list[str] = []

    def factory(url: str) -> MemoryDriver:
        made.append(url)
        return MemoryDriver()

    register_driver("test-scheme", factory)
    storage = create_storage("test-scheme://anything")
    assert made == ["test-scheme://anything"]
    assert isinstance(storage.driver, MemoryDriver)
    assert "test-scheme" in registered_schemes()


def test_installed_plugins_are_scanned_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from kvstore import registry

    scans: list[int] = []
    scan = registry._scan_plugins

    def counted() -> dict[str, object]:
        scans.append(1)
        return scan()  # type: ignore[return-value]

    # A fresh process's state: nothing scanned, nothing resolved yet.
    monkeypatch.setattr(registry, "_scan_plugins", counted)
    monkeypatch.setattr(registry, "_plugins", None)
    monkeypatch.setattr(registry, "_resolved", {})
    first = registry.driver_from_url("memory://")
    second = registry.driver_from_url("memory://")
    registry.driver_from_url("sqlite://")
    assert type(first) is type(second)
    assert scans == [1]


def test_a_registered_scheme_overrides_a_resolved_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from kvstore import registry
    from kvstore.drivers.memory import MemoryDriver, memory_driver
    from kvstore.drivers.sqlite import SQLiteDriver

    monkeypatch.setattr(registry, "_registered", {})
    assert isinstance(registry.driver_from_url("sqlite://"), SQLiteDriver)  # now resolved
    made: list[str] = []

    def factory(url: str) -> MemoryDriver:
        made.append(url)
        return memory_driver()

    registry.register_driver("SQLite", factory)
    assert isinstance(registry.driver_from_url("sqlite://"), MemoryDriver)
    assert made == ["sqlite://"]
