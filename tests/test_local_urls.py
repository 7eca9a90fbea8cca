"""memory://, sqlite://, file:// and fsspec URLs: what they mean, and what they refuse.

A URL either means exactly one store or raises ConfigurationError (listing the known options
when it names an unknown one), never a silent fallback: credentials in a local URL never become
part of a folder name, an empty SQLite path never becomes an in-memory database by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from kvstore import create_storage
from kvstore.drivers import fs, memory, sqlite
from kvstore.drivers.fs import FSDriver
from kvstore.drivers.memory import MemoryDriver
from kvstore.drivers.sqlite import SQLiteDriver
from kvstore.errors import ConfigurationError

# -- memory:// -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["memory://", "memory:///", "MEMORY://"])
def test_memory_urls(url: str) -> None:
    assert isinstance(memory.from_url(url), MemoryDriver)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("memory://name", "fs+memory://"),
        ("memory:///path", "fs+memory://"),
        ("memory://u:hunter2@", "fs+memory://"),
        ("memory://?size=1", "known options: none"),
        ("memory://#x", "fragment"),
    ],
)
def test_memory_urls_that_name_something_are_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        memory.from_url(url)
    assert words in str(caught.value)
    assert "hunter2" not in str(caught.value)


# -- sqlite:// -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite://", ":memory:"),  # as in SQLAlchemy
        ("sqlite://?table=t", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite:///rel.db", "{cwd}/rel.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("sqlite:////home/me@corp/x.db", "/home/me@corp/x.db"),
        ("sqlite:///50%25.db", "{cwd}/50%.db"),
        ("sqlite:///my%20file.db", "{cwd}/my file.db"),
    ],
)
def test_sqlite_url_paths(
    url: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite.from_url(url).path == path.format(cwd=tmp_path)


def test_sqlite_url_options() -> None:
    driver = sqlite.from_url("sqlite:////tmp/x.db?table=t&busy_timeout=0.5&synchronous=full")
    assert (driver.table, driver.busy_timeout, driver.synchronous) == ("t", 0.5, "FULL")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite:///", "names no database file"),
        ("sqlite:///?table=t", "names no database file"),
        ("sqlite:///x.db?tabel=t", "'tabel'; known options: busy_timeout, synchronous, table"),
        ("sqlite:///x.db?table=a&table=b", "given twice"),
        ("sqlite:///x.db?busy_timeout=nan", "busy_timeout"),
        ("sqlite:///x.db?busy_timeout=soon", "busy_timeout"),
        ("sqlite:///x.db?synchronous", "no value"),
        ("sqlite:///50%.db", "%25"),
        ("sqlite://host/x.db", "no host or user"),
        ("sqlite://u:hunter2@/x.db", "no host or user"),
        ("sqlite://u:hunter2@host/x.db", "no host or user"),
        ("sqlite://u:hun/ter2@host/x.db", "percent-encode"),
        ("sqlite:///x.db#part", "fragment"),
    ],
)
def test_bad_sqlite_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        sqlite.from_url(url)
    assert words in str(caught.value)
    for piece in ("hunter2", "hun", "ter2"):
        assert piece not in str(caught.value)


# -- file:// and fsspec URLs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "root"),
    [
        ("file:///srv/data", "/srv/data"),
        ("FILE:///srv/data/", "/srv/data"),
        ("file:///srv/my%20data", "/srv/my data"),
        ("file:///home/me@corp/data", "/home/me@corp/data"),
        ("fs+file:///srv/data", "/srv/data"),
        ("file:///srv/data?fsync=true", "/srv/data"),
    ],
)
def test_file_urls_name_an_absolute_directory(url: str, root: str) -> None:
    driver = fs.from_url(url)
    assert isinstance(driver, FSDriver)
    assert driver.root == root


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file://user:hunter2@host/dir", "no host, user or password"),
        ("file://user:hunter2@/dir", "no host, user or password"),
        ("file://user:hun/ter2@host/dir", "percent-encode"),
        ("file://host/dir", "no host, user or password"),
        ("file://localhost/dir", "no host, user or password"),
        ("file://./data", "no host, user or password"),
        ("file://", "names no directory"),
        ("file:///dir?fsync=maybe", "fsync"),
        ("file:///dir?mode=0700", "'mode'; known options: fsync"),
        ("fs+memory://user:hunter2@name", "no user or password"),
        ("fs+memory://user:hun/ter2@name", "no user or password"),
        ("fs+memory://name?fsync=true", "no URL options"),
    ],
)
def test_bad_file_and_fsspec_urls_are_refused(
    url: str, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as caught:
        create_storage(url)
    assert words in str(caught.value)
    for piece in ("hunter2", "hun", "ter2"):
        assert piece not in str(caught.value)
    assert os.listdir(tmp_path) == []  # no folder named after the credentials


def test_a_file_url_stores_in_the_directory_it_names(tmp_path: Path) -> None:
    base = tmp_path / "my data"

    async def write() -> None:
        async with create_storage(f"file://{tmp_path}/my%20data?fsync=1") as storage:
            await storage.set("k", 1)

    anyio.run(write)
    assert base.is_dir()
    assert [path.name for path in base.iterdir() if not path.name.startswith(".")] == ["k.kv"]


def test_an_fsspec_memory_url_still_works() -> None:
    driver = fs.from_url("fs+memory://kvstore-test-local-urls")
    assert isinstance(driver, FSDriver)


def test_sqlite_urls_through_create_storage_keep_their_meaning() -> None:
    assert isinstance(create_storage("sqlite://").driver, SQLiteDriver)
