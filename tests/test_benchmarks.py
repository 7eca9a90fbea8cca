"""Smoke test of ``python -m benchmarks``: it runs on tiny sizes and writes what it promises.

Memory and SQLite only (no server), ``--no-chart`` (matplotlib is not in ``dev``), one round.
Nothing here checks a speed: the assertions are about the command's output, which a user and
the phase-2 work read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiocache", reason="the benchmark peers (extra `bench-peers`) not installed")
pytest.importorskip("diskcache", reason="the benchmark peers (extra `bench-peers`) not installed")

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "points=20", "batch=200", "scan_match=100", "scan_small=1000", "scan_large=2000",
    "concurrent=200", "large=1", "growth=100,200", "peak_keys=200", "sessions=40",
    "messages=50", "queue_single=20", "queue_batches=1", "recover=100", "latency=3",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench") / "out"
    sizes = [argument for size in TINY for argument in ("--size", size)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "queue")]))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--drivers", "memory,sqlite",
         "--rounds", "1", "--no-chart", "--out", str(out), *sizes],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    # Not a terminal: no progress bar on stderr.
    assert "\r" not in result.stderr
    return out, result.stdout


def test_writes_markdown_and_json_but_no_chart(run: tuple[Path, str]) -> None:
    out, stdout = run
    assert sorted(path.name for path in out.iterdir()) == ["results.json", "results.md"]
    assert f"wrote results.md, results.json to {out}" in stdout


def test_every_operation_has_ours_and_raw_on_both_drivers(run: tuple[Path, str]) -> None:
    document = json.loads((run[0] / "results.json").read_text())
    assert document["settings"]["mode"] == "quick"
    kv = [row for row in document["rows"] if row["section"] == "kv"]
    for driver in ("memory", "sqlite"):
        operations = [row["operation"] for row in kv if row["driver"] == driver]
        assert len(operations) == 11, operations
    for row in document["rows"]:
        if row["operation"] == "queue: publish-to-handler latency":
            assert row["cells"]["raw"] == "no API"
            continue
        for side in ("ours", "raw"):
            assert isinstance(row["cells"][side], dict), (row["operation"], row["cells"][side])
            assert row["cells"][side]["median_s"] > 0
        assert row["ours_over_raw"] > 0


def test_peers_measured_or_said_to_lack_the_api(run: tuple[Path, str]) -> None:
    rows = json.loads((run[0] / "results.json").read_text())["rows"]
    cells = {(row["driver"], row["operation"]): row["cells"] for row in rows}
    scan = cells[("memory", "scan 100 of 1,000 (per key)")]
    assert scan["aiocache+json"] == "no API"
    assert scan["py-key-value"] == "no API"
    assert isinstance(cells[("memory", "set")]["aiocache (object kept)"], dict)
    assert isinstance(cells[("memory", "set")]["aiocache+json"], dict)
    assert cells[("sqlite", "get_many 200 (per item)")]["diskcache"] == "no API"
    # py-key-value's disk store is diskcache (a SQLite file): a SQLite peer, named apart.
    assert isinstance(cells[("sqlite", "get_many 200 (per item)")]["py-key-value (disk)"], dict)
    assert cells[("sqlite", "scan 100 of 1,000 (per key)")]["py-key-value (disk)"] == "no API"
    assert isinstance(cells[("sqlite", "get_many 200 (per item)")]["aiosqlite"], dict)
    assert isinstance(cells[("sqlite", "queue: publish")]["litequeue"], dict)
    failed = [(key, name, cell) for key, row in cells.items() for name, cell in row.items()
              if isinstance(cell, str) and cell.startswith("failed")]
    assert failed == []


def test_growth_peaks_and_targets_reported(run: tuple[Path, str]) -> None:
    out, stdout = run
    document = json.loads((out / "results.json").read_text())
    growth = {(row["driver"], row["operation"]) for row in document["growth"]}
    assert growth == {(driver, operation) for driver in ("memory", "sqlite")
                      for operation in ("get", "set", "scan 100")}
    assert {row["driver"] for row in document["peak_memory"]} == {"memory", "sqlite"}
    peaks = document["peak_memory"]
    store = [row for row in peaks if row["operation"] == "the filled store itself"]
    assert [row["driver"] for row in store] == ["memory"]
    assert store[0]["peak_bytes"] > store[0]["baseline_bytes"] > 0
    assert all(row["sizes"] == [100, 200] for row in document["growth"])
    targets = {row["driver"]: row["target"] for row in document["rows"] if row["section"] == "kv"}
    assert targets == {"memory": 0.5, "sqlite": 0.7}
    markdown = (out / "results.md").read_text()
    assert "## Missed targets" in markdown
    assert "| memory | scan 100 of 2,000 (per key) / scan 100 of 1,000 (per key) (cost) |" in (
        markdown
    )
    assert "quick run" in stdout
    assert "== missed targets" in stdout


def test_the_best_peer_is_judged_among_peers_doing_our_work() -> None:
    """aiocache's default memory cache keeps the caller's object: shown, never the judged peer."""
    from benchmarks.adapters import OBJECT_KEPT
    from benchmarks.method import Measure
    from benchmarks.results import Row

    cells: dict[str, Measure | str] = {
        "ours": Measure([2.0]),
        "raw": Measure([1.0]),
        OBJECT_KEPT: Measure([0.5]),
        "aiocache+json": Measure([4.0]),
    }
    assert Row("kv", "memory", "set", cells, 0.5).best_peer == ("aiocache+json", 2.0)
    # The same name on another driver would be judged: only the memory cache keeps objects.
    assert Row("kv", "redis", "set", cells, 0.85).best_peer == (OBJECT_KEPT, 0.25)


def test_a_ratio_is_the_median_of_the_rounds_own_ratios() -> None:
    """Each round's contenders run back to back: a ratio is taken within rounds, not across."""
    from benchmarks.method import Measure
    from benchmarks.results import Row

    # Seconds per operation over five rounds: the machine slows tenfold after round 2, except
    # for the raw client's turn in round 3. In four rounds of five ours is twice as fast.
    ours = Measure([1.0, 1.0, 10.0, 10.0, 10.0])
    raw = Measure([2.0, 2.0, 2.0, 20.0, 20.0])
    cells: dict[str, Measure | str] = {"ours": ours, "raw": raw}
    row = Row("kv", "sqlite", "get", cells, 0.7)
    # Per round 2, 2, 0.2, 2, 2: the median is 2. The ratio of the two medians (2 against 10)
    # would say 0.2, from figures taken at different moments.
    assert row.raw_ratio == pytest.approx(2.0)
    peers: dict[str, Measure | str] = {**cells, "peer": Measure([4.0, 4.0, 4.0, 40.0, 40.0])}
    best = Row("kv", "sqlite", "get", peers, 0.7).best_peer
    assert best is not None
    assert best[0] == "peer"
    assert best[1] == pytest.approx(4.0)
    # A contender with fewer rounds (one that failed part way) falls back to the medians.
    uneven_cells: dict[str, Measure | str] = {"ours": ours, "raw": Measure([20.0, 20.0])}
    uneven = Row("kv", "sqlite", "get", uneven_cells, 0.7)
    assert uneven.raw_ratio == pytest.approx(2.0)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the benchmark runs on asyncio
async def test_no_contender_starts_a_round_with_anothers_garbage() -> None:
    """Cyclic garbage one body leaves is collected before the next body's clock starts.

    Otherwise a collection of it (in a whole run, of a large heap) lands inside whichever body
    next crosses the collector's threshold. The automatic collector is off here, so only the
    harness's own collection can free the cycle.
    """
    import gc
    import weakref

    from benchmarks.method import interleave

    class Node:
        """A cycle: freed by the cyclic collector only, never by reference counting."""

        def __init__(self) -> None:
            self.itself = self

    left: list[weakref.ref[Node]] = []
    still_alive_at_start: list[bool] = []

    async def leaves_garbage() -> float:
        left.append(weakref.ref(Node()))
        return 1.0

    async def checks() -> float:
        still_alive_at_start.append(any(ref() is not None for ref in left))
        return 1.0

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        cells = await interleave({"a": leaves_garbage, "b": checks}, count=1, rounds=4)
    finally:
        if was_enabled:
            gc.enable()
    assert set(cells) == {"a", "b"}
    assert len(still_alive_at_start) == 5  # the warm-up round and four counted ones
    assert not any(still_alive_at_start)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the benchmark runs on asyncio
async def test_the_fs_peer_is_a_file_per_key_store(tmp_path: Path) -> None:
    """The fs driver's peer keeps one file per key (same backend), and a reset removes them."""
    pytest.importorskip("key_value.aio.stores.filetree", reason="py-key-value[filetree] missing")
    from contextlib import AsyncExitStack

    from benchmarks.adapters import FILETREE, PyKeyValueFileTree, open_contenders

    async with AsyncExitStack() as stack:
        contenders = await open_contenders("fs", stack, tmp_path)
        assert set(contenders) == {"ours", "raw", FILETREE}
        peer = contenders[FILETREE]
        assert isinstance(peer, PyKeyValueFileTree)
        await peer.set("p:0000001", {"a": 1})
        assert await peer.get("p:0000001") == {"a": 1}
        written = peer.directory / peer.collection
        assert [path.name for path in written.iterdir()] == ["p:0000001.json"]
        await peer.reset()
        assert await peer.get("p:0000001") is None
        assert not written.exists()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the benchmark runs on asyncio
async def test_the_raw_queue_recovers_events_stored_as_ours_are(tmp_path: Path) -> None:
    """The raw side of the SQLite ``recover`` row reads the rows the queue would have written.

    Ours stores each event with the publishing clock's time; a raw history stamped 0 read back
    the one cached small int (and SQLite's zero-byte integer) for every row, less work than the
    same events with real times.
    """
    import sqlite3
    import time
    from contextlib import AsyncExitStack

    from benchmarks.queue_cases import _sqlite_raw

    before = time.time_ns() // 1_000_000
    async with AsyncExitStack() as stack:
        raw = _sqlite_raw(tmp_path / "raw.db", stack)
        await raw.load(50)
        assert await raw.recover() == 50
    after = time.time_ns() // 1_000_000
    with sqlite3.connect(tmp_path / "raw.db") as conn:
        stamps = [ts for (ts,) in conn.execute("SELECT ts FROM eventqueue_events")]
    assert len(stamps) == 50
    assert all(before <= ts <= after for ts in stamps), stamps[:3]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the benchmark runs on asyncio
async def test_the_round_budget_cuts_only_the_slow_divisible_contenders() -> None:
    """Under a budget, a divisible body that a probe shows slower than it runs a share of the
    operations from its warm-up on; fast ones, and bodies that cannot be divided, keep the whole
    count; bodies cut together all run the smallest share; every figure stays seconds per
    operation.

    The bodies report made-up seconds (per operation times operations run), so nothing here
    depends on this machine's speed.
    """
    from benchmarks.method import LEAST_SHARE, Divisible, Measure, Timed, interleave

    probe = 1000 // LEAST_SHARE
    ran: dict[str, list[int]] = {}

    def divisible(name: str, per_operation: float, together: bool = False) -> Divisible:
        async def run(n: int) -> float:
            ran.setdefault(name, []).append(n)
            return n * per_operation

        return Divisible(run, together)

    async def whole() -> float:
        ran.setdefault("whole", []).append(1000)
        return 1000 * 0.01

    bodies: dict[str, Timed | Divisible | str] = {
        "slow": divisible("slow", 0.001),  # 1 s for the whole count: a quarter fits
        "slower": divisible("slower", 1.0),  # 1,000 s: the probe's share
        "fast": divisible("fast", 0.0001),  # 0.1 s: within the budget
        "whole": whole,  # 10 s, but not divisible
        "peer": "no API",
    }
    cells = await interleave(bodies, count=1000, rounds=3, budget=0.25)
    assert ran == {
        "slow": [probe, probe] + [250] * 4,  # a cold probe, a warm one, then the share
        "slower": [probe] * 6,
        "fast": [probe] + [1000] * 4,
        "whole": [1000] * 4,
    }
    assert cells["peer"] == "no API"
    measures = {name: cell for name, cell in cells.items() if isinstance(cell, Measure)}
    assert {name: cell.operations for name, cell in measures.items()} == {
        "slow": 250, "slower": probe, "fast": None, "whole": None}
    assert measures["slow"].median == pytest.approx(0.001)
    assert measures["slower"].median == pytest.approx(1.0)

    # Together: the fast one runs the slow one's share in the counted rounds too.
    ran = {}
    together: dict[str, Timed | Divisible | str] = {
        "slow": divisible("slow", 0.001, together=True),
        "fast": divisible("fast", 0.0001, together=True),
    }
    cells = await interleave(together, count=1000, rounds=2, budget=0.25)
    assert ran == {"slow": [probe, probe, 250, 250, 250], "fast": [probe, 1000, 250, 250]}
    assert [cell.operations for cell in cells.values() if isinstance(cell, Measure)] == [250, 250]

    # A slow first touch alone cuts nothing: the warm second probe decides.
    ran = {}

    async def cold_then_fast(n: int) -> float:
        ran.setdefault("cold", []).append(n)
        return 10.0 if len(ran["cold"]) == 1 else n * 0.0001

    cells = await interleave({"cold": Divisible(cold_then_fast)}, count=1000, rounds=2,
                             budget=0.25)
    assert ran == {"cold": [probe, probe, 1000, 1000, 1000]}
    assert isinstance(cells["cold"], Measure)
    assert cells["cold"].operations is None

    # A body divisible only in steps (a scan's keys) runs whole steps, the probe one step.
    ran = {}

    async def steps(n: int) -> float:
        ran.setdefault("steps", []).append(n)
        return n * 0.001

    cells = await interleave({"steps": Divisible(steps, step=100)}, count=1000, rounds=1,
                             budget=0.25)
    assert ran == {"steps": [100, 100, 200, 200]}
    measured = cells["steps"]
    assert isinstance(measured, Measure)
    assert measured.operations == 200
    assert measured.samples == [pytest.approx(0.001)]

    ran = {}
    await interleave(bodies, count=1000, rounds=2)  # no budget: the full run
    assert all(counts == [1000] * 3 for counts in ran.values()), ran
