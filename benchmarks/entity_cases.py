"""The entity operations: ``add_message``, ``get_messages`` of 1,000, a lookup by container.

Ours is :mod:`entities` over the driver's ``Storage``. The raw side is the least a hand-written
store does for the same answer with the driver's raw client: ``add_message`` reads the session
(it must exist) and writes the message under a time-ordered key; ``get_messages`` scans the
session's message keys and reads them in one batch; the lookup scans an index prefix
``container -> session ids`` and reads those sessions in one batch. Ours does more (per-session
message counters, validation, index upkeep on save), so these rows carry no target: they show
what the entity layer costs on top of its driver. No peer has an entity layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from benchmarks.adapters import KV, OursKV
from benchmarks.method import Divisible, Timed, interleave, stopwatch
from benchmarks.results import Row
from benchmarks.sizes import Sizes
from entities import Message, SessionRecord, create_persistence

__all__ = ["run_entities"]

SESSIONS_PER_CONTAINER = 10
LOOKUPS = 50
# The add_message rounds' sessions are numbered from here, clear of the lookup's sessions.
FIRST_ADD_SESSION = 9_000_000
NOW = 1_764_471_600_000


def _session(number: int) -> SessionRecord:
    return SessionRecord(
        session_id=f"s{number:07d}", image_id=f"i{number % 97:04d}",
        container_id=f"c{number // SESSIONS_PER_CONTAINER:06d}", created_at=NOW, updated_at=NOW,
    )


def _message(number: int) -> Message:
    return Message(id=f"m{number:07d}", subtype="assistant",
                   content="The quick brown fox jumps over the lazy dog. " * 3,
                   timestamp=NOW + number)


async def run_entities(
    driver: str, ours: OursKV, raw: KV, sizes: Sizes, rounds: int
) -> list[Row]:
    """Time the three entity operations for ``driver``, ours against the hand-written form."""
    persistence = await create_persistence(ours.storage, namespace="bench")
    sessions = persistence.sessions
    counter = itertools.count()
    rows = []

    # -- add_message --------------------------------------------------------------------------
    # Each round adds to a session of its own (created untimed), so that every round meets the
    # same session sizes, 0 to ``points`` messages: with one session for all rounds the figure
    # would depend on how many rounds ran before (on fs, where a message's cost grows with its
    # session, the full run would not end in bounded time).
    fresh_sessions = itertools.count(FIRST_ADD_SESSION)

    async def ours_add(n: int) -> float:
        record = _session(next(fresh_sessions))
        await sessions.save_session(record)

        async def work() -> None:
            for _ in range(n):
                await sessions.add_message(record.session_id, _message(next(counter)))

        return await stopwatch(work)

    async def raw_add(n: int) -> float:
        record = _session(next(fresh_sessions))
        session_key = f"e:session:{record.session_id}"
        await raw.set(session_key, record.to_document())

        async def work() -> None:
            for _ in range(n):
                message = _message(next(counter))
                if await raw.get(session_key) is None:
                    raise LookupError("no session")
                await raw.set(
                    f"e:msg:{record.session_id}:{message.timestamp:016d}-{message.id}",
                    message.to_document(),
                )

        return await stopwatch(work)

    # Cut together under a round budget: both sides then meet the same session sizes.
    rows.append(await _row(driver, "entities: add_message", sizes.points,
                           {"ours": Divisible(ours_add, together=True),
                            "raw": Divisible(raw_add, together=True)}, rounds, sizes.budget))

    # -- get_messages of 1,000 ----------------------------------------------------------------
    await sessions.save_session(_session(1))
    await raw.set("e:session:s0000001", _session(1).to_document())
    messages = [_message(number) for number in range(sizes.messages)]
    for message in messages:
        await sessions.add_message("s0000001", message)
    await raw.fill([(f"e:msg:s0000001:{m.timestamp:016d}-{m.id}", m.to_document())
                    for m in messages])
    await raw.settle()

    async def ours_read() -> float:
        async def work() -> None:
            found = await sessions.get_messages("s0000001")
            assert len(found) == sizes.messages

        return await stopwatch(work)

    async def raw_read() -> float:
        async def work() -> None:
            keys = await raw.scan("e:msg:s0000001:")
            found = [Message.from_document(doc) for doc in await raw.get_many(keys)]
            assert len(found) == sizes.messages

        return await stopwatch(work)

    rows.append(await _row(driver, f"entities: get_messages of {sizes.messages:,} (calls)", 1,
                           {"ours": ours_read, "raw": raw_read}, rounds))

    # -- lookup by container among many sessions ----------------------------------------------
    records = [_session(number) for number in range(2, sizes.sessions + 2)]
    for record in records:
        await sessions.save_session(record)
    raw_items: list[tuple[str, Any]] = []
    for record in records:
        raw_items.append((f"e:session:{record.session_id}", record.to_document()))
        raw_items.append((f"e:idx:container:{record.container_id}:{record.session_id}", 1))
    for start in range(0, len(raw_items), 10_000):
        await raw.fill(raw_items[start : start + 10_000])
    await raw.settle()
    await ours.settle()
    containers = sorted({record.container_id for record in records})[1:-1]
    picks = [containers[(index * 7919) % len(containers)] for index in range(LOOKUPS)]

    async def ours_lookup() -> float:
        async def work() -> None:
            for container in picks:
                assert len(await sessions.find_sessions_by_container_id(container)) == 10

        return await stopwatch(work)

    async def raw_lookup() -> float:
        async def work() -> None:
            for container in picks:
                prefix = f"e:idx:container:{container}:"
                ids = [key[len(prefix):] for key in await raw.scan(prefix)]
                documents = await raw.get_many([f"e:session:{sid}" for sid in ids])
                found = [SessionRecord.from_document(doc) for doc in documents]
                assert len(found) == SESSIONS_PER_CONTAINER

        return await stopwatch(work)

    rows.append(await _row(
        driver, f"entities: sessions by container among {sizes.sessions:,}", LOOKUPS,
        {"ours": ours_lookup, "raw": raw_lookup}, rounds,
    ))
    await ours.reset()
    await raw.reset()
    return rows


async def _row(
    driver: str, name: str, count: int, bodies: Mapping[str, Timed | Divisible],
    rounds: int, budget: float | None = None,
) -> Row:
    cells = await interleave(bodies, count, rounds, budget=budget)
    row = Row("entities", driver, name, cells, None)
    row.note = "no target: ours does more than the hand-written form"
    return row

