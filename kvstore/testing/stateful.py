"""A Hypothesis state machine that checks a storage against a plain dict.

Every rule performs one operation on the storage under test and on the model, then compares what
they return; after each step the whole key set is compared too. The storage is driven from a
synchronous state machine through an anyio blocking portal, so one machine serves every async
backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from anyio.from_thread import BlockingPortal
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from kvstore.storage import Storage
from kvstore.testing import strategies as kst

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

    Subclasses (made by :meth:`DriverConformance.test_state_machine`) set ``storage`` and
    ``portal``; each example starts from an empty storage.
    """

    storage: ClassVar[Storage]
    portal: ClassVar[BlockingPortal]

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
        assert self.run(lambda: self.storage.get_raw(key)) == value

    @rule(key=_KEYS)
    def get(self, key: str) -> None:
        """``get`` returns what was stored, ``None`` when nothing is."""
        expected = self.model.get(key)
        if isinstance(expected, bytes):
            assert self.run(lambda: self.storage.get_raw(key)) == expected
        else:
            assert self.run(lambda: self.storage.get(key)) == expected
        assert self.run(lambda: self.storage.has(key)) == (key in self.model)

    @rule(key=_KEYS)
    def delete(self, key: str) -> None:
        """``delete`` removes the key, present or not."""
        self.run(lambda: self.storage.delete(key))
        self.model.pop(key, None)

    @rule(keys=st.lists(_KEYS, max_size=8))
    def get_many(self, keys: list[str]) -> None:
        """``get_many`` returns the values in the order asked."""
        got = self.run(lambda: self.storage.get_many_raw(keys))
        for key, data in zip(keys, got, strict=True):
            if key not in self.model:
                assert data is None
            elif isinstance(self.model[key], bytes):
                assert data == self.model[key]
            else:
                assert data is not None

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
        assert self._keys(prefix) == self._expected_keys(prefix)

    @rule(prefix=_PREFIXES)
    def clear(self, prefix: str) -> None:
        """``clear(prefix)`` removes exactly what ``keys(prefix)`` yields."""
        self.run(lambda: self.storage.clear(prefix))
        for key in self._expected_keys(prefix):
            del self.model[key]

    @invariant()
    def every_key_is_listed(self) -> None:
        """The storage holds exactly the model's keys, in order."""
        assert self._keys("") == sorted(self.model)
