"""A Hypothesis state machine that checks a storage against a plain dict.

Every rule performs one operation on the storage under test and on the model, then compares what
they return; after each step the whole key set is compared too. Each rule's docstring names the
contract clause it checks, and so does its assertion message. The storage is driven from a
synchronous state machine through an anyio blocking portal, so one machine serves every async
backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, ClassVar, TypeVar

import anyio
from anyio.from_thread import BlockingPortal
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kvstore.conditional import Action, Change
from kvstore.errors import Conflict
from kvstore.expiry import expiry_millis, from_millis, now_millis
from kvstore.serialization import decode, encode
from kvstore.storage import Storage
from kvstore.testing import strategies as kst
from kvstore.testing.clock import TestClock
from kvstore.testing.reporting import describe
from kvstore.testing.version_model import VersionModel

__all__ = ["StorageStateMachine"]

T = TypeVar("T")

# A small fixed pool makes overwrites, deletes of present keys and shared prefixes common; the
# open strategy covers the rest of the key space.
_POOL = [
    "a",
    "A",
    "a ",
    "a\u0301",
    "app",
    "app:x",
    "apple",
    "a:b",
    "a:b:c",
    "%",
    "_",
    "a%b",
    "a_b",
    "*",
    "[x]",
    "..",
    ".",
    "x\\y",
    "\U0010ffff",
    "z" * 300,
]
_KEYS = st.one_of(st.sampled_from(_POOL), kst.keys())
_PREFIXES = kst.prefixes(_KEYS)
_VALUES = kst.json_values()
# The kinds of change a random commit is made of.
_CHANGE_KINDS = ["create", "replace", "put", "delete_if", "delete", "check", "check_absent"]


# TTLs the expiring rules use: on a manual clock short ones that the passage of time ends; on
# the real clock only TTLs far longer than any run, so that nothing expires unmodelled.
_MANUAL_TTLS = st.sampled_from([0.001, 0.5, 1.0, 2.5, 60.0])
_REAL_TTLS = st.sampled_from([3600.0, 7200.0])


def _offers_conditional_writes(machine: StorageStateMachine) -> bool:
    return machine.conditional


def _offers_expiry(machine: StorageStateMachine) -> bool:
    return machine.expiry


def _moves_time(machine: StorageStateMachine) -> bool:
    return machine.expiry and machine.clock.manual


class _Model(dict[str, Any]):
    """The model's keys and values, plus each expiring key's instant (ms, ``None`` if unknown).

    Every plain write or delete through the dict's methods drops the key's expiry, as the
    contract says a write without a TTL does; the expiring rules set it after writing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.expiry: dict[str, int | None] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.expiry.pop(key, None)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.expiry.pop(key, None)

    def pop(self, key: str, default: Any = None) -> Any:
        self.expiry.pop(key, None)
        return super().pop(key, default)

    def update(  # type: ignore[override]
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]]
    ) -> None:
        for key, value in items.items() if isinstance(items, Mapping) else items:
            self[key] = value


class StorageStateMachine(RuleBasedStateMachine):
    """Random sequences of every storage operation, checked against a dict model.

    Subclasses (made by :meth:`DriverConformance.test_state_machine`) set ``storage``,
    ``portal``, ``make_storage``, ``persistent``, ``conditional`` (the driver offers conditional
    writes: the versioned rules run, checked against a :class:`VersionModel`) and
    ``atomic_commits`` (a failed commit leaves every key of it alone, not only the failing ones);
    each example starts from an empty storage.
    """

    storage: ClassVar[Storage]
    portal: ClassVar[BlockingPortal]
    persistent: ClassVar[bool] = False
    conditional: ClassVar[bool] = False
    atomic_commits: ClassVar[bool] = False
    # The driver offers expiry: the expiring rules run; on a manual clock time passes too.
    expiry: ClassVar[bool] = False
    clock: ClassVar[TestClock] = TestClock(manual=False)

    @staticmethod
    def make_storage() -> Storage:
        """Return a new storage over a new driver on the same store (the suite sets this)."""
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.model = _Model()
        self.versions = VersionModel()

    def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one coroutine on the storage's event loop and return its result."""
        return self.portal.call(call)

    def _keys(self, prefix: str) -> list[str]:
        async def collect() -> list[str]:
            return [key async for key in self.storage.keys(prefix)]

        return self.run(collect)

    def _expected_keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.model if key.startswith(prefix))

    def _wrote(self, keys: Iterable[str], what: str = "") -> None:
        """Forget the versions of ``keys``, just written or deleted.

        With conditional writes, an unconditional write named by ``what`` is also checked to
        have given each key a version it never had (the next versioned read would find out
        too, but rarely comes soon enough).
        """
        written = list(dict.fromkeys(keys))
        for key in written:
            self.versions.written(key)
        if not (what and self.conditional):
            return
        # Only keys seen at a version before can show a reused one: no read for the others.
        for key in (key for key in written if key in self.versions.seen):
            found = self.run(lambda key=key: self.storage.get_versioned_raw(key))  # type: ignore[misc]
            assert found is not None, f"get_versioned({key!r}) after {what} returned None"
            self._observe(key, found.version, f"get_versioned({key!r}) after {what}")

    def _matches(self, key: str, data: bytes | None) -> bool:
        """Whether ``data`` is what the model says ``key`` holds."""
        if key not in self.model or data is None:
            return key not in self.model and data is None
        expected = self.model[key]
        if isinstance(expected, bytes):
            return data == expected
        return bool(decode(data, key) == expected)

    def _check_raw(self, key: str, data: bytes | None, clause: str) -> None:
        """``data`` is what the storage holds under ``key`` according to the model."""
        if key not in self.model:
            assert data is None, f"{clause}: {key!r} was deleted, got {describe(data)}"
            return
        expected = self.model[key]
        assert data is not None, f"{clause}: {key!r} holds {describe(expected)}, got None"
        if isinstance(expected, bytes):
            assert data == expected, (
                f"{clause}: {key!r} holds {describe(expected)}, got {describe(data)}"
            )
        else:
            assert decode(data, key) == expected, (
                f"{clause}: {key!r} holds {describe(expected)}, got {describe(data)}"
            )

    @initialize()
    def start_empty(self) -> None:
        """Each example starts from an empty storage."""
        self.run(lambda: self.storage.clear())

    @rule(key=_KEYS, value=_VALUES)
    def set(self, key: str, value: Any) -> None:
        """``set`` stores the value."""
        self.run(lambda: self.storage.set(key, value))
        self.model[key] = value
        self._wrote([key], "set")

    @rule(key=_KEYS, value=kst.raw_values())
    def set_raw(self, key: str, value: bytes) -> None:
        """``set_raw`` stores bytes that ``get_raw`` returns unchanged."""
        self.run(lambda: self.storage.set_raw(key, value))
        self.model[key] = value
        self._wrote([key], "set_raw")
        self._check_raw(
            key, self.run(lambda: self.storage.get_raw(key)), "bytes come back unchanged"
        )

    @rule(key=_KEYS)
    def get(self, key: str) -> None:
        """``get`` returns what was stored, ``None`` when nothing is."""
        self._check_raw(
            key, self.run(lambda: self.storage.get_raw(key)), "get reads the last write"
        )
        assert self.run(lambda: self.storage.has(key)) == (key in self.model), (
            f"has({key!r}) agrees with get"
        )

    @rule(key=_KEYS)
    def delete(self, key: str) -> None:
        """``delete`` removes the key, present or not."""
        self.run(lambda: self.storage.delete(key))
        self.model.pop(key, None)
        self.versions.written(key)

    @rule(keys=st.lists(_KEYS, max_size=8))
    def get_many(self, keys: list[str]) -> None:
        """``get_many`` returns each key's whole value, in the order asked."""
        got = self.run(lambda: self.storage.get_many_raw(keys))
        assert len(got) == len(keys), f"get_many of {len(keys)} keys returned {len(got)} values"
        for key, data in zip(keys, got, strict=True):
            self._check_raw(key, data, "get_many answers in the order asked")

    @rule(items=st.lists(st.tuples(_KEYS, _VALUES), max_size=8))
    def set_many(self, items: list[tuple[str, Any]]) -> None:
        """``set_many`` stores every pair, the last of repeated keys winning."""
        self.run(lambda: self.storage.set_many(items))
        self.model.update(items)
        self._wrote((key for key, _ in items), "set_many")

    @rule(keys=st.lists(_KEYS, max_size=8))
    def delete_many(self, keys: list[str]) -> None:
        """``delete_many`` removes every key named."""
        self.run(lambda: self.storage.delete_many(keys))
        for key in keys:
            self.model.pop(key, None)
        self._wrote(keys)

    @rule(prefix=_PREFIXES)
    def scan(self, prefix: str) -> None:
        """``keys(prefix)`` yields the matching keys once each, in code point order."""
        assert self._keys(prefix) == self._expected_keys(prefix), (
            f"keys({prefix!r}) yields every matching key once, in code point order"
        )

    @rule(prefix=_PREFIXES)
    def items(self, prefix: str) -> None:
        """``items(prefix)`` yields each matching key once, in order, with its own value."""

        async def collect() -> list[tuple[str, bytes]]:
            return [pair async for pair in self.storage.items_raw(prefix)]

        pairs = self.run(collect)
        keys = [key for key, _ in pairs]
        assert keys == self._expected_keys(prefix), (
            f"items({prefix!r}) yields the keys keys({prefix!r}) yields"
        )
        for key, data in pairs:
            self._check_raw(key, data, f"items({prefix!r}) pairs each key with its value")

    @rule(
        writes=st.dictionaries(_KEYS, _VALUES, max_size=6),
        deletes=st.lists(_KEYS, max_size=4),
    )
    def concurrent_writes(self, writes: dict[str, Any], deletes: list[str]) -> None:
        """Concurrent writers to different keys never lose each other's writes."""
        deleted = [key for key in dict.fromkeys(deletes) if key not in writes]

        async def together() -> None:
            async with anyio.create_task_group() as group:
                for key, value in writes.items():
                    group.start_soon(self.storage.set, key, value)
                for key in deleted:
                    group.start_soon(self.storage.delete, key)

        self.run(together)
        self.model.update(writes)
        for key in deleted:
            self.model.pop(key, None)
        self._wrote([*writes, *deleted])
        got = self.run(lambda: self.storage.get_many_raw([*writes, *deleted]))
        for key, data in zip([*writes, *deleted], got, strict=True):
            self._check_raw(key, data, "concurrent writers lose nothing")

    @precondition(lambda self: self.persistent)
    @rule()
    def reopen(self) -> None:
        """A persistent store keeps every write, overwrite and delete across close and reopen."""
        self.run(self.storage.close)
        type(self).storage = self.make_storage()
        keys = self._expected_keys("")
        got = self.run(lambda: self.storage.get_many_raw(keys))
        for key, data in zip(keys, got, strict=True):
            self._check_raw(key, data, "a new driver sees what an earlier one wrote")

    @rule(prefix=_PREFIXES)
    def clear(self, prefix: str) -> None:
        """``clear(prefix)`` removes exactly what ``keys(prefix)`` yields."""
        self.run(lambda: self.storage.clear(prefix))
        for key in self._expected_keys(prefix):
            del self.model[key]
            self.versions.written(key)

    # -- versioned operations (drivers with conditional writes) ------------------------------

    def _observe(self, key: str, version: object, where: str) -> None:
        problem = self.versions.observe(key, version, where)
        assert problem is None, problem

    def _wrote_at(self, key: str, value: Any, version: object, where: str) -> None:
        self.versions.written(key)
        self._observe(key, version, where)
        self.model[key] = value

    def _removed(self, key: str) -> None:
        self.model.pop(key, None)
        self.versions.written(key)

    def _conflict(
        self, call: Callable[[], Awaitable[object]], failing: AbstractSet[str], what: str
    ) -> None:
        """``call`` must raise Conflict naming the failing keys (on atomic commits, exactly)."""
        try:
            result = self.run(call)
        except Conflict as error:
            named = set(error.keys)
            exact = self.atomic_commits or len(failing) == 1
            assert (named == failing) if exact else (named and named <= failing), (
                f"{what} raised Conflict naming {sorted(named)}; the failing conditions are on"
                f" {sorted(failing)}"
            )
            return
        raise AssertionError(
            f"{what} returned {describe(result)}, but the condition on {sorted(failing)} does not"
            " hold: a failed condition raises Conflict and writes nothing"
        )

    def _version_for(self, key: str, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(self.versions.candidates(key)), label=f"version of {key}")

    @precondition(_offers_conditional_writes)
    @rule(key=_KEYS)
    def get_versioned(self, key: str) -> None:
        """``get_versioned`` reads the value with its version, which changes only on a write."""
        found = self.run(lambda: self.storage.get_versioned_raw(key))
        self._check_raw(
            key, None if found is None else found.value, "get_versioned reads the last write"
        )
        if found is not None:
            self._observe(key, found.version, f"get_versioned({key!r})")

    @precondition(_offers_conditional_writes)
    @rule(key=_KEYS, value=_VALUES)
    def create(self, key: str, value: Any) -> None:
        """``create`` writes an absent key only; on a present one it raises Conflict."""
        if key in self.model:
            self._conflict(
                lambda: self.storage.create(key, value), {key}, f"create({key!r}) of a present key"
            )
            return
        version = self.run(lambda: self.storage.create(key, value))
        self._wrote_at(key, value, version, f"create({key!r})")

    @precondition(_offers_conditional_writes)
    @rule(key=_KEYS, value=_VALUES, data=st.data())
    def replace(self, key: str, value: Any, data: st.DataObject) -> None:
        """``replace`` writes at the key's current version only; any other is a Conflict."""
        version = self._version_for(key, data)
        if not self.versions.holds(key, version, key in self.model):
            self._conflict(
                lambda: self.storage.replace(key, value, version),
                {key},
                f"replace({key!r}) at version {version}, not the key's current one",
            )
            return
        new = self.run(lambda: self.storage.replace(key, value, version))
        self._wrote_at(key, value, new, f"replace({key!r})")

    @precondition(_offers_conditional_writes)
    @rule(key=_KEYS, data=st.data())
    def delete_if(self, key: str, data: st.DataObject) -> None:
        """``delete_if`` deletes at the key's current version only; any other is a Conflict."""
        version = self._version_for(key, data)
        if not self.versions.holds(key, version, key in self.model):
            self._conflict(
                lambda: self.storage.delete_if(key, version),
                {key},
                f"delete_if({key!r}) at version {version}, not the key's current one",
            )
            return
        self.run(lambda: self.storage.delete_if(key, version))
        self._removed(key)

    @precondition(_offers_conditional_writes)
    @rule(key=_KEYS, value=_VALUES, delete=st.booleans())
    def read_then_write(self, key: str, value: Any, delete: bool) -> None:
        """A write conditioned on the version just read applies: nothing wrote in between."""
        found = self.run(lambda: self.storage.get_versioned_raw(key))
        self._check_raw(key, None if found is None else found.value, "get_versioned")
        if found is None:
            version = self.run(lambda: self.storage.create(key, value))
            self._wrote_at(key, value, version, f"create({key!r}) after reading it absent")
            return
        self._observe(key, found.version, f"get_versioned({key!r})")
        if delete:
            self.run(lambda: self.storage.delete_if(key, found.version))
            self._removed(key)
        else:
            new = self.run(lambda: self.storage.replace(key, value, found.version))
            self._wrote_at(key, value, new, f"replace({key!r}) at the version just read")

    @precondition(_offers_conditional_writes)
    @rule(key=_KEYS, value=_VALUES)
    def update(self, key: str, value: Any) -> None:
        """``update`` hands its function the current value and stores what it returns."""
        if isinstance(self.model.get(key), bytes):
            return  # raw bytes need not be JSON; update reads JSON
        received: list[Any] = []

        def change(current: Any) -> Any:
            received.append(current)
            return value

        self.run(lambda: self.storage.update(key, change))
        assert received == [self.model.get(key)], (
            f"update({key!r}) handed its function {describe(received)}; the key holds"
            f" {describe(self.model.get(key))} and nothing else writes it"
        )
        self.model[key] = value
        self.versions.written(key)

    def _change(self, key: str, data: st.DataObject) -> Change[Any]:
        kind = data.draw(st.sampled_from(_CHANGE_KINDS), label=f"change of {key}")
        if kind in ("create", "replace", "put"):
            value = data.draw(_VALUES, label=f"value of {key}")
            if kind == "create":
                return Change.create(key, value)
            if kind == "put":
                return Change.put(key, value)
            return Change.replace(key, value, self._version_for(key, data))
        if kind == "delete":
            return Change.delete(key)
        if kind == "delete_if":
            return Change.delete(key, self._version_for(key, data))
        if kind == "check_absent":
            return Change.check(key, None)
        return Change.check(key, self._version_for(key, data))

    @precondition(_offers_conditional_writes)
    @rule(keys=st.lists(_KEYS, min_size=1, max_size=5, unique=True), data=st.data())
    def commit(self, keys: list[str], data: st.DataObject) -> None:
        """``commit`` applies every change if every condition holds; else Conflict, no writes."""
        changes = [self._change(key, data) for key in keys]
        failing = {
            change.key
            for change in changes
            if not self.versions.holds(change.key, change.expected, change.key in self.model)
        }
        if failing:
            self._conflict(lambda: self.storage.commit(changes), failing, "commit(...)")
            if not self.atomic_commits:
                self._resync([change for change in changes if change.key not in failing])
            return
        returned = self.run(lambda: self.storage.commit(changes))
        assert len(returned) == len(changes), (
            f"commit of {len(changes)} changes returned {len(returned)} versions"
        )
        for change, version in zip(changes, returned, strict=True):
            where = f"commit(...) {change.action.value} of {change.key!r}"
            if change.action is Action.WRITE:
                self._wrote_at(change.key, change.value, version, where)
                continue
            assert version is None, f"{where} returned {describe(version)}, not None"
            if change.action is Action.DELETE:
                self._removed(change.key)

    def _resync(self, changes: list[Change[Any]]) -> None:
        """After a failed commit on a driver without atomic commits: each change whose condition
        held may have been applied or not, but nothing else may have happened to its key."""
        for change in changes:
            key = change.key
            found = self.run(lambda key=key: self.storage.get_versioned_raw(key))  # type: ignore[misc]
            data = None if found is None else found.value
            known = self.versions.known.get(key)
            untouched = self._matches(key, data) and (
                found is None or known is None or found.version == known
            )
            if untouched or change.action is Action.CHECK:
                assert untouched, f"a failed commit changed {key!r}, which it only checked"
                if found is not None:
                    self._observe(key, found.version, f"get_versioned({key!r})")
                continue
            if change.action is Action.DELETE:
                assert found is None, f"a failed commit left {key!r} neither kept nor deleted"
                self._removed(key)
                continue
            assert found is not None, f"a failed commit deleted {key!r}, which it wrote"
            assert decode(found.value, key) == change.value, (
                f"a failed commit left {key!r} at {describe(data)}: neither kept nor written"
            )
            self._wrote_at(key, change.value, found.version, f"get_versioned({key!r})")

    @precondition(_offers_conditional_writes)
    @rule(key=_KEYS, values=st.lists(_VALUES, min_size=2, max_size=4))
    def concurrent_creates(self, key: str, values: list[Any]) -> None:
        """Of concurrent creates of one key, exactly one wins if it was absent, none if not."""
        won: dict[int, int] = {}

        async def together() -> None:
            async def one(index: int) -> None:
                with contextlib.suppress(Conflict):
                    won[index] = await self.storage.create(key, values[index])

            async with anyio.create_task_group() as group:
                for index in range(len(values)):
                    group.start_soon(one, index)

        self.run(together)
        if key in self.model:
            assert not won, f"{len(won)} creates of the present key {key!r} won"
            return
        assert len(won) == 1, f"{len(won)} of {len(values)} concurrent creates of {key!r} won"
        ((index, version),) = won.items()
        self._wrote_at(key, values[index], version, f"the winning create of {key!r}")

    # -- expiry (drivers with the capability) ---------------------------------------------------

    def _ttl(self, data: st.DataObject) -> float:
        return data.draw(_MANUAL_TTLS if self.clock.manual else _REAL_TTLS, label="ttl")

    def _expiring(self, keys: Iterable[str], ttl: float) -> None:
        """Record that ``keys`` were just written to expire ``ttl`` seconds from now."""
        # On a manual clock the instant is known to the millisecond; on the real one only that
        # there is one (far beyond the run).
        instant = expiry_millis(now_millis(self.clock), ttl) if self.clock.manual else None
        for key in keys:
            self.model.expiry[key] = instant

    @precondition(_offers_expiry)
    @rule(key=_KEYS, value=_VALUES, data=st.data())
    def set_expiring(self, key: str, value: Any, data: st.DataObject) -> None:
        """``set`` with a TTL stores the value until its expiry instant."""
        ttl = self._ttl(data)
        self.run(lambda: self.storage.set(key, value, ttl=ttl))
        self.model[key] = value
        self._expiring([key], ttl)
        self._wrote([key], "set with a TTL")

    @precondition(_offers_expiry)
    @rule(items=st.lists(st.tuples(_KEYS, _VALUES), max_size=8), data=st.data())
    def set_many_expiring(self, items: list[tuple[str, Any]], data: st.DataObject) -> None:
        """``set_many`` with a TTL gives every key of the batch the same expiry instant."""
        ttl = self._ttl(data)
        self.run(lambda: self.storage.set_many(items, ttl=ttl))
        self.model.update(items)
        self._expiring((key for key, _ in items), ttl)
        self._wrote((key for key, _ in items), "set_many with a TTL")

    @precondition(_offers_expiry)
    @rule(key=_KEYS, data=st.data(), persist=st.booleans())
    def expire(self, key: str, data: st.DataObject, persist: bool) -> None:
        """``expire`` changes only a live key's expiry, and says whether the key was live."""
        ttl = None if persist else self._ttl(data)
        changed = self.run(lambda: self.storage.expire(key, ttl))
        assert changed == (key in self.model), (
            f"expire({key!r}) returned {changed}; the key is {'' if changed else 'not '}live"
        )
        if not changed:
            return
        if ttl is None:
            self.model.expiry.pop(key, None)
        else:
            self._expiring([key], ttl)

    @precondition(_offers_expiry)
    @rule(key=_KEYS)
    def get_meta(self, key: str) -> None:
        """``get_meta`` reports a live key's size and expiry, and ``None`` for any other."""
        meta = self.run(lambda: self.storage.get_meta(key))
        if key not in self.model:
            assert meta is None, f"get_meta({key!r}) of an absent key returned {meta}"
            return
        assert meta is not None, f"get_meta({key!r}) of a live key returned None"
        value = self.model[key]
        size = len(value) if isinstance(value, bytes) else len(encode(value))
        assert meta.size == size, f"get_meta({key!r}).size is {meta.size}, not {size}"
        if key not in self.model.expiry:
            assert meta.expires_at is None, (
                f"get_meta({key!r}).expires_at is {meta.expires_at}; the key never expires"
            )
            return
        instant = self.model.expiry[key]
        assert meta.expires_at is not None, f"get_meta({key!r}) lost the key's expiry"
        if instant is not None:
            assert meta.expires_at == from_millis(instant), (
                f"get_meta({key!r}).expires_at is {meta.expires_at}, not {from_millis(instant)}"
            )

    @precondition(_moves_time)
    @rule(seconds=st.sampled_from([0.0005, 0.001, 0.5, 1.0, 3.0]))
    def time_passes(self, seconds: float) -> None:
        """From its expiry instant on, a key is gone (the invariant checks every key)."""
        self.run(lambda: self.clock.advance(seconds))
        now_ms = now_millis(self.clock)
        for key, instant in list(self.model.expiry.items()):
            if instant is not None and instant <= now_ms:
                del self.model[key]
                self.versions.written(key)

    @precondition(_offers_expiry)
    @rule(limit=st.integers(min_value=1, max_value=5))
    def purge_expired(self, limit: int) -> None:
        """``purge_expired`` removes at most ``limit`` keys, and only expired ones."""
        removed = self.run(lambda: self.storage.purge_expired(limit))
        assert 0 <= removed <= limit, f"purge_expired({limit}) says it removed {removed}"

    @invariant()
    def every_key_is_listed(self) -> None:
        """The storage holds exactly the model's keys, in order."""
        assert self._keys("") == sorted(self.model), (
            "keys('') yields exactly the keys written and not deleted, in code point order"
        )
