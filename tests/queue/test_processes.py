"""Several processes on one SQLite file: unique cursors, and a consumer surviving SIGKILL."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from eventqueue import create_queue

from tests.queue._children import Worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_four_processes_publish_to_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "queue.db")
    count = 1_000
    async with create_queue(path):
        pass  # create the schema once, so the workers race only on publishing
    stderr = tmp_path / "workers.log"
    workers = [
        await Worker.spawn(stderr, "publish", path, "shared", f"w{n}", str(count)) for n in range(4)
    ]
    try:
        for worker in workers:
            assert await worker.line() == "ready"
        for worker in workers:  # start all at once, so that they contend for the write lock
            await worker.send("go")
        for worker in workers:
            assert await worker.line() == "done"
            assert await worker.wait() == 0
    finally:
        for worker in workers:
            await worker.stop()

    async with create_queue(path) as queue:
        entries = await queue.recover("shared")
    cursors = [e.cursor for e in entries]
    assert len(entries) == 4 * count
    assert len(set(cursors)) == 4 * count
    assert cursors == sorted(cursors)
    for n in range(4):
        mine = [e.event["i"] for e in entries if e.event["p"] == f"w{n}"]
        assert mine == list(range(count)), f"worker w{n} lost or reordered events"


async def test_consumer_killed_mid_stream_resumes_from_its_last_ack(tmp_path: Path) -> None:
    path = str(tmp_path / "queue.db")
    stderr = tmp_path / "workers.log"
    async with create_queue(path) as queue:
        cursors = await queue.publish_many("t", [{"i": i} for i in range(300)])

        first = await Worker.spawn(stderr, "consume", path, "t", "c", "699")
        printed: list[int] = []
        try:
            while len(printed) < 100:
                _, i = (await first.line()).split()
                printed.append(int(i))
        finally:
            # Everything the child printed counts, also what it printed after the lines read
            # above and before the kill landed (on a busy machine the reader lags far behind).
            printed += [int(line.split()[1]) for line in await first.kill()]
        assert first.process.returncode == -signal.SIGKILL

        acked = await queue.get_cursor("c", "t")
        assert acked is not None
        resumed_at = cursors.index(acked) + 1
        # Each entry is acked before it is printed: every printed entry is acked, and at most
        # one acked entry was not printed yet when the kill landed.
        assert printed == list(range(len(printed)))
        assert resumed_at - len(printed) in (0, 1)

        cursors += await queue.publish_many("t", [{"i": i} for i in range(300, 600)])
        second = await Worker.spawn(stderr, "consume", path, "t", "c", "699")
        handled_after: list[int] = []
        try:
            _, i = (await second.line()).split()
            handled_after.append(int(i))
            for n in range(600, 700):  # live events, published while the consumer follows
                await queue.publish("t", {"i": n})
            while handled_after[-1] != 699:
                _, i = (await second.line()).split()
                handled_after.append(int(i))
            assert await second.wait() == 0
        finally:
            await second.stop()

        assert handled_after == list(range(resumed_at, 700))
        every = list(range(resumed_at)) + handled_after
        assert every == list(range(700))
        assert await queue.get_cursor("c", "t") == (await queue.recover("t"))[-1].cursor
