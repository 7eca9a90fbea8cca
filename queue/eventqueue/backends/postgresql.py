"""PostgreSQL backend: an events table keyed by (topic, seq), LISTEN/NOTIFY for wakeups.

Tables (``ns`` is the URL's ``namespace``):

- ``ns_events (topic, seq, ts, event bytea)``, primary key (topic, seq), index on ts.
- ``ns_topics (topic, last_seq)``: the per-topic counter (never below the topic's greatest
  stored seq, even one another tool inserted). A publish is one statement that bumps
  the counter (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``), inserts the events and calls
  ``pg_notify``. The counter row stays locked until commit, so concurrent publishers of a topic
  commit in sequence order and a reader never sees seq N+1 before N. The counter outlives
  retention, so cursors are never reused; the wall clock plays no part.
- ``ns_cursors (consumer, topic, seq, updated_at)`` with a ``GREATEST`` upsert.

Cursors are the sequence as 20 zero-padded digits. Wakeups: one listening connection per queue
object (``LISTEN ns_events``, payload = topic) sets the followers' events; followers also re-read
every second, so a lost notification only costs latency. Operations run in autocommit mode,
each a single statement (retention: one transaction), on connections from the same small pool
the PostgreSQL storage driver uses (``kvstore.drivers._pool``): a connection is opened in the
caller's task, so an unreachable server is reported at once with its cause, and an idle
connection the server closed (a restart) is dropped before it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from eventqueue.cursors import decode_seq, encode_seq
from eventqueue.decoding import StoredEvent, decode_seq_rows, report_corrupt_cursor
from eventqueue.errors import QueueBackendError, QueueClosed, QueueUnavailable

try:
    import psycopg
except ImportError:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the PostgreSQL event-queue backend needs psycopg: "
        "pip install 'agentx-persistence[postgresql]'"
    ) from None

# One distribution: kvstore is always installed beside eventqueue.
from kvstore.drivers._pool import Pool, peer_closed

# The storage driver's own checks of a pooled connection: closed and discarded the same way.
from kvstore.drivers.postgresql import _discard
from kvstore.drivers.postgresql import _usable as _idle
from kvstore.logs import silent_until_configured
from kvstore.urls import redact_url

silent_until_configured("psycopg")

__all__ = ["PostgreSQLBackend"]

_CONNECT_TIMEOUT = 10.0
# Connections an event queue object keeps at most (publishers, followers and acks share them).
_POOL_SIZE = 8

_T = TypeVar("_T")
_Connection = psycopg.AsyncConnection[Any]


def _usable(connection: _Connection) -> bool:
    # An idle connection only hears from the server when the server closes it (a restart):
    # dropping it here, for one poll() call, spares the operation a certain failure.
    return _idle(connection) and not peer_closed(connection.pgconn.socket)


class PostgreSQLBackend:
    """Event log in PostgreSQL; see the module docstring for the schema."""

    name = "postgresql"
    requires_asyncio: str | None = "psycopg's async connections run under asyncio only"

    def __init__(self, url: str, *, namespace: str = "eventqueue") -> None:
        self.url = url
        self.namespace = namespace
        self.description = f"{redact_url(url)} (namespace {namespace})"
        self.channel = f"{namespace}_events"
        self._pool: Pool[_Connection] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listen_conn: psycopg.AsyncConnection[Any] | None = None
        self._wakeups: dict[str, asyncio.Event] = {}
        events, topics, cursors = (f"{namespace}_{t}" for t in ("events", "topics", "cursors"))
        self._schema = (
            f'CREATE TABLE IF NOT EXISTS {events} (topic text COLLATE "C" NOT NULL,'
            " seq bigint NOT NULL, ts bigint NOT NULL, event bytea NOT NULL,"
            " PRIMARY KEY (topic, seq))",
            f"CREATE INDEX IF NOT EXISTS {events}_ts ON {events} (ts)",
            f'CREATE TABLE IF NOT EXISTS {topics} (topic text COLLATE "C" PRIMARY KEY,'
            " last_seq bigint NOT NULL)",
            f'CREATE TABLE IF NOT EXISTS {cursors} (consumer text COLLATE "C" NOT NULL,'
            ' topic text COLLATE "C" NOT NULL, seq bigint NOT NULL, updated_at bigint NOT NULL,'
            " PRIMARY KEY (consumer, topic))",
            f"CREATE INDEX IF NOT EXISTS {cursors}_updated ON {cursors} (updated_at)",
        )
        # The counter also steps over any row written past it by hand (another tool), so such
        # a row can never make every later publish of its topic fail on the primary key. The
        # ``max(seq)`` is one backward index probe; the counter row's lock still orders writers.
        head = (
            f"WITH counter AS (INSERT INTO {topics} AS t (topic, last_seq)"
            f" SELECT %(topic)s, coalesce(max(seq), 0) + %(n)s FROM {events}"
            f" WHERE topic = %(topic)s"
            f" ON CONFLICT (topic) DO UPDATE"
            f" SET last_seq = GREATEST(t.last_seq + %(n)s, EXCLUDED.last_seq)"
            f" RETURNING last_seq),"
            f" wake AS (SELECT pg_notify(%(channel)s, %(topic)s))"
            f" INSERT INTO {events} (topic, seq, ts, event)"
        )
        self._append = (
            f"{head} SELECT %(topic)s, counter.last_seq - %(n)s + e.ord, %(ts)s, e.payload"
            f" FROM counter, wake,"
            f" unnest(%(payloads)s::bytea[]) WITH ORDINALITY AS e(payload, ord)"
            f" RETURNING seq"
        )
        # One event (every ``publish``): the same statement with the payload as a plain
        # parameter. Unpacking a one-element array cost the server about a sixth of the whole
        # publish (a one-row publish went from 0.73 to 0.89 of a raw INSERT, statements timed
        # side by side on one connection).
        self._append_one = (
            f"{head} SELECT %(topic)s, counter.last_seq, %(ts)s, %(payload)s"
            f" FROM counter, wake RETURNING seq"
        )
        self._read_after = (
            f"SELECT seq, ts, event FROM {events} WHERE topic = %s AND seq > %s"
            f" ORDER BY seq LIMIT %s"
        )
        self._last_seq = f"SELECT last_seq FROM {topics} WHERE topic = %s"
        self._ack = (
            f"INSERT INTO {cursors} AS c (consumer, topic, seq, updated_at)"
            f" VALUES (%s, %s, %s, %s) ON CONFLICT (consumer, topic) DO UPDATE SET"
            f" seq = GREATEST(c.seq, EXCLUDED.seq),"
            f" updated_at = GREATEST(c.updated_at, EXCLUDED.updated_at)"
        )
        self._get_cursor = f"SELECT seq FROM {cursors} WHERE consumer = %s AND topic = %s"
        self._delete_events = f"DELETE FROM {events} WHERE ts < %s"
        self._delete_cursors = f"DELETE FROM {cursors} WHERE updated_at < %s"

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, psycopg.OperationalError | OSError):
            return QueueUnavailable(
                f"PostgreSQL at {self.description} is unreachable: {type(exc).__name__}"
            )
        return QueueBackendError(f"PostgreSQL at {self.description}: {exc}")

    @property
    def _connections(self) -> Pool[_Connection]:
        if self._pool is None:
            raise QueueClosed(f"{self.description} is closed")
        return self._pool

    async def _connect(self) -> _Connection:
        return await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=int(_CONNECT_TIMEOUT)
        )

    async def _using(self, work: Callable[[_Connection], Awaitable[_T]]) -> _T:
        """Run ``work`` on a pooled connection; errors become the queue's own.

        The connection goes back to the pool only if nothing is left running on it: after a
        cancellation part way through a statement, or a broken connection, it is closed.
        """
        pool = self._connections
        deadline = asyncio.get_running_loop().time() + _CONNECT_TIMEOUT
        try:
            connection = await pool.take(deadline)
        except TimeoutError:
            raise QueueUnavailable(
                f"PostgreSQL at {self.description}: no connection within {_CONNECT_TIMEOUT:g}s"
                f" ({pool.size} connections busy, or the server not answering)"
            ) from None
        except (psycopg.Error, OSError) as exc:
            raise self._translate(exc) from None
        try:
            return await work(connection)
        except (psycopg.Error, OSError) as exc:
            raise self._translate(exc) from None
        finally:
            await pool.give_back(connection, reusable=_idle(connection))

    async def _fetch(
        self, query: str, params: Sequence[Any] | dict[str, Any], *, binary: bool = False
    ) -> list[Any]:
        async def work(connection: _Connection) -> list[Any]:
            cursor = await connection.execute(query, params, binary=binary)
            return await cursor.fetchall() if cursor.description else []

        return await self._using(work)

    async def open(self) -> None:
        """Create the tables (serialised by an advisory lock) on the pool's first connection."""

        async def create(connection: _Connection) -> None:
            async with connection.transaction():
                await connection.execute(
                    "SELECT pg_advisory_xact_lock(hashtext(%s))", (self.channel,)
                )
                for statement in self._schema:
                    await connection.execute(statement)

        self._pool = Pool(_POOL_SIZE, self._connect, _usable, _discard)
        try:
            await self._using(create)
        except BaseException:
            pool, self._pool = self._pool, None
            await pool.close()
            raise

    async def close(self) -> None:
        """Stop the listener and close the pool."""
        if self._listener is not None:
            if self._listen_conn is not None:
                # Closing the connection ends ``notifies()`` cleanly; cancelling the task in the
                # middle of it makes psycopg log a warning about an interrupted query.
                with contextlib.suppress(psycopg.Error, OSError):
                    await self._listen_conn.close()
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def check_cursor(self, cursor: object) -> str:
        """Return ``cursor`` if it is a sequence cursor, else raise ValidationError."""
        decode_seq(cursor)
        return cursor  # type: ignore[return-value]

    async def append(self, topic: str, payloads: Sequence[bytes], timestamp: int) -> list[str]:
        """Bump the counter, insert and notify in one statement."""
        params = {"topic": topic, "n": len(payloads), "channel": self.channel, "ts": timestamp}
        if len(payloads) == 1:
            params["payload"] = payloads[0]
            rows = await self._fetch(self._append_one, params)
        else:
            params["payloads"] = list(payloads)
            rows = await self._fetch(self._append, params)
        return [encode_seq(seq) for seq in sorted(row[0] for row in rows)]

    async def read_after(self, topic: str, after: str | None, limit: int) -> list[StoredEvent]:
        """Read one page by primary key; undecodable rows come back as corrupt."""
        start = 0 if after is None else decode_seq(after)
        # Binary results: each event arrives as its bytes, not as hex for psycopg to decode.
        rows = await self._fetch(self._read_after, (topic, start, limit), binary=True)
        return decode_seq_rows(topic, rows)

    async def last_cursor(self, topic: str) -> str | None:
        """Return the topic's counter."""
        rows = await self._fetch(self._last_seq, (topic,))
        return encode_seq(rows[0][0]) if rows else None

    async def set_cursor_if_greater(
        self, consumer_id: str, topic: str, cursor: str, timestamp: int
    ) -> None:
        """Upsert with GREATEST."""
        await self._fetch(self._ack, (consumer_id, topic, decode_seq(cursor), timestamp))

    async def get_cursor(self, consumer_id: str, topic: str) -> str | None:
        """Return the consumer's cursor, if any."""
        rows = await self._fetch(self._get_cursor, (consumer_id, topic))
        if not rows:
            return None
        if rows[0][0] < 0:  # not a sequence the queue assigns: written by hand
            report_corrupt_cursor(consumer_id, topic, "a negative sequence")
            return None
        return encode_seq(rows[0][0])

    async def delete_older_than(self, cutoff: int) -> int:
        """Delete old events and old cursors in one transaction."""

        async def work(connection: _Connection) -> int:
            async with connection.transaction():
                deleted = await connection.execute(self._delete_events, (cutoff,))
                await connection.execute(self._delete_cursors, (cutoff,))
                return max(deleted.rowcount, 0)

        return await self._using(work)

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=int(_CONNECT_TIMEOUT)
                )
                self._listen_conn = conn
                async with conn:
                    await conn.execute(f"LISTEN {self.channel}")
                    delay = 0.1
                    # Events committed while (re)connecting are caught by the followers'
                    # periodic re-read; wake them now so none waits for it.
                    for event in self._wakeups.values():
                        event.set()
                    async for notice in conn.notifies():
                        woken = self._wakeups.get(notice.payload)
                        if woken is not None:
                            woken.set()
            except (psycopg.Error, OSError):
                # Keep retrying: followers still poll every second meanwhile.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _wakeup(self, topic: str) -> asyncio.Event:
        event = self._wakeups.get(topic)
        if event is None:
            event = self._wakeups[topic] = asyncio.Event()
        return event

    async def wait_for_events(self, topic: str, after: str | None, max_wait: float) -> None:
        """Wait for a NOTIFY (or a local publish) on ``topic``, at most ``max_wait`` seconds."""
        self._connections  # noqa: B018 - raises QueueClosed after close
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name=f"eventqueue listener {self.channel}"
            )
        event = self._wakeup(topic)
        if not event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max_wait)
        event.clear()

    def notify_local(self, topic: str) -> None:
        """Wake the local follower at once, without waiting for the NOTIFY round trip."""
        event = self._wakeups.get(topic)
        if event is not None:
            event.set()
