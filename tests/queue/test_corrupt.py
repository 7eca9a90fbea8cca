"""A stored event the queue cannot decode never stops its topic, and is always reported.

Each backend's rows are corrupted directly in its storage (a ``sqlite3`` INSERT, a Redis
``XADD`` with a garbage or missing field, a PostgreSQL INSERT past the counter), as another tool,
a bug or bit rot would. Then: ``recover`` returns every good event and reports the bad one
(typed, through ``on_corrupt``, and in an ERROR record), ``consume`` and subscribers move past it
in order, and publishing goes on. Damaged state around the events (a consumer's stored cursor,
SQLite's counter, Redis's retention index) stops nothing either.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
import redis
from eventqueue import CorruptEvent, EventQueue, QueueEntry, create_queue
from eventqueue.decoding import COLUMNS_FROM
from eventqueue.testing import DEADLINE, Collector, FakeClock, QueueFactory

from tests.support.servers import POSTGRESQL_URL, REDIS_URL

pytestmark = pytest.mark.anyio

Corrupt = Callable[[str], None]
"""Appends one undecodable row to a topic, directly in the backend's storage."""

SpoilCursor = Callable[[str, str], None]
"""Overwrites a consumer's stored acked cursor in a topic with a value that is no cursor."""


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Both async libraries; the asyncio-only backends' classes override this."""
    return str(request.param)


def _corrupt_records(caplog: pytest.LogCaptureFixture) -> list[CorruptEvent]:
    """The CorruptEvents carried by ERROR records of the ``eventqueue`` logger."""
    found = []
    for record in caplog.records:
        if record.name == "eventqueue" and record.levelno == logging.ERROR and record.exc_info:
            exc = record.exc_info[1]
            if isinstance(exc, CorruptEvent):
                assert repr(exc.topic) in record.getMessage()
                assert exc.cursor in record.getMessage()
                found.append(exc)
    return found


class _Handlers:
    """An async and a sync subscriber, each recording what it receives."""

    def __init__(self) -> None:
        self.async_side = Collector()
        self.sync_events: list[Any] = []
        self._sync_changed = threading.Condition()

    def sync_handler(self, entry: QueueEntry) -> None:
        with self._sync_changed:
            self.sync_events.append(entry.event)
            self._sync_changed.notify_all()

    async def wait_sync(self, count: int) -> list[Any]:
        def arrived() -> bool:
            with self._sync_changed:
                return self._sync_changed.wait_for(lambda: len(self.sync_events) >= count, DEADLINE)

        # The handler runs in its own thread: wait for it in a worker thread, bounded.
        assert await anyio.to_thread.run_sync(arrived)
        return self.sync_events


class CorruptRowContract:
    """The promises, run against each backend's ``queue_factory`` and ``corrupt`` fixtures."""

    @pytest.fixture
    def queue_factory(self) -> QueueFactory:
        raise NotImplementedError

    @pytest.fixture
    def corrupt(self) -> Corrupt:
        raise NotImplementedError

    @pytest.fixture
    def spoil_cursor(self) -> SpoilCursor:
        raise NotImplementedError

    async def test_a_corrupt_acked_cursor_replays_instead_of_stalling(
        self,
        queue_factory: QueueFactory,
        spoil_cursor: SpoilCursor,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Promise: an unreadable stored ack reads as none (logged); the next ack replaces it."""
        async with queue_factory() as queue:
            cursors = await queue.publish_many("t", [0, 1, 2])
            await queue.ack("c", "t", cursors[1])
            spoil_cursor("c", "t")
            with caplog.at_level(logging.ERROR, logger="eventqueue"):
                assert await queue.get_cursor("c", "t") is None
                consumer = queue.consume("t", "c")
                with anyio.fail_after(DEADLINE):
                    replayed = [(await anext(consumer)).event for _ in range(3)]
                await consumer.aclose()  # type: ignore[attr-defined]
            assert replayed == [0, 1, 2]  # at least once: duplicates, never a loss
            messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert any("'c'" in m and "'t'" in m and "cursor is corrupt" in m for m in messages)
            await queue.ack("c", "t", cursors[0])
            assert await queue.get_cursor("c", "t") == cursors[0]
            await queue.ack("c", "t", cursors[2])
            assert await queue.get_cursor("c", "t") == cursors[2]

    async def _good_bad_good(self, queue: EventQueue, corrupt: Corrupt) -> CorruptEvent:
        """Publish 0..2, store a bad row, publish 3..5; return the bad row's report."""
        await queue.publish_many("t", [0, 1, 2])
        corrupt("t")
        await queue.publish("t", 3)
        await queue.publish_many("t", [4, 5])
        found: list[CorruptEvent] = []
        await queue.recover("t", on_corrupt=found.append)
        assert len(found) == 1
        return found[0]

    async def test_recover_returns_every_good_event_and_reports_the_bad_one(
        self, queue_factory: QueueFactory, corrupt: Corrupt, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Promise: recover skips a corrupt row, reports it typed and logged, returns the rest."""
        async with queue_factory() as queue:
            with caplog.at_level(logging.ERROR, logger="eventqueue"):
                bad = await self._good_bad_good(queue, corrupt)
                entries = await queue.recover("t")
            assert [e.event for e in entries] == [0, 1, 2, 3, 4, 5]
            cursors = [e.cursor for e in entries]
            assert cursors == sorted(cursors)
            assert bad.topic == "t"
            assert cursors[2] < bad.cursor < cursors[3]
            assert bad.reason
            assert bad.reason in str(bad)
            logged = _corrupt_records(caplog)
            assert [exc.cursor for exc in logged] == [bad.cursor, bad.cursor]  # two recovers
            # Reading from the bad cursor on, or with a limit, counts only good events.
            assert [e.event for e in await queue.recover("t", bad.cursor)] == [3, 4, 5]
            assert [e.event for e in await queue.recover("t", cursors[1], 2)] == [2, 3]

    async def test_a_long_page_with_a_bad_row_returns_every_good_event(
        self, queue_factory: QueueFactory, corrupt: Corrupt
    ) -> None:
        """Promise: a page long enough for the column-by-column decoding keeps the same rules."""
        async with queue_factory() as queue:
            before = await queue.publish_many("t", list(range(COLUMNS_FROM)))
            corrupt("t")
            after = await queue.publish_many("t", list(range(COLUMNS_FROM, 2 * COLUMNS_FROM)))
            found: list[CorruptEvent] = []
            entries = await queue.recover("t", on_corrupt=found.append)
            assert [e.event for e in entries] == list(range(2 * COLUMNS_FROM))
            assert [e.cursor for e in entries] == before + after
            assert len(found) == 1
            assert before[-1] < found[0].cursor < after[0]
            # A clean long page decodes to exactly the entries read one at a time.
            clean = await queue.recover("t", found[0].cursor)
            one_by_one: list[QueueEntry] = []
            cursor = found[0].cursor
            for _ in after:
                [entry] = await queue.recover("t", cursor, 1)
                one_by_one.append(entry)
                cursor = entry.cursor
            assert clean == one_by_one
            assert [e.cursor for e in clean] == after
            assert all(type(e) is QueueEntry for e in clean)

    async def test_recover_raises_when_on_corrupt_raises(
        self, queue_factory: QueueFactory, corrupt: Corrupt
    ) -> None:
        """Promise: a strict caller stops at the bad row, then reads on past its cursor."""

        async def strict(bad: CorruptEvent) -> None:
            raise bad

        async with queue_factory() as queue:
            bad = await self._good_bad_good(queue, corrupt)
            with pytest.raises(CorruptEvent) as raised:
                await queue.recover("t", on_corrupt=strict)
            assert raised.value.cursor == bad.cursor
            assert [e.event for e in await queue.recover("t", raised.value.cursor)] == [3, 4, 5]

    async def test_subscribers_receive_every_later_event(
        self, queue_factory: QueueFactory, corrupt: Corrupt, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Promise: live delivery logs the bad row once and goes on, in order, for everyone."""
        async with queue_factory() as queue:
            handlers = _Handlers()
            with caplog.at_level(logging.ERROR, logger="eventqueue"):
                await queue.subscribe("t", handlers.async_side).ready()
                await queue.subscribe("t", handlers.sync_handler).ready()
                await queue.publish_many("t", [0, 1])
                await handlers.async_side.wait_for(2)
                corrupt("t")
                for i in range(2, 6):
                    await queue.publish("t", i)
                assert [e.event for e in await handlers.async_side.wait_for(6)] == list(range(6))
                assert await handlers.wait_sync(6) == list(range(6))
                corrupt("t")
                await queue.publish("t", 6)
                assert (await handlers.async_side.wait_for(7))[-1].event == 6
                assert (await handlers.wait_sync(7))[-1] == 6
            logged = _corrupt_records(caplog)
            assert len(logged) == 2  # once per bad row, not once per subscriber
            assert all(exc.topic == "t" for exc in logged)
            good = [e.cursor for e in handlers.async_side.entries]
            assert good[1] < logged[0].cursor < good[2]
            assert good[5] < logged[1].cursor < good[6]
            assert len(handlers.async_side.entries) == 7
            assert len(handlers.sync_events) == 7

    async def test_consume_moves_past_bad_rows_in_replay_and_live(
        self, queue_factory: QueueFactory, corrupt: Corrupt, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Promise: consume yields every good event in order and reports each bad row once."""
        async with queue_factory() as queue:
            found: list[CorruptEvent] = []
            with caplog.at_level(logging.ERROR, logger="eventqueue"):
                await queue.publish("t", 0)
                corrupt("t")
                await queue.publish("t", 1)
                consumer = queue.consume("t", "c", on_corrupt=found.append)
                with anyio.fail_after(DEADLINE):
                    replayed = [await anext(consumer) for _ in range(2)]
                    corrupt("t")  # while the consumer follows live
                    await queue.publish("t", 2)
                    live = await anext(consumer)
                await consumer.aclose()  # type: ignore[attr-defined]
            assert [e.event for e in [*replayed, live]] == [0, 1, 2]
            assert len(found) == 2
            assert replayed[0].cursor < found[0].cursor < replayed[1].cursor
            assert replayed[1].cursor < found[1].cursor < live.cursor
            assert {exc.cursor for exc in _corrupt_records(caplog)} == {e.cursor for e in found}

    async def test_strict_consumer_acks_past_the_bad_row_and_resumes(
        self, queue_factory: QueueFactory, corrupt: Corrupt
    ) -> None:
        """Promise: an on_corrupt that raises ends consume; acking its cursor skips the row."""

        def strict(bad: CorruptEvent) -> None:
            raise bad

        async with queue_factory() as queue:
            first = await queue.publish("t", 0)
            corrupt("t")
            await queue.publish("t", 1)
            await queue.ack("c", "t", first)
            consumer = queue.consume("t", "c", on_corrupt=strict)
            with anyio.fail_after(DEADLINE):
                with pytest.raises(CorruptEvent) as raised:
                    await anext(consumer)
            await queue.ack("c", "t", raised.value.cursor)
            again = queue.consume("t", "c", on_corrupt=strict)
            with anyio.fail_after(DEADLINE):
                assert (await anext(again)).event == 1
            await again.aclose()  # type: ignore[attr-defined]


class TestSQLite(CorruptRowContract):
    @pytest.fixture
    def path(self, tmp_path: Path) -> str:
        return str(tmp_path / "queue.db")

    @pytest.fixture
    def queue_factory(self, path: str) -> QueueFactory:
        return lambda **options: create_queue(path, **options)

    @pytest.fixture(
        params=[
            ("not JSON", b"\xff\x00"),
            ("truncated JSON", b'{"type": "te'),
            ("a TEXT value, even one that parses", '{"looks": "fine"}'),
            ("an INTEGER value", 5),
            ("a TEXT timestamp", b"1"),
        ],
        ids=lambda param: param[0],
    )
    def corrupt(self, path: str, request: pytest.FixtureRequest) -> Iterator[Corrupt]:
        kind, value = request.param
        timestamp: object = "soon" if "timestamp" in kind else 0
        db = sqlite3.connect(path, isolation_level=None, timeout=DEADLINE)

        def insert(topic: str) -> None:
            db.execute(
                "INSERT INTO eventqueue_events (topic, seq, ts, event)"
                " SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3 FROM eventqueue_events"
                " WHERE topic = ?1",
                (topic, timestamp, value),
            )

        yield insert
        db.close()

    @pytest.fixture
    def spoil_cursor(self, path: str) -> SpoilCursor:
        def spoil(consumer: str, topic: str) -> None:
            db = sqlite3.connect(path, isolation_level=None, timeout=DEADLINE)
            try:
                db.execute(
                    "UPDATE eventqueue_cursors SET seq = 'garbage', updated_at = 'later'"
                    " WHERE consumer = ? AND topic = ?",
                    (consumer, topic),
                )
            finally:
                db.close()

        return spoil

    async def test_a_corrupt_counter_or_seq_never_reuses_a_cursor(self, path: str) -> None:
        """Promise: hand-edited counters and seqs stop neither publish nor retention's memory."""
        clock = FakeClock(10_000)
        async with create_queue(path, clock=clock, retention_ms=1_000) as queue:
            first = await queue.publish_many("t", [1, 2])
            db = sqlite3.connect(path, isolation_level=None, timeout=DEADLINE)
            try:
                db.execute("INSERT INTO eventqueue_topics VALUES ('t', 'garbage')")
                db.execute("INSERT INTO eventqueue_events VALUES ('t', 'abc', 0, x'31')")
            finally:
                db.close()
            second = await queue.publish("t", 3)
            assert second > first[-1]
            clock.now = 20_000
            await queue.cleanup()  # deletes every event, the hand-made one included
            assert await queue.recover("t") == []
            third = await queue.publish("t", 4)
            assert third > second
            assert [e.event for e in await queue.recover("t")] == [4]

    async def test_rows_without_an_integer_cursor_are_never_read(self, path: str) -> None:
        """Promise: hand-made rows whose seq is TEXT, BLOB or REAL stop neither publish nor reads.

        They have no cursor a reader could step past, so they are not events of this queue.
        """
        async with create_queue(path) as queue:
            await queue.publish("t", 1)
            db = sqlite3.connect(path, isolation_level=None, timeout=DEADLINE)
            try:
                for seq in ("abc", b"\x01", 1.5, 9.3e18):
                    db.execute(
                        "INSERT INTO eventqueue_events (topic, seq, ts, event) VALUES (?, ?, 0, ?)",
                        ("t", seq, b"1"),
                    )
            finally:
                db.close()
            await queue.publish("t", 2)
            assert [e.event for e in await queue.recover("t")] == [1, 2]


class TestRedis(CorruptRowContract):
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"  # redis.asyncio runs under asyncio only

    @pytest.fixture
    def queue_factory(self, redis_namespace: str) -> QueueFactory:
        url = f"{REDIS_URL}?namespace={redis_namespace}"
        return lambda **options: create_queue(url=url, **options)

    @pytest.fixture(
        params=[
            ("not JSON", {"t": b"0", "e": b"\xff\x00"}),
            ("no event field", {"t": b"0", "x": b"1"}),
            ("no timestamp field", {"e": b"1"}),
            ("a timestamp that is not a number", {"t": b"soon", "e": b"1"}),
        ],
        ids=lambda param: param[0],
    )
    def corrupt(self, redis_namespace: str, request: pytest.FixtureRequest) -> Iterator[Corrupt]:
        _, fields = request.param
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)

        def add(topic: str) -> None:
            client.xadd(f"{redis_namespace}:stream:{topic}".encode(), fields)

        yield add
        client.close()

    async def test_fields_in_another_order_or_beside_others_are_read_by_name(
        self, queue_factory: QueueFactory, redis_namespace: str
    ) -> None:
        """Promise: an entry added by another tool is read by its fields' names, as redis-py
        reads them, whatever their order and whatever else the entry holds; on a long page
        (decoded column by column) and on a short one."""
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            async with queue_factory() as queue:
                before = await queue.publish_many("t", list(range(COLUMNS_FROM)))
                stream = f"{redis_namespace}:stream:t".encode()
                client.xadd(stream, {"e": b"100", "t": b"7"})
                client.xadd(stream, {"t": b"8", "e": b"101", "note": b"added by hand"})
                found: list[CorruptEvent] = []
                entries = await queue.recover("t", on_corrupt=found.append)
                assert [e.event for e in entries] == [*range(COLUMNS_FROM), 100, 101]
                assert [e.timestamp for e in entries[-2:]] == [7, 8]
                assert [e.cursor for e in entries[:COLUMNS_FROM]] == before
                short = await queue.recover("t", before[-1], on_corrupt=found.append)
                assert short == entries[COLUMNS_FROM:]
                assert found == []
        finally:
            client.close()

    @pytest.fixture
    def spoil_cursor(self, redis_namespace: str) -> Iterator[SpoilCursor]:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)

        def spoil(consumer: str, topic: str) -> None:
            field = consumer.encode() + b"\0" + topic.encode()
            client.hset(f"{redis_namespace}:cursors:", field, b"\xffgarbage")

        yield spoil
        client.close()

    async def test_damaged_keys_do_not_stop_retention_of_other_topics(
        self, queue_factory: QueueFactory, redis_namespace: str
    ) -> None:
        """Promise: a bad index member, a non-UTF-8 topic or a wrong-typed key spare the rest."""
        clock = FakeClock(10_000)
        async with queue_factory(clock=clock, retention_ms=1_000) as queue:
            await queue.publish_many("t", [1, 2])
            await queue.publish("broken", 1)
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
            try:
                client.zadd(f"{redis_namespace}:ts:t", {b"not-an-id": 0})
                client.sadd(f"{redis_namespace}:topics:", b"\xff\xfe")
                client.delete(f"{redis_namespace}:ts:broken")
                client.set(f"{redis_namespace}:ts:broken", b"a string, not a sorted set")
            finally:
                client.close()
            clock.now = 20_000
            assert await queue.cleanup() == 2
            assert await queue.recover("t") == []
            assert (await queue.publish("t", 3)) > "0"


class TestPostgreSQL(CorruptRowContract):
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"  # psycopg's async connections run under asyncio only

    @pytest.fixture
    def queue_factory(self, postgresql_namespace: str) -> QueueFactory:
        separator = "&" if "?" in POSTGRESQL_URL else "?"
        url = f"{POSTGRESQL_URL}{separator}namespace={postgresql_namespace}"
        return lambda **options: create_queue(url=url, **options)

    @pytest.fixture(
        params=[("not JSON", b"\xff\x00"), ("truncated JSON", b"[1, 2")],
        ids=lambda param: param[0],
    )
    def corrupt(
        self, postgresql_namespace: str, request: pytest.FixtureRequest
    ) -> Iterator[Corrupt]:
        _, value = request.param
        conn = psycopg.connect(POSTGRESQL_URL, autocommit=True, connect_timeout=3)
        table = f"{postgresql_namespace}_events"

        def insert(topic: str) -> None:
            # Past the queue's counter, as a tool that knows nothing of it would write.
            conn.execute(
                f"INSERT INTO {table} (topic, seq, ts, event)"
                f" SELECT %s, coalesce(max(seq), 0) + 1, 0, %s FROM {table} WHERE topic = %s",
                (topic, value, topic),
            )

        yield insert
        conn.close()

    @pytest.fixture
    def spoil_cursor(self, postgresql_namespace: str) -> SpoilCursor:
        def spoil(consumer: str, topic: str) -> None:
            with psycopg.connect(POSTGRESQL_URL, autocommit=True, connect_timeout=3) as conn:
                conn.execute(
                    f"UPDATE {postgresql_namespace}_cursors SET seq = -5"
                    " WHERE consumer = %s AND topic = %s",
                    (consumer, topic),
                )

        return spoil
