"""How every figure of ``python -m benchmarks`` is taken: interleaved rounds, warm-up, medians.

On a shared 2-core machine the speed of one process drifts by more than the differences being
measured, so no figure is compared with one taken at another moment. For one operation every
contender (ours, the raw client, each peer) runs once per round, in an order that rotates from
round to round, after one warm-up round that is not counted; each contender's figure is the
median of its rounds, and the spread (half the range, relative to the median) says how far the
rounds disagreed. Only ratios between figures of one table mean anything; a ratio is the median
of the rounds' own ratios (see ``benchmarks.results``).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["NOT_INSTALLED", "NO_API", "Cell", "Measure", "Timed", "interleave", "stopwatch"]

NO_API = "no API"
NOT_INSTALLED = "not installed"

# A contender's body: runs ``count`` operations (plus any untimed preparation of its own) and
# returns the seconds the operations took.
Timed = Callable[[], Awaitable[float]]


@dataclass
class Measure:
    """One contender's seconds per operation, one sample per counted round."""

    samples: list[float]

    @property
    def median(self) -> float:
        """Median seconds per operation."""
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Half the range of the rounds, as a fraction of the median."""
        if len(self.samples) < 2 or self.median == 0:
            return 0.0
        return (max(self.samples) - min(self.samples)) / 2 / self.median


# A table cell: a measure, or why there is none ("no API", "not installed", "failed: ...").
Cell = Measure | str


async def stopwatch(operation: Callable[[], Awaitable[object]]) -> float:
    """Return the seconds ``operation()`` took."""
    start = time.perf_counter()
    await operation()
    return time.perf_counter() - start


async def interleave(
    bodies: dict[str, Timed | str], count: int, rounds: int, warmup: int = 1
) -> dict[str, Cell]:
    """Time every body in turn, ``warmup + rounds`` times, and return seconds per operation.

    A body given as a string is a status ("no API", "not installed") and is passed through. A
    body that raises is reported as ``failed: <error>`` and left out of the later rounds, so
    one broken peer does not stop the run.
    """
    cells: dict[str, Cell] = {name: body for name, body in bodies.items() if isinstance(body, str)}
    live = {name: body for name, body in bodies.items() if not isinstance(body, str)}
    samples: dict[str, list[float]] = {name: [] for name in live}
    names = list(live)
    for round_number in range(warmup + rounds):
        shift = round_number % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if name in cells:
                continue
            # Every body starts from the same collector state. Otherwise the garbage one
            # contender leaves (or, in a whole run, an earlier section leaves) is collected in
            # whichever body next crosses the collector's threshold: a full collection of a
            # large heap then lands in one side's round (a Redis recover round measured 8x its
            # median that way, with 3,000,000 unrelated objects alive in the process).
            gc.collect()
            try:
                seconds = await live[name]()
            except Exception as error:  # a peer's failure is a result, not a crash
                cells[name] = f"failed: {type(error).__name__}: {str(error)[:80]}"
                continue
            if round_number >= warmup:
                samples[name].append(seconds / count)
    for name in names:
        if name not in cells:
            cells[name] = Measure(samples[name])
    return {name: cells[name] for name in bodies}
