"""The sizes of a run: the issue's (full run) and smaller ones for ``--quick``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["FULL", "QUICK", "STAND_IN_CAPS", "Sizes"]


@dataclass(frozen=True)
class Sizes:
    """How much work each operation does; every field can be overridden with ``--size``."""

    points: int  # sequential set/get/miss/delete per round
    batch: int  # items of set_many/get_many
    scan_small: int  # keys a 1,000-key scan runs among...
    scan_large: int  # ...and among many more
    scan_match: int  # keys a scan returns
    concurrent: int  # operations of the 100 concurrent tasks, per round
    large: int  # 1 MiB values written or read per round
    growth: tuple[int, ...]  # store sizes for the "cost as the store grows" rows
    peak_keys: int  # keys of the peak-memory scan and export
    sessions: int  # sessions the container lookup runs among
    messages: int  # messages get_messages returns
    queue_single: int  # events published one at a time per round
    queue_batches: int  # publish_many calls of 100 per round
    recover: int  # events recover() returns
    latency: int  # publish-to-handler round trips per round
    rounds: int  # counted rounds (one warm-up round more)
    # Round budget in milliseconds (0: none). A contender too slow to run the whole count of a
    # point operation (set, get, miss, delete, add_message), of the scans or of the concurrent
    # tasks within it runs fewer a round (benchmarks.method.Divisible); the output names each
    # such cell.
    round_ms: int = 0

    @property
    def budget(self) -> float | None:
        """The round budget in seconds, or None."""
        return self.round_ms / 1000 if self.round_ms > 0 else None

    def with_overrides(self, pairs: list[str]) -> Sizes:
        """Return a copy with ``NAME=VALUE`` overrides (``growth`` takes ``1000,10000``)."""
        changes: dict[str, Any] = {}
        for pair in pairs:
            name, _, value = pair.partition("=")
            if name not in asdict(self):
                raise ValueError(f"unknown size {name!r}; sizes: {', '.join(asdict(self))}")
            if name == "growth":
                changes[name] = tuple(int(part) for part in value.split(","))
            else:
                changes[name] = int(value)
        return replace(self, **changes)

    def capped(self, caps: dict[str, int]) -> Sizes:
        """Return a copy with each named size at most its cap."""
        values = asdict(self)
        return replace(self, **{name: min(values[name], cap) for name, cap in caps.items()})

    def describe(self) -> str:
        """One line naming the sizes."""
        def show(value: int | tuple[int, ...]) -> str:
            return ",".join(f"{v:,}" for v in value) if isinstance(value, tuple) else f"{value:,}"

        return ", ".join(f"{name}={show(value)}" for name, value in asdict(self).items())


FULL = Sizes(
    points=2_000, batch=10_000, scan_small=10_000, scan_large=100_000, scan_match=1_000,
    concurrent=10_000, large=20, growth=(1_000, 10_000, 100_000, 1_000_000),
    peak_keys=1_000_000, sessions=100_000, messages=1_000, queue_single=1_000,
    queue_batches=20, recover=10_000, latency=200, rounds=7,
)
# The MongoDB stand-in (SecantusDB) answers in milliseconds where a server takes microseconds:
# at the full sizes its entity rows alone would take hours. Its ratios are what matter.
STAND_IN_CAPS = {"points": 100, "batch": 1_000, "scan_large": 20_000, "concurrent": 500,
                 "sessions": 200, "messages": 200}
# Smaller everywhere the full sizes take minutes; the output says "quick" and lists them. Point
# operations keep the full count, since a round of 300 took a few milliseconds, so one WAL flush
# or one preemption decided it (SQLite delete read 0.30 of raw at 300 and 0.90 at 2,000); the
# round budget cuts them only for a contender whose round of them lasts longer than 250 ms (a
# slow peer, a server), which is where a quick run spent most of its time.
QUICK = Sizes(
    points=2_000, batch=2_000, scan_small=10_000, scan_large=30_000, scan_match=1_000,
    concurrent=2_000, large=5, growth=(1_000, 30_000), peak_keys=30_000, sessions=2_000,
    messages=1_000, queue_single=300, queue_batches=5, recover=2_000, latency=30, rounds=5,
    round_ms=250,
)
