"""What the conditional-write clauses share: the skip reason, version checks, a storage to run on.

Used by :mod:`kvstore.testing.conditional_clauses`, :mod:`kvstore.testing.conditional_races` and
the state machine's :mod:`kvstore.testing.version_model`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence

import pytest

from kvstore.conditional import LEGACY_VERSION, Versioned
from kvstore.driver import BaseDriver
from kvstore.errors import Conflict
from kvstore.storage import Storage
from kvstore.testing.driver_clauses import DriverFactory, capable_storage
from kvstore.testing.reporting import describe

__all__ = [
    "MAX_VERSION",
    "SKIP_REASON",
    "check_version",
    "differences",
    "expect_conflict",
    "has_conditional_writes",
    "read_version",
    "read_versions",
    "version_problem",
    "versioned_storage",
    "written_versions",
]

#: Why the conditional clauses skip for a driver that does not offer the capability.
SKIP_REASON = (
    "the driver does not declare conditional_writes = True (conditional writes are an optional"
    " capability)"
)
#: The largest version :func:`kvstore.conditional.new_version` hands out.
MAX_VERSION = 2**52


def version_problem(where: str, version: object) -> str | None:
    """Say what is wrong with a version a driver returned for a value it wrote, else ``None``."""
    if type(version) is not int:
        return (
            f"{where} gave the version {describe(version)} of type {type(version).__name__}: a"
            " version is exactly an `int` (convert what the backend returns with int(...))"
        )
    if version == LEGACY_VERSION:
        return (
            f"{where} gave version 0, which only values written before the store's upgrade"
            " carry: every write stores a fresh kvstore.conditional.new_version()"
        )
    if not 1 <= version <= MAX_VERSION:
        return f"{where} gave the version {version}, outside 1 .. 2**52 (use new_version())"
    return None


def check_version(where: str, version: object) -> int:
    """Return ``version``, failing the clause if :func:`version_problem` finds fault with it."""
    problem = version_problem(where, version)
    assert problem is None, problem
    assert isinstance(version, int)
    return version


def has_conditional_writes(driver: BaseDriver) -> bool:
    """Whether this driver instance declares the capability."""
    return bool(getattr(driver, "conditional_writes", False))


def versioned_storage(
    make_driver: DriverFactory, *, wrap: Callable[[BaseDriver], BaseDriver] | None = None
) -> contextlib.AbstractAsyncContextManager[Storage]:
    """An empty storage on a new driver with the capability (else skip); emptied afterwards."""
    return capable_storage(make_driver, has_conditional_writes, SKIP_REASON, wrap=wrap)


async def expect_conflict(
    call: Callable[[], Awaitable[object]], failing: set[str], what: str, *, exact: bool = True
) -> Conflict:
    """Run ``call``, require a :class:`Conflict` naming ``failing`` (a part of it if not exact)."""
    try:
        result = await call()
    except Conflict as error:
        named = set(error.keys)
        if exact:
            assert named == failing, (
                f"{what} raised Conflict naming {sorted(named)}; the keys whose condition failed"
                f" are {sorted(failing)} (raise driver.conflict(every failing key))"
            )
        else:
            assert named, f"{what} raised Conflict naming no key; it names the failing ones"
            assert named <= failing, (
                f"{what} raised Conflict naming {sorted(named)}; it must name a key whose"
                f" condition failed, among {sorted(failing)}"
            )
        return error
    pytest.fail(
        f"{what} returned {describe(result)}, but the condition on {sorted(failing)} does not"
        " hold: it must raise kvstore.errors.Conflict and write nothing",
        pytrace=False,
    )


async def read_versions(
    storage: Storage, keys: Sequence[str]
) -> dict[str, Versioned[bytes] | None]:
    """Each key's bytes and version (``None`` if absent), read one at a time."""
    return {key: await storage.get_versioned_raw(key) for key in keys}


async def read_version(storage: Storage, key: str, where: str) -> int:
    """The version of ``key``, which ``where`` just wrote: present and in range."""
    found = await storage.get_versioned_raw(key)
    assert found is not None, f"get_versioned({key!r}) returned None after {where}"
    return check_version(f"get_versioned({key!r}) after {where}", found.version)


def differences(
    before: dict[str, Versioned[bytes] | None], after: dict[str, Versioned[bytes] | None]
) -> list[str]:
    """One line per key of ``before`` whose value or version differs in ``after``."""
    return [
        f"{key!r}: {describe(before[key])} became {describe(after[key])}"
        for key in before
        if before[key] != after[key]
    ]


def written_versions(versions: list[int | None]) -> list[int]:
    """The versions a commit of writes returned, checked."""
    return [check_version(f"commit(...)[{index}]", v) for index, v in enumerate(versions)]
