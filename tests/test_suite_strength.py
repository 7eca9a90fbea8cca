"""The conformance suite catches every kind of driver bug it promises to, on every run.

Each broken driver in ``tests/support/broken_drivers.py`` carries one realistic bug; the suite
clause that guards against it must fail on it, and pass on the correct driver it was built from.
The clauses are called the way pytest calls them (same fixtures' values, same shape check), on
asyncio, so each check is deterministic: no Hypothesis, no timing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from kvstore.driver import BaseDriver, as_base_driver
from kvstore.drivers.memory import MemoryDriver
from kvstore.testing.driver_clauses import DriverClauses, check_driver_shape
from tests.support import broken_drivers as broken

SCAN_COST = "test_a_narrow_scan_costs_the_same_in_a_large_store"
STREAMING = "test_a_scan_streams_in_bounded_memory"
EXACT_BYTES = "test_values_come_back_as_exact_bytes"
ITEM_PAGES = "test_items_keep_values_with_their_keys_across_pages"
AFTER_CLOSE = "test_every_operation_after_close_raises_storage_closed"
DURABILITY = "test_overwrites_deletes_and_clears_reach_a_new_driver"
DECLARED = "test_persistence_is_declared"
ATOMICITY = "test_a_concurrent_reader_never_sees_part_of_a_batch"

CLAUSES = [SCAN_COST, STREAMING, EXACT_BYTES, ITEM_PAGES, AFTER_CLOSE, ATOMICITY]


class _Ephemeral(DriverClauses):
    persistent = False
    async_backends = ("asyncio",)


class _Persistent(DriverClauses):
    persistent = True
    async_backends = ("asyncio",)


def _run(clause: str, factory: Callable[[], BaseDriver], *, persistent: bool) -> None:
    """Run one suite clause as pytest would, on the native batch path under asyncio."""
    suite = _Persistent() if persistent else _Ephemeral()
    method = getattr(suite, clause)

    def make() -> BaseDriver:
        return as_base_driver(factory())

    async def call() -> None:
        parameters = inspect.signature(method).parameters
        arguments: dict[str, Any] = {}
        if "driver_factory" not in parameters:
            check_driver_shape(factory, "asyncio")  # what the make_driver fixture does
        if "driver" in parameters:
            driver = make()
            await driver.clear("")
            arguments["driver"] = driver
        for name, value in (
            ("make_driver", make),
            ("driver_factory", factory),
            ("anyio_backend", "asyncio"),
            ("batch_path", "native"),
        ):
            if name in parameters:
                arguments[name] = value
        await method(**arguments)

    anyio.run(call)


def _fails(clause: str, factory: Callable[[], BaseDriver], *, persistent: bool = False) -> str:
    """Run the clause, require it to fail, and return its message."""
    with pytest.raises((AssertionError, pytest.fail.Exception)) as failure:
        _run(clause, factory, persistent=persistent)
    return str(failure.value)


# -- the correct drivers they are built on pass (else a failure below would prove nothing) ---


class _AtomicMemory(MemoryDriver):
    atomic_batches = True


class _AtomicOnMemory(broken.OnMemory):
    atomic_batches = True


class _AtomicWithSortedKeys(broken.WithSortedKeys):
    atomic_batches = True


@pytest.mark.parametrize("clause", CLAUSES)
@pytest.mark.parametrize(
    "driver",
    [_AtomicMemory, _AtomicOnMemory, _AtomicWithSortedKeys],
    ids=["MemoryDriver", "OnMemory", "WithSortedKeys"],
)
def test_the_correct_drivers_pass(driver: type[BaseDriver], clause: str) -> None:
    _run(clause, driver, persistent=False)


@pytest.mark.parametrize("clause", [*CLAUSES, DURABILITY])
@pytest.mark.parametrize(
    "driver", [broken.OnDisk, broken.WithPrivateView], ids=lambda d: d.__name__
)
def test_the_correct_persistent_drivers_pass(driver: type[broken.OnDisk], clause: str) -> None:
    disk = broken.Disk()
    _run(clause, lambda: driver(disk), persistent=True)


def test_an_ephemeral_driver_passes_the_declaration_check() -> None:
    _run(DECLARED, MemoryDriver, persistent=False)


# -- each bug is caught ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "clause", "says"),
    [
        (broken.ListsEverything, SCAN_COST, "keys('n:')"),
        (broken.WalksTheWholeStore, SCAN_COST, "keys('n:')"),
        (broken.CopiesEveryKey, SCAN_COST, "keys('n:')"),
        (broken.ScansToTheEnd, SCAN_COST, "keys('n:')"),
        (broken.ScansFromTheStart, SCAN_COST, "keys('n:')"),
        (broken.ItemsReadEverything, SCAN_COST, "items('n:')"),
        (broken.ClearFiltersEverything, SCAN_COST, "clear('n:')"),
        (broken.ListsEverything, STREAMING, "keys('s:')"),
        (broken.BuildsTheMatchList, STREAMING, "keys('s:')"),
        (broken.GetReturnsMemoryview, EXACT_BYTES, "get('v:"),
        (broken.GetManyReturnsBytearray, EXACT_BYTES, "get_many(...)"),
        (broken.ItemsYieldMemoryview, EXACT_BYTES, "items() for"),
        (broken.ItemsSlipAfterTheFirstPage, ITEM_PAGES, "item 1000 of"),
        (broken.ItemsDropTheLastPage, ITEM_PAGES, "expected 2500"),
        (broken.DeleteAfterCloseIsSilent, AFTER_CLOSE, "delete returned None"),
        (broken.DeleteManyAfterCloseIsSilent, AFTER_CLOSE, "delete_many returned None"),
        (broken.ClearAfterCloseIsSilent, AFTER_CLOSE, "clear returned None"),
        (broken.KeysAfterCloseAreEmpty, AFTER_CLOSE, "keys returned []"),
        (broken.SecondCloseRaises, AFTER_CLOSE, "idempotent"),
        (broken.BatchInSeveralCommits, ATOMICITY, "part of a batch"),
        (broken.DeleteManyInSeveralCommits, ATOMICITY, "part of a batch"),
        (broken.KeysWrittenAsACoroutine, SCAN_COST, "async generator"),
        (broken.KeysWrittenAsACoroutine, EXACT_BYTES, "async generator"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_the_suite_catches(variant: type[BaseDriver], clause: str, says: str) -> None:
    assert says in _fails(clause, variant)


@pytest.mark.parametrize(
    ("variant", "says"),
    [
        (broken.OverwritesCachedUntilClose, "while the writer is open"),
        (broken.DeletesNeverReachTheDisk, "while the writer is open"),
        (broken.DeleteManyNeverReachesTheDisk, "while the writer is open"),
        (broken.ClearNeverReachesTheDisk, "while the writer is open"),
        (broken.ForgetsOnClose, "after the writer closed"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_the_suite_catches_lost_durability(variant: type[broken.OnDisk], says: str) -> None:
    disk = broken.Disk()
    assert says in _fails(DURABILITY, lambda: variant(disk), persistent=True)


def test_the_suite_catches_an_undeclared_persistent_store() -> None:
    disk = broken.Disk()
    message = _fails(DECLARED, lambda: broken.OnDisk(disk), persistent=False)
    assert "persistent = True" in message
