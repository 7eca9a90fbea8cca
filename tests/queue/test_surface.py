"""The queue speaks like kvstore: one URL grammar and set of SQLite defaults, one AgentX home, one
lock backoff, one exact-JSON check, one error root; and it refuses trio where its client cannot
run it, with a typed error."""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio.testing
from eventqueue import QueueUnavailable, ValidationError, create_queue
from eventqueue.backends.sqlite import SQLiteBackend
from eventqueue.errors import AsyncLibraryNotSupported
from eventqueue.factory import backend_from_url, default_queue_path

from kvstore.drivers.sqlite import default_path, from_url
from kvstore.errors import BackendUnavailable, ConfigurationError, PersistenceError
from kvstore.sqlite_common import DEFAULT_SYNCHRONOUS, LONG_WAIT, LockWait
from tests.support.servers import POSTGRESQL_URL, REDIS_URL

pytestmark = pytest.mark.anyio


# -- one URL grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///relative.db",
        "sqlite:///sub/dir/relative.db",
        "sqlite:////tmp/absolute.db",
        "sqlite:///my%20file.db",
        "sqlite:///q.db?synchronous=full",
        "sqlite:///q.db?synchronous=NORMAL&busy_timeout=2.5",
        "sqlite:///q.db?busy_timeout=0",
        "SQLite:///q.db",
    ],
)
def test_a_sqlite_url_means_the_same_file_and_settings_to_kvstore_and_the_queue(url: str) -> None:
    driver = from_url(url)
    backend = backend_from_url(url)
    assert isinstance(backend, SQLiteBackend)
    if driver.in_memory:
        assert backend.path == ":memory:"
    else:
        assert os.path.abspath(backend.path) == driver.path
    assert backend.synchronous == driver.synchronous
    assert backend.busy_timeout == driver.busy_timeout


def test_both_default_to_synchronous_normal_from_one_constant() -> None:
    assert DEFAULT_SYNCHRONOUS == "NORMAL"
    assert from_url("sqlite:///q.db").synchronous == DEFAULT_SYNCHRONOUS
    backend = backend_from_url("sqlite:///q.db")
    assert isinstance(backend, SQLiteBackend)
    assert backend.synchronous == DEFAULT_SYNCHRONOUS
    assert create_queue(":memory:")._backend.synchronous == DEFAULT_SYNCHRONOUS  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///",
        "sqlite:///?synchronous=FULL",
        "sqlite://host/file.db",
        "sqlite://user:pw@/file.db",
        "sqlite:///q.db#fragment",
        "sqlite:///q.db?synchronous=SOMETIMES",
        "sqlite:///q.db?busy_timeout=-1",
        "sqlite:///q.db?busy_timeout=soon",
        "sqlite:///q.db?unknown=1",
        "sqlite:///q.db?synchronous=FULL&synchronous=OFF",
        "sqlite:///bad%zzpercent.db",
    ],
)
def test_a_bad_sqlite_url_is_the_same_error_for_both(url: str) -> None:
    with pytest.raises(ConfigurationError):
        from_url(url)
    with pytest.raises(ConfigurationError):
        create_queue(url=url)


def test_queue_options_stay_and_a_bad_one_is_a_configuration_error() -> None:
    backend = backend_from_url("sqlite:///q.db?poll_interval_ms=5")
    assert isinstance(backend, SQLiteBackend)
    assert backend.poll_interval == 0.005
    for bad in ("0", "-3", "fast", "1.5"):
        with pytest.raises(ConfigurationError):
            backend_from_url(f"sqlite:///q.db?poll_interval_ms={bad}")
    with pytest.raises(ConfigurationError):
        backend_from_url(f"{REDIS_URL}?namespace=has-dash")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///q.db?token=s3cretvalue",
        "redis://:s3cretvalue@127.0.0.1:6379/0?namespace=bad-name",
        "postgresql://root:s3cretvalue@127.0.0.1/test?namespace=1bad",
        "redis://:s3cretvalue@127.0.0.1:99999/0",
        "mysql://root:s3cretvalue@127.0.0.1/test",
    ],
)
def test_no_secret_in_a_url_error(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        create_queue(url=url)
    assert "s3cretvalue" not in str(caught.value)


def test_the_namespace_option_is_not_passed_to_the_client() -> None:
    from eventqueue.backends.redis import RedisBackend

    backend = backend_from_url("redis://127.0.0.1:6379/0?namespace=ns_1&health_check_interval=5")
    assert isinstance(backend, RedisBackend)
    assert backend.namespace == "ns_1"
    assert "namespace" not in backend.url
    assert backend.url.endswith("?health_check_interval=5")


# -- one home ----------------------------------------------------------------------------------


async def test_the_default_file_follows_agentx_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTX_DIR", str(tmp_path / "home"))
    expected = tmp_path / "home" / "data" / "queue.db"
    assert default_queue_path() == expected
    # The storage's default file sits beside it: one home for both.
    assert default_path().parent == expected.parent
    async with create_queue() as queue:
        await queue.publish("t", 1)
    assert expected.is_file()  # its folder was created
    async with create_queue(str(expected)) as queue:
        assert [e.event for e in await queue.recover("t")] == [1]


def test_without_agentx_dir_the_home_is_dot_agentx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AGENTX_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_queue_path() == tmp_path / ".agentx" / "data" / "queue.db"
    assert default_path() == tmp_path / ".agentx" / "data" / "agentx.db"
    monkeypatch.setenv("AGENTX_DIR", "")  # empty counts as unset
    assert default_queue_path() == tmp_path / ".agentx" / "data" / "queue.db"


# -- one lock backoff --------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> Any:
    # trio's mock clock jumps over sleeps: lock waits of seconds run in no real time, and
    # deterministically.
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


async def test_lock_wait_logs_each_retry_and_warns_once_past_a_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("eventqueue")
    start = trio.current_time()
    wait = LockWait(3.0, where="/data/q.db", logger=log)
    retries = 0
    with caplog.at_level(logging.DEBUG, logger="eventqueue"):
        while await wait.wait():
            retries += 1
    assert trio.current_time() - start >= 3.0
    records = [r for r in caplog.records if r.name == "eventqueue"]
    debug = [r for r in records if r.levelno == logging.DEBUG]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len([r for r in debug if "retry" in r.getMessage()]) == retries
    assert len(warnings) == 1
    assert "/data/q.db" in warnings[0].getMessage()
    assert "locked" in warnings[0].getMessage()
    # It backs off: far fewer retries than a millisecond poll over three seconds would make.
    assert 10 < retries < 3.0 / 0.001


async def test_a_short_lock_wait_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    wait = LockWait(LONG_WAIT / 2, where="q.db", logger=logging.getLogger("eventqueue"))
    with caplog.at_level(logging.DEBUG, logger="eventqueue"):
        while await wait.wait():
            pass
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_queue_and_storage_both_wait_out_a_lock_with_the_shared_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "shared.db")
    driver = from_url(f"sqlite:///{path}?busy_timeout=2")
    await driver.set("before", b"1")
    queue = create_queue(url=f"sqlite:///{path}?busy_timeout=2")
    await queue.publish("t", "before")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(QueueUnavailable, match="stayed locked"):
                await queue.publish("t", "blocked")
            with pytest.raises(BackendUnavailable):
                await driver.set("blocked", b"2")
    finally:
        holder.rollback()
        holder.close()
        await queue.close()
        await driver.close()
    for logger in ("eventqueue", "kvstore.sqlite"):
        mine = [r for r in caplog.records if r.name == logger]
        assert any(r.levelno == logging.DEBUG and "retry" in r.getMessage() for r in mine), logger
        assert [r.levelno for r in mine].count(logging.WARNING) == 1, logger


# -- one error root, one exact-JSON check ------------------------------------------------------


def test_queue_unavailable_is_a_storage_backend_unavailable() -> None:
    error = QueueUnavailable("sqlite:q.db stayed locked for 30 s", driver="sqlite", where="q.db")
    assert isinstance(error, BackendUnavailable)
    assert isinstance(error, PersistenceError)
    assert str(error) == "sqlite:q.db stayed locked for 30 s"
    assert (error.driver, error.where) == ("sqlite", "q.db")
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again), again.driver, again.where) == (
        QueueUnavailable,
        str(error),
        "sqlite",
        "q.db",
    )
    refused = AsyncLibraryNotSupported("redis", "trio", "redis.asyncio runs under asyncio only")
    assert str(pickle.loads(pickle.dumps(refused))) == str(refused)
    assert isinstance(refused, NotImplementedError)


async def test_a_bad_event_says_where_and_stays_a_validation_error() -> None:
    async with create_queue(":memory:") as queue:
        with pytest.raises(ValidationError, match=r"event at \['a'\]\[1\]") as caught:
            await queue.publish("t", {"a": [1, float("nan")]})
        assert not isinstance(caught.value, ConfigurationError)
        assert await queue.recover("t") == []


# -- trio where the client allows --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "backend"), [(REDIS_URL, "redis"), (POSTGRESQL_URL, "postgresql")]
)
async def test_asyncio_only_backends_refuse_trio_with_a_typed_error(url: str, backend: str) -> None:
    queue = create_queue(url=url)
    try:
        with pytest.raises(AsyncLibraryNotSupported) as caught:
            await queue.publish("t", 1)
        assert caught.value.backend == backend
        assert caught.value.library == "trio"
        assert "asyncio" in str(caught.value)
        with pytest.raises(AsyncLibraryNotSupported):
            queue.subscribe("t", lambda entry: None)
        with pytest.raises(AsyncLibraryNotSupported):
            queue.consume("t", "c")
    finally:
        await queue.close()
