"""Backend-specific promises: URL handling, unreachable servers, a locked SQLite file."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from eventqueue import QueueUnavailable, create_queue
from eventqueue.backends.sqlite import SQLiteBackend
from eventqueue.cursors import encode_seq
from eventqueue.entry import system_clock
from eventqueue.front import EventQueue

from kvstore.errors import ConfigurationError
from tests.support.servers import POSTGRESQL_URL, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@127.0.0.1/test",
        "sqlite://host/file.db",
        "sqlite:///",
        "sqlite:///q.db?synchronous=SOMETIMES",
        "sqlite:///q.db?unknown=1",
        "redis://127.0.0.1:6379/0?namespace=has-dash",
        "postgresql://root@127.0.0.1/test?namespace=1starts_with_digit",
    ],
)
def test_bad_urls_refused_without_io(url: str) -> None:
    with pytest.raises(ConfigurationError):
        create_queue(url=url)


@pytest.mark.parametrize(
    "options",
    [
        {"retention_ms": 0},
        {"retention_ms": 1.5},
        {"cleanup_interval_ms": -1},
        {"clock": 5},
        {"path": ""},
        {"path": 5},
    ],
)
def test_bad_options_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        create_queue(**{"path": ":memory:", **options})  # type: ignore[arg-type]


async def test_sqlite_url_and_default_folder_creation(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "folder" / "q.db"
    async with create_queue(url=f"sqlite:///{target}?synchronous=NORMAL") as queue:
        await queue.publish("t", 1)
    assert target.exists()
    async with create_queue(str(target)) as queue:
        assert [e.event for e in await queue.recover("t")] == [1]


async def test_unreachable_redis_raises_queue_unavailable_without_password() -> None:
    queue = create_queue(url=f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    with pytest.raises(QueueUnavailable) as caught:
        await queue.publish("t", 1)
    assert "s3cret" not in str(caught.value)
    await queue.close()


async def test_unreachable_postgresql_raises_queue_unavailable_without_password() -> None:
    queue = create_queue(url=f"postgresql://root:s3cret@127.0.0.1:{free_port()}/test")
    with pytest.raises(QueueUnavailable) as caught:
        await queue.publish("t", 1)
    assert "s3cret" not in str(caught.value)
    await queue.close()


async def test_postgresql_publish_goes_on_after_the_server_closed_the_pooled_connection(
    postgresql_namespace: str,
) -> None:
    # What a server restart leaves behind: the queue's idle pooled connection, closed by the
    # server. The next operation must not fail on it.
    application = f"eqtest_{secrets.token_hex(6)}"
    queue = create_queue(
        url=f"{POSTGRESQL_URL}?application_name={application}&namespace={postgresql_namespace}"
    )
    async with queue:
        await queue.publish("t", 1)
        with psycopg.connect(POSTGRESQL_URL, autocommit=True) as admin:
            # With a timeout, pg_terminate_backend returns once the server process has exited.
            terminated = admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (application,),
            ).fetchall()
        assert terminated
        assert all(ok for (ok,) in terminated)
        await queue.publish("t", 2)
        assert [entry.event for entry in await queue.recover("t")] == [1, 2]


@pytest.mark.parametrize(
    "url", ["postgresql://root:s3cret@127.0.0.1/test", "redis://:s3cret@127.0.0.1/0", "file:///q.db"]
)
def test_a_url_given_as_the_path_is_refused_without_its_password(url: str) -> None:
    # Taken as a path it would be a SQLite file in a folder named after the scheme.
    with pytest.raises(ConfigurationError, match="url=") as caught:
        create_queue(url)
    assert "s3cret" not in str(caught.value)


async def test_sqlite_locked_past_deadline_is_queue_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "q.db")
    async with create_queue(path) as queue:
        await queue.publish("t", "before")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        backend = SQLiteBackend(path, busy_timeout=0.2)
        queue = EventQueue(backend, retention_ms=1000, cleanup_interval_ms=1000, clock=system_clock)
        try:
            with pytest.raises(QueueUnavailable, match="stayed locked"):
                await queue.publish("t", "blocked")
            # Reads still work while another connection holds the write lock (WAL).
            assert [e.event for e in await queue.recover("t")] == ["before"]
        finally:
            await queue.close()
    finally:
        holder.rollback()
        holder.close()
    async with create_queue(path) as queue:
        assert [e.event for e in await queue.recover("t")] == ["before"]


def test_eventqueue_does_not_import_kvstore_storage() -> None:
    code = (
        "import sys, eventqueue, eventqueue.testing, eventqueue.backends.sqlite;"
        "assert 'kvstore.storage' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


EXITS_WITH_BLOCKED_HANDLER = """
import sys, threading
import anyio
from eventqueue import create_queue

async def main():
    entered = threading.Event()

    def stuck(entry):
        entered.set()
        threading.Event().wait()  # never returns

    async def idle(entry):
        await anyio.sleep_forever()

    # Opened on first use, not by `async with`: the background work still ends with the run.
    queue = create_queue(sys.argv[1], cleanup_interval_ms=1)
    queue.subscribe("t", stuck)
    queue.subscribe("t", idle)
    await queue.publish("t", 1)
    await anyio.to_thread.run_sync(entered.wait)
    if sys.argv[3] == "close":
        await queue.close()

anyio.run(main, backend=sys.argv[2])
print("exited")
"""


@pytest.mark.parametrize("library", ["asyncio", "trio"])
@pytest.mark.parametrize("ending", ["close", "no-close"])
def test_process_exits_despite_timer_and_blocked_handler(
    tmp_path: Path, library: str, ending: str
) -> None:
    """Neither the queue's background tasks nor a handler blocked in its thread keep a process
    alive, whether or not the queue was closed."""
    result = subprocess.run(
        [
            sys.executable,
            "-W",
            "always::ResourceWarning",
            "-c",
            EXITS_WITH_BLOCKED_HANDLER,
            str(tmp_path / "q.db"),
            library,
            ending,
        ],
        capture_output=True,
        text=True,
        timeout=120,  # a guard against hanging forever, not a measurement
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exited"
    # Nothing leaked: no task destroyed while pending, no stream left open.
    assert "Traceback" not in result.stderr, result.stderr
    assert "Warning" not in result.stderr, result.stderr


async def test_sqlite_cached_sequences_follow_other_connections(tmp_path: Path) -> None:
    """A SQLite queue caches each topic's last sequence while no other connection commits
    (``PRAGMA data_version``): another queue's publishes, its retention deleting them and a
    hand-written row must still give the next publish a fresh, greater cursor."""
    path = str(tmp_path / "q.db")
    clock_b = [0]

    def make(clock: Callable[[], int]) -> EventQueue:
        return EventQueue(
            SQLiteBackend(path), retention_ms=1000, cleanup_interval_ms=10**9, clock=clock
        )

    first, second = make(lambda: 10_000), make(lambda: clock_b[0])
    try:
        assert await first.publish("t", "a") == encode_seq(1)
        assert await first.publish("t", "a") == encode_seq(2)  # from the cache
        assert await second.publish_many("t", ["b", "b"]) == [encode_seq(3), encode_seq(4)]
        clock_b[0] = 10_000
        assert await second.cleanup() == 2  # deletes 3 and 4, remembering 4
        assert await first.publish("t", "a") == encode_seq(5)
        hand = sqlite3.connect(path, isolation_level=None)
        try:
            hand.execute("INSERT INTO eventqueue_events VALUES ('t', 9, 10000, x'31')")
        finally:
            hand.close()
        assert await first.publish("t", "a") == encode_seq(10)
        # Single publishes of both, alternating: each finds the other's commit and reads afresh.
        assert await second.publish("t", "b") == encode_seq(11)
        assert await first.publish("t", "a") == encode_seq(12)
        assert await second.publish("t", "b") == encode_seq(13)
        assert await second.publish("t", "b") == encode_seq(14)  # from the cache
        assert [e.cursor for e in await second.recover("t")] == [
            encode_seq(seq) for seq in (1, 2, 5, 9, 10, 11, 12, 13, 14)
        ]
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize(
    "stream_id",
    [b"0-1", b"1764471600123-0", "5-7", b"18446744073709551615-18446744073709551615"],
)
def test_redis_stream_ids_become_fixed_width_cursors_and_back(stream_id: bytes | str) -> None:
    from eventqueue.backends.redis import _to_cursor, _to_id

    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    cursor = _to_cursor(stream_id)
    # 20 digits each side: string order is id order.
    assert cursor == f"{int(ms):020d}-{int(seq):020d}"
    assert _to_id(cursor) == text
