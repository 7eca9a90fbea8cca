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
from kvstore.drivers.memory import MemoryDriver, memory_driver
from kvstore.testing.clock import TestClock
from kvstore.testing.conditional_clauses import ConditionalClauses
from kvstore.testing.conditional_races import ConditionalRaceClauses
from kvstore.testing.driver_clauses import DriverClauses, check_driver_shape
from kvstore.testing.expiry_clauses import ExpiryClauses
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

# The conditional-write clauses.
REFUSED = "test_without_conditional_writes_every_call_is_refused"
CREATE = "test_create_writes_only_an_absent_key"
REPLACE = "test_replace_needs_the_version_read"
DELETE_IF = "test_delete_if_needs_the_version_read"
MISSING = "test_get_versioned_of_a_missing_key_is_none"
NEW_VERSIONS = "test_every_write_gives_a_new_version"
VERSION_TYPES = "test_versions_are_ints_in_range_and_values_exact_bytes"
REOPEN = "test_versions_survive_a_new_driver"
FAILED_COMMIT = "test_a_failed_commit_changes_nothing"
CHECKS = "test_a_check_writes_nothing_but_must_hold"
MOUNTS = "test_a_commit_across_mounts_is_not_supported"
UPDATES = "test_concurrent_updates_lose_no_increment"
ONE_WINS = "test_concurrent_conditional_writers_exactly_one_wins"
ATOMIC_COMMIT = "test_a_concurrent_reader_never_sees_part_of_a_commit"

# Clauses that make one call at a time, and those that race calls.
ONE_AT_A_TIME = [
    CREATE,
    REPLACE,
    DELETE_IF,
    MISSING,
    NEW_VERSIONS,
    VERSION_TYPES,
    FAILED_COMMIT,
    CHECKS,
    MOUNTS,
]
CONDITIONAL = [*ONE_AT_A_TIME, UPDATES, ONE_WINS, ATOMIC_COMMIT]

# The expiry clauses.
NO_EXPIRY = "test_without_expiry_every_ttl_call_is_refused"
LONG_TTL = "test_a_key_with_a_long_ttl_is_present_and_reports_its_meta"
EXPIRED = "test_an_expired_key_is_absent_to_every_operation"
CLEARS = "test_a_write_without_ttl_clears_the_expiry"
EXPIRE = "test_expire_changes_only_the_expiry"
DEFAULTS = "test_default_ttl_of_a_storage_and_its_views"
EXPIRED_CONDITIONS = "test_conditional_writes_see_an_expired_key_as_absent"
PURGE = "test_purge_removes_expired_keys_only_and_is_bounded"
EXPIRED_SCAN = "test_a_scan_skips_expired_keys_without_walking_them"
EXPIRY = [LONG_TTL, EXPIRED, CLEARS, EXPIRE, DEFAULTS, PURGE]


class _Ephemeral(ExpiryClauses, ConditionalClauses, ConditionalRaceClauses, DriverClauses):
    persistent = False
    async_backends = ("asyncio",)


class _Persistent(ExpiryClauses, ConditionalClauses, ConditionalRaceClauses, DriverClauses):
    persistent = True
    async_backends = ("asyncio",)


def _run(
    clause: str,
    factory: Callable[[], BaseDriver],
    *,
    persistent: bool,
    clock: TestClock | None = None,
) -> None:
    """Run one suite clause as pytest would, on the native batch path under asyncio.

    ``clock`` is the manual clock the drivers ``factory`` makes read, for the expiry clauses.
    """
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
            ("make_native_driver", make),
            ("driver_factory", factory),
            ("anyio_backend", "asyncio"),
            ("batch_path", "native"),
            ("clock", clock or TestClock(manual=True)),
        ):
            if name in parameters:
                arguments[name] = value
        await method(**arguments)

    anyio.run(call)


def _fails(
    clause: str,
    factory: Callable[[], BaseDriver],
    *,
    persistent: bool = False,
    clock: TestClock | None = None,
) -> str:
    """Run the clause, require it to fail, and return its message."""
    with pytest.raises((AssertionError, pytest.fail.Exception)) as failure:
        _run(clause, factory, persistent=persistent, clock=clock)
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


@pytest.mark.parametrize("clause", CONDITIONAL)
@pytest.mark.parametrize(
    "driver", [MemoryDriver, broken.VersionedOnMemory], ids=lambda d: d.__name__
)
def test_the_correct_versioned_drivers_pass(driver: type[BaseDriver], clause: str) -> None:
    _run(clause, driver, persistent=False)


@pytest.mark.parametrize("clause", ONE_AT_A_TIME)
def test_the_driver_with_versions_of_its_own_passes_one_call_at_a_time(clause: str) -> None:
    _run(clause, broken.WithOwnVersions, persistent=False)


@pytest.mark.parametrize("clause", [*CONDITIONAL, REOPEN])
def test_the_correct_persistent_versioned_driver_passes(clause: str) -> None:
    disk = broken.Disk()
    _run(clause, lambda: broken.VersionedOnDisk(disk), persistent=True)


def test_a_driver_without_conditional_writes_passes_the_refusal_check() -> None:
    _run(REFUSED, broken.OnMemory, persistent=False)


@pytest.mark.parametrize("clause", [*CONDITIONAL, REOPEN])
def test_the_conditional_clauses_skip_a_driver_without_them(clause: str) -> None:
    with pytest.raises(pytest.skip.Exception, match="conditional_writes = True"):
        _run(clause, broken.OnMemory, persistent=clause == REOPEN)


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


@pytest.mark.parametrize(
    ("variant", "clause", "says"),
    [
        (broken.CommitIgnoresConditions, CREATE, "create of a present key returned"),
        (broken.CommitIgnoresConditions, REPLACE, "replace with a stale version returned"),
        (broken.CommitIgnoresConditions, DELETE_IF, "delete_if at a stale version returned"),
        (
            broken.CommitIgnoresConditions,
            CHECKS,
            "a check at another version, alone in its commit, returned",
        ),
        (broken.AppliesTheRestOfAFailedCommit, FAILED_COMMIT, "still changed"),
        (broken.ConflictNamesEveryKey, FAILED_COMMIT, "the keys whose condition failed are"),
        (broken.OneChangeCommitDeletesAChecked, CHECKS, "a passing check wrote"),
        (broken.SetKeepsTheVersion, NEW_VERSIONS, "after set of the same value"),
        (broken.VersionCounterRestartsAfterDelete, NEW_VERSIONS, "after delete, then set"),
        (broken.StaleVersionAfterSetMany, NEW_VERSIONS, "after set_many"),
        (broken.SetLeavesTheLegacyVersion, VERSION_TYPES, "gave version 0"),
        (broken.VersionComesBackAsFloat, VERSION_TYPES, "of type float"),
        (broken.CheckThenWriteInTwoSteps, UPDATES, "the counter ended at"),
        (broken.CheckThenWriteInTwoSteps, ONE_WINS, "concurrent creates of one key won"),
        (broken.CommitInSeveralSteps, ATOMIC_COMMIT, "part of a commit"),
        (broken.RefusesWithNotImplementedError, REFUSED, "raised NotImplementedError"),
        (broken.ImplementsWithoutDeclaring, REFUSED, "get_versioned returned"),
        (broken.RefusesAfterWriting, REFUSED, "a refused conditional call wrote"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_the_suite_catches_conditional_write_bugs(
    variant: type[BaseDriver], clause: str, says: str
) -> None:
    assert says in _fails(clause, variant)


def test_the_suite_catches_versions_kept_only_in_the_driver() -> None:
    disk = broken.Disk()
    message = _fails(REOPEN, lambda: broken.VersionsOnlyInTheDriver(disk), persistent=True)
    assert "while the writer is open" in message


def test_the_suite_catches_an_undeclared_persistent_store() -> None:
    disk = broken.Disk()
    message = _fails(DECLARED, lambda: broken.OnDisk(disk), persistent=False)
    assert "persistent = True" in message


# -- expiry -------------------------------------------------------------------------------


def _on_clock(
    variant: Callable[[TestClock], BaseDriver],
) -> tuple[Callable[[], BaseDriver], TestClock]:
    clock = TestClock(manual=True)
    return (lambda: variant(clock)), clock


@pytest.mark.parametrize("clause", [*EXPIRY, EXPIRED_CONDITIONS, EXPIRED_SCAN])
def test_the_memory_driver_passes_the_expiry_clauses(clause: str) -> None:
    factory, clock = _on_clock(lambda clock: memory_driver(clock=clock))
    _run(clause, factory, persistent=False, clock=clock)


@pytest.mark.parametrize("clause", EXPIRY)
def test_the_correct_expiring_driver_passes(clause: str) -> None:
    factory, clock = _on_clock(broken.ExpiringOnMemory)
    _run(clause, factory, persistent=False, clock=clock)


def test_a_driver_without_expiry_passes_the_refusal_check() -> None:
    _run(NO_EXPIRY, broken.OnMemory, persistent=False)


@pytest.mark.parametrize("clause", [*EXPIRY, EXPIRED_CONDITIONS, EXPIRED_SCAN])
def test_the_expiry_clauses_skip_a_driver_without_it(clause: str) -> None:
    with pytest.raises(pytest.skip.Exception, match="expiry = True"):
        _run(clause, broken.OnMemory, persistent=False)


@pytest.mark.parametrize(
    ("variant", "clause", "says"),
    [
        (broken.ScanListsExpiredKeys, EXPIRED, "'keys': ['s:m1', 's:m2', 's:one', 's:raw']"),
        (broken.SetKeepsTheExpiry, CLEARS, "kept the earlier expiry"),
        (broken.ExpiresAMillisecondLate, EXPIRED, "absent to every operation"),
        (broken.ExpireRewritesTheWriteTime, EXPIRE, "changed more than the expiry"),
        (broken.PurgeIgnoresTheLimit, PURGE, "at most 7 per call"),
        (broken.BatchTTLIsDropped, EXPIRED, "'get': ['s:m1', 's:m2', 's:one', 's:raw']"),
        (broken.ExpiringOnMemory, EXPIRED_SCAN, "must be skipped by the backend"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_the_suite_catches_expiry_bugs(
    variant: Callable[[TestClock], BaseDriver], clause: str, says: str
) -> None:
    factory, clock = _on_clock(variant)
    assert says in _fails(clause, factory, clock=clock)
