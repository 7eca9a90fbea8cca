"""The expiry clauses: TTLs on every write, exact absence from the expiry instant on, metadata.

Expiry is an optional capability (see :mod:`kvstore.expiry`). These clauses run for every driver
*instance* whose ``expiry`` is true and skip with :data:`SKIP_REASON` otherwise, when one clause
checks instead that every TTL call raises :class:`~kvstore.errors.NotSupported` naming the driver
and writes nothing.

Time: a driver that takes a clock is handed the suite's manual ``clock`` (its test class sets
``manual_clock = True``), and the clauses move it, checking a key one millisecond before its
expiry instant and exactly at it. On a server driver the clauses wait on the real clock for an
instant to pass; each clause waits at most once, for a TTL of well under a second, and only
ever checks absence after the instant, which a loaded machine can delay but never break.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from kvstore.conditional import Change
from kvstore.driver import BaseDriver
from kvstore.errors import Conflict, InvalidTTL, NotSupported
from kvstore.expiry import Meta
from kvstore.storage import Storage
from kvstore.testing.clock import TestClock
from kvstore.testing.cost import measure_best
from kvstore.testing.driver_clauses import DriverFactory, capable_storage, clear_and_close
from kvstore.testing.reporting import describe

__all__ = ["SKIP_REASON", "ExpiryClauses"]

#: Why the expiry clauses skip for a driver that does not offer the capability.
SKIP_REASON = "the driver does not declare expiry = True (expiry is an optional capability)"

# TTLs "long" enough never to pass during a test, and "short" enough to wait for on servers.
_LONG = 30.0
_SHORT_REAL = 0.6
_SHORT_MANUAL = 1.0
# How far a reported instant may sit from this machine's clock around the write: the backend
# rounds to milliseconds, and a server's clock is read a little before or after ours.
_SLACK = 0.05

BAD_TTLS: list[object] = [
    0,
    0.0,
    -1,
    -0.001,
    math.nan,
    math.inf,
    -math.inf,
    timedelta(0),
    timedelta(seconds=-5),
    True,
    "5",
]


def has_expiry(driver: BaseDriver) -> bool:
    """Whether this driver instance declares the capability."""
    return bool(getattr(driver, "expiry", False))


def expiring_storage(
    make_driver: DriverFactory, **options: Any
) -> contextlib.AbstractAsyncContextManager[Storage]:
    """An empty storage on a new driver with expiry (else skip); emptied and closed afterwards."""
    return capable_storage(make_driver, has_expiry, SKIP_REASON, **options)


def _short(clock: TestClock) -> float:
    return _SHORT_MANUAL if clock.manual else _SHORT_REAL


async def _present_to_every_read(storage: Storage, keys: list[str]) -> dict[str, list[str]]:
    """For each read operation, the keys of ``keys`` it reports present."""
    listed = {key async for key in storage.keys()}
    itemised = {key async for key, _ in storage.items_raw()}
    many = await storage.get_many_raw(keys)
    metas = await storage.get_meta_many(keys)
    seen: dict[str, list[str]] = {
        "get": [k for k in keys if await storage.get_raw(k) is not None],
        "has": [k for k in keys if await storage.has(k)],
        "get_many": [k for k, v in zip(keys, many, strict=True) if v is not None],
        "keys": [k for k in keys if k in listed],
        "items": [k for k in keys if k in itemised],
        "get_meta": [k for k in keys if await storage.get_meta(k) is not None],
        "get_meta_many": [k for k, meta in zip(keys, metas, strict=True) if meta is not None],
    }
    if storage.driver.conditional_writes:
        seen["get_versioned"] = [k for k in keys if await storage.get_versioned_raw(k) is not None]
    return seen


def _check_meta(
    meta: Meta | None, *, key: str, size: int, written: tuple[float, float], ttl: float | None
) -> list[str]:
    """What is wrong with ``meta`` for ``key`` written between ``written`` with ``ttl``."""
    if meta is None:
        return [f"get_meta({key!r}) returned None for a live key"]
    problems = []
    if meta.size != size:
        problems.append(f"get_meta({key!r}).size is {meta.size}, the value has {size} bytes")
    low, high = written[0] - _SLACK, written[1] + _SLACK
    if meta.written_at is None or not low <= meta.written_at <= high:
        problems.append(
            f"get_meta({key!r}).written_at is {describe(meta.written_at)}; it was written"
            f" between {written[0]:.3f} and {written[1]:.3f} (POSIX seconds)"
        )
    if ttl is None:
        if meta.expires_at is not None:
            problems.append(
                f"get_meta({key!r}).expires_at is {meta.expires_at}; the key never expires"
            )
    elif meta.expires_at is None or not low + ttl <= meta.expires_at <= high + ttl:
        problems.append(
            f"get_meta({key!r}).expires_at is {describe(meta.expires_at)}; written with a TTL"
            f" of {ttl} s it expires between {written[0] + ttl:.3f} and {written[1] + ttl:.3f}"
        )
    return problems


async def _refused(call: Callable[[], Awaitable[object]], error: type[Exception]) -> str | None:
    try:
        result = await call()
    except error:
        return None
    except Exception as other:  # reported as the wrong outcome
        return f"raised {type(other).__name__}: {other}"
    return f"returned {describe(result)}"


class ExpiryClauses:
    """Expiry clauses, run where the driver instance declares the capability."""

    # Whether a scan finds expired keys through the backend's index (checked by cost): true for
    # every built-in driver but the files driver, whose scan reads a directory.
    expired_scan_by_index: ClassVar[bool] = True

    # -- without the capability -------------------------------------------------------------

    @pytest.mark.anyio
    async def test_without_expiry_every_ttl_call_is_refused(
        self, make_native_driver: DriverFactory
    ) -> None:
        """Expiry: without it every TTL call raises NotSupported naming the driver, writing
        nothing."""
        driver = make_native_driver()
        if has_expiry(driver):
            await driver.close()
            pytest.skip("the driver declares expiry = True: the expiry clauses run instead")
        storage = Storage(driver)
        try:
            await storage.clear()
            await storage.set("present", "old")
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "set": lambda: storage.set("new", 1, ttl=5),
                "set_raw": lambda: storage.set_raw("new", b"1", ttl=5),
                "set_many": lambda: storage.set_many({"new": 1}, ttl=5),
                "set_many_raw": lambda: storage.set_many_raw({"new": b"1"}, ttl=5),
                "a default TTL": lambda: Storage(driver, ttl=5).set("new", 1),
                "expire": lambda: storage.expire("present", 5),
                "get_meta": lambda: storage.get_meta("present"),
                "get_meta_many": lambda: storage.get_meta_many(["present"]),
                "purge_expired": lambda: storage.purge_expired(),
            }
            problems = [
                f"{name} {problem}"
                for name, call in calls.items()
                if (problem := await _refused(call, NotSupported)) is not None
            ]
            assert not problems, (
                "the driver does not declare expiry = True, so every TTL call must raise"
                " kvstore.errors.NotSupported naming it:\n" + "\n".join(problems)
            )
            after = [key async for key in storage.keys()]
            assert after == ["present"], f"a refused TTL call wrote: the store holds {after}"
        finally:
            await clear_and_close(driver, make_native_driver)

    # -- bad input ----------------------------------------------------------------------------

    @pytest.mark.anyio
    @pytest.mark.parametrize("ttl", BAD_TTLS, ids=repr)
    async def test_a_bad_ttl_is_refused_and_nothing_written(
        self, make_native_driver: DriverFactory, ttl: Any
    ) -> None:
        """Expiry: a zero, negative, NaN, infinite or non-number TTL raises InvalidTTL, on any
        driver, and writes nothing."""
        driver = make_native_driver()
        storage = Storage(driver)
        try:
            await storage.clear()
            await storage.set("present", "old")
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "set": lambda: storage.set("present", "new", ttl=ttl),
                "set_raw": lambda: storage.set_raw("present", b"new", ttl=ttl),
                "set_many": lambda: storage.set_many({"present": "new", "b": 1}, ttl=ttl),
                "set_many_raw": lambda: storage.set_many_raw({"b": b"1"}, ttl=ttl),
                "expire": lambda: storage.expire("present", ttl),
            }
            problems = [
                f"{name} {problem}"
                for name, call in calls.items()
                if (problem := await _refused(call, InvalidTTL)) is not None
            ]
            with pytest.raises(InvalidTTL):
                Storage(driver, ttl=ttl)
            with pytest.raises(InvalidTTL):
                storage.with_prefix("view", ttl=ttl)
            assert not problems, (
                f"a TTL of {ttl!r} must raise kvstore.errors.InvalidTTL:\n" + "\n".join(problems)
            )
            after = {key: await storage.get_raw(key) async for key in storage.keys()}
            assert after == {"present": b'"old"'}, f"a refused TTL wrote: the store holds {after}"
            if has_expiry(driver):
                meta = await storage.get_meta("present")
                assert meta is not None, "get_meta('present') after a refused TTL"
                assert meta.expires_at is None, (
                    f"a refused TTL changed the key's expiry: get_meta gives {meta}"
                )
        finally:
            await clear_and_close(driver, make_native_driver)

    # -- expiry -------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_a_key_with_a_long_ttl_is_present_and_reports_its_meta(
        self, make_driver: DriverFactory, clock: TestClock
    ) -> None:
        """Expiry: a key with a 30 s TTL is present to every read before its expiry, and
        get_meta reports its size, write time and expiry (and version), as get_meta_many does
        for many keys at once."""
        async with expiring_storage(make_driver) as storage:
            before = clock()
            await storage.set("long", {"n": 1}, ttl=_LONG)
            await storage.set_raw("raw", b"\x00" * 7, ttl=timedelta(seconds=_LONG))
            await storage.set_many({"m:1": "one", "m:2": "two"}, ttl=_LONG)
            await storage.set("plain", [1, 2, 3])
            after = clock()
            keys = ["long", "raw", "m:1", "m:2", "plain"]
            seen = await _present_to_every_read(storage, keys)
            missing = {op: sorted(set(keys) - set(found)) for op, found in seen.items()}
            assert not any(missing.values()), (
                f"keys written with a {_LONG} s TTL (or none) went missing at once: {missing}"
            )
            problems: list[str] = []
            sizes = {"long": 7, "raw": 7, "m:1": 5, "m:2": 5, "plain": 7}
            for key, size in sizes.items():
                ttl = None if key == "plain" else _LONG
                meta = await storage.get_meta(key)
                problems += _check_meta(meta, key=key, size=size, written=(before, after), ttl=ttl)
                if storage.driver.conditional_writes and meta is not None:
                    found = await storage.get_versioned_raw(key)
                    if found is None or meta.version != found.version:
                        problems.append(
                            f"get_meta({key!r}).version is {meta.version}; get_versioned"
                            f" reports {describe(found)}"
                        )
            assert await storage.get_meta("absent") is None, "get_meta of a missing key"
            assert not problems, "\n".join(problems)
            # The batch form: in the order asked, a repeat answered twice, None for the absent.
            asked = ["plain", "absent", *sizes, "long"]
            one_by_one = [await storage.get_meta(key) for key in asked]
            assert await storage.get_meta_many(asked) == one_by_one, (
                f"get_meta_many({asked}) must equal get_meta of each key, in order"
            )
            assert await storage.get_meta_many([]) == [], "get_meta_many([])"

    @pytest.mark.anyio
    async def test_an_expired_key_is_absent_to_every_operation(
        self, make_driver: DriverFactory, clock: TestClock
    ) -> None:
        """Expiry: from its expiry instant on a key is absent to get, has, batches, scans,
        get_meta, expire and versioned reads, with no purge having run; others stay."""
        async with expiring_storage(make_driver) as storage:
            short = _short(clock)
            await storage.set("live", "stays")
            await storage.set("long", "stays", ttl=_LONG)
            await storage.set("s:one", "goes", ttl=short)
            await storage.set_raw("s:raw", b"goes", ttl=short)
            await storage.set_many({"s:m1": 1, "s:m2": 2}, ttl=short)
            deadline = clock() + short
            gone = ["s:one", "s:raw", "s:m1", "s:m2"]
            if clock.manual:
                await clock.pass_instant(deadline - 0.001, exactly=True)
                seen = await _present_to_every_read(storage, gone)
                early = {op: sorted(set(gone) - set(found)) for op, found in seen.items()}
                assert not any(early.values()), (
                    f"one millisecond before their expiry instant keys were missing: {early}"
                )
            await clock.pass_instant(deadline, exactly=True)
            seen = await _present_to_every_read(storage, [*gone, "live", "long"])
            wrong = {
                op: sorted(set(found) ^ {"live", "long"})
                for op, found in seen.items()
                if set(found) != {"live", "long"}
            }
            assert not wrong, (
                "from its expiry instant on an expired key is absent to every operation (and the"
                f" others stay); these operations disagreed, per key: {wrong}"
            )
            assert [key async for key in storage.keys("s:")] == [], "keys('s:') after expiry"
            expired_expire = await storage.expire("s:one", _LONG)
            assert expired_expire is False, "expire() of an expired key returned True"
            assert await storage.get("s:one") is None, "expire() brought an expired key back"
            await storage.clear()
            assert [key async for key in storage.keys()] == [], "clear() left keys behind"

    @pytest.mark.anyio
    async def test_a_write_without_ttl_clears_the_expiry(
        self, make_driver: DriverFactory, clock: TestClock
    ) -> None:
        """Expiry: set, set_raw, set_many and conditional writes without a TTL clear a key's
        earlier expiry; expire(key, None) does too."""
        async with expiring_storage(make_driver) as storage:
            short = _short(clock)
            names = ["set", "set_raw", "set_many", "expire_none", "commit"]
            await storage.set_many({name: "first" for name in names}, ttl=short)
            deadline = clock() + short
            await storage.set("set", "second")
            await storage.set_raw("set_raw", b'"second"')
            await storage.set_many({"set_many": "second"})
            assert await storage.expire("expire_none", None) is True
            if storage.driver.conditional_writes:
                found = await storage.get_versioned("commit")
                assert found is not None
                await storage.replace("commit", "second", found.version)
            else:
                names.remove("commit")
            metas = {name: await storage.get_meta(name) for name in names}
            kept = {name: meta for name, meta in metas.items() if meta and meta.expires_at}
            assert not kept, f"a write without a TTL kept the earlier expiry: {kept}"
            await clock.pass_instant(deadline)
            present = [name for name in names if await storage.get(name) is not None]
            assert present == names, (
                f"keys rewritten without a TTL expired anyway: only {present} of {names} remain"
            )

    @pytest.mark.anyio
    async def test_expire_changes_only_the_expiry(
        self, make_driver: DriverFactory, clock: TestClock
    ) -> None:
        """Expiry: expire() sets or removes a live key's expiry without touching its value,
        version or write time, and reports whether the key was there."""
        async with expiring_storage(make_driver) as storage:
            short = _short(clock)
            await storage.set("k", {"v": 1})
            await storage.set("goes", "x")
            first = await storage.get_meta("k")
            assert first is not None, "get_meta of a live key"
            assert first.expires_at is None, f"a key written without a TTL: {first}"
            if clock.manual:
                await clock.advance(0.01)  # so that a rewritten write time would show
            before = clock()
            assert await storage.expire("k", _LONG) is True, "expire() of a live key"
            assert await storage.expire("goes", short) is True, "expire() of a live key"
            deadline = clock() + short
            second = await storage.get_meta("k")
            assert second is not None
            assert (second.size, second.written_at, second.version) == (
                first.size,
                first.written_at,
                first.version,
            ), f"expire() changed more than the expiry: {first} became {second}"
            expires = second.expires_at
            assert expires is not None, f"expire(k, {_LONG}) left no expiry: {second}"
            assert before + _LONG - _SLACK <= expires <= clock() + _LONG + _SLACK, (
                f"expire(k, {_LONG}) at {before:.3f} gave expires_at {expires}"
            )
            assert await storage.get("k") == {"v": 1}
            assert await storage.expire("missing", _LONG) is False, "expire() of a missing key"
            assert [key async for key in storage.keys()] == ["goes", "k"], "expire() wrote a key"
            await clock.pass_instant(deadline)
            assert await storage.get("goes") is None, "a key given a short TTL by expire()"
            assert await storage.expire("k", None) is True
            third = await storage.get_meta("k")
            assert third is not None, "get_meta after expire(k, None)"
            assert third.expires_at is None, f"expire(k, None) left an expiry: {third}"

    @pytest.mark.anyio
    async def test_default_ttl_of_a_storage_and_its_views(
        self, make_driver: DriverFactory, clock: TestClock
    ) -> None:
        """Expiry: a storage's default TTL applies to writes that name none; views inherit it or
        carry their own; ttl=None on a write means never."""
        async with expiring_storage(make_driver) as root:
            storage = Storage(root.driver, ttl=_LONG)
            inherits = storage.with_prefix("inherits")
            own = storage.with_prefix("own", ttl=2 * _LONG)
            never = storage.with_prefix("never", ttl=None)
            await storage.set("default", 1)
            await storage.set("none", 1, ttl=None)
            await storage.set_many({"batch": 1})
            await inherits.set("k", 1)
            await own.set_raw("k", b"1")
            await never.set("k", 1)
            await never.set("given", 1, ttl=_LONG)
            now = clock()
            expected = {
                "default": _LONG,
                "none": None,
                "batch": _LONG,
                "inherits:k": _LONG,
                "own:k": 2 * _LONG,
                "never:k": None,
                "never:given": _LONG,
            }
            problems = []
            for key, ttl in expected.items():
                meta = await root.get_meta(key)
                got = None if meta is None or meta.expires_at is None else meta.expires_at - now
                if meta is None or (got is None) != (ttl is None) or (
                    ttl is not None and got is not None and abs(got - ttl) > 1 + _SLACK
                ):
                    problems.append(f"{key!r}: expected a TTL of {ttl}, get_meta gives {meta}")
            assert not problems, "\n".join(problems)

    @pytest.mark.anyio
    async def test_conditional_writes_see_an_expired_key_as_absent(
        self, make_driver: DriverFactory, clock: TestClock
    ) -> None:
        """Expiry: an expired key's version no longer holds, and create() writes over it."""
        async with expiring_storage(make_driver) as storage:
            if not storage.driver.conditional_writes:
                pytest.skip("the driver does not offer conditional writes")
            short = _short(clock)
            await storage.set_many({"a": 1, "b": 1, "c": 1}, ttl=short)
            deadline = clock() + short
            versions = {}
            for key in ("a", "b", "c"):
                found = await storage.get_versioned(key)
                assert found is not None, f"get_versioned({key!r}) before its expiry"
                versions[key] = found.version
            await clock.pass_instant(deadline)
            with pytest.raises(Conflict):
                await storage.replace("a", 2, versions["a"])
            with pytest.raises(Conflict):
                await storage.delete_if("b", versions["b"])
            await storage.commit([Change.check("c", None)])
            new = await storage.create("a", 3)
            meta = await storage.get_meta("a")
            assert meta is not None, "get_meta after create() over an expired key"
            assert (meta.version, meta.expires_at) == (new, None), (
                f"create() over an expired key: get_meta gives {meta}"
            )
            assert [key async for key in storage.keys()] == ["a"]

    @pytest.mark.anyio
    async def test_purge_removes_expired_keys_only_and_is_bounded(
        self, make_driver: DriverFactory, clock: TestClock
    ) -> None:
        """Expiry: purge_expired removes at most ``limit`` expired keys per call, and never a
        live one."""
        async with expiring_storage(make_driver) as storage:
            short = _short(clock)
            live = {f"live:{n:02}": n for n in range(5)}
            await storage.set_many({f"gone:{n:02}": n for n in range(30)}, ttl=short)
            deadline = clock() + short
            await storage.set_many(live)
            await storage.set_many({f"long:{n:02}": n for n in range(5)}, ttl=_LONG)
            await clock.pass_instant(deadline)
            with pytest.raises(ValueError, match="limit"):
                await storage.purge_expired(0)
            counts: list[int] = []
            while (count := await storage.purge_expired(limit=7)) and len(counts) < 20:
                counts.append(count)
            assert all(0 < c <= 7 for c in counts), (
                f"purge_expired(limit=7) removed {counts}: at most 7 per call"
            )
            assert sum(counts) <= 30, f"purge_expired removed {counts}; 30 keys had expired"
            left = [key async for key in storage.keys()]
            assert left == sorted(live) + [f"long:{n:02}" for n in range(5)], (
                f"after purging, the store holds {left}"
            )
            assert await storage.get_many(sorted(live)) == list(live.values())

    @pytest.mark.anyio
    async def test_a_scan_skips_expired_keys_without_walking_them(
        self, make_native_driver: DriverFactory, clock: TestClock
    ) -> None:
        """Expiry: a scan over 1,000 live keys among 9,000 expired ones costs the client what a
        scan over 1,000 live keys alone does (the backend skips them by index)."""
        if not self.expired_scan_by_index:
            pytest.skip("the driver's test class says its scans walk expired keys")
        async with expiring_storage(make_native_driver) as storage:
            short = 2 * _short(clock)  # 9,000 writes must end before the instant on servers
            await storage.set_many_raw({f"b:{n:05}": b"x" for n in range(9000)}, ttl=short)
            deadline = clock() + short
            live = {f"{p}:{n:05}": b"x" for p in "ab" for n in range(9000, 10000)}
            await storage.set_many_raw(live)
            await clock.pass_instant(deadline)

            async def scan(prefix: str) -> None:
                assert len([key async for key in storage.keys(prefix)]) == 1000

            alone = await measure_best(lambda: scan("a:"), runs=3)
            among = await measure_best(lambda: scan("b:"), runs=3)
            assert among.steps <= 1.25 * alone.steps + 2000, (
                f"a scan over 1,000 live keys among 9,000 expired ones cost {among}; over 1,000"
                f" live keys alone {alone}: expired entries must be skipped by the backend"
                " (an index or structure on the expiry instant), not walked by the client"
            )
