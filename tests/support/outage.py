"""The outage check every server driver passes, against a private server it may stop."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
import pytest

from kvstore.errors import BackendUnavailable, KVStoreError
from kvstore.storage import Storage


class Restartable(Protocol):
    """A private server instance on a fixed port and data directory."""

    port: int

    def stop(self) -> None:
        """Stop the server; its data stays on disk."""

    def start(self) -> None:
        """Start it again on the same port and data directory, and wait until it answers."""


async def check_outage_and_recovery(storage: Storage, server: Restartable, driver: str) -> None:
    """Every operation fails with ``BackendUnavailable`` while the server is down; afterwards the
    same storage works again and every write acknowledged before the outage is there."""
    acknowledged = {f"before:{index:03d}": index for index in range(50)}
    for key, value in acknowledged.items():
        await storage.set(key, value)
    await storage.set_many({"batch:1": 1, "batch:2": 2})

    server.stop()
    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: storage.get("before:000"),
        lambda: storage.set("during", 1),
        lambda: storage.delete("before:001"),
        lambda: storage.get_many(["before:000", "batch:1"]),
        lambda: storage.set_many({"during:1": 1}),
        lambda: storage.delete_many(["before:002"]),
        lambda: storage.clear("before:"),
        lambda: anext(aiter(storage.keys("before:"))),
    ]
    for operation in operations:
        with pytest.raises(BackendUnavailable) as raised:
            await operation()
        assert raised.value.driver == driver
        assert str(server.port) in str(raised.value), "the error names where it was going"

    server.start()
    await storage.set("after", "back")
    assert await storage.get("after") == "back"
    assert [key async for key in storage.keys("before:")] == sorted(acknowledged)
    assert await storage.get_many(list(acknowledged)) == list(acknowledged.values())
    assert await storage.get_many(["batch:1", "batch:2"]) == [1, 2]


async def check_restart_between_operations(storage: Storage, server: Restartable) -> None:
    """Pooled connections die with the server; the next operation must not fail because of it."""
    await storage.set_many({f"k:{index}": index for index in range(20)})
    server.stop()
    server.start()
    assert await storage.get("k:3") == 3
    await storage.set("k:20", 20)
    assert await storage.get_many([f"k:{index}" for index in range(21)]) == list(range(21))


# -- faults under load ------------------------------------------------------------------------
#
# The fault suite of every server driver: writers run against one storage while a fault is
# injected (the server killed and restarted, its connections killed, the server stopped), and
# the checks are the promises a user relies on: every operation returns or raises
# BackendUnavailable within its timeout, nothing else escapes, every acknowledged write is
# there afterwards with its value, and the same storage object keeps working.

# Scheduling slack on top of operation_timeout before an operation counts as hung: generous,
# because on a loaded 2-core machine a ready task may wait seconds for the CPU. It is a
# liveness bound, not a speed claim.
LIVENESS_SLACK = 5.0
# How long a fault run may take to see the effects it waits for (a failure, a recovery).
OBSERVE_DEADLINE = 60.0


@dataclass
class FaultTally:
    """What the writers saw during a fault run."""

    operations: int = 0
    unavailable: int = 0
    hangs: list[str] = field(default_factory=list)
    untyped: list[str] = field(default_factory=list)
    slowest: float = 0.0
    # Writes that returned: key -> value. Writes that raised BackendUnavailable may or may not
    # have happened: key -> value too, checked as "absent or whole".
    acknowledged: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    failed_event: threading.Event = field(default_factory=threading.Event)
    successes_after_fault: int = 0

    def summary(self, driver: str, fault: str, found: int) -> str:
        """One line for the report."""
        return (
            f"[fault] {driver} {fault}: operations={self.operations} "
            f"acknowledged_writes={len(self.acknowledged)} found_equal={found} "
            f"unavailable={self.unavailable} hangs={len(self.hangs)} "
            f"untyped={len(self.untyped)} slowest={self.slowest:.2f}s"
        )


async def run_writers_through(
    storage: Storage,
    fault: Callable[[FaultTally], None],
    *,
    operation_timeout: float,
    writers: int = 4,
    after_fault: int = 40,
    prefix: str = "",
) -> FaultTally:
    """Run ``writers`` tasks on ``storage`` while ``fault(tally)`` runs in a thread.

    Each writer loops over new-key sets, small batches, reads of its acknowledged keys and
    a scan step, timing every operation. ``fault`` may wait for ``tally.failed_event`` (an
    operation raised BackendUnavailable) to know its effect was felt. Once it returns, the
    writers go on until ``after_fault`` more operations have succeeded, so the run ends only
    after the storage has recovered (or after OBSERVE_DEADLINE, which the checks then fail).
    Keys start with ``prefix``, so that runs on one storage write keys of their own.
    """
    tally = FaultTally()
    bound = operation_timeout + LIVENESS_SLACK
    fault_done = False
    stop = anyio.Event()
    under_way = anyio.Event()

    async def timed(label: str, operation: Awaitable[object]) -> object:
        loop_time = anyio.current_time
        started = loop_time()
        tally.operations += 1
        try:
            result = await operation
        except BackendUnavailable:
            tally.unavailable += 1
            tally.failed_event.set()
            raise
        except Exception as error:  # anything but a kvstore error is a defect
            if not isinstance(error, KVStoreError):
                tally.untyped.append(f"{label}: {type(error).__name__}: {error}")
            else:
                tally.untyped.append(f"{label}: unexpected {type(error).__name__}: {error}")
            raise
        finally:
            elapsed = loop_time() - started
            tally.slowest = max(tally.slowest, elapsed)
            if elapsed > bound:
                tally.hangs.append(f"{label} took {elapsed:.1f}s (bound {bound:.1f}s)")
        if fault_done:
            tally.successes_after_fault += 1
            if tally.successes_after_fault >= after_fault:
                stop.set()
        return result

    async def writer(number: int) -> None:
        step = 0
        mine: list[str] = []
        while not stop.is_set():
            step += 1
            key = f"{prefix}w{number}:{step:07d}"
            kind = step % 5
            try:
                if kind in (0, 1):
                    await timed("set", storage.set(key, step))
                    tally.acknowledged[key] = step
                    mine.append(key)
                    if len(tally.acknowledged) >= 20:
                        under_way.set()
                elif kind == 2:
                    batch = {f"{key}:a": step, f"{key}:b": -step}
                    await timed("set_many", storage.set_many(batch))
                    tally.acknowledged.update(batch)
                    mine.extend(batch)
                elif kind == 3 and mine:
                    probe = mine[step % len(mine)]
                    value = await timed("get", storage.get(probe))
                    if value != tally.acknowledged[probe]:
                        tally.untyped.append(f"get {probe!r} gave {value!r}")
                elif kind == 4 and mine:
                    sample = mine[-3:]
                    values = await timed("get_many", storage.get_many(sample))
                    if values != [tally.acknowledged[name] for name in sample]:
                        tally.untyped.append(f"get_many {sample!r} gave {values!r}")
            except BackendUnavailable:
                if kind in (0, 1):
                    tally.unknown[key] = step
                elif kind == 2:
                    tally.unknown.update({f"{key}:a": step, f"{key}:b": -step})
                # Pace the retries of a writer facing a dead server; not a synchronisation.
                await anyio.sleep(0.05)
            except Exception:
                await anyio.sleep(0.05)

    async def inject() -> None:
        nonlocal fault_done
        await anyio.to_thread.run_sync(fault, tally)
        fault_done = True

    with anyio.move_on_after(OBSERVE_DEADLINE + 2 * bound):
        async with anyio.create_task_group() as group:
            for number in range(writers):
                group.start_soon(writer, number)
            await under_way.wait()  # the fault strikes writers that are under way
            await inject()
            await stop.wait()
            group.cancel_scope.cancel()
    return tally


async def check_fault_outcome(storage: Storage, tally: FaultTally) -> int:
    """Assert the promises; return how many acknowledged writes were found equal."""
    assert not tally.untyped, tally.untyped[:5]
    assert not tally.hangs, tally.hangs[:5]
    assert tally.successes_after_fault > 0, "the storage never recovered after the fault"
    keys = sorted(tally.acknowledged)
    found = await storage.get_many(keys)
    missing = [key for key, value in zip(keys, found, strict=True)
               if value != tally.acknowledged[key]]
    assert not missing, f"{len(missing)} acknowledged writes missing or changed: {missing[:5]}"
    unsure = sorted(set(tally.unknown) - set(tally.acknowledged))
    for key, value in zip(unsure, await storage.get_many(unsure), strict=True):
        assert value in (None, tally.unknown[key]), f"{key!r} holds {value!r}"
    # The same object still does everything.
    await storage.set("after:fault", "ok")
    assert await storage.get("after:fault") == "ok"
    assert [key async for key in storage.keys("after:")] == ["after:fault"]
    return len(keys)


def wait_for(event: threading.Event, what: str) -> None:
    """Block (in the fault thread) until ``event`` is set, failing after OBSERVE_DEADLINE."""
    if not event.wait(OBSERVE_DEADLINE):
        raise AssertionError(f"never observed: {what}")


def sigstop_and_wait(pid: int) -> None:
    """SIGSTOP process ``pid`` and return once every one of its threads has stopped.

    ``kill()`` returns before a multi-threaded process has stopped: mariadbd was seen answering
    a query sent just after SIGSTOP. A test of a "stopped server" must not start before the
    server really is stopped, so this waits (bounded by OBSERVE_DEADLINE) until each
    ``/proc/PID/task/*/stat`` says ``T`` (stopped).
    """
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + OBSERVE_DEADLINE
    while True:
        states = []
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                # The state follows the parenthesised command name, which may hold spaces.
                states.append(stat.read_text().rpartition(")")[2].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not stop: thread states {states}")
        time.sleep(0.001)  # polling the kernel's process state, not the code under test
