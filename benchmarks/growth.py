"""How get, set and a 100-key scan cost as the store grows (memory, SQLite, Redis).

The store is filled to each size in turn (1,000 up to 1,000,000 keys in the full run), in groups
of 100 keys so that a scan of one group returns 100. At each size ours and the raw client are
timed side by side on keys spread over the whole store: ``get`` of existing keys, ``set`` of new
keys (removed again, untimed, so the size holds), and scans of single groups (each side's timed
scans after an untimed pass of the same ones, so that one side's scans do not leave the other's
caches cold). The issue's limits:
point operations at the largest size within 1.5 times their cost at 1,000 keys, and a scan within
twice (a scan's cost should follow what it returns, not what the store holds).
"""

from __future__ import annotations

from benchmarks.adapters import KV
from benchmarks.method import Cell, Timed, interleave, stopwatch
from benchmarks.results import POINT_GROWTH_LIMIT, SCAN_GROWTH_LIMIT, GrowthRow
from benchmarks.sizes import Sizes
from benchmarks.workloads import VALUE

__all__ = ["GROWTH_DRIVERS", "run_growth"]

GROWTH_DRIVERS = ("memory", "sqlite", "redis")
GROUP = 100
PROBES = 200
SCANS = 20


def _key(number: int) -> str:
    return f"g:{number // GROUP:06d}:{number % GROUP:02d}"


async def run_growth(
    driver: str, contenders: dict[str, KV], sizes: Sizes, rounds: int
) -> list[GrowthRow]:
    """Return the get, set and scan rows for ``driver`` at each of ``sizes.growth``."""
    sides = {"ours": contenders["ours"], "raw": contenders["raw"]}
    found: dict[str, dict[str, list[Cell]]] = {
        operation: {"ours": [], "raw": []} for operation in ("get", "set", "scan 100")
    }
    filled = 0
    for step, size in enumerate(sizes.growth):
        for kv in sides.values():
            for start in range(filled, size, 10_000):
                await kv.fill([(_key(n), VALUE) for n in range(start, min(size, start + 10_000))])
            await kv.settle()
        filled = size
        stride = max(1, size // PROBES)
        probes = [_key((index * stride + 37) % size) for index in range(PROBES)]
        groups = size // GROUP
        scan_prefixes = [f"g:{(index * 7919) % groups:06d}:" for index in range(SCANS)]
        fresh = [f"g:{(index * stride) // GROUP:06d}:x{step}{index:04d}" for index in range(PROBES)]

        def get_body(kv: KV, probes: list[str] = probes) -> Timed:
            async def body() -> float:
                async def work() -> None:
                    for key in probes:
                        await kv.get(key)

                return await stopwatch(work)

            return body

        def set_body(kv: KV, fresh: list[str] = fresh) -> Timed:
            async def body() -> float:
                async def work() -> None:
                    for key in fresh:
                        await kv.set(key, VALUE)

                seconds = await stopwatch(work)
                for key in fresh:
                    await kv.delete(key)
                return seconds

            return body

        def scan_body(kv: KV, scan_prefixes: list[str] = scan_prefixes) -> Timed:
            async def body() -> float:
                async def work() -> None:
                    for prefix in scan_prefixes:
                        assert len(await kv.scan(prefix)) == GROUP

                # One untimed pass first, so each side's scans start from the caches its own
                # scans leave, not from the other side's: the raw memory scan sweeps the whole
                # dict, and ours timed right after it paid cold misses on the keys it bisects
                # (100 keys among 1,000,000: 13 us alone, 31 us after a sweep).
                await work()
                return await stopwatch(work)

            return body

        for operation, make, count in (("get", get_body, PROBES), ("set", set_body, PROBES),
                                       ("scan 100", scan_body, SCANS)):
            cells = await interleave({name: make(kv) for name, kv in sides.items()}, count, rounds)
            for name in sides:
                found[operation][name].append(cells[name])
    for kv in sides.values():
        await kv.reset()
    return [
        GrowthRow(driver, operation, list(sizes.growth), cells["ours"], cells["raw"],
                  SCAN_GROWTH_LIMIT if operation.startswith("scan") else POINT_GROWTH_LIMIT)
        for operation, cells in found.items()
    ]
