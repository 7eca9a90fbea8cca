"""``python -m benchmarks``: every figure against the raw clients and the peers, in one command.

Prints a table, and writes ``results.md``, ``results.json`` and ``chart.png`` into the output
directory (default ``benchmarks/results/<UTC time>``). ``--quick`` runs smaller sizes (a few
minutes) and says so; ``--profile DRIVER:OP`` runs one operation of ours under pyinstrument and
writes the profile there instead. See the README's "Benchmarks" section.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from benchmarks.adapters import DRIVERS, KV, OursKV, open_contenders
from benchmarks.growth import GROWTH_DRIVERS, run_growth
from benchmarks.method import Measure
from benchmarks.peak_memory import PEAK_DRIVERS, run_peaks
from benchmarks.queue_cases import QUEUE_DRIVERS, run_queue
from benchmarks.results import Results
from benchmarks.sizes import FULL, QUICK, STAND_IN_CAPS, Sizes
from benchmarks.workloads import Operation, kv_operations, run_operation

__all__ = ["main"]

KV_OPS = ("set", "get", "miss", "delete", "set_many", "get_many", "scan_small", "scan_large",
          "concurrent", "set_large", "get_large")
SECTIONS = ("entities", "queue", "growth", "peak")
ALIASES = {"scan": ("scan_small", "scan_large"), "large": ("set_large", "get_large"),
           "kv": KV_OPS}
PROFILE_SECONDS = 2.0
RESULTS_ROOT = Path(__file__).resolve().parent / "results"


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.live = sys.stderr.isatty()

    def step(self, label: str) -> None:
        """Show that ``label`` starts."""
        if not self.live:
            return
        filled = 30 * self.done // self.total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
                         f"{label[:50]:<50}")
        sys.stderr.flush()
        self.done += 1

    def finish(self) -> None:
        """Clear the bar."""
        if self.live:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time the library against the raw clients and the peers, side by side.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes (a few minutes); the output says so")
    parser.add_argument("--drivers", default=",".join(DRIVERS),
                        help=f"comma-separated, from {','.join(DRIVERS)} (default: all)")
    parser.add_argument("--ops", default="all",
                        help=f"comma-separated, from {','.join(KV_OPS + SECTIONS)} "
                             "(aliases: scan, large, kv; default: all)")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=VALUE",
                        help="override one size (e.g. points=500, growth=1000,100000)")
    parser.add_argument("--rounds", type=int, help="counted rounds (default: 7, quick 5)")
    parser.add_argument("--out", type=Path, help="output directory "
                        "(default: benchmarks/results/<UTC time>)")
    parser.add_argument("--no-chart", action="store_true", help="do not draw chart.png")
    parser.add_argument("--profile", metavar="[DRIVER:]OP",
                        help="run one operation of ours under pyinstrument and write the "
                             "profile (HTML and text) to the output directory")
    return parser


def _selected_ops(text: str) -> set[str]:
    if text == "all":
        return set(KV_OPS + SECTIONS)
    chosen: set[str] = set()
    for token in filter(None, (part.strip() for part in text.split(","))):
        if token in ALIASES:
            chosen.update(ALIASES[token])
        elif token in KV_OPS or token in SECTIONS:
            chosen.add(token)
        else:
            raise SystemExit(f"python -m benchmarks: unknown operation {token!r}; choose from "
                             f"{', '.join(KV_OPS + SECTIONS + tuple(ALIASES))}")
    return chosen


def _selected_drivers(text: str) -> list[str]:
    drivers = [part.strip() for part in text.split(",") if part.strip()]
    for driver in drivers:
        if driver not in DRIVERS:
            raise SystemExit(f"python -m benchmarks: unknown driver {driver!r}; choose from "
                             f"{', '.join(DRIVERS)}")
    return drivers


def _plan(drivers: list[str], ops: set[str]) -> int:
    steps = 0
    for driver in drivers:
        steps += len([op for op in KV_OPS if op in ops])
        steps += ("entities" in ops) + ("queue" in ops and driver in QUEUE_DRIVERS)
        steps += ("growth" in ops and driver in GROWTH_DRIVERS)
        steps += ("peak" in ops and driver in PEAK_DRIVERS)
    return steps


async def run(
    drivers: list[str], ops: set[str], sizes: Sizes, rounds: int, mode: str
) -> Results:
    """Measure everything selected and return the results."""
    results = Results({"mode": mode, "rounds": rounds, "warmup": 1, "drivers": drivers,
                       "ops": sorted(ops), "sizes": sizes.describe(),
                       "python": sys.version.split()[0]})
    if mode == "quick":
        results.notes.append(
            "quick run: smaller sizes than the issue's (see Sizes); the full run uses "
            f"{FULL.describe()}"
        )
    results.notes += [
        "raw MariaDB runs each blocking PyMySQL call in a worker thread (what an async caller "
        "must do); raw Redis writes SET/DEL/MSET with a ZADD/ZREM key index in one MULTI "
        "(what its ZSET scans need), reads GET/MGET",
        "MongoDB runs on the SecantusDB stand-in unless KVSTORE_TEST_MONGODB_URL names a real "
        "server: its ratios say what the driver adds, its absolute figures nothing, and its "
        "range queries cost in proportion to the collection (the raw client's scans grow alike)",
        "entity rows have no target: the raw side is the least hand-written equivalent",
        "aiocache's memory cache as configured by default keeps the caller's object (no "
        "encoding, no copy): shown as 'aiocache (object kept)', not judged; 'aiocache+json' "
        "(its JsonSerializer: an encoded copy, as ours) is the memory peer judged; "
        "py-key-value (disk) is diskcache underneath, and both are SQLite files (diskcache "
        "keeps values over 32 KiB in separate files), so they are SQLite peers; diskcache and "
        "sqlitedict pickle",
        "fs: py-key-value (filetree), FileTreeStore with its defaults, keeps one JSON file per "
        "key like ours, but fsyncs every write's temp file before the rename (it has no "
        "setting to turn that off), where ours and the raw files sync nothing by default "
        "(fs_driver(fsync=True) syncs file and directory): its writes do more than ours",
        "set writes new keys every round; delete refills (untimed) before each round",
    ]
    progress = Progress(_plan(drivers, ops))
    operations = [op for op in kv_operations(sizes) if op.key in ops]
    try:
        for driver in drivers:
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix=f"bench-{driver}-") as temp:
                try:
                    await _driver(driver, Path(temp), operations, ops, sizes, rounds, results,
                                  progress)
                except Exception as error:  # one driver's failure still leaves the others
                    results.notes.append(
                        f"{driver}: stopped early ({type(error).__name__}: {error})"
                    )
            results.settings.setdefault("seconds", {})[driver] = round(
                time.perf_counter() - started, 1
            )
    finally:
        progress.finish()
    cut = [f"{row.driver} {row.operation}, {name}: {cell.operations:,}"
           for row in results.rows for name, cell in row.cells.items()
           if isinstance(cell, Measure) and cell.operations is not None]
    if cut:
        results.notes.append(
            f"round budget of {sizes.round_ms} ms: these contenders ran fewer operations a "
            "counted round than the row's count (figures stay per operation): "
            + "; ".join(cut)
        )
    return results


async def _driver(
    driver: str, workdir: Path, operations: list[Operation], ops: set[str], sizes: Sizes,
    rounds: int, results: Results, progress: Progress,
) -> None:
    if driver == "mongodb" and not os.environ.get("KVSTORE_TEST_MONGODB_URL"):
        capped = sizes.capped(STAND_IN_CAPS)
        if capped != sizes:
            results.notes.append(
                "mongodb on the stand-in runs smaller sizes: "
                + ", ".join(f"{name} <= {cap:,}" for name, cap in STAND_IN_CAPS.items())
            )
            sizes = capped
            operations = [op for op in kv_operations(sizes) if op.key in ops]
    needs_kv = operations or {"entities", "growth"} & ops
    if needs_kv:
        async with AsyncExitStack() as stack:
            try:
                contenders = await open_contenders(driver, stack, workdir)
            except Exception as error:
                results.notes.append(f"{driver}: not measured ({type(error).__name__}: {error})")
                return
            for operation in operations:
                progress.step(f"{driver} {operation.name}")
                results.rows.append(
                    await run_operation("kv", driver, operation, contenders, rounds,
                                        budget=sizes.budget)
                )
            ours, raw = contenders["ours"], contenders["raw"]
            assert isinstance(ours, OursKV)
            assert isinstance(raw, KV)
            if "entities" in ops:
                from benchmarks.entity_cases import run_entities

                progress.step(f"{driver} entities")
                results.rows += await run_entities(driver, ours, raw, sizes, rounds)
            if "growth" in ops and driver in GROWTH_DRIVERS:
                progress.step(f"{driver} growth")
                results.growth += await run_growth(driver, {"ours": ours, "raw": raw}, sizes,
                                                   rounds)
    if "queue" in ops and driver in QUEUE_DRIVERS:
        progress.step(f"{driver} queue")
        results.rows += await run_queue(driver, sizes, rounds, workdir)
    if "peak" in ops and driver in PEAK_DRIVERS:
        progress.step(f"{driver} peak memory")
        results.peaks += await run_peaks(driver, sizes.peak_keys, workdir)


async def profile(target: str, drivers: list[str], sizes: Sizes) -> tuple[str, Any]:
    """Run one operation of ours under pyinstrument; return its name and the profiler."""
    from pyinstrument import Profiler

    driver, _, key = target.rpartition(":")
    driver = driver or drivers[0]
    operations = {op.key: op for op in kv_operations(sizes)}
    if key not in operations:
        raise SystemExit(f"python -m benchmarks: --profile takes [DRIVER:]OP with OP one of "
                         f"{', '.join(operations)}")
    operation = operations[key]
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as temp:
        async with AsyncExitStack() as stack:
            contenders = await open_contenders(driver, stack, Path(temp))
            ours = contenders["ours"]
            assert isinstance(ours, KV)
            if operation.prepare is not None:
                await operation.prepare(ours)
            await operation.body(ours, operation.count)  # warm-up
            profiler = Profiler(interval=0.0002, async_mode="enabled")
            profiler.start()
            # At least three runs and two seconds, so that the samples show the steady state.
            runs, deadline = 0, time.perf_counter() + PROFILE_SECONDS
            while runs < 3 or time.perf_counter() < deadline:
                await operation.body(ours, operation.count)
                runs += 1
            profiler.stop()
            await ours.reset()
    return f"{driver}-{key}", profiler


def main(argv: list[str] | None = None) -> int:
    """Run the command; return the exit status."""
    args = _parser().parse_args(argv)
    # py-key-value warns on every store it marks unstable; the table says which ones ran.
    warnings.filterwarnings("ignore", message="A configured store is unstable")
    drivers = _selected_drivers(args.drivers)
    ops = _selected_ops(args.ops)
    try:
        sizes = (QUICK if args.quick else FULL).with_overrides(args.size)
        if args.rounds:
            # One place for the count, so that the heading's sizes name the rounds that ran.
            sizes = dataclasses.replace(sizes, rounds=args.rounds)
    except ValueError as error:
        raise SystemExit(f"python -m benchmarks: {error}") from None
    if not args.no_chart and importlib.util.find_spec("matplotlib") is None:
        # Say so before a run of minutes, not after it.
        raise SystemExit(
            "python -m benchmarks: the chart needs matplotlib: pip install -e '.[bench]', "
            "or pass --no-chart"
        )
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = args.out or RESULTS_ROOT / stamp
    if args.profile:
        name, profiler = asyncio.run(profile(args.profile, drivers, sizes))
        out.mkdir(parents=True, exist_ok=True)
        html, text = out / f"profile-{name}.html", out / f"profile-{name}.txt"
        html.write_text(profiler.output_html())
        text.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        print(f"wrote {html} and {text}")
        return 0
    mode = "quick" if args.quick else "full"
    results = asyncio.run(run(drivers, ops, sizes, sizes.rounds, mode))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(results.render_markdown())
    (out / "results.json").write_text(results.to_json())
    written = ["results.md", "results.json"]
    if not args.no_chart:
        from benchmarks.chart import write_chart

        write_chart(results, out / "chart.png")
        written.append("chart.png")
    print(results.render_text())
    print(f"\nwrote {', '.join(written)} to {out}")
    return 0
