"""Crash faults on the local drivers: a writer SIGKILLed at random points, again and again.

Each round starts :mod:`tests.faults.crash_writer` on the same store (a SQLite file, or an fs
directory), lets it acknowledge a random number of operations (single writes and deletes,
batches of up to thousands of keys, clears), kills it with SIGKILL at a random moment, and then
checks what it left: every acknowledged write is present and whole, the operation it was inside
happened entirely or not at all where the driver promises atomicity (otherwise each key holds a
value it passed through), SQLite passes ``PRAGMA integrity_check``, and the store opens and
reads without any repair. The next round writes on top of what the last one left.

The default run kills each writer ten times (a few seconds); ``pytest -m chaos`` kills it 300
times (minutes). The op sequences come from a seed printed at the start (set
``KVSTORE_FAULT_SEED`` to replay them; the kill moments are random by nature).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from kvstore.drivers._fs_local import TEMP_DIR, temp_name_owner
from tests.faults.workload import KINDS, DriverKind, check_after_kill, open_driver, operations

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
# A generous bound on any one wait for the child; it answers in milliseconds when all is well.
DEADLINE = 120.0
# How many operations a writer may acknowledge before it is killed.
MOST_ACKS = 40
SEED = int(os.environ.get("KVSTORE_FAULT_SEED") or random.SystemRandom().getrandbits(32))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Tally:
    """What a run of kills did, for the summary line (``pytest -s`` or ``-rA`` shows it)."""

    kills: int = 0
    acknowledged: Counter[str] = field(default_factory=Counter)
    keys_equal: int = 0
    keys_superseded: int = 0
    in_flight: Counter[str] = field(default_factory=Counter)  # how the cut operation ended

    def summary(self, kind: str) -> str:
        acks = sum(self.acknowledged.values())
        return (
            f"{kind}: {self.kills} kills, {acks} operations acknowledged "
            f"({dict(self.acknowledged)}), acknowledged keys found equal {self.keys_equal}, "
            f"replaced by the operation cut by the kill {self.keys_superseded}, "
            f"operation cut by the kill {dict(self.in_flight)}"
        )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(part for part in (str(ROOT), env.get("PYTHONPATH")) if part)
    return env


async def _read_rest(process: Process, lines: BufferedByteReceiveStream) -> tuple[str, str]:
    """Return everything the dead child printed that was not read yet, and its stderr."""
    assert process.stderr is not None
    # The buffered stream hands out what it already buffered first.
    out, err = bytearray(), bytearray()
    async for chunk in lines:
        out += chunk
    async for chunk in process.stderr:
        err += chunk
    return out.decode(), err.decode(errors="replace")


@dataclass
class Progress:
    """How far a writer got, from the lines it printed."""

    acknowledged: int = 0
    began_next: bool = False  # whether it printed ``begin`` for the operation after those

    def began(self, index: int) -> bool:
        """Whether the writer began operation ``index``."""
        return self.acknowledged > index or (self.acknowledged == index and self.began_next)

    def feed(self, line: bytes) -> None:
        word, number = line.split()
        if word == b"begin":
            assert int(number) == self.acknowledged
            self.began_next = True
        else:
            assert word == b"ack"
            assert int(number) == self.acknowledged
            self.acknowledged += 1
            self.began_next = False


async def _kill_writer(
    kind: DriverKind, path: Path, seed: int, target: int | None, rng: random.Random
) -> tuple[int, Progress]:
    """Run a writer until it begins operation ``target`` (or, for None, until it is ready to
    open the store), give it a random moment more, SIGKILL it, and return its pid and how far
    it got."""
    command = [sys.executable, "-m", "tests.faults.crash_writer", kind, str(path), str(seed)]
    progress = Progress()
    async with await anyio.open_process(command, cwd=ROOT, env=_child_env()) as process:
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)
        try:
            with anyio.fail_after(DEADLINE):
                assert await lines.receive_until(b"\n", 64) == b"ready"
                while target is not None and not progress.began(target):
                    progress.feed(await lines.receive_until(b"\n", 64))
            # Usually the kill lands inside that operation, sometimes in a later one.
            await anyio.sleep(rng.uniform(0, 0.002))
        except (anyio.IncompleteRead, anyio.EndOfStream):
            process.kill()
            _, stderr = await _read_rest(process, lines)
            pytest.fail(f"the writer stopped on its own: {progress}\n{stderr}")
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            with anyio.fail_after(DEADLINE):
                await process.wait()
        with anyio.fail_after(DEADLINE):
            rest, stderr = await _read_rest(process, lines)
        assert process.returncode == -signal.SIGKILL, f"the writer ended by itself:\n{stderr}"
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n"):  # a line cut by the kill was never a whole acknowledgement
            progress.feed(line.encode())
    return process.pid, progress


def _integrity(path: Path) -> str:
    if not path.exists():
        return "ok"  # killed before it created the file
    with closing(sqlite3.connect(path)) as conn:
        return ", ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))


def _temp_files_of(pid: int, base: Path) -> list[str]:
    names = os.listdir(base / TEMP_DIR)
    return [name for name in names if (temp_name_owner(name) or ("", 0))[1] == pid]


async def _contents(kind: DriverKind, path: Path, dead_pid: int) -> dict[str, bytes]:
    """Open the store as an application restarting after the crash would, and read it all."""
    if kind == "sqlite":
        assert _integrity(path) == "ok"
    driver = open_driver(kind, path)
    try:
        keys = [key async for key in driver.keys()]
        values = await driver.get_many(keys)
    finally:
        await driver.close()
    if kind == "fs":
        # Opening removed the dead writer's temporary files (part-written values).
        left = _temp_files_of(dead_pid, path)
        assert not left, f"temporary files of the killed writer survived opening: {left}"
    missing = [key for key, value in zip(keys, values, strict=True) if value is None]
    assert not missing, f"listed keys without a value: {missing[:5]}"
    return {key: value for key, value in zip(keys, values, strict=True) if value is not None}


async def _crash_rounds(kind: DriverKind, tmp_path: Path, kills: int) -> Tally:
    print(f"KVSTORE_FAULT_SEED={SEED}")
    rng = random.Random(f"{SEED}/{kind}")
    path = tmp_path / ("kv.db" if kind == "sqlite" else "store")
    tally = Tally()
    model: dict[str, bytes] = {}
    for round_number in range(kills):
        seed = rng.getrandbits(32)
        # The first writer dies early (while opening the store, or in its first operations);
        # later ones first acknowledge one operation of each kind and then some.
        target = None if round_number == 0 else rng.randrange(len(KINDS), MOST_ACKS)
        pid, progress = await _kill_writer(kind, path, seed, target, rng)
        done = list(islice(operations(seed, kind), progress.acknowledged + 1))
        for operation in done[: progress.acknowledged]:
            model = operation.apply(model)
            tally.acknowledged[operation.kind] += 1
        found = await _contents(kind, path, pid)
        if progress.began_next:
            tally.in_flight[check_after_kill(kind, model, done[-1], found)] += 1
        else:
            assert found == model, "the store changed after the last acknowledged operation"
            tally.in_flight["none begun"] += 1
        tally.keys_equal += sum(found.get(key) == value for key, value in model.items())
        tally.keys_superseded += sum(found.get(key) != value for key, value in model.items())
        tally.kills += 1
        model = found
    # And the store still takes writes from a new process (here, this one).
    driver = open_driver(kind, path)
    try:
        await driver.set("after:crashes", b"ok")
        assert await driver.get("after:crashes") == b"ok"
    finally:
        await driver.close()
    print(tally.summary(kind))
    assert all(tally.acknowledged[kind_] for kind_ in KINDS), tally.acknowledged
    return tally


@pytest.mark.parametrize("kind", ["sqlite", "fs"])
async def test_killed_writers_lose_no_acknowledged_write(kind: DriverKind, tmp_path: Path) -> None:
    await _crash_rounds(kind, tmp_path, kills=10)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("kind", ["sqlite", "fs"])
async def test_hundreds_of_killed_writers_lose_no_acknowledged_write(
    kind: DriverKind, tmp_path: Path
) -> None:
    await _crash_rounds(kind, tmp_path, kills=300)
