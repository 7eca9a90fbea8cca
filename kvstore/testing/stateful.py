"""A Hypothesis state machine that checks a storage against a plain dict.

Every rule performs one operation on the storage under test and on the model, then compares what
they return; after each step the whole key set is compared too. Each rule's docstring names the
contract clause it checks, and so does its assertion message. The storage is driven from a
synchronous state machine through an anyio blocking portal, so one machine serves every async
backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

import anyio
from anyio.from_thread import BlockingPortal
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kvstore.serialization import decode
from kvstore.storage import Storage
from kvstore.testing import strategies as kst
from kvstore.testing.reporting import describe

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


class StorageStateMachine(RuleBasedStateMachine):
    """Random sequences of every storage operation, checked against a dict model.

    Subclasses (made by :meth:`DriverConformance.test_state_machine`) set ``storage``,
    ``portal``, ``make_storage`` and ``persistent``; each example starts from an empty storage.
    """

    storage: ClassVar[Storage]
    portal: ClassVar[BlockingPortal]
    persistent: ClassVar[bool] = False

    @staticmethod
    def make_storage() -> Storage:
        """Return a new storage over a new driver on the same store (the suite sets this)."""
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, Any] = {}

    def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one coroutine on the storage's event loop and return its result."""
        return self.portal.call(call)

    def _keys(self, prefix: str) -> list[str]:
        async def collect() -> list[str]:
            return [key async for key in self.storage.keys(prefix)]

        return self.run(collect)

    def _expected_keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.model if key.startswith(prefix))

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

    @rule(key=_KEYS, value=kst.raw_values())
    def set_raw(self, key: str, value: bytes) -> None:
        """``set_raw`` stores bytes that ``get_raw`` returns unchanged."""
        self.run(lambda: self.storage.set_raw(key, value))
        self.model[key] = value
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

    @rule(keys=st.lists(_KEYS, max_size=8))
    def delete_many(self, keys: list[str]) -> None:
        """``delete_many`` removes every key named."""
        self.run(lambda: self.storage.delete_many(keys))
        for key in keys:
            self.model.pop(key, None)

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

    @invariant()
    def every_key_is_listed(self) -> None:
        """The storage holds exactly the model's keys, in order."""
        assert self._keys("") == sorted(self.model), (
            "keys('') yields exactly the keys written and not deleted, in code point order"
        )
