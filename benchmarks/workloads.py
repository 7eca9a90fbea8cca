"""The key-value and entity workloads: what each operation does, for every contender alike.

Values are about 200 bytes of JSON (:data:`VALUE`), except the 1 MiB rows (:data:`LARGE`). An
operation prepares every contender (untimed), then :func:`benchmarks.method.interleave` times
them round by round, then every contender is reset. A contender whose ``unsupported`` set names
the operation's API shows "no API".
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from benchmarks.adapters import KV
from benchmarks.method import NO_API, Cell, Divisible, Timed, interleave, stopwatch
from benchmarks.results import Row, raw_target
from benchmarks.sizes import Sizes

__all__ = ["LARGE", "VALUE", "Operation", "kv_operations", "run_operation"]

_TIMESTAMP = 1764471600123
VALUE = {
    "role": "assistant",
    "content": "The quick brown fox jumps over the lazy dog; a message of modest length.",
    "timestamp": _TIMESTAMP,
    "tags": ["bench", "json", "value"],
    "meta": {"model": "agentx-small", "tokens": 42, "final": True},
}
assert 180 <= len(orjson.dumps(VALUE)) <= 220, len(orjson.dumps(VALUE))
LARGE = {"data": "x" * ((1 << 20) - 12)}  # 1 MiB once encoded
# Operations that rewrite keys every round store values the keys do not hold yet, alternating
# these with the ones above: SQLite writes nothing for an overwrite that leaves a page's bytes as
# they were, so rewriting the same value cost the raw client (and aiosqlite) no I/O from the
# second round on, while a store keeping versions or write times (ours, diskcache) wrote every
# row (a 10,000-item set_many: 0 against 2.8 MB of WAL). Same sizes once encoded.
# One scan of 1,000 keys takes well under a millisecond: a round of one scan was at the mercy of
# a single preemption on this shared machine (rounds disagreed by hundreds of percent).
SCANS_PER_ROUND = 20
OTHER_VALUE = {**VALUE, "timestamp": _TIMESTAMP + 1}
OTHER_LARGE = {"data": "y" * ((1 << 20) - 12)}


@dataclass
class Operation:
    """One timed operation: ``body(kv, n)`` runs ``n`` operations on a prepared contender.

    ``n`` is ``count`` unless the operation is ``divisible`` and the round budget cut it (see
    :class:`benchmarks.method.Divisible`); a body that is not divisible ignores it.
    """

    key: str  # what --ops and --profile call it
    name: str
    count: int
    needs: str
    body: Callable[[KV, int], Awaitable[float]]
    prepare: Callable[[KV], Awaitable[None]] | None = None
    divisible: bool = False
    step: int = 1  # a divisible operation runs a multiple of this many (a whole scan's keys)


def _keys(prefix: str, count: int) -> list[str]:
    return [f"{prefix}:{index:07d}" for index in range(count)]


def _alternating(first: Any, second: Any) -> Callable[[KV], Any]:
    """Return a function handing each contender ``first`` and ``second`` in turn."""
    turns: dict[int, bool] = {}

    def take(kv: KV) -> Any:
        turn = turns[id(kv)] = not turns.get(id(kv), False)
        return second if turn else first

    return take


async def _fill(kv: KV, items: list[tuple[str, Any]], chunk: int = 10_000) -> None:
    for start in range(0, len(items), chunk):
        await kv.fill(items[start : start + chunk])
    await kv.settle()


def kv_operations(sizes: Sizes) -> list[Operation]:
    """Return the key-value operations at ``sizes``."""
    points = _keys("p", sizes.points)
    misses = _keys("m", sizes.points)
    batch = [(key, VALUE) for key in _keys("b", sizes.batch)]
    batch_keys = [key for key, _ in batch]
    next_batch = _alternating(batch, [(key, OTHER_VALUE) for key in batch_keys])
    large_keys = _keys("l", sizes.large)

    async def fill_points(kv: KV) -> None:
        await _fill(kv, [(key, VALUE) for key in points])

    async def run_set(kv: KV, n: int) -> float:
        async def work() -> None:
            for key in points[:n]:
                await kv.set(key, VALUE)

        seconds = await stopwatch(work)
        # Untimed: every round writes new keys (an insert, with any index upkeep it brings),
        # not overwrites of the previous round's.
        await kv.reset()
        return seconds

    async def run_get(kv: KV, n: int) -> float:
        async def work() -> None:
            for key in points[:n]:
                await kv.get(key)

        return await stopwatch(work)

    async def run_miss(kv: KV, n: int) -> float:
        async def work() -> None:
            for key in misses[:n]:
                await kv.get(key)

        return await stopwatch(work)

    async def run_delete(kv: KV, n: int) -> float:
        await kv.fill([(key, VALUE) for key in points[:n]])

        async def work() -> None:
            for key in points[:n]:
                await kv.delete(key)

        return await stopwatch(work)

    async def run_set_many(kv: KV, _n: int) -> float:
        items = next_batch(kv)
        return await stopwatch(lambda: kv.set_many(items))

    async def fill_batch(kv: KV) -> None:
        await _fill(kv, batch)

    async def run_get_many(kv: KV, _n: int) -> float:
        return await stopwatch(lambda: kv.get_many(batch_keys))

    def scan(key: str, total: int) -> Operation:
        groups = total // sizes.scan_match
        prefix = f"s:g{groups // 2:03d}:"

        async def prepare(kv: KV) -> None:
            await _fill(kv, [
                (f"s:g{group:03d}:{index:06d}", VALUE)
                for group in range(groups) for index in range(sizes.scan_match)
            ])

        async def run(kv: KV, n: int) -> float:
            async def work() -> None:
                for _ in range(n // sizes.scan_match):
                    found = await kv.scan(prefix)
                    assert len(found) == sizes.scan_match, (len(found), prefix)

            return await stopwatch(work)

        return Operation(key, f"scan {sizes.scan_match:,} of {total:,} (per key)",
                         sizes.scan_match * SCANS_PER_ROUND, "scan", run, prepare,
                         divisible=True, step=sizes.scan_match)

    concurrent_keys = _keys("c", 1_000)

    async def fill_concurrent(kv: KV) -> None:
        await _fill(kv, [(key, VALUE) for key in concurrent_keys])

    # Each write stores a value the key does not hold yet (see OTHER_VALUE); a key is written
    # twice a round, so the values count up instead of alternating. Same size as VALUE.
    writes = itertools.count(_TIMESTAMP + 2)

    async def run_concurrent(kv: KV, n: int) -> float:
        per_task = n // 100

        async def task(number: int) -> None:
            for step in range(per_task):
                key = concurrent_keys[(number * per_task + step) % len(concurrent_keys)]
                if step % 10 == 9:
                    await kv.set(key, {**VALUE, "timestamp": next(writes)})
                else:
                    await kv.get(key)

        async def work() -> None:
            await asyncio.gather(*(task(number) for number in range(100)))

        return await stopwatch(work)

    next_large = _alternating(LARGE, OTHER_LARGE)

    async def run_large_set(kv: KV, _n: int) -> float:
        value = next_large(kv)

        async def work() -> None:
            for key in large_keys:
                await kv.set(key, value)

        return await stopwatch(work)

    async def fill_large(kv: KV) -> None:
        for key in large_keys:
            await kv.set(key, LARGE)

    async def run_large_get(kv: KV, _n: int) -> float:
        async def work() -> None:
            for key in large_keys:
                await kv.get(key)

        return await stopwatch(work)

    return [
        Operation("set", "set", sizes.points, "set", run_set, divisible=True),
        Operation("get", "get", sizes.points, "get", run_get, fill_points, divisible=True),
        Operation("miss", "miss", sizes.points, "get", run_miss, fill_points, divisible=True),
        Operation("delete", "delete", sizes.points, "delete", run_delete, divisible=True),
        Operation("set_many", f"set_many {sizes.batch:,} (per item)", sizes.batch, "set_many",
                  run_set_many),
        Operation("get_many", f"get_many {sizes.batch:,} (per item)", sizes.batch, "get_many",
                  run_get_many, fill_batch),
        scan("scan_small", sizes.scan_small),
        scan("scan_large", sizes.scan_large),
        Operation("concurrent", "100 tasks, 90% get / 10% set", sizes.concurrent // 100 * 100,
                  "get", run_concurrent, fill_concurrent, divisible=True, step=100),
        Operation("set_large", "set 1 MiB", sizes.large, "set", run_large_set),
        Operation("get_large", "get 1 MiB", sizes.large, "get", run_large_get, fill_large),
    ]


async def run_operation(
    section: str, driver: str, operation: Operation, contenders: dict[str, KV | str],
    rounds: int, target: float | None = None, use_target: bool = True,
    budget: float | None = None,
) -> Row:
    """Prepare every contender, time ``operation`` on each in interleaved rounds, reset them.

    ``budget``: the run's round budget in seconds (see :func:`benchmarks.method.interleave`),
    which cuts only a ``divisible`` operation.
    """
    bodies: dict[str, Timed | Divisible | str] = {}
    for name, kv in contenders.items():
        if isinstance(kv, str):
            bodies[name] = kv
        elif operation.needs in kv.unsupported:
            bodies[name] = NO_API
        else:
            bodies[name] = _bound(operation, kv)
    for name, body in list(bodies.items()):
        kv = contenders[name]
        if isinstance(body, str) or isinstance(kv, str) or operation.prepare is None:
            continue
        try:
            await operation.prepare(kv)
        except Exception as error:  # a peer that cannot even be prepared is reported
            bodies[name] = f"failed: {type(error).__name__}: {str(error)[:80]}"
    cells: dict[str, Cell] = await interleave(bodies, operation.count, rounds, budget=budget)
    for name, kv in contenders.items():
        if isinstance(kv, str):
            continue
        try:
            await kv.reset()
        except Exception as error:  # a peer broken by the operation is out from now on
            contenders[name] = f"failed: {type(error).__name__}: {str(error)[:80]}"
    goal = (target if target is not None else raw_target(driver)) if use_target else None
    return Row(section, driver, operation.name, cells, goal)


def _bound(operation: Operation, kv: KV) -> Timed | Divisible:
    body = operation.body
    if operation.divisible:
        return Divisible(lambda n: body(kv, n), step=operation.step)
    count = operation.count
    return lambda: body(kv, count)
