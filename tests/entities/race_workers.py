"""Worker processes for the race tests (spawned: each opens its own Persistence from a URL).

Every worker waits at a barrier once connected, so that the race starts with all of them
running, and sends its log through a queue. Times are ``time.monotonic()``, one clock for every
process on the machine, so the parent can order events across processes.
"""

from __future__ import annotations

import random
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import anyio

from entities import Message, RecordNotFound, SessionRecord, create_persistence

T0 = 1_700_000_000_000
# How long a worker waits for the others to connect, in seconds.
BARRIER_TIMEOUT = 120


def session_record(session_id: str) -> SessionRecord:
    """The session every race test uses under ``session_id``."""
    return SessionRecord(
        session_id=session_id, image_id="img", container_id="c", created_at=T0, updated_at=T0
    )


def update_metadata(
    url: str, worker: int, calls: int, barrier: Barrier, results: Queue[Any]
) -> None:
    """``calls`` update_metadata calls on image ``img``, each adding its own key."""

    async def run() -> None:
        async with await create_persistence(url) as persistence:
            barrier.wait(BARRIER_TIMEOUT)
            for number in range(calls):
                await persistence.images.update_metadata("img", {f"w{worker}-{number}": number})

    anyio.run(run)
    results.put(("update_metadata", worker, calls))


def add_messages(
    url: str,
    worker: int,
    session_ids: list[str],
    stop: Event,
    barrier: Barrier,
    results: Queue[Any],
) -> None:
    """Add messages to random sessions until ``stop``; log (session, id, start, end, outcome)."""
    log: list[tuple[str, str, float, float, str]] = []

    async def run() -> None:
        async with await create_persistence(url) as persistence:
            barrier.wait(BARRIER_TIMEOUT)
            number = 0
            while not stop.is_set():
                session_id = random.choice(session_ids)
                message_id = f"a{worker}-{number}"
                number += 1
                message = Message(id=message_id, subtype="user", content="x", timestamp=T0)
                start = time.monotonic()
                try:
                    await persistence.sessions.add_message(session_id, message)
                    outcome = "ok"
                except RecordNotFound:
                    outcome = "missing"
                log.append((session_id, message_id, start, time.monotonic(), outcome))

    anyio.run(run)
    results.put(("adder", worker, log))


def delete_sessions(
    url: str,
    session_ids: list[str],
    rounds: int,
    stop: Event,
    barrier: Barrier,
    results: Queue[Any],
) -> None:
    """Delete the sessions in turn, re-creating each most times; log (op, session, start, end).

    The adders stop when this returns; the log is in the order the operations ran.
    """
    log: list[tuple[str, str, float, float]] = []
    chooser = random.Random(7)

    async def timed(operation: str, session_id: str, call: Any) -> None:
        start = time.monotonic()
        await call
        log.append((operation, session_id, start, time.monotonic()))

    async def run() -> None:
        async with await create_persistence(url) as persistence:
            sessions = persistence.sessions
            for session_id in session_ids:
                await timed("save", session_id, sessions.save_session(session_record(session_id)))
            barrier.wait(BARRIER_TIMEOUT)
            for number in range(rounds):
                session_id = session_ids[number % len(session_ids)]
                await timed("delete", session_id, sessions.delete_session(session_id))
                if chooser.random() < 0.75:
                    await timed(
                        "save", session_id, sessions.save_session(session_record(session_id))
                    )

    try:
        anyio.run(run)
    finally:
        stop.set()
    results.put(("deleter", 0, log))


def add_in_order(url: str, session_id: str, message_ids: list[str], results: Queue[Any]) -> None:
    """Add the messages, all at one timestamp, one after another."""

    async def run() -> None:
        async with await create_persistence(url) as persistence:
            for message_id in message_ids:
                await persistence.sessions.add_message(
                    session_id, Message(id=message_id, subtype="user", content="x", timestamp=T0)
                )

    anyio.run(run)
    results.put(("add_in_order", 0, message_ids))
