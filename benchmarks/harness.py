"""Timing helpers shared by the benchmarks: ops per second and ratios against a raw baseline.

Every benchmark times our code and the raw operation it wraps in the same process, interleaved
over several rounds, and reports the best round of each, so that noise from the machine hits both
sides alike.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Comparison", "Report", "time_async"]

ROUNDS = 5


async def time_async(operation: Callable[[int], Awaitable[object]], count: int) -> float:
    """Return the seconds ``operation(i)`` takes for ``i`` in ``range(count)``, run in sequence."""
    start = time.perf_counter()
    for index in range(count):
        await operation(index)
    return time.perf_counter() - start


@dataclass
class Comparison:
    """One operation, timed for the library and for its raw baseline."""

    label: str
    count: int
    ours: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)

    @property
    def ours_rate(self) -> float:
        """Best operations per second of the library."""
        return self.count / min(self.ours)

    @property
    def raw_rate(self) -> float:
        """Best operations per second of the raw baseline."""
        return self.count / min(self.raw)

    @property
    def ratio(self) -> float:
        """Library throughput as a fraction of the raw baseline's."""
        return self.ours_rate / self.raw_rate


@dataclass
class Report:
    """A table of comparisons for one backend, printed as ``label ours/s raw/s ratio``."""

    title: str
    rows: list[Comparison] = field(default_factory=list)

    async def compare(
        self,
        label: str,
        count: int,
        ours: Callable[[], Awaitable[float]],
        raw: Callable[[], Awaitable[float]],
        rounds: int = ROUNDS,
    ) -> Comparison:
        """Time ``ours`` and ``raw`` alternately ``rounds`` times; each returns its seconds."""
        row = Comparison(label, count)
        for _ in range(rounds):
            row.ours.append(await ours())
            row.raw.append(await raw())
        self.rows.append(row)
        return row

    def render(self) -> str:
        """Return the table as text."""
        lines = [
            f"== {self.title}",
            f"{'operation':<34}{'ours ops/s':>14}{'raw ops/s':>14}{'ratio':>8}",
        ]
        for row in self.rows:
            lines.append(
                f"{row.label:<34}{row.ours_rate:>14,.0f}{row.raw_rate:>14,.0f}{row.ratio:>8.2f}"
            )
        return "\n".join(lines)
