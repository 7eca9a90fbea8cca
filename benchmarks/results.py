"""The results of one run: rows, the issue's targets, and the text, Markdown and JSON forms.

A :class:`Row` is one operation on one driver with a cell per contender (``ours``, ``raw``, each
peer). Ratios are throughputs, ours over theirs: above 1 we are faster. A ratio under its
target is marked ``MISS`` (with the shortfall), so a reader finds the misses at a glance.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from benchmarks.adapters import UNJUDGED_PEERS
from benchmarks.method import Cell, Measure

__all__ = ["GrowthRow", "PeakRow", "Results", "Row", "raw_target"]

# Ours / raw, per driver (issue 12). MongoDB has no target: its server is a stand-in.
_RAW_TARGETS = {
    "memory": 0.5,
    "sqlite": 0.7,
    "fs": 0.7,
    "redis": 0.85,
    "postgresql": 0.85,
    "mysql": 0.85,
}
QUEUE_TARGET = 0.7
PEER_TARGET = 1.0
# The 1,000-of-100,000 scan within twice the 1,000-of-10,000 scan; point operations at the
# largest size within 1.5 times their cost at 1,000 keys.
SCAN_GROWTH_LIMIT = 2.0
POINT_GROWTH_LIMIT = 1.5


def raw_target(driver: str) -> float | None:
    """Return the issue's ours/raw target for ``driver`` (None where it sets none)."""
    return _RAW_TARGETS.get(driver)


def _rate(cell: Cell | None) -> float | None:
    return 1 / cell.median if isinstance(cell, Measure) and cell.median > 0 else None


def _speed_ratio(ours: Cell | None, other: Cell | None) -> float | None:
    """Our throughput over ``other``'s: the median of the rounds' own ratios.

    Each round times every contender back to back, so a round's ratio is taken under one load;
    its median is steadier than the ratio of the two medians when the machine's speed drifts
    between rounds (each median may then come from a different moment). Contenders with
    unequal round counts fall back to the ratio of the medians.
    """
    ours_rate, other_rate = _rate(ours), _rate(other)
    if ours_rate is None or other_rate is None:
        return None
    # _rate said so:
    assert isinstance(ours, Measure)
    assert isinstance(other, Measure)
    if len(ours.samples) != len(other.samples) or 0 in ours.samples:
        return ours_rate / other_rate
    return statistics.median(
        theirs / mine for mine, theirs in zip(ours.samples, other.samples, strict=True)
    )


def _format_rate(value: float) -> str:
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _format_cell(cell: Cell | None, unit: str) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, str):
        return cell
    if unit == "ms":
        return f"{cell.median * 1e3:.3g} ms ±{cell.spread:.0%}"
    return f"{_format_rate(1 / cell.median)}/s ±{cell.spread:.0%}"


def _mark(ratio: float | None, target: float | None) -> str:
    if ratio is None:
        return "-"
    if target is None:
        return f"{ratio:.2f}"
    if ratio >= target:
        return f"{ratio:.2f} (>= {target:g})"
    # A miss by less than the rounding shows its third decimal, never "0.70 MISS (< 0.7)".
    shown = f"{ratio:.2f}" if round(ratio, 2) < target else f"{ratio:.3f}"
    return f"{shown} MISS (< {target:g}, -{1 - ratio / target:.1%})"


@dataclass
class Row:
    """One operation on one driver: a cell per contender, and the ours/raw target."""

    section: str
    driver: str
    operation: str
    cells: dict[str, Cell]
    target: float | None
    unit: str = "op"
    note: str = ""

    @property
    def peers(self) -> dict[str, Cell]:
        """The cells of contenders other than ours and raw."""
        return {name: cell for name, cell in self.cells.items() if name not in ("ours", "raw")}

    @property
    def raw_ratio(self) -> float | None:
        """Our throughput over the raw client's."""
        return _speed_ratio(self.cells.get("ours"), self.cells.get("raw"))

    @property
    def best_peer(self) -> tuple[str, float] | None:
        """The fastest peer that offers the operation, and our throughput over its.

        Peers doing other work than ours (:data:`~benchmarks.adapters.UNJUDGED_PEERS`) are
        shown in the table but never chosen here.
        """
        ours = _rate(self.cells.get("ours"))
        rates = {
            name: rate
            for name, cell in self.peers.items()
            if (self.driver, name) not in UNJUDGED_PEERS and (rate := _rate(cell))
        }
        if ours is None or not rates:
            return None
        name = max(rates, key=lambda peer: rates[peer])
        ratio = _speed_ratio(self.cells.get("ours"), self.peers[name])
        return None if ratio is None else (name, ratio)

    @property
    def misses(self) -> list[str]:
        """What this row misses, in words (empty when every target is met)."""
        found = []
        ratio = self.raw_ratio
        if ratio is not None and self.target is not None and ratio < self.target:
            found.append(f"ours/raw {ratio:.2f} < {self.target:g}")
        best = self.best_peer
        if best is not None and best[1] < PEER_TARGET:
            found.append(f"ours/{best[0]} {best[1]:.2f} < 1")
        return found


@dataclass
class GrowthRow:
    """What one operation costs as the store grows: seconds per operation at each size."""

    driver: str
    operation: str
    sizes: list[int]
    ours: list[Cell]
    raw: list[Cell]
    limit: float

    @property
    def growth(self) -> float | None:
        """Our cost at the largest size over our cost at the smallest."""
        first, last = self.ours[0], self.ours[-1]
        if isinstance(first, Measure) and isinstance(last, Measure) and first.median > 0:
            return last.median / first.median
        return None

    @property
    def misses(self) -> list[str]:
        """What this row misses, in words."""
        growth = self.growth
        if growth is not None and growth > self.limit:
            return [f"cost x{growth:.2f} from {self.sizes[0]:,} to {self.sizes[-1]:,} keys "
                    f"> x{self.limit:g}"]
        return []


@dataclass
class PeakRow:
    """Peak memory of one streaming operation over a store of ``keys`` keys."""

    driver: str
    operation: str
    keys: int
    peak_bytes: int
    baseline_bytes: int
    method: str

    @property
    def extra(self) -> int:
        """Peak above the baseline (the same process doing almost nothing)."""
        return max(0, self.peak_bytes - self.baseline_bytes)


@dataclass
class Results:
    """Everything one run measured, with how it was run."""

    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    growth: list[GrowthRow] = field(default_factory=list)
    peaks: list[PeakRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def scan_growth(self) -> list[tuple[str, str, float]]:
        """Per driver, our 1,000-key scan among the larger store over among the smaller."""
        found = []
        for driver in dict.fromkeys(row.driver for row in self.rows):
            scans = [row for row in self.rows if row.driver == driver and row.section == "kv"
                     and row.operation.startswith("scan ")]
            if len(scans) == 2:
                small, large = (row.cells.get("ours") for row in scans)
                if isinstance(small, Measure) and isinstance(large, Measure) and small.median:
                    label = f"{scans[1].operation} / {scans[0].operation}"
                    found.append((driver, label, large.median / small.median))
        return found

    def misses(self) -> list[str]:
        """Every missed target, one line each."""
        lines = [f"{row.driver} {row.operation}: {miss}"
                 for row in self.rows for miss in row.misses]
        lines += [f"{driver} {label}: cost x{ratio:.2f} > x{SCAN_GROWTH_LIMIT:g}"
                  for driver, label, ratio in self.scan_growth() if ratio > SCAN_GROWTH_LIMIT]
        lines += [f"{row.driver} {row.operation}: {miss}" for row in self.growth
                  for miss in row.misses]
        return lines

    # -- text ---------------------------------------------------------------------------------

    def _table(self) -> tuple[list[str], list[list[str]]]:
        header = ["section", "driver", "operation", "ours", "raw", "ours/raw (target)",
                  "peers", "ours/best peer"]
        body = []
        for row in self.rows:
            peers = "; ".join(
                f"{name} {_format_cell(cell, row.unit)}" for name, cell in row.peers.items()
            )
            best = row.best_peer
            versus = "-" if best is None else f"{_mark(best[1], PEER_TARGET)} vs {best[0]}"
            body.append([
                row.section, row.driver, row.operation,
                _format_cell(row.cells.get("ours"), row.unit),
                _format_cell(row.cells.get("raw"), row.unit),
                _mark(row.raw_ratio, row.target), peers or "-", versus,
            ])
        return header, body

    def _growth_table(self) -> tuple[list[str], list[list[str]]]:
        sizes = sorted({size for row in self.growth for size in row.sizes})
        header = ["driver", "operation", *[f"ours µs @{size:,}" for size in sizes],
                  "growth (limit)", *[f"raw µs @{size:,}" for size in sizes]]
        body = []
        for row in self.growth:
            by_size = dict(zip(row.sizes, row.ours, strict=True))
            raw_by_size = dict(zip(row.sizes, row.raw, strict=True))
            growth = row.growth
            mark = "-" if growth is None else (
                f"x{growth:.2f} (<= x{row.limit:g})" if growth <= row.limit
                else f"x{growth:.2f} MISS (> x{row.limit:g})"
            )
            body.append([
                row.driver, row.operation,
                *[_micro(by_size.get(size)) for size in sizes], mark,
                *[_micro(raw_by_size.get(size)) for size in sizes],
            ])
        return header, body

    def _peak_table(self) -> tuple[list[str], list[list[str]]]:
        header = ["driver", "operation", "keys", "peak", "baseline", "above baseline", "method"]
        body = [
            [row.driver, row.operation, f"{row.keys:,}", _mib(row.peak_bytes),
             _mib(row.baseline_bytes), _mib(row.extra), row.method]
            for row in self.peaks
        ]
        return header, body

    def render_text(self) -> str:
        """Return the tables as aligned plain text (what the command prints)."""
        parts = [self._heading()]
        for title, (header, body) in self._sections():
            if body:
                parts.append(f"\n== {title}\n" + _aligned(header, body))
        scan_growth = self.scan_growth()
        if scan_growth:
            parts.append("\n== scan cost, larger store over smaller "
                         f"(limit x{SCAN_GROWTH_LIMIT:g})")
            parts += [f"  {driver}: x{ratio:.2f}" for driver, _, ratio in scan_growth]
        misses = self.misses()
        parts.append("\n== missed targets" + ("" if misses else ": none"))
        parts.extend(f"  {line}" for line in misses)
        parts.extend(f"note: {note}" for note in self.notes)
        return "\n".join(parts)

    def render_markdown(self) -> str:
        """Return the results as Markdown (results.md)."""
        parts = ["# Benchmark results", "", self._heading(), "", "## Ratios", "",
                 self.render_summary()]
        for title, (header, body) in self._sections():
            if not body:
                continue
            parts += [f"## {title}", "", "| " + " | ".join(header) + " |",
                      "|" + "---|" * len(header)]
            parts += ["| " + " | ".join(cell.replace("|", "/") for cell in line) + " |"
                      for line in body]
            parts.append("")
        misses = self.misses()
        parts += ["## Missed targets", ""]
        parts += [f"- {line}" for line in misses] or ["None."]
        if self.notes:
            parts += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        return "\n".join(parts) + "\n"

    def render_summary(self) -> str:
        """Return the ratios alone as a Markdown table: one line per driver and operation."""
        lines = ["| driver | operation | ours/raw (target) | ours/best peer |", "|---|---|---|---|"]
        for row in self.rows:
            best = row.best_peer
            versus = "-" if best is None else f"{_mark(best[1], PEER_TARGET)} {best[0]}"
            lines.append(f"| {row.driver} | {row.operation} | {_mark(row.raw_ratio, row.target)} "
                         f"| {versus} |")
        for driver, label, cost in self.scan_growth():
            mark = f"x{cost:.2f}" + (
                f" MISS (> x{SCAN_GROWTH_LIMIT:g})" if cost > SCAN_GROWTH_LIMIT else ""
            )
            lines.append(f"| {driver} | {label} (cost) | {mark} | - |")
        for growth in self.growth:
            ratio = growth.growth
            mark = "-" if ratio is None else (
                f"x{ratio:.2f}" + (f" MISS (> x{growth.limit:g})" if ratio > growth.limit else "")
            )
            lines.append(f"| {growth.driver} | {growth.operation} at {growth.sizes[-1]:,} keys / "
                         f"at {growth.sizes[0]:,} | {mark} | - |")
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        """Return every sample and setting as JSON (results.json)."""

        def cell(value: Cell) -> Any:
            if isinstance(value, Measure):
                return {"median_s": value.median, "spread": value.spread,
                        "samples_s": value.samples, "operations_per_round": value.operations}
            return value

        document = {
            "settings": self.settings,
            "rows": [
                {"section": row.section, "driver": row.driver, "operation": row.operation,
                 "unit": row.unit, "target": row.target, "note": row.note,
                 "ours_over_raw": row.raw_ratio,
                 "ours_over_best_peer": None if row.best_peer is None else {
                     "peer": row.best_peer[0], "ratio": row.best_peer[1]},
                 "cells": {name: cell(value) for name, value in row.cells.items()}}
                for row in self.rows
            ],
            "growth": [
                {"driver": row.driver, "operation": row.operation, "sizes": row.sizes,
                 "limit": row.limit, "growth": row.growth,
                 "ours": [cell(value) for value in row.ours],
                 "raw": [cell(value) for value in row.raw]}
                for row in self.growth
            ],
            "peak_memory": [
                {"driver": row.driver, "operation": row.operation, "keys": row.keys,
                 "peak_bytes": row.peak_bytes, "baseline_bytes": row.baseline_bytes,
                 "method": row.method}
                for row in self.peaks
            ],
            "misses": self.misses(),
            "notes": self.notes,
        }
        return json.dumps(document, indent=2)

    def _heading(self) -> str:
        settings = self.settings
        return (
            f"{settings['mode']} run, {settings['rounds']} counted rounds after "
            f"{settings['warmup']} warm-up, medians (± half the range of the rounds); "
            f"ratios are throughputs ours/theirs from one process, the median of each round's "
            f"ratio. Sizes: {settings['sizes']}."
            + (" Seconds per driver: " + ", ".join(
                f"{driver} {seconds:g}" for driver, seconds in settings["seconds"].items()
            ) + "." if settings.get("seconds") else "")
        )

    def _sections(self) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
        return [
            ("operations (ops/s; ours/raw against the issue's target)", self._table()),
            ("cost as the store grows (µs per operation)", self._growth_table()),
            ("peak memory of streaming reads", self._peak_table()),
        ]


def _micro(cell: Cell | None) -> str:
    if isinstance(cell, Measure):
        return f"{cell.median * 1e6:.3g}"
    return cell or "-"


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _aligned(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[index]) for line in [header, *body]) for index in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True))
             .rstrip() for line in [header, *body]]
    return "\n".join(lines)
