"""How every figure of ``python -m benchmarks`` is taken: interleaved rounds, warm-up, medians.

On a shared 2-core machine the speed of one process drifts by more than the differences being
measured, so no figure is compared with one taken at another moment. For one operation every
contender (ours, the raw client, each peer) runs once per round, in an order that rotates from
round to round, after one warm-up round that is not counted; each contender's figure is the
median of its rounds, and the spread (half the range, relative to the median) says how far the
rounds disagreed. Only ratios between figures of one table mean anything; a ratio is the median
of the rounds' own ratios (see ``benchmarks.results``).

Before each timed body the cyclic collector runs, untimed, so that no contender pays for garbage
another left. Under a round budget (``--quick``), a contender that a probe in its warm-up round
shows too slow to run a :class:`Divisible` operation's whole count within the budget runs the
share that fits (never less than a twentieth), so that the slowest peer no longer sets the
length of a run; its figure is still seconds per operation, over rounds about as long as the
budget.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "NOT_INSTALLED", "NO_API", "Cell", "Divisible", "Measure", "Timed", "interleave", "stopwatch",
]

NO_API = "no API"
NOT_INSTALLED = "not installed"

# A contender's body: runs ``count`` operations (plus any untimed preparation of its own) and
# returns the seconds the operations took.
Timed = Callable[[], Awaitable[float]]

# A cut-down round keeps at least this share of the operations (1 / LEAST_SHARE of them).
LEAST_SHARE = 20


@dataclass(frozen=True)
class Divisible:
    """A body whose round is ``count`` like operations, of which it can run just the first ``n``.

    ``run(n)`` runs them (plus any untimed preparation of its own) and returns their seconds.
    ``step``: ``n`` is always a multiple of it (a scan's keys come a whole scan at a time).
    ``together``: a cut applies to every such body of the operation alike (the smallest share
    wins), for operations whose cost per step depends on how many steps came before (each
    ``add_message`` meets a session one message longer), so that every contender meets the
    same sizes.
    """

    run: Callable[[int], Awaitable[float]]
    together: bool = False
    step: int = 1


@dataclass
class Measure:
    """One contender's seconds per operation, one sample per counted round."""

    samples: list[float]
    # Operations per counted round when the round budget cut them (None: the operation's count).
    operations: int | None = None

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
    bodies: Mapping[str, Timed | Divisible | str],
    count: int,
    rounds: int,
    warmup: int = 1,
    budget: float | None = None,
) -> dict[str, Cell]:
    """Time every body in turn, ``warmup + rounds`` times, and return seconds per operation.

    A body given as a string is a status ("no API", "not installed") and is passed through. A
    body that raises is reported as ``failed: <error>`` and left out of the later rounds, so
    one broken peer does not stop the run. With a ``budget`` (seconds), each :class:`Divisible`
    body first runs a probe of ``count // LEAST_SHARE`` operations in its last warm-up round (a
    second one if the first, cold, was slow); if the whole count would take longer than the
    budget at the probe's pace, that round and the counted ones run the share that fits (never
    fewer than the probe's).
    """
    cells: dict[str, Cell] = {name: body for name, body in bodies.items() if isinstance(body, str)}
    live = {name: body for name, body in bodies.items() if not isinstance(body, str)}
    samples: dict[str, list[float]] = {name: [] for name in live}
    shares = dict.fromkeys(live, count)
    names = list(live)
    for round_number in range(warmup + rounds):
        shift = round_number % len(names) if names else 0
        sizing = budget is not None and round_number == warmup - 1
        for name in names[shift:] + names[:shift]:
            if name in cells:
                continue
            body = live[name]
            try:
                if sizing and isinstance(body, Divisible):
                    assert budget is not None  # sizing says so
                    shares[name] = await _fitting_share(body, count, budget)
                seconds = await _timed(body, shares[name])
            except Exception as error:  # a peer's failure is a result, not a crash
                cells[name] = f"failed: {type(error).__name__}: {str(error)[:80]}"
                continue
            if round_number >= warmup:
                samples[name].append(seconds / shares[name])
        if sizing:
            together = [name for name, body in live.items()
                        if isinstance(body, Divisible) and body.together and name not in cells]
            least = min((shares[name] for name in together), default=count)
            shares.update(dict.fromkeys(together, least))
    for name in names:
        if name not in cells:
            cut = shares[name] if shares[name] != count else None
            cells[name] = Measure(samples[name], cut)
    return {name: cells[name] for name in bodies}


async def _timed(body: Timed | Divisible, share: int) -> float:
    """Run one body, from the same collector state as every other.

    Otherwise the garbage one contender leaves (or, in a whole run, an earlier section leaves)
    is collected in whichever body next crosses the collector's threshold: a full collection of
    a large heap then lands in one side's round (a Redis recover round measured 8x its median
    that way, with 3,000,000 unrelated objects alive in the process).
    """
    gc.collect()
    return await (body.run(share) if isinstance(body, Divisible) else body())


async def _fitting_share(body: Divisible, count: int, budget: float) -> int:
    """How many of ``count`` operations ``body`` runs within ``budget`` seconds, from a probe."""
    step = body.step
    probe = max(count // LEAST_SHARE // step, 1) * step
    seconds = await _timed(body, probe)
    if seconds * count / probe > budget:
        # The first probe is the contender's first touch of the operation (cold caches, state
        # built lazily: through the memory driver the first 100 sets took 16-29 ms, the next
        # 100 0.15-0.19 ms); only a warm one may cut its rounds.
        seconds = min(seconds, await _timed(body, probe))
    whole = seconds * count / probe
    if whole <= budget:
        return count
    return max(int(count * budget / whole) // step * step, probe)
