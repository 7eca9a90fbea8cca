"""The contract clauses the suite checks on the driver itself, beneath ``Storage``.

``Storage`` passes bytes through and hides a few things a driver can get wrong: the exact type of
what it returns, what each operation does once the driver is closed, what a second driver on the
same store sees, whether a batch is visible half written, and how much a scan costs. These
clauses call the driver directly. :class:`DriverClauses` is mixed into
:class:`~kvstore.testing.DriverConformance`; its tests are named after the clause they check.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
import pytest

from kvstore.driver import CLEAR_CHUNK, BaseDriver, as_base_driver
from kvstore.errors import StorageClosed
from kvstore.storage import Storage
from kvstore.testing.cost import Cost, measure, measure_best
from kvstore.testing.reporting import describe, first_difference, shape_problem

__all__ = [
    "DriverClauses",
    "DriverFactory",
    "capable_storage",
    "check_driver_shape",
    "clear_and_close",
]

DriverFactory = Callable[[], BaseDriver]

# Keys stored around a narrow scan: enough that walking them costs far more than the scan.
_FILLER = 1_500
# A broad scan is measured over two and three times this many matches: more than any built-in
# driver's scan page (2000).
_STREAMED = 2_500
# More items than BaseDriver reads per page (and than every built-in driver's item page).
_PAGED_ITEMS = 2 * CLEAR_CHUNK + 500


async def drain(iterator: AsyncIterator[Any]) -> list[Any]:
    """Read an async iterator to the end and return what it yielded."""
    return [item async for item in iterator]


async def _count(iterator: AsyncIterator[Any]) -> int:
    # Counts without holding what it reads, so that a scan's own memory is what gets measured.
    count = 0
    async for _ in iterator:
        count += 1
    return count


def _wrong_type(where: str, value: object) -> str | None:
    if value is None or type(value) is bytes:
        return None
    return (
        f"{where} returned {type(value).__name__} {describe(value)}: a driver returns exactly"
        " `bytes` (wrap with bytes(...)), since == hides the difference but callers do not"
    )


def _spread(count: int, head: str) -> list[str]:
    # Keys under ``head``, fifty to a segment, fifty segments to a segment above: a driver that
    # stores a segment per folder holds a few small listings at a time, however many match.
    return [
        f"{head}{index // 2500}:{index // 50 % 50:02d}:{index % 50:02d}" for index in range(count)
    ]


class DriverClauses:
    """Driver-level clauses: exact types, use after close, durability, atomicity, scan cost."""

    persistent: ClassVar[bool]
    async_backends: ClassVar[tuple[str, ...]]
    # False when the backend runs inside the test process (an embedded server): the scan-cost
    # clauses measure the whole process, so the server's work would count as the driver's.
    scan_cost_measurable: ClassVar[bool] = True

    # -- fixtures ---------------------------------------------------------------------------

    @pytest.fixture
    def make_driver(
        self, driver_factory: DriverFactory, batch_path: str, anyio_backend: str
    ) -> DriverFactory:
        """Return a callable making a new driver, on the chosen batch path, checked for shape."""
        check_driver_shape(driver_factory, anyio_backend)

        def make() -> BaseDriver:
            return as_base_driver(driver_factory(), default_batches=batch_path == "default")

        return make

    @pytest.fixture
    def make_native_driver(
        self, driver_factory: DriverFactory, anyio_backend: str
    ) -> DriverFactory:
        """A callable making a new driver with its own batch methods, checked for shape.

        A clause that takes it runs once per event loop, not once per batch path: for what it
        calls, both paths reach the same driver code.
        """
        check_driver_shape(driver_factory, anyio_backend)
        return lambda: as_base_driver(driver_factory())

    @pytest.fixture
    async def driver(self, make_driver: DriverFactory) -> AsyncIterator[BaseDriver]:
        """An empty driver on the chosen batch path; cleared and closed afterwards."""
        driver = make_driver()
        await driver.clear("")
        try:
            yield driver
        finally:
            await clear_and_close(driver, make_driver)

    # -- values -----------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_values_come_back_as_exact_bytes(self, driver: BaseDriver) -> None:
        """Values: get, get_many and items return exactly ``bytes`` (not a view or buffer)."""
        values = {
            "v:empty": b"",
            "v:nul": b"\x00",
            "v:all": bytes(range(256)),
            "v:big": b"b" * 70_000,
        }
        await driver.set("v:empty", values["v:empty"])
        await driver.set_many([(key, value) for key, value in values.items() if key != "v:empty"])
        problems = [_wrong_type(f"get({key!r})", await driver.get(key)) for key in values]
        got = await driver.get_many(list(values))
        problems += [_wrong_type(f"get_many(...)[{i}]", value) for i, value in enumerate(got)]
        async for key, value in driver.items("v:"):
            problems.append(_wrong_type(f"items() for {key!r}", value))
        found = [problem for problem in problems if problem]
        assert not found, "\n".join(found)
        assert got == list(values.values()), first_difference(got, list(values.values()))

    @pytest.mark.anyio
    async def test_items_keep_values_with_their_keys_across_pages(self, driver: BaseDriver) -> None:
        """Scans: items yields each key with its own value, over several pages, in order."""
        keys = _spread(_PAGED_ITEMS, "i:")
        expected = [(key, f"{key}={index}".encode()) for index, key in enumerate(keys)]
        await driver.set_many(expected)
        await driver.set_many([("h", b"before"), ("j", b"after")])
        got = await drain(driver.items("i:"))
        assert got == expected, "items('i:') " + str(first_difference(got, expected))
        everything = await drain(driver.items(""))
        assert everything == [("h", b"before"), *expected, ("j", b"after")], "items('') " + str(
            first_difference(everything, [("h", b"before"), *expected, ("j", b"after")])
        )

    # -- lifetime ---------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_every_operation_after_close_raises_storage_closed(
        self, make_driver: DriverFactory
    ) -> None:
        """Lifetime: close is idempotent; every operation afterwards raises StorageClosed."""
        used = make_driver()
        await used.set("a", b"1")
        await used.close()
        try:
            await used.close()
        except Exception as error:  # any exception breaks the clause
            pytest.fail(
                f"a second close() raised {type(error).__name__}: {error}. close() must be"
                " idempotent: return at once if self.closed",
                pytrace=False,
            )
        unused = make_driver()
        await unused.close()
        for driver, which in ((used, "a closed driver"), (unused, "a driver closed unused")):
            silent = await _operations_not_refused(driver)
            assert not silent, (
                f"on {which}, these operations did not raise StorageClosed: "
                + "; ".join(silent)
                + ". Call self.ensure_open() first in each (BaseDriver's defaults do), and"
                " self.mark_closed() in close()."
            )
        await clear_and_close(make_driver(), make_driver)

    @pytest.mark.anyio
    async def test_overwrites_deletes_and_clears_reach_a_new_driver(
        self, make_driver: DriverFactory
    ) -> None:
        """Operations: a write that returned is visible to a new driver on the same store.

        Overwrites, deletes and clears too, while the writer is still open and after it closes.
        """
        if not self.persistent:
            pytest.skip("the test class declares persistent = False")
        opened: list[BaseDriver] = []

        def new_driver() -> BaseDriver:
            opened.append(make_driver())
            return opened[-1]

        try:
            writer = new_driver()
            await writer.clear("")
            await writer.set_many(
                [("o:set", b"old"), ("o:many", b"old"), ("d:one", b"x"), ("d:many", b"x")]
            )
            await writer.set_many([(f"c:{index}", b"x") for index in range(5)])
            await writer.set("o:set", b"new")
            await writer.set_many([("o:many", b"new"), ("fresh", b"new")])
            await writer.delete("d:one")
            await writer.delete_many(["d:many"])
            await writer.clear("c:")
            expected = [("fresh", b"new"), ("o:many", b"new"), ("o:set", b"new")]
            await _assert_sees(new_driver(), expected, "a new driver, while the writer is open,")
            await writer.close()
            await _assert_sees(new_driver(), expected, "a new driver, after the writer closed,")
            last = new_driver()
            await last.clear("")
            await last.close()
            await _assert_sees(new_driver(), [], "a new driver, after clear('') and close,")
        finally:
            for driver in opened:
                await driver.close()
            await clear_and_close(make_driver(), make_driver)

    @pytest.mark.anyio
    async def test_persistence_is_declared(self, make_driver: DriverFactory) -> None:
        """A store that keeps data across drivers says so, so the durability clauses run."""
        if self.persistent:
            pytest.skip("the test class declares persistent = True")
        first = make_driver()
        second = make_driver()
        try:
            await first.set("declared", b"1")
            seen = await second.get("declared")
        finally:
            await first.close()
            await second.close()
        assert seen is None, (
            "a new driver from driver_factory sees what another one wrote, so the store is"
            " persistent: set `persistent = True` on the test class (the durability clauses"
            " then run; on the command line, drop --ephemeral), or make driver_factory return"
            " drivers on separate stores"
        )

    # -- atomic batches ---------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_a_concurrent_reader_never_sees_part_of_a_batch(
        self, make_driver: DriverFactory, batch_path: str
    ) -> None:
        """Operations: with ``atomic_batches = True``, set_many/delete_many are all or nothing."""
        if batch_path == "default":
            pytest.skip("BaseDriver's default batches write one key at a time")
        writer = make_driver()
        if not getattr(writer, "atomic_batches", False):
            await writer.close()
            pytest.skip("the driver does not declare atomic_batches = True")
        reader = make_driver() if self.persistent else writer
        keys = [f"batch:{index:03d}" for index in range(40)]
        torn: list[list[bytes | None]] = []
        done = anyio.Event()

        async def write() -> None:
            for generation in range(1, 26):
                await writer.set_many([(key, b"%d" % generation) for key in keys])
            await writer.delete_many(keys)
            done.set()

        async def read() -> None:
            while not done.is_set():
                values = await reader.get_many(keys)
                if len(set(values)) != 1:
                    torn.append(values)
                    return
                # Lets the writer run even against a driver whose reads never suspend.
                await anyio.lowlevel.checkpoint()

        try:
            await writer.clear("")
            await writer.set_many([(key, b"0") for key in keys])
            with anyio.fail_after(120):
                async with anyio.create_task_group() as group:
                    group.start_soon(read)
                    group.start_soon(write)
            assert not torn, (
                "the driver declares atomic_batches = True, but a reader saw part of a batch: "
                + describe(torn[0])
            )
            assert await writer.get_many(keys) == [None] * len(keys)
        finally:
            if reader is not writer:
                await reader.close()
            await clear_and_close(writer, make_driver)

    # -- scan cost --------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_a_narrow_scan_costs_the_same_in_a_large_store(
        self, driver_factory: DriverFactory, anyio_backend: str
    ) -> None:
        """keys, items and clear of a narrow prefix cost what its matches cost, not the store."""
        if not self.scan_cost_measurable:
            pytest.skip("the test class says the backend runs in this process")
        check_driver_shape(driver_factory, anyio_backend)
        driver = as_base_driver(driver_factory())
        matches = [("n:1", b"1"), ("n:2", b"2"), ("n:3", b"3")]
        try:
            await driver.clear("")
            await driver.set_many([*matches, ("a", b"0"), ("z", b"0")])
            small = await _narrow_costs(driver, matches)
            half = _FILLER // 2
            filler = [*_spread(half, "a:"), *_spread(half, "m:"), *_spread(half, "z:")]
            for start in range(0, len(filler), CLEAR_CHUNK):
                await driver.set_many([(key, b"f") for key in filler[start : start + CLEAR_CHUNK]])
            large = await _narrow_costs(driver, matches)
            grew = [
                f"{what}: {small[what]} with {len(matches) + 2} keys stored, {large[what]} with"
                f" {len(matches) + 2 + len(filler)}"
                for what in small
                if _grew(small[what], large[what], len(filler))
            ]
            assert not grew, (
                "a scan must cost what its matches cost, not what the store holds (seek to the"
                " prefix and stop after it; never list every key and filter):\n" + "\n".join(grew)
            )
        finally:
            await clear_and_close(driver, lambda: as_base_driver(driver_factory()))

    @pytest.mark.anyio
    async def test_a_scan_streams_in_bounded_memory(
        self, driver_factory: DriverFactory, anyio_backend: str
    ) -> None:
        """keys and items of many matches hold a page at a time, not every match."""
        if not self.scan_cost_measurable:
            pytest.skip("the test class says the backend runs in this process")
        check_driver_shape(driver_factory, anyio_backend)
        driver = as_base_driver(driver_factory())
        # Measured at two and three times a page: a driver may hold two pages at once (the
        # one it yields from while it fetches the next), so one page's worth would not do.
        keys = _spread(3 * _STREAMED, "s:")
        try:
            await driver.clear("")
            costs: list[dict[str, Cost]] = []
            for stored in (keys[: 2 * _STREAMED], keys[2 * _STREAMED :]):
                for start in range(0, len(stored), CLEAR_CHUNK):
                    page = stored[start : start + CLEAR_CHUNK]
                    await driver.set_many([(key, b"v") for key in page])
                costs.append(
                    {
                        "keys('s:')": await measure_best(
                            lambda: _count(driver.keys("s:")), count_steps=False
                        ),
                        "items('s:')": await measure_best(
                            lambda: _count(driver.items("s:")), count_steps=False
                        ),
                    }
                )
            small, large = costs
            grew = [
                f"{what}: {small[what].peak_bytes} bytes at peak over {2 * _STREAMED} matches,"
                f" {large[what].peak_bytes} over {3 * _STREAMED}"
                for what in small
                if _grew(
                    Cost(steps=0, peak_bytes=small[what].peak_bytes),
                    Cost(steps=0, peak_bytes=large[what].peak_bytes),
                    _STREAMED,
                )
            ]
            assert not grew, (
                "a scan must stream: its memory may not grow with the number of matches (read"
                " a page, yield it, read the next; never build the whole list first):\n"
                + "\n".join(grew)
            )
        finally:
            await clear_and_close(driver, lambda: as_base_driver(driver_factory()))


def check_driver_shape(driver_factory: DriverFactory, anyio_backend: str) -> None:
    """Fail with what to change if the factory's drivers have a common structural mistake."""
    sample = driver_factory()
    problem = shape_problem(sample)
    if problem is None and anyio_backend == "trio" and not getattr(sample, "supports_trio", False):
        problem = (
            "the driver says supports_trio = False: set async_backends = ('asyncio',) on the"
            " test class"
        )
    if problem is not None:
        pytest.fail(problem, pytrace=False)


def _grew(small: Cost, large: Cost, added: int) -> bool:
    # An eighth over the small store's cost (noise: a pool's thread, a loop's bookkeeping) plus
    # a margin far below what walking `added` keys takes: a few interpreter steps, or a pointer
    # of memory, per key.
    return (
        large.steps > small.steps + small.steps // 8 + added // 2
        or large.peak_bytes > small.peak_bytes + small.peak_bytes // 8 + 2 * added
    )


async def _narrow_costs(driver: BaseDriver, matches: list[tuple[str, bytes]]) -> dict[str, Cost]:
    costs = {
        "keys('n:')": await measure_best(lambda: _count(driver.keys("n:"))),
        "items('n:')": await measure_best(lambda: _count(driver.items("n:"))),
    }
    clears: list[Cost] = []
    for _ in range(3):
        await driver.set_many(matches)
        clears.append(await measure(lambda: driver.clear("n:")))
    costs["clear('n:')"] = Cost(
        steps=min(cost.steps for cost in clears),
        peak_bytes=min(cost.peak_bytes for cost in clears),
    )
    await driver.set_many(matches)
    return costs


async def _operations_not_refused(driver: BaseDriver) -> list[str]:
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "get": lambda: driver.get("a"),
        "set": lambda: driver.set("a", b"1"),
        "delete": lambda: driver.delete("a"),
        "get_many": lambda: driver.get_many(["a", "b"]),
        "set_many": lambda: driver.set_many([("a", b"1"), ("b", b"2")]),
        "delete_many": lambda: driver.delete_many(["a", "b"]),
        "keys": lambda: drain(driver.keys("")),
        "keys(prefix)": lambda: drain(driver.keys("a")),
        "items": lambda: drain(driver.items("")),
        "clear": lambda: driver.clear(""),
        "clear(prefix)": lambda: driver.clear("a"),
    }
    silent: list[str] = []
    for name, operation in operations.items():
        try:
            result = await operation()
        except StorageClosed:
            continue
        except Exception as error:  # reported as the wrong outcome
            silent.append(f"{name} raised {type(error).__name__}: {error}")
        else:
            silent.append(f"{name} returned {describe(result)}")
    return silent


async def _assert_sees(driver: BaseDriver, expected: list[tuple[str, bytes]], who: str) -> None:
    asked = ["d:many", "d:one", "fresh", "o:many", "o:set", "c:0"]
    wanted = dict(expected)
    got = await driver.get_many(asked)
    single = [await driver.get(key) for key in asked]
    keys = await drain(driver.keys(""))
    items = await drain(driver.items(""))
    hint = (
        " Every write must reach the backend before it returns, where any other driver on the"
        " same store reads it (no write-back cache, no index kept only in memory); a store that"
        " forgets everything when its driver closes sets persistent = False on the test class"
        " (or is run with python -m kvstore.testing URL --ephemeral)."
    )
    for what, have, want in (
        ("get", single, [wanted.get(key) for key in asked]),
        ("get_many", got, [wanted.get(key) for key in asked]),
        ("keys", keys, [key for key, _ in expected]),
        ("items", items, expected),
    ):
        difference = first_difference(have, want)
        over = asked if what.startswith("get") else "the whole store"
        assert difference is None, f"{who} {what} over {over}: {difference}.{hint}"


async def clear_and_close(driver: BaseDriver, make_driver: DriverFactory) -> None:
    """Leave the store empty and the driver closed, even if a test closed it already."""
    try:
        await driver.clear("")
    except StorageClosed:
        driver = make_driver()
        await driver.clear("")
    await driver.close()


@contextlib.asynccontextmanager
async def capable_storage(
    make_driver: DriverFactory,
    capable: Callable[[BaseDriver], bool],
    skip_reason: str,
    *,
    wrap: Callable[[BaseDriver], BaseDriver] | None = None,
    **options: Any,
) -> AsyncIterator[Storage]:
    """An empty storage on a new driver that has a capability (else skip); emptied afterwards.

    ``capable`` tells whether the driver instance declares the capability; ``options`` go to
    :class:`~kvstore.storage.Storage`.
    """
    driver = make_driver()
    if not capable(driver):
        await driver.close()
        pytest.skip(skip_reason)
    storage = Storage(wrap(driver) if wrap is not None else driver, **options)
    try:
        await storage.clear()
        yield storage
    finally:
        try:
            await storage.clear()
            await storage.close()
        except StorageClosed:
            await clear_and_close(make_driver(), make_driver)
