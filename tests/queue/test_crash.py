"""Publisher and consumer processes SIGKILLed at random points on one SQLite file.

Each round starts a publisher (one event per ``publish``, or batches with ``publish_many``) and a
consumer (``consume``, ``ack``, then print) as separate processes on one file, and kills both
with SIGKILL at random points: after a random number of acknowledged operations, in a random
order. A child prints a line only after the call returned, so what it printed is what it was
told was done. After every round, with the queue reopened as a user would (no repair step):

- ``PRAGMA integrity_check`` says ok, and every stored event decodes;
- every publish any child acknowledged, in this round or an earlier one, is present and whole;
  beyond them at most the one publish (or batch) in flight when the kill landed is present;
- a batch is all or nothing, its events consecutive;
- all of this with ``synchronous=FULL`` (the default) and ``NORMAL`` (which the README promises is
  still safe against a crashed process), drawn per child;
- the consumer's acked cursor never moves back, every run of the consumer started right after
  it (no gap, no duplicate), and the kill left it at the last entry printed or the one after.

The default run does a few rounds; ``pytest -m chaos`` does many more. The seed is printed (and
shown with any failure); ``QUEUE_CRASH_SEED=N`` replays one run.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from eventqueue import CorruptEvent, QueueEntry, create_queue

from tests.queue._children import Worker
from tests.queue._worker import event

pytestmark = pytest.mark.anyio

TOPIC = "crash"
CONSUMER = "survivor"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Tally:
    """What a run did and found; printed at the end for the fault report."""

    kills: int = 0
    events_acked: int = 0
    batches_acked: int = 0
    acks_printed: int = 0
    untyped_exits: int = 0
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every acknowledged publish so far: cursor -> the event it stored."""

    def summary(self, found: int) -> str:
        return (
            f"queue crash run: {self.kills} SIGKILLs; {self.events_acked} acknowledged events"
            f" (including {self.batches_acked} acknowledged batches), {found} found afterwards;"
            f" {self.acks_printed} acknowledged consumer acks; untyped exits"
            f" {self.untyped_exits}; integrity_check ok every round"
        )


async def _kill_after(worker: Worker, count: int, rng: random.Random) -> list[str]:
    """Read ``count`` lines, then SIGKILL the child at a random point shortly after.

    Returns every line it printed. The short random pause only moves where the kill lands
    inside the child's next operations; nothing waits on it.
    """
    lines = [await worker.line() for _ in range(count)]
    await asyncio.sleep(rng.random() * 0.004)
    lines += await worker.kill()
    if worker.process.returncode != -signal.SIGKILL:
        pytest.fail(worker.failure_message(f"exited by itself with {worker.process.returncode}"))
    return lines


def _count_after(path: str, cursor: str | None) -> int:
    db = sqlite3.connect(path, timeout=60)
    try:
        (count,) = db.execute(
            "SELECT count(*) FROM eventqueue_events WHERE topic = ? AND seq > ?",
            (TOPIC, 0 if cursor is None else int(cursor)),
        ).fetchone()
    finally:
        db.close()
    return int(count)


async def _round(
    path: str, log: Path, number: int, acked_before: str | None, rng: random.Random, tally: Tally
) -> str | None:
    """Run one publisher and one consumer, kill both, check everything; return the new ack."""
    name = f"r{number}"
    size = rng.randint(2, 40) if number % 2 else 0

    def target() -> str:
        return path if rng.random() < 0.5 else f"sqlite:///{path}?synchronous=NORMAL"

    if size:
        publisher = await Worker.spawn(log, "publish-batches", target(), TOPIC, name, str(size))
    else:
        publisher = await Worker.spawn(log, "publish-forever", target(), TOPIC, name)
    consumer = await Worker.spawn(log, "consume", target(), TOPIC, CONSUMER, "-1")
    try:
        publisher_target = rng.randint(1, 6 if size else 40)
        if rng.random() < 0.5:
            published = await _kill_after(publisher, publisher_target, rng)
            # The consumer will print every event stored after its start, and no more.
            available = _count_after(path, acked_before)
            consumed = await _kill_after(consumer, rng.randint(0, min(available, 150)), rng)
        else:
            # The publisher keeps publishing, so the consumer reaches any count.
            consumed = await _kill_after(consumer, rng.randint(0, 60), rng)
            published = await _kill_after(publisher, publisher_target, rng)
    finally:
        await publisher.stop()
        await consumer.stop()
    tally.kills += 2

    db = sqlite3.connect(path, timeout=60)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()

    corrupt: list[CorruptEvent] = []
    async with create_queue(path) as queue:
        entries = await queue.recover(TOPIC, on_corrupt=corrupt.append)
        acked_after = await queue.get_cursor(CONSUMER, TOPIC)
    assert corrupt == []
    cursors = [entry.cursor for entry in entries]
    assert cursors == sorted(set(cursors))
    by_cursor = {entry.cursor: entry for entry in entries}

    _check_publisher(name, size, published, entries, tally)
    for cursor, stored in tally.acked.items():  # earlier rounds' acknowledged events survive
        assert by_cursor[cursor].event == stored, f"acknowledged event at {cursor} changed"
    _check_consumer(consumed, cursors, by_cursor, acked_before, acked_after, tally)
    return acked_after


def _check_publisher(
    name: str, size: int, printed: list[str], entries: list[QueueEntry], tally: Tally
) -> None:
    mine = [(position, e) for position, e in enumerate(entries) if e.event["p"] == name]
    if not size:
        acked = [(cursor, int(i)) for cursor, i in (line.split() for line in printed)]
        assert [i for _, i in acked] == list(range(len(acked)))
        for cursor, i in acked:
            tally.acked[cursor] = event(name, i)
        tally.events_acked += len(acked)
        # Present: exactly the acknowledged ones, plus perhaps the one in flight, all whole.
        assert [e.event for _, e in mine] == [event(name, i) for i in range(len(mine))]
        assert len(mine) - len(acked) in (0, 1)
        return
    batches = [(int(b), cursors) for b, *cursors in (line.split() for line in printed)]
    assert [b for b, _ in batches] == list(range(len(batches)))
    for b, cursors in batches:
        assert len(cursors) == size
        for k, cursor in enumerate(cursors):
            tally.acked[cursor] = event(name, b * size + k, b)
    tally.batches_acked += len(batches)
    tally.events_acked += len(batches) * size
    # Present: whole batches only (all or nothing), consecutive, acknowledged plus at most one.
    assert len(mine) % size == 0, f"a batch of {size} was torn: {len(mine)} events stored"
    stored_batches = len(mine) // size
    assert stored_batches - len(batches) in (0, 1)
    for b in range(stored_batches):
        group = mine[b * size : (b + 1) * size]
        positions = [position for position, _ in group]
        assert positions == list(range(positions[0], positions[0] + size)), "batch interleaved"
        assert [e.event for _, e in group] == [event(name, b * size + k, b) for k in range(size)]


def _check_consumer(
    printed: list[str],
    cursors: list[str],
    by_cursor: dict[str, QueueEntry],
    acked_before: str | None,
    acked_after: str | None,
    tally: Tally,
) -> None:
    handled = [(cursor, int(i)) for cursor, i in (line.split() for line in printed)]
    tally.acks_printed += len(handled)
    start = 0 if acked_before is None else cursors.index(acked_before) + 1
    # It resumed right after its last ack: no gap, no duplicate, in order.
    assert [c for c, _ in handled] == cursors[start : start + len(handled)]
    assert all(by_cursor[c].event["i"] == i for c, i in handled)
    # Each entry is acked before it is printed: the ack is at the last printed entry, or at
    # most one entry further (acked, then killed before printing). It never moved back.
    last = handled[-1][0] if handled else acked_before
    following = cursors.index(last) + 1 if last is not None else 0
    allowed = {last, cursors[following] if following < len(cursors) else last}
    assert acked_after in allowed, f"ack {acked_after} is not at {last} or the entry after it"
    if acked_before is not None:
        assert acked_after is not None
        assert acked_after >= acked_before


async def _crash_run(tmp_path: Path, rounds: int) -> None:
    seed = int(os.environ.get("QUEUE_CRASH_SEED") or secrets.randbits(32))
    print(f"QUEUE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    path = str(tmp_path / "queue.db")
    log = tmp_path / "workers.log"
    tally = Tally()
    acked: str | None = None
    for number in range(rounds):
        acked = await _round(path, log, number, acked, rng, tally)

    # Finally, a consumer in this process resumes exactly after the last ack.
    async with create_queue(path) as queue:
        entries = await queue.recover(TOPIC)
        cursors = [e.cursor for e in entries]
        rest = cursors[cursors.index(acked) + 1 :] if acked is not None else cursors
        consumer = queue.consume(TOPIC, CONSUMER)
        async with asyncio.timeout(120):
            resumed = [(await anext(consumer)).cursor for _ in rest]
        await consumer.aclose()  # type: ignore[attr-defined]
    assert resumed == rest
    stored = set(cursors)
    found = sum(1 for cursor in tally.acked if cursor in stored)
    assert found == len(tally.acked) == tally.events_acked
    print(tally.summary(found))


async def test_publisher_and_consumer_survive_sigkill(tmp_path: Path) -> None:
    """Promise: ten kills lose no acknowledged publish or ack, and need no repair."""
    await _crash_run(tmp_path, rounds=5)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
async def test_publisher_and_consumer_survive_many_sigkills(tmp_path: Path) -> None:
    """Promise: the same, for two hundred kills."""
    await _crash_run(tmp_path, rounds=100)
