"""The conditional-write clauses: versions, create, replace, delete-if and commit.

Conditional writes are an optional capability (see :mod:`kvstore.conditional`). These clauses run
for every driver *instance* whose ``conditional_writes`` is true; for any other driver they skip
with :data:`~kvstore.testing.conditional_support.SKIP_REASON`, and one clause checks instead that
every conditional ``Storage`` call raises :class:`~kvstore.errors.NotSupported` naming the
driver, and writes nothing. The clauses that race several tasks are in
:mod:`kvstore.testing.conditional_races`.

:class:`ConditionalClauses` is mixed into :class:`~kvstore.testing.DriverConformance`. Its tests go
through :class:`~kvstore.storage.Storage` (which validates what reaches the driver) except where a
clause is about what the driver itself returns; each is named after the clause it checks. Those
that take ``make_native_driver`` run once per event loop (what they call reaches the same driver
code on both batch paths); those that take ``make_driver`` run on both, since the default path
derives ``set_if``, ``delete_if`` and ``set_many`` from the primitives.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import pytest

from kvstore.conditional import LEGACY_VERSION, Change, Versioned
from kvstore.driver import BaseDriver
from kvstore.drivers.memory import MemoryDriver
from kvstore.errors import NotSupported
from kvstore.serialization import JSONValue
from kvstore.storage import Storage
from kvstore.testing.conditional_support import (
    SKIP_REASON,
    check_version,
    differences,
    expect_conflict,
    has_conditional_writes,
    read_version,
    read_versions,
    version_problem,
    versioned_storage,
    written_versions,
)
from kvstore.testing.driver_clauses import DriverFactory, clear_and_close
from kvstore.testing.reporting import describe

__all__ = ["ConditionalClauses"]


def _conditional_calls(storage: Storage) -> dict[str, Callable[[], Awaitable[object]]]:
    return {
        "get_versioned": lambda: storage.get_versioned("present"),
        "get_versioned_raw": lambda: storage.get_versioned_raw("present"),
        "create": lambda: storage.create("absent", 1),
        "create_raw": lambda: storage.create_raw("absent", b"1"),
        "replace": lambda: storage.replace("present", "new", 1),
        "replace_raw": lambda: storage.replace_raw("present", b"new", 1),
        "delete_if": lambda: storage.delete_if("present", 1),
        "update": lambda: storage.update("present", lambda _: "new"),
        "commit": lambda: storage.commit([Change.put("absent", 1), Change.delete("present")]),
        "commit_raw": lambda: storage.commit_raw([Change.put("absent", b"1")]),
    }


class ConditionalClauses:
    """Conditional-write clauses, run where the driver instance declares the capability."""

    persistent: ClassVar[bool]

    # -- without the capability -------------------------------------------------------------

    @pytest.mark.anyio
    async def test_without_conditional_writes_every_call_is_refused(
        self, make_native_driver: DriverFactory
    ) -> None:
        """Conditional writes: without them every call raises NotSupported naming the driver."""
        driver = make_native_driver()
        if has_conditional_writes(driver):
            await driver.close()
            pytest.skip("the driver declares conditional_writes = True: the clauses run instead")
        storage = Storage(driver)
        try:
            await storage.clear()
            await storage.set("present", "old")
            problems: list[str] = []
            for name, call in _conditional_calls(storage).items():
                try:
                    result = await call()
                except NotSupported as error:
                    if error.driver != driver.name or driver.name not in str(error):
                        problems.append(
                            f"{name} raised NotSupported naming {error.driver!r}, not the driver"
                            f" ({driver.name!r})"
                        )
                except Exception as error:  # reported as the wrong outcome
                    problems.append(f"{name} raised {type(error).__name__}: {error}")
                else:
                    problems.append(f"{name} returned {describe(result)}")
            assert not problems, (
                "the driver does not declare conditional_writes = True, so every conditional call"
                " must raise kvstore.errors.NotSupported naming it (BaseDriver's get_versioned and"
                " commit do; a driver that implements them declares conditional_writes = True):\n"
                + "\n".join(problems)
            )
            after = [key async for key in storage.keys()]
            value = await storage.get_raw("present")
            assert (after, value) == (["present"], b'"old"'), (
                f"a refused conditional call wrote: the store holds {after}, 'present' ="
                f" {describe(value)}; NotSupported means nothing was written"
            )
        finally:
            await clear_and_close(driver, make_native_driver)

    # -- single keys ------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_create_writes_only_an_absent_key(self, make_driver: DriverFactory) -> None:
        """Conditional writes: create stores only where no value is; else Conflict, unchanged."""
        async with versioned_storage(make_driver) as storage:
            version = check_version("create", await storage.create("c", {"n": 1}))
            found = await storage.get_versioned("c")
            assert found == ({"n": 1}, version), (
                f"after create returned version {version}, get_versioned gave {describe(found)}"
            )
            await expect_conflict(
                lambda: storage.create("c", {"n": 2}), {"c"}, "create of a present key"
            )
            await expect_conflict(lambda: storage.create_raw("c", b"2"), {"c"}, "create_raw of it")
            await expect_conflict(
                lambda: storage.commit([Change.create("c", 3)]), {"c"}, "commit([create]) of it"
            )
            after = await storage.get_versioned("c")
            assert after == ({"n": 1}, version), (
                f"a create that raised Conflict changed the key: {describe(after)}, was"
                f" {describe(found)}"
            )
            raw = check_version("create_raw", await storage.create_raw("r", b"\x00raw"))
            assert await storage.get_versioned_raw("r") == (b"\x00raw", raw)
            await storage.delete("r")
            again = check_version("create after delete", await storage.create("r", "again"))
            assert again != raw, "a key deleted and created again came back at its old version"

    @pytest.mark.anyio
    async def test_replace_needs_the_version_read(self, make_driver: DriverFactory) -> None:
        """Conditional writes: replace applies at the version read; a stale one is a Conflict."""
        async with versioned_storage(make_driver) as storage:
            await storage.set("k", "one")
            first = await read_version(storage, "k", "set")
            second = check_version("replace", await storage.replace("k", "two", first))
            assert second != first, f"replace kept the version {first}: a write changes it"
            assert await storage.get_versioned("k") == ("two", second), "replace wrote the value"
            for stale, what in ((first, "a stale version"), (LEGACY_VERSION, "version 0")):
                await expect_conflict(
                    lambda stale=stale: storage.replace("k", "three", stale),  # type: ignore[misc]
                    {"k"},
                    f"replace with {what}",
                )
            unchanged = await storage.get_versioned("k")
            assert unchanged == ("two", second), (
                f"a replace that raised Conflict changed the key: {describe(unchanged)}"
            )
            await expect_conflict(
                lambda: storage.replace("missing", "x", second),
                {"missing"},
                "replace of a missing key",
            )
            assert await storage.get_versioned("missing") is None, "a failed replace created it"
            third = check_version("replace_raw", await storage.replace_raw("k", b"3", second))
            assert await storage.get_versioned_raw("k") == (b"3", third)

    @pytest.mark.anyio
    async def test_delete_if_needs_the_version_read(self, make_driver: DriverFactory) -> None:
        """Conditional writes: delete_if deletes at the version read; a stale one is a Conflict."""
        async with versioned_storage(make_driver) as storage:
            await storage.set("d", "one")
            stale = await read_version(storage, "d", "set")
            await storage.set("d", "two")
            current = await read_version(storage, "d", "a second set")
            await expect_conflict(
                lambda: storage.delete_if("d", stale), {"d"}, "delete_if at a stale version"
            )
            kept = await storage.get_versioned("d")
            assert kept == ("two", current), (
                f"a delete_if that raised Conflict changed the key: {describe(kept)}"
            )
            await storage.delete_if("d", current)
            assert await storage.get_versioned("d") is None, "delete_if at the version read deleted"
            assert [key async for key in storage.keys()] == [], "a deleted key is not listed"
            await expect_conflict(
                lambda: storage.delete_if("d", current), {"d"}, "delete_if of a missing key"
            )
            assert await storage.get_versioned("d") is None

    @pytest.mark.anyio
    async def test_get_versioned_of_a_missing_key_is_none(
        self, make_native_driver: DriverFactory
    ) -> None:
        """Conditional writes: get_versioned of a missing or deleted key returns None."""
        async with versioned_storage(make_native_driver) as storage:
            assert await storage.get_versioned("never") is None
            assert await storage.get_versioned_raw("never") is None
            await storage.set_many({"gone": 1, "gone:too": 2})
            await storage.delete("gone")
            await storage.delete_many(["gone:too"])
            found = [await storage.get_versioned_raw(key) for key in ("gone", "gone:too")]
            assert found == [None, None], f"deleted keys read as {describe(found)}"

    # -- versions ---------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_every_write_gives_a_new_version(self, make_driver: DriverFactory) -> None:
        """Versions: every write (set, set_many, commit, recreate) gives the key a new version."""
        async with versioned_storage(make_driver) as storage:
            seen: list[int] = []

            async def wrote(where: str, returned: int | None = None) -> None:
                version = await read_version(storage, "k", where)
                if returned is not None:
                    assert returned == version, (
                        f"{where} returned version {returned}, get_versioned then read {version}"
                    )
                assert version not in seen, (
                    f"after {where}, 'k' is at version {version}, which it had before: every"
                    " write (unconditional ones too, and a write after a delete) stores a fresh"
                    " new_version()"
                )
                seen.append(version)

            await storage.set("k", 1)
            await wrote("set")
            await storage.set("k", 1)
            await wrote("set of the same value")
            await storage.set_raw("k", b"1")
            await wrote("set_raw")
            await storage.set_many({"k": 1, "other": 2})
            await wrote("set_many")
            await wrote("commit([put])", (await storage.commit([Change.put("k", 1)]))[0])
            await wrote("replace", await storage.replace("k", 2, seen[-1]))
            await storage.update("k", lambda value: 3)
            await wrote("update")
            await storage.delete("k")
            await storage.set("k", 1)
            await wrote("delete, then set")
            await storage.delete_many(["k"])
            await wrote("delete_many, then create", await storage.create("k", 1))
            await storage.clear("k")
            await storage.set_many({"k": 1})
            await wrote("clear, then set_many")
            await storage.delete_if("k", seen[-1])
            await wrote("delete_if, then create", await storage.create("k", 1))
            await storage.commit([Change.delete("k")])
            await wrote(
                "commit([delete]), then commit([create])",
                (await storage.commit([Change.create("k", 1)]))[0],
            )
            for old in seen[:-1]:
                await expect_conflict(
                    lambda old=old: storage.commit([Change.check("k", old)]),  # type: ignore[misc]
                    {"k"},
                    f"a check of 'k' at its earlier version {old}",
                )

    @pytest.mark.anyio
    async def test_versions_are_ints_in_range_and_values_exact_bytes(
        self, make_native_driver: DriverFactory
    ) -> None:
        """Versions: the driver returns int versions in 1..2**52 and exact bytes, in order."""
        driver = make_native_driver()
        try:
            if not has_conditional_writes(driver):
                pytest.skip(SKIP_REASON)
            await driver.clear("")
            await driver.set("set", b"s")
            returned = await driver.commit(
                [
                    Change.put("put", b"p"),
                    Change.check("set", (await _read(driver, "set")).version),
                    Change.create("created", b"c"),
                    Change.delete("absent"),
                ]
            )
            assert type(returned) is list, f"commit returned {describe(returned)}, not a list"
            assert len(returned) == 4, (
                f"commit of 4 changes returned {describe(returned)}: one entry per change, in order"
            )
            problems = [
                version_problem(f"commit(...)[{index}] (a write)", returned[index])
                for index in (0, 2)
            ]
            problems += [
                None
                if returned[index] is None
                else f"commit(...)[{index}] (a {what}) returned"
                f" {describe(returned[index])}, not None"
                for index, what in ((1, "check"), (3, "delete"))
            ]
            for key in ("set", "put", "created"):
                found = await _read(driver, key)
                problems.append(version_problem(f"get_versioned({key!r})", found.version))
                if type(found.value) is not bytes:
                    problems.append(
                        f"get_versioned({key!r}) returned a {type(found.value).__name__} value:"
                        " a driver returns exactly `bytes`"
                    )
            found_problems = [problem for problem in problems if problem]
            assert not found_problems, "\n".join(found_problems)
        finally:
            await clear_and_close(driver, make_native_driver)

    @pytest.mark.anyio
    async def test_versions_survive_a_new_driver(self, make_native_driver: DriverFactory) -> None:
        """Versions: a version read before close still works after reopen if nothing wrote."""
        if not self.persistent:
            pytest.skip("the test class declares persistent = False")
        writer = make_native_driver()
        if not has_conditional_writes(writer):
            await writer.close()
            pytest.skip(SKIP_REASON)
        first = Storage(writer)
        try:
            await first.clear()
            await first.set("set", "s")
            await first.set("replaced", "r")
            stale = await read_version(first, "replaced", "set")
            versions = {
                "set": await read_version(first, "set", "set"),
                "made": await first.create("made", "m"),
                "put": written_versions(await first.commit([Change.put("put", "p")]))[0],
                "replaced": await first.replace("replaced", "r2", stale),
            }
            for when in ("while the writer is open", "after it closed"):
                if when == "after it closed":
                    await first.close()
                second = Storage(make_native_driver())
                try:
                    seen = {key: (await _read(second.driver, key)).version for key in versions}
                finally:
                    await second.close()
                assert seen == versions, (
                    f"a new driver, {when}, read the versions {seen}; the writer's were"
                    f" {versions}. Versions live in the backend, with the values"
                )
            async with _reopened(make_native_driver) as again:
                await again.replace("set", "s2", versions["set"])
                await again.delete_if("made", versions["made"])
                await again.commit([Change.check("put", versions["put"])])
                await expect_conflict(
                    lambda: again.replace("replaced", "r3", stale), {"replaced"}, "a stale replace"
                )
        finally:
            await clear_and_close(make_native_driver(), make_native_driver)
            await first.close()

    # -- commits ----------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_a_failed_commit_changes_nothing(self, make_native_driver: DriverFactory) -> None:
        """Commits: one failing condition fails the batch; nothing of it is visible afterwards."""
        cases: list[tuple[str, Callable[[dict[str, int], int], list[Change[Any]]], set[str]]] = [
            (
                "the last change fails",
                lambda v, stale: [
                    Change.replace("a", "a1", v["a"]),
                    Change.create("d", "d1"),
                    Change.put("c", "c1"),
                    Change.replace("b", "b2", stale),
                ],
                {"b"},
            ),
            (
                "the first change fails",
                lambda v, stale: [
                    Change.create("a", "x"),
                    Change.put("c", "c2"),
                    Change.delete("b", v["b"]),
                    Change.create("d", "d2"),
                ],
                {"a"},
            ),
            (
                "a check in the middle fails",
                lambda v, stale: [
                    Change.put("a", "x"),
                    Change.check("d", v["c"]),
                    Change.delete("c"),
                ],
                {"d"},
            ),
            (
                "two changes fail",
                lambda v, stale: [
                    Change.replace("a", "x", v["a"]),
                    Change.delete("b", stale),
                    Change.create("c", "x"),
                    Change.put("d", "x"),
                ],
                {"b", "c"},
            ),
        ]
        async with versioned_storage(make_native_driver) as storage:
            atomic = storage.driver.atomic_batches
            for what, build, failing in cases:
                await storage.clear()
                await storage.set_many({"a": "a0", "b": "b0", "c": "c0"})
                stale = await read_version(storage, "b", "set_many")
                await storage.set("b", "b1")
                versions = {key: await read_version(storage, key, "set") for key in "abc"}
                before = await read_versions(storage, "abcd")
                changes = build(versions, stale)
                await expect_conflict(
                    lambda changes=changes: storage.commit(changes),  # type: ignore[misc]
                    failing,
                    f"a commit where {what}",
                    exact=atomic,
                )
                after = await read_versions(storage, "abcd")
                if atomic:
                    changed = differences(before, after)
                    assert not changed, (
                        f"the driver declares atomic_batches = True, but a commit where {what}"
                        " raised Conflict and still changed: " + "; ".join(changed)
                    )
                else:
                    changed = differences({key: before[key] for key in failing}, after)
                    assert not changed, (
                        f"a commit where {what} raised Conflict and applied the failing change: "
                        + "; ".join(changed)
                    )

    @pytest.mark.anyio
    async def test_a_check_writes_nothing_but_must_hold(
        self, make_native_driver: DriverFactory
    ) -> None:
        """Commits: a CHECK change writes nothing, and fails the batch unless its version holds,
        alone in its commit as beside other changes."""
        async with versioned_storage(make_native_driver) as storage:
            atomic = storage.driver.atomic_batches
            await storage.set("k", "v")
            version = await read_version(storage, "k", "set")
            returned = await storage.commit(
                [Change.check("k", version), Change.check("absent", None), Change.put("w", 1)]
            )
            assert returned[:2] == [None, None], f"checks returned {describe(returned[:2])}"
            check_version("the put beside two checks", returned[2])
            # Alone, as a driver's shortcut for one-change commits sees them.
            passing: list[Change[JSONValue]] = [
                Change.check("k", version),
                Change.check("absent", None),
            ]
            for change in passing:
                alone = await storage.commit([change])
                assert alone == [None], f"a passing check alone returned {describe(alone)}"
            after = await read_versions(storage, ["k", "absent"])
            assert after == {"k": (b'"v"', version), "absent": None}, (
                f"a passing check wrote: {describe(after)}"
            )
            checks: list[tuple[str, Change[JSONValue], str]] = [
                ("a check at another version", Change.check("k", version + 1), "k"),
                ("a check that a present key is absent", Change.check("k", None), "k"),
                ("a check of an absent key at a version", Change.check("gone", version), "gone"),
            ]
            for what, change, failing in checks:
                await expect_conflict(
                    lambda change=change: storage.commit([change]),  # type: ignore[misc]
                    {failing},
                    f"{what}, alone in its commit,",
                )
                await expect_conflict(
                    lambda change=change: storage.commit(  # type: ignore[misc]
                        [change, Change.put("w2", 2)]
                    ),
                    {failing},
                    what,
                )
                if atomic:
                    assert await storage.get("w2") is None, (
                        f"{what} failed its commit, yet the put beside it was applied"
                    )
            assert await storage.get_versioned_raw("k") == (b'"v"', version)

    @pytest.mark.anyio
    async def test_a_commit_across_mounts_is_not_supported(
        self, make_native_driver: DriverFactory
    ) -> None:
        """Commits: a batch spanning mounted drivers raises NotSupported and writes nothing."""
        async with versioned_storage(make_native_driver) as storage:
            storage.mount("m", MemoryDriver())
            with pytest.raises(NotSupported):
                await storage.commit([Change.put("a", 1), Change.put("m:b", 2)])
            assert await storage.get_many(["a", "m:b"]) == [None, None], (
                "a commit across mounts raised NotSupported but wrote"
            )
            returned = await storage.commit([Change.put("a", 1), Change.create("z", 2)])
            assert [await read_version(storage, key, "commit") for key in "az"] == returned

    # -- concurrency ------------------------------------------------------------------------


async def _read(driver: BaseDriver, key: str) -> Versioned[bytes]:
    found = await driver.get_versioned(key)
    assert found is not None, f"get_versioned({key!r}) returned None for a key just written"
    return found


@contextlib.asynccontextmanager
async def _reopened(make_native_driver: DriverFactory) -> AsyncIterator[Storage]:
    """A storage on a new driver over what earlier drivers left; emptied afterwards."""
    storage = Storage(make_native_driver())
    try:
        yield storage
    finally:
        await storage.clear()
        await storage.close()
