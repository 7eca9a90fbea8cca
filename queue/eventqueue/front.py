"""The queue object users hold: validation, fan-out, consumers, retention and the closed state.

Written once over :class:`~eventqueue.backends.QueueBackend`, on anyio: it runs under asyncio, and
under trio where the backend's client does (SQLite; Redis and PostgreSQL raise
:class:`~eventqueue.errors.AsyncLibraryNotSupported` there). Background work (topic feeds, async
handlers, the retention timer) runs in the queue's own task group, hosted by a task of its own
(:mod:`eventqueue.background`): it never keeps a process alive, and ``close`` cancels it and
waits for it.

Delivery design: per topic with at least one subscriber or consumer there is one *feed* task
that follows the backend (read every entry after its position, then wait for a local publish,
a server notification or a poll tick) and hands each batch to every subscriber's own FIFO. Since
the feed reads committed rows in cursor order, each subscriber sees each event once, in cursor
order, including events other processes or queue objects published. A new feed first reads the
topic's newest cursor; a ``publish`` from this object waits for that read so an event published
after ``subscribe`` returns is never missed. ``publish`` never waits for handlers.

Corrupt rows: a stored row that does not decode reaches every reader as a
:class:`~eventqueue.errors.CorruptEvent` in its place. Readers step past it: each read path
(``recover``, a consumer's replay, a topic's feed) logs it once at ERROR on the ``eventqueue``
logger and hands it to the caller's ``on_corrupt`` if any; handlers never see it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel

from eventqueue.backends.base import QueueBackend
from eventqueue.background import Background, running_library
from eventqueue.decoding import StoredEvent
from eventqueue.entry import Clock, QueueEntry
from eventqueue.errors import (
    AsyncLibraryNotSupported,
    CorruptEvent,
    QueueClosed,
    QueueError,
    ValidationError,
)
from eventqueue.subscribers import ConsumerInbox, Handler, Subscriber, make_subscriber
from eventqueue.validation import check_name, encode_event, encode_events

__all__ = ["EventQueue", "OnCorrupt", "Subscription"]

logger = logging.getLogger("eventqueue")

OnCorrupt = Callable[[CorruptEvent], Awaitable[object] | object]
"""A callback ``recover`` and ``consume`` call with each corrupt stored event they step past.

A plain function or a coroutine function (awaited). Raising (for example the
:class:`CorruptEvent` itself) stops the read there and propagates to the caller.
"""

PAGE_SIZE = 500
"""Entries read per backend round trip by feeds, consumers and ``recover``."""

_WAIT_TIMEOUT = 1.0
_RECOVER_PAGE = 5_000
_RETRY_DELAY_MAX = 5.0
# The item types of a page with no corrupt row: ``recover`` keeps such a page whole.
_ENTRY_ONLY = frozenset({QueueEntry})


def _log_corrupt(bad: CorruptEvent, reader: str) -> None:
    """Log ``bad`` at ERROR, typed: the record's ``exc_info`` is the :class:`CorruptEvent`."""
    logger.error("%s skipped a corrupt stored event: %s", reader, bad, exc_info=bad)


async def _report_corrupt(bad: CorruptEvent, on_corrupt: OnCorrupt | None) -> None:
    if on_corrupt is not None:
        result = on_corrupt(bad)
        if inspect.isawaitable(result):
            await result


async def _keep_good(
    page: list[StoredEvent], entries: list[QueueEntry], topic: str, on_corrupt: OnCorrupt | None
) -> None:
    """Append the entries of ``page`` to ``entries``; log and report each corrupt row."""
    for item in page:
        if isinstance(item, CorruptEvent):
            _log_corrupt(item, f"recover of topic {topic!r}")
            await _report_corrupt(item, on_corrupt)
        else:
            entries.append(item)


class _Feed:
    """Follows one topic in the backend and fans entries out to its subscribers."""

    def __init__(self, owner: EventQueue, topic: str) -> None:
        self.owner = owner
        self.topic = topic
        self.subscribers: list[Subscriber] = []
        self.ready = anyio.Event()
        self.stopped = False
        # Made here, entered by the task: stop() may come before the task first runs.
        self.scope = anyio.CancelScope()
        owner._background.start_soon(self._run, name=f"eventqueue feed {topic!r}")

    async def _retrying(self, what: str, delay: float) -> float:
        logger.warning(
            "eventqueue feed of topic %r: %s failed; retrying", self.topic, what, exc_info=True
        )
        # Back off from an unreachable backend instead of spinning on it.
        await anyio.sleep(delay)
        return min(delay * 2, _RETRY_DELAY_MAX)

    async def _run(self) -> None:
        try:
            with self.scope:
                await self._follow()
        finally:
            # Never leave a publisher or consumer waiting on a feed that is gone.
            self.ready.set()

    async def _follow(self) -> None:
        backend = self.owner._backend
        delay = 0.05
        while True:
            try:
                await self.owner._ensure_open()
                position = await backend.last_cursor(self.topic)
                break
            except QueueError:
                if self.stopped or self.owner.closed:
                    self.ready.set()
                    return
                # Let waiting publishers go on (and fail on their own) rather than hang.
                self.ready.set()
                delay = await self._retrying("reading the newest cursor", delay)
        self.ready.set()
        delay = 0.05
        while not self.stopped:
            try:
                entries = await backend.read_after(self.topic, position, PAGE_SIZE)
                if entries:
                    for item in entries:
                        if isinstance(item, CorruptEvent):
                            _log_corrupt(item, f"live delivery of topic {self.topic!r}")
                    for subscriber in list(self.subscribers):
                        subscriber.deliver(entries)
                    position = entries[-1].cursor
                    delay = 0.05
                    # A backend read may not yield (SQLite runs inline): give other tasks, and
                    # a cancellation, a turn between pages while catching up a backlog.
                    await anyio.lowlevel.checkpoint()
                    continue
                if self.stopped:
                    # A client may swallow one cancellation (Python 3.11's wait_for inside the
                    # asyncio-only backends); do not start a long wait after ``stop``.
                    return
                await backend.wait_for_events(self.topic, position, _WAIT_TIMEOUT)
            except QueueError:
                if self.stopped or self.owner.closed:
                    return
                delay = await self._retrying("reading new events", delay)

    def stop(self) -> None:
        self.stopped = True
        self.scope.cancel()
        # A feed stopped before it ran never reads the newest cursor; let publishers go on.
        self.ready.set()
        for subscriber in self.subscribers:
            subscriber.stop()


class Subscription:
    """What ``subscribe`` returns: call it to unsubscribe (idempotent).

    ``await subscription.ready()`` returns once the subscription follows the backend, after
    which events that *other* processes or queue objects commit are guaranteed to reach it
    (events this queue object publishes after ``subscribe`` returned always do).
    """

    __slots__ = ("_feed", "_leave")

    def __init__(self, feed: _Feed, leave: Callable[[], None]) -> None:
        self._feed = feed
        self._leave = leave

    def __call__(self) -> None:
        """Stop delivery to this subscriber."""
        self._leave()

    def unsubscribe(self) -> None:
        """Stop delivery to this subscriber (same as calling the subscription)."""
        self._leave()

    async def ready(self) -> None:
        """Wait until the subscription follows the backend."""
        await self._feed.ready.wait()


class EventQueue:
    """A durable per-topic event log with publish, subscribe, ack, recover and consume.

    Create it with :func:`eventqueue.create_queue`. It opens on first use or in ``async with``,
    the same either way, and must be used from one event loop: asyncio, or trio when the backend
    supports it (SQLite does; Redis and PostgreSQL raise :class:`AsyncLibraryNotSupported`).
    ``await close()`` is idempotent; afterwards every method raises :class:`QueueClosed`.

    Background work (topic feeds, async handlers, the retention timer) runs in a task group the
    queue owns, entered when the first background task starts and exited by :meth:`close`. The
    group lives in a host task of the queue's own rather than in the caller's task, because a
    queue opened on first use may be opened inside a caller's cancel scope (``fail_after``) or
    task and closed from another, and anyio and trio only let the task that entered a task group
    exit it. So ``async with create_queue(...)`` and a queue used without ``async with`` behave
    alike; without ``async with``, call :meth:`close` yourself (the host task never keeps the
    process alive, and the event loop cancels it at exit if you do not).
    """

    def __init__(
        self,
        backend: QueueBackend,
        *,
        retention_ms: int,
        cleanup_interval_ms: int,
        clock: Clock,
    ) -> None:
        self._backend = backend
        self.retention_ms = retention_ms
        self.cleanup_interval_ms = cleanup_interval_ms
        self._clock = clock
        self._opened = False
        self._closed = False
        self._open_lock: anyio.Lock | None = None
        self._feeds: dict[str, _Feed] = {}
        self._background = Background(f"eventqueue on {backend.description}")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "not opened"
        return f"<EventQueue {self._backend.description} ({state})>"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    # -- lifecycle -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosed(f"the queue on {self._backend.description} is closed")

    def _check_library(self) -> None:
        """Refuse, before any I/O, a backend that cannot run under the running async library."""
        reason = self._backend.requires_asyncio
        if reason is None:
            return
        try:
            library = running_library()
        except RuntimeError:
            return  # no loop yet (a consume() made ahead): checked again when it opens
        if library != "asyncio":
            raise AsyncLibraryNotSupported(self._backend.name, library, reason)

    async def _ensure_open(self) -> None:
        self._check_open()
        if self._opened:
            return
        self._check_library()
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        async with self._open_lock:
            self._check_open()
            if self._opened:
                return
            await self._backend.open()
            if self._closed:
                await self._backend.close()
                self._check_open()
            self._opened = True
            self._background.start_soon(self._cleanup_periodically, name="eventqueue retention")

    async def open(self) -> None:
        """Connect and create the schema now instead of on first use."""
        await self._ensure_open()

    async def __aenter__(self) -> EventQueue:
        await self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every subscriber, consumer and timer and release the backend; idempotent.

        Handlers still running are cancelled (async) or abandoned (sync, in daemon threads);
        a ``consume`` iterator raises :class:`QueueClosed` on its next step.
        """
        if self._closed:
            return
        self._closed = True
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:
            feed.stop()
        # Shielded: a close reached through a cancelled scope (``async with`` inside a
        # ``move_on_after`` that fired) must still stop the work and release the backend, or
        # nothing would: the queue already counts as closed.
        with anyio.CancelScope(shield=True):
            # Cancels the timer, the feeds and the async handlers, and waits until all ended.
            await self._background.aclose()
            if self._opened:
                await self._backend.close()

    # -- writing -------------------------------------------------------------------------------

    def _now(self) -> int:
        now = self._clock()
        if type(now) is not int:
            raise ValidationError(f"the clock returned {now!r}; it must return int milliseconds")
        return now

    async def _before_append(self, topic: str) -> None:
        await self._ensure_open()
        feed = self._feeds.get(topic)
        if feed is not None and not feed.ready.is_set():
            await feed.ready.wait()

    async def publish(self, topic: str, event: Any) -> str:
        """Store ``event`` (plain JSON) in ``topic`` and return its cursor.

        The event is committed when this returns; delivery to subscribers happens afterwards and
        is never awaited. A value that is not plain JSON raises :class:`ValidationError` and
        nothing is written.
        """
        check_name("topic", topic)
        payload = encode_event(event)
        if not self._opened or self._closed or topic in self._feeds:
            # Skipped in the usual case (open, no feed of the topic starting up): one coroutine
            # less per publish, a tenth of a publish's Python time.
            await self._before_append(topic)
        cursors = await self._backend.append(topic, [payload], self._now())
        self._backend.notify_local(topic)
        return cursors[0]

    async def publish_many(self, topic: str, events: Iterable[Any]) -> list[str]:
        """Store several events in one transaction and return their cursors, in order.

        Either all are stored or none (any invalid event refuses the whole batch).
        """
        check_name("topic", topic)
        payloads = encode_events(events)
        await self._before_append(topic)
        if not payloads:
            return []
        cursors = await self._backend.append(topic, payloads, self._now())
        self._backend.notify_local(topic)
        return cursors

    # -- live delivery -------------------------------------------------------------------------

    def _join(self, topic: str, subscriber: Subscriber) -> _Feed:
        feed = self._feeds.get(topic)
        if feed is None:
            feed = self._feeds[topic] = _Feed(self, topic)
        feed.subscribers.append(subscriber)
        return feed

    def _leave(self, topic: str, subscriber: Subscriber) -> None:
        feed = self._feeds.get(topic)
        if feed is None or subscriber not in feed.subscribers:
            return
        feed.subscribers.remove(subscriber)
        subscriber.stop()
        if not feed.subscribers:
            del self._feeds[topic]
            feed.stop()

    def subscribe(self, topic: str, handler: Handler) -> Subscription:
        """Call ``handler(entry)`` for every event of ``topic`` committed from now on.

        Must be called inside a running event loop (asyncio, or trio if the backend supports
        it). Each subscriber sees each event once, in cursor
        order, including events published by other processes or queue objects on the same
        storage. An ``async def`` handler runs in its own task (of the queue's task group); a
        plain function runs in its own daemon thread (so a blocking handler never stalls the
        loop). A handler's exception is logged on the ``eventqueue`` logger and delivery goes
        on. Returns a :class:`Subscription`; calling it unsubscribes (idempotent).
        """
        self._check_open()
        check_name("topic", topic)
        if not callable(handler):
            raise ValidationError(f"handler must be callable, not {type(handler).__name__}")
        try:
            running_library()
        except RuntimeError:
            raise RuntimeError("subscribe() must be called inside a running event loop") from None
        self._check_library()
        subscriber = make_subscriber(topic, handler, self._background)
        feed = self._join(topic, subscriber)
        return Subscription(feed, lambda: self._leave(topic, subscriber))

    def consume(
        self, topic: str, consumer_id: str, *, on_corrupt: OnCorrupt | None = None
    ) -> AsyncIterator[QueueEntry]:
        """Iterate over ``topic`` from just after ``consumer_id``'s acked cursor, then live.

        Replays every stored event the consumer has not acked, then follows new events (also
        those other processes publish), with no gap and no duplicate across the switch. It does
        *not* ack: call ``await queue.ack(consumer_id, topic, entry.cursor)`` once an entry is
        processed, so that a restarted consumer resumes after it (at-least-once delivery).
        Close it with ``aclose()`` (or ``contextlib.aclosing``) when you stop early; after
        :meth:`close` it raises :class:`QueueClosed`.

        A stored event that does not decode is stepped over: it is logged at ERROR on the
        ``eventqueue`` logger and passed to ``on_corrupt`` (see :data:`OnCorrupt`); if that
        raises, iteration ends with its exception, and the caller can ``ack`` the
        :class:`CorruptEvent`'s cursor to have the next ``consume`` start past it.
        """
        self._check_open()
        check_name("topic", topic)
        check_name("consumer id", consumer_id)
        if on_corrupt is not None and not callable(on_corrupt):
            raise ValidationError("on_corrupt must be callable or None")
        self._check_library()
        return self._consume(topic, consumer_id, on_corrupt)

    async def _consume(
        self, topic: str, consumer_id: str, on_corrupt: OnCorrupt | None
    ) -> AsyncIterator[QueueEntry]:
        await self._ensure_open()
        inbox = ConsumerInbox()
        # Join the live feed before reading history, so that nothing committed between the
        # end of the replay and the start of following is missed; duplicates are dropped below.
        feed = self._join(topic, inbox)
        try:
            await feed.ready.wait()
            self._check_open()
            after = await self._backend.get_cursor(consumer_id, topic)
            reader = f"consumer {consumer_id!r} of topic {topic!r}"
            while True:
                self._check_open()
                page = await self._backend.read_after(topic, after, PAGE_SIZE)
                for item in page:
                    if isinstance(item, CorruptEvent):
                        _log_corrupt(item, reader)
                        after = item.cursor
                        await _report_corrupt(item, on_corrupt)
                        continue
                    yield item
                    after = item.cursor
                if len(page) < PAGE_SIZE:
                    break
            while True:
                batch = await inbox.get()
                self._check_open()
                if batch is None:
                    return  # the feed stopped without the queue closing: nothing more comes
                for item in batch:
                    if after is not None and item.cursor <= after:
                        continue  # already replayed
                    if isinstance(item, CorruptEvent):
                        after = item.cursor
                        # The feed that delivered it logged it already.
                        await _report_corrupt(item, on_corrupt)
                        continue
                    yield item
                    after = item.cursor
        finally:
            self._leave(topic, inbox)
            inbox.close()

    # -- cursors and history -------------------------------------------------------------------

    async def ack(self, consumer_id: str, topic: str, cursor: str) -> None:
        """Record that ``consumer_id`` processed ``topic`` up to and including ``cursor``.

        Never moves the consumer's cursor backwards: acking an older cursor changes nothing
        except marking the consumer as alive for retention.
        """
        check_name("consumer id", consumer_id)
        check_name("topic", topic)
        self._backend.check_cursor(cursor)
        await self._ensure_open()
        await self._backend.set_cursor_if_greater(consumer_id, topic, cursor, self._now())

    async def get_cursor(self, consumer_id: str, topic: str) -> str | None:
        """Return the greatest cursor ``consumer_id`` acked in ``topic``, or None."""
        check_name("consumer id", consumer_id)
        check_name("topic", topic)
        await self._ensure_open()
        return await self._backend.get_cursor(consumer_id, topic)

    async def recover(
        self,
        topic: str,
        after_cursor: str | None = None,
        limit: int | None = None,
        *,
        on_corrupt: OnCorrupt | None = None,
    ) -> list[QueueEntry]:
        """Return the stored events of ``topic`` after ``after_cursor`` (all if None), in order.

        ``limit`` caps how many are returned (None: no cap). A stored event that does not decode
        is left out: it is logged at ERROR on the ``eventqueue`` logger and passed to
        ``on_corrupt`` (see :data:`OnCorrupt`), so ``recover(..., on_corrupt=found.append)``
        returns every good event and collects the bad ones; an ``on_corrupt`` that raises makes
        ``recover`` raise instead (strict reading).
        """
        check_name("topic", topic)
        if after_cursor is not None:
            self._backend.check_cursor(after_cursor)
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ValidationError(f"limit must be a non-negative int or None, not {limit!r}")
        if on_corrupt is not None and not callable(on_corrupt):
            raise ValidationError("on_corrupt must be callable or None")
        await self._ensure_open()
        entries: list[QueueEntry] = []
        after = after_cursor
        while limit is None or len(entries) < limit:
            want = _RECOVER_PAGE if limit is None else min(_RECOVER_PAGE, limit - len(entries))
            # One row more than the page tells whether another page follows, so a history that
            # ends on a page boundary costs no final empty read (a round trip on a server).
            page: list[StoredEvent] = await self._backend.read_after(topic, after, want + 1)
            more = len(page) > want
            if more:
                del page[want:]
            if set(map(type, page)) <= _ENTRY_ONLY:
                # No corrupt row (the usual page): one pass in C instead of a test per entry.
                entries.extend(page)  # type: ignore[arg-type]  # every item is a QueueEntry
            else:
                await _keep_good(page, entries, topic, on_corrupt)
            if not more:
                break
            after = page[-1].cursor
        return entries

    # -- retention -----------------------------------------------------------------------------

    async def cleanup(self) -> int:
        """Delete events older than ``retention_ms`` and cursors not acked within it.

        An event is deleted when ``now - timestamp > retention_ms`` (by the queue's clock), never
        earlier. Returns how many events were deleted. Also runs every ``cleanup_interval_ms``
        while the queue is open.
        """
        await self._ensure_open()
        return await self._backend.delete_older_than(self._now() - self.retention_ms)

    async def _cleanup_periodically(self) -> None:
        while True:
            await anyio.sleep(self.cleanup_interval_ms / 1000)
            try:
                await self.cleanup()
            except QueueClosed:
                return
            except Exception:
                logger.exception("eventqueue retention cleanup failed; retrying next interval")
