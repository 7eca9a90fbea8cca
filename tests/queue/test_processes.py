"""Several processes on one SQLite file: unique cursors, and a consumer surviving SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from eventqueue import create_queue

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 120.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "queue"), env.get("PYTHONPATH", "")])
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.queue._worker",
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(DEADLINE):
        line = await process.stdout.readline()
    if not line:
        code = await process.wait()
        pytest.fail(f"worker exited with {code} before answering")
    return line.decode().strip()


async def test_four_processes_publish_to_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "queue.db")
    count = 2_000
    async with create_queue(path):
        pass  # create the schema once, so the workers race only on publishing
    workers = [await _spawn("publish", path, "shared", f"w{n}", str(count)) for n in range(4)]
    try:
        for worker in workers:
            assert await _line(worker) == "ready"
        for worker in workers:  # start all at once, so that they contend for the write lock
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            await worker.stdin.drain()
        for worker in workers:
            assert await _line(worker) == "done"
            assert await worker.wait() == 0
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()

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
    async with create_queue(path) as queue:
        cursors = await queue.publish_many("t", [{"i": i} for i in range(300)])

        first = await _spawn("consume", path, "t", "c", "699")
        handled_before_kill: list[int] = []
        try:
            while len(handled_before_kill) < 100:
                _, i = (await _line(first)).split()
                handled_before_kill.append(int(i))
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert first.returncode == -signal.SIGKILL

        acked = await queue.get_cursor("c", "t")
        assert acked is not None
        resumed_at = cursors.index(acked) + 1
        # Each entry is acked before it is printed: every printed entry is acked, and at most
        # one acked entry was not printed yet when the kill landed.
        assert handled_before_kill == list(range(len(handled_before_kill)))
        assert resumed_at - len(handled_before_kill) in (0, 1)

        cursors += await queue.publish_many("t", [{"i": i} for i in range(300, 600)])
        second = await _spawn("consume", path, "t", "c", "699")
        handled_after: list[int] = []
        try:
            _, i = (await _line(second)).split()
            handled_after.append(int(i))
            for n in range(600, 700):  # live events, published while the consumer follows
                await queue.publish("t", {"i": n})
            while handled_after[-1] != 699:
                _, i = (await _line(second)).split()
                handled_after.append(int(i))
            async with asyncio.timeout(DEADLINE):
                assert await second.wait() == 0
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()

        assert handled_after == list(range(resumed_at, 700))
        every = list(range(resumed_at)) + handled_after
        assert every == list(range(700))
        assert await queue.get_cursor("c", "t") == (await queue.recover("t"))[-1].cursor
