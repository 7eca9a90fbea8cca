"""Peak memory of a full scan and of an export, over a store of many keys.

Two methods, named in every row:

- SQLite: **peak RSS of a subprocess** (its ``VmHWM``, read by the subprocess itself: a
  ``ru_maxrss`` seen from the parent would carry the parent's own peak across the fork) running
  the command line's ``kvstore keys`` (the full scan) and ``kvstore export`` with output to
  ``/dev/null``, next to the baseline ``kvstore get`` of one key in the same database. The
  difference is what streaming a store of that size costs; it should not grow with the store.
- memory driver: the data lives in the process, so RSS cannot separate it from the scan; a
  subprocess fills the store, then **tracemalloc** measures the peak of Python allocations
  during the scan (``Storage.keys``) and during the export loop (``items_with_expiry`` and
  ``encode_record``, what ``kvstore export`` runs), above what was allocated before. One page
  is read first: the driver orders the keys written since the last scan at the next one, and
  that index is the store's own memory, not a cost of streaming. A third row gives the RSS the
  filled store itself takes (PERF-NOTES recorded 4 GB at 1,000,000 keys).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.results import PeakRow
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.storage import Storage

__all__ = ["PEAK_DRIVERS", "run_peaks"]

PEAK_DRIVERS = ("memory", "sqlite")
ROOT = Path(__file__).resolve().parents[1]
VALUE = {"role": "assistant", "content": "x" * 160, "n": 1}

_MEMORY_CHILD = """
import asyncio, sys, tracemalloc
from kvstore.cli.records import encode_record
from kvstore.cli.transfer import items_with_expiry
from kvstore.drivers.memory import memory_driver
from kvstore.storage import Storage

def rss():
    line = next(line for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024

async def main(count):
    storage = Storage(memory_driver())
    await storage.open()
    value = {"role": "assistant", "content": "x" * 160, "n": 1}
    empty = rss()
    for start in range(0, count, 10_000):
        end = min(count, start + 10_000)
        await storage.set_many((f"k:{n:08d}", value) for n in range(start, end))
    # The driver orders new keys at the first scan: that is the store's index, kept, not what
    # streaming costs, so one page is read before measuring.
    async for _ in storage.keys("k:"):
        break
    filled = rss()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    seen = 0
    async for _ in storage.keys():
        seen += 1
    assert seen == count
    scan = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    with open("/dev/null", "wb") as out:
        async for key, data, expires in items_with_expiry(storage, ""):
            out.write(encode_record(key, data, expires))
    export = tracemalloc.get_traced_memory()[1] - base
    print(scan, export, empty, filled)

asyncio.run(main(int(sys.argv[1])))
"""


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(ROOT / "queue"), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path)


_CLI_CHILD = """
import os, sys
from kvstore.cli import main
report = os.fdopen(os.dup(1), "w")
null = os.open(os.devnull, os.O_WRONLY)
os.dup2(null, 1)
status = main(sys.argv[1:])
sys.stdout.flush()
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(status, int(peak.split()[1]) * 1024, file=report)
"""


def _memory_peaks(keys: int) -> tuple[int, int, int, int]:
    """Fill a memory store of ``keys`` keys in a subprocess.

    Return its scan and export peaks, and its RSS before and after the fill.
    """
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(keys)],
        capture_output=True, text=True, env=_env(), check=True,
    )
    scan, export, empty, filled = (int(part) for part in result.stdout.split())
    return scan, export, empty, filled


def _peak_rss(arguments: list[str]) -> int:
    """Run the kvstore CLI with ``arguments`` in a subprocess; return its peak RSS in bytes."""
    result = subprocess.run(
        [sys.executable, "-c", _CLI_CHILD, *arguments], capture_output=True, text=True,
        env=_env(), check=False,
    )
    status, _, peak = result.stdout.strip().partition(" ")
    if result.returncode != 0 or status != "0":
        raise RuntimeError(f"kvstore {arguments[0]} failed: {result.stderr.strip()[:200]}")
    return int(peak)


async def run_peaks(driver: str, keys: int, workdir: Path) -> list[PeakRow]:
    """Return the scan and export rows of ``driver`` over ``keys`` keys."""
    if driver == "memory":
        scan, export, empty, filled = await asyncio.to_thread(_memory_peaks, keys)
        method = "tracemalloc peak in a subprocess, above the filled store"
        return [PeakRow("memory", "full scan (keys)", keys, scan, 0, method),
                PeakRow("memory", "export loop", keys, export, 0, method),
                PeakRow("memory", "the filled store itself", keys, filled, empty,
                        "RSS of the subprocess after the fill; baseline: before it")]
    path = workdir / "peak.db"
    async with Storage(sqlite_driver(path)) as storage:
        for start in range(0, keys, 10_000):
            await storage.set_many(
                (f"k:{n:08d}", VALUE) for n in range(start, min(keys, start + 10_000))
            )
    url = f"sqlite:///{path}"
    baseline = await asyncio.to_thread(_peak_rss, ["get", "--url", url, "k:00000000"])
    method = "peak RSS of a subprocess (kvstore CLI); baseline: kvstore get of one key"
    return [
        PeakRow("sqlite", "full scan (kvstore keys)", keys,
                await asyncio.to_thread(_peak_rss, ["keys", "--url", url]), baseline, method),
        PeakRow("sqlite", "export (kvstore export)", keys,
                await asyncio.to_thread(_peak_rss, ["export", "--url", url, "-o", "-"]),
                baseline, method),
    ]
