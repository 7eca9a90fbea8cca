"""The conformance suite every driver passes: the key-value contract, clause by clause.

A driver's test module subclasses :class:`DriverConformance` and supplies one fixture::

    class TestMyDriver(DriverConformance):
        @pytest.fixture
        def driver_factory(self, tmp_path):
            return lambda: MyDriver(tmp_path / "store")

``driver_factory`` returns a callable that makes a new, unopened driver on a namespace of this
test's own (it may ``yield`` instead and clean the namespace up afterwards). Every test runs twice:
through the driver's own batch methods and through :class:`~kvstore.driver.BaseDriver`'s
defaults.

``async_backends`` lists the event loops to run on (``("asyncio",)`` for a driver whose
``supports_trio`` is false). Capability flags a subclass may turn off: ``persistent`` (a new
driver from the factory sees what an earlier one wrote; false for in-memory stores) and
``large_values`` (the 16 MiB value test). The driver itself declares ``atomic_batches = True``
when its ``set_many`` and ``delete_many`` are all or nothing, and the suite then checks that a
concurrent reader never sees part of a batch.

The tests here go through :class:`~kvstore.storage.Storage`; :class:`DriverClauses`
(:mod:`kvstore.testing.driver_clauses`) adds the clauses checked on the driver directly, and
:class:`~kvstore.testing.conditional_clauses.ConditionalClauses` and
:class:`~kvstore.testing.conditional_races.ConditionalRaceClauses` those of conditional writes (run
when the driver instance declares ``conditional_writes = True``, skipped with the reason
otherwise, when every conditional call must raise ``NotSupported`` instead), and
:class:`~kvstore.testing.expiry_clauses.ExpiryClauses` those of expiry (likewise, for drivers
declaring ``expiry = True``; a driver that takes a clock sets ``manual_clock = True`` and passes
the ``clock`` fixture to the drivers it makes, so that time moves without sleeping). Every test
has a time limit (``TEST_TIME_LIMIT``), so a hang fails with the test's name.
"""

from __future__ import annotations

import datetime
import enum
import math
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from kvstore.driver import as_base_driver
from kvstore.errors import InvalidKey, SerializationError, StorageClosed
from kvstore.storage import Storage
from kvstore.testing.clock import TestClock
from kvstore.testing.conditional_clauses import ConditionalClauses
from kvstore.testing.conditional_races import ConditionalRaceClauses
from kvstore.testing.driver_clauses import DriverClauses, DriverFactory, check_driver_shape
from kvstore.testing.expiry_clauses import ExpiryClauses
from kvstore.testing.profiles import active_settings
from kvstore.testing.reporting import describe
from kvstore.testing.stateful import StorageStateMachine

__all__ = ["DriverConformance", "DriverFactory"]

# Large enough to cross any driver's scan page; small enough to stay quick on a server.
_MANY = 2_500
_SIXTEEN_MIB = 16 * 1024 * 1024
# Seconds any one suite test may take (pytest-timeout): far above a healthy run on a loaded
# machine, far below "stalled".
TEST_TIME_LIMIT = 240

INVALID_KEYS: list[object] = [
    "",
    ":",
    ":a",
    "a:",
    "a::b",
    "a\x00b",
    "a\nb",
    "\x1f",
    "a\x7f",
    "a\ud800",
    "x" * 1025,
    "\u00e9" * 513,
    b"bytes",
    42,
    None,
]

UNSERIALIZABLE_VALUES: list[object] = [
    math.nan,
    math.inf,
    -math.inf,
    {1, 2},
    b"bytes",
    object(),
    datetime.datetime(2024, 1, 1),
    uuid.UUID(int=1),
    enum.Enum("Colour", "RED").RED,  # type: ignore[attr-defined]
    {1: "int key"},
    2**64,
    -(2**63) - 1,
    {"nested": [1, {"bad": math.nan}]},
    {"flat": uuid.UUID(int=2)},
    {"flat": math.inf, "ok": 1},
    "lone \ud800 surrogate",
]


class _Text(str):
    """A ``str`` subclass: it would read back as a plain ``str``, so it is refused."""


UNSERIALIZABLE_VALUES.append(_Text("subclass"))


async def _collect(storage: Storage, prefix: str = "") -> list[str]:
    return [key async for key in storage.keys(prefix)]


class DriverConformance(
    ExpiryClauses, ConditionalClauses, ConditionalRaceClauses, DriverClauses
):
    """Base class of a driver's conformance tests; subclass it and define ``driver_factory``."""

    # A hang fails the test that hung, with its name, instead of stalling the run.
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.timeout(TEST_TIME_LIMIT)]

    persistent: ClassVar[bool] = True
    large_values: ClassVar[bool] = True
    # True for a driver that takes a ``clock``: its driver_factory passes the ``clock`` fixture
    # on, and the expiry clauses move time instead of waiting for it.
    manual_clock: ClassVar[bool] = False
    async_backends: ClassVar[tuple[str, ...]] = ("asyncio", "trio")

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run each test once per event loop in ``async_backends``."""
        if "anyio_backend" in metafunc.fixturenames:
            metafunc.parametrize("anyio_backend", self.async_backends, scope="function")

    # -- fixtures ---------------------------------------------------------------------------

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        """Return a callable making a new driver on this test's own namespace (override)."""
        raise NotImplementedError("a DriverConformance subclass must define driver_factory")

    @pytest.fixture
    def clock(self) -> TestClock:
        """The clock the expiry clauses move (manual when ``manual_clock`` is set)."""
        return TestClock(manual=self.manual_clock)

    @pytest.fixture(params=["native", "default"], ids=["native-batches", "default-batches"])
    def batch_path(self, request: pytest.FixtureRequest) -> str:
        """Which batch implementation the storage uses: the driver's own or the base class's."""
        return str(request.param)

    @pytest.fixture
    def make_storage(
        self, driver_factory: DriverFactory, batch_path: str, anyio_backend: str
    ) -> Callable[[], Storage]:
        """Return a callable making a storage over a new driver on the chosen batch path."""
        check_driver_shape(driver_factory, anyio_backend)

        def make() -> Storage:
            return Storage(
                as_base_driver(driver_factory(), default_batches=batch_path == "default")
            )

        return make

    @pytest.fixture
    async def storage(self, make_storage: Callable[[], Storage]) -> AsyncIterator[Storage]:
        """An empty, open storage on the driver under test, cleared and closed afterwards."""
        storage = make_storage()
        await storage.clear()
        try:
            yield storage
        finally:
            if not storage._table.closed:
                await storage.clear()
                await storage.close()

    # -- keys -------------------------------------------------------------------------------

    @pytest.mark.anyio
    @pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
    async def test_invalid_key_is_refused_and_nothing_written(
        self, storage: Storage, key: Any
    ) -> None:
        for operation in (
            lambda: storage.set(key, 1),
            lambda: storage.set_raw(key, b"1"),
            lambda: storage.get(key),
            lambda: storage.has(key),
            lambda: storage.delete(key),
            lambda: storage.get_many(["ok", key]),
            lambda: storage.set_many([("ok", 1), (key, 1)]),
            lambda: storage.delete_many(["ok", key]),
        ):
            with pytest.raises(InvalidKey):
                await operation()
        assert await _collect(storage) == []

    @pytest.mark.anyio
    @pytest.mark.parametrize("prefix", [":a", "a::", "a\x00", 7], ids=repr)
    async def test_invalid_prefix_is_refused(self, storage: Storage, prefix: Any) -> None:
        await storage.set("a", 1)
        with pytest.raises(InvalidKey):
            await _collect(storage, prefix)
        with pytest.raises(InvalidKey):
            await storage.clear(prefix)
        assert await storage.get("a") == 1

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "key",
        ["x" * 1024, "\u00e9" * 512, "\U0001d11e" * 256, ":".join(["s"] * 512)[:1023] + "t"],
        ids=["1024-ascii", "1024-two-byte", "1024-four-byte", "512-segments"],
    )
    async def test_longest_keys_are_stored(self, storage: Storage, key: str) -> None:
        await storage.set(key, "long")
        assert await storage.get(key) == "long"
        assert await _collect(storage) == [key]

    @pytest.mark.anyio
    async def test_keys_are_case_and_code_point_sensitive(self, storage: Storage) -> None:
        variants = ["a", "A", "a ", "a\u0301", "\u00e1", " a"]
        for index, key in enumerate(variants):
            await storage.set(key, index)
        for index, key in enumerate(variants):
            assert await storage.get(key) == index
        assert await _collect(storage) == sorted(variants)

    @pytest.mark.anyio
    async def test_special_characters_are_data(self, storage: Storage) -> None:
        keys = [
            "%",
            "_",
            "*",
            "?",
            "[a]",
            "\\",
            ".",
            "..",
            "$",
            "/",
            "a/b",
            "../x",
            "'",
            '"',
            "a%b",
            "a_b",
            "a*b",
            "a?b",
            "~",
            "{x}",
            "a;DROP TABLE t",
            "--",
            "\\%",
            "^$",
        ]
        for key in keys:
            await storage.set(key, key)
        for key in keys:
            assert await storage.get(key) == key
        assert await _collect(storage) == sorted(keys)

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            ("a%", ["a%b"]),
            ("a_", ["a_b"]),
            ("a*", ["a*b"]),
            ("a?", ["a?b"]),
            ("a[", ["a[b]c"]),
            ("a\\", ["a\\b"]),
            ("a.", ["a.b"]),
            ("a^", []),
            ("a$", []),
        ],
    )
    async def test_prefix_characters_match_literally(
        self, storage: Storage, prefix: str, expected: list[str]
    ) -> None:
        for key in ["a%b", "axb", "a_b", "a*b", "a?b", "a[b]c", "abc", "a\\b", "a.b", "ab"]:
            await storage.set(key, 1)
        assert await _collect(storage, prefix) == expected

    @pytest.mark.anyio
    async def test_keys_that_prefix_each_other_coexist(self, storage: Storage) -> None:
        keys = ["a", "a:b", "a:b:c", "app", "app:x", "apple", "a:bc", "a:b!"]
        for index, key in enumerate(keys):
            await storage.set(key, index)
        for index, key in enumerate(keys):
            assert await storage.get(key) == index
        assert await _collect(storage) == sorted(keys)
        await storage.delete("a:b")
        assert await storage.get("a:b:c") == 2
        assert await storage.get("a") == 0

    # -- scans ------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_keys_come_in_code_point_order(self, storage: Storage) -> None:
        keys = [
            "b",
            "B",
            "a:z",
            "a!",
            "a",
            "a:b",
            "~",
            "\u00e9",
            "\uffff",
            "\U0001f600",
            "\U0010ffff",
            "0",
            "a b",
            "a:\U0001f600",
            "a:\uffff",
        ]
        await storage.set_many((key, None) for key in keys)
        assert await _collect(storage) == sorted(keys)

    @pytest.mark.anyio
    async def test_prefix_is_a_plain_string_prefix(self, storage: Storage) -> None:
        for key in ["ap", "app", "app:x", "apple", "b", "Ap", "a"]:
            await storage.set(key, 1)
        assert await _collect(storage, "ap") == ["ap", "app", "app:x", "apple"]
        assert await _collect(storage, "app:") == ["app:x"]
        assert await _collect(storage, "apple") == ["apple"]
        assert await _collect(storage, "zzz") == []
        assert await _collect(storage, "") == sorted(
            ["ap", "app", "app:x", "apple", "b", "Ap", "a"]
        )

    @pytest.mark.anyio
    async def test_prefix_at_the_top_of_the_code_space(self, storage: Storage) -> None:
        keys = ["a\U0010ffff", "a\U0010ffff\U0010ffff", "a\U0010ffffb", "b", "a\ud7ff", "a\ue000"]
        for key in keys:
            await storage.set(key, 1)
        assert await _collect(storage, "a\U0010ffff") == sorted(keys[:3])
        assert await _collect(storage, "a\ud7ff") == ["a\ud7ff"]
        assert await _collect(storage, "\U0010ffff") == []

    @pytest.mark.anyio
    async def test_scan_yields_every_key_once_across_pages(self, storage: Storage) -> None:
        keys = [f"k:{index:05d}" for index in range(_MANY)]
        await storage.set_many((key, index) for index, key in enumerate(keys))
        await storage.set("j", 0)
        await storage.set("l", 0)
        assert await _collect(storage, "k:") == keys
        assert await _collect(storage, "k:01") == [key for key in keys if key.startswith("k:01")]

    @pytest.mark.anyio
    async def test_scan_survives_writes_while_it_runs(self, storage: Storage) -> None:
        keys = [f"k:{index:05d}" for index in range(_MANY)]
        await storage.set_many((key, 1) for key in keys)
        seen: list[str] = []
        async for key in storage.keys("k:"):
            seen.append(key)
            if len(seen) == 10:
                # Delete keys ahead of the scan and add one behind it.
                await storage.delete_many(keys[100:200])
                await storage.set("k:0", 1)
        # Keys written during the scan may or may not be seen (a driver may read ahead or
        # snapshot); the rest must all come, in order, once each.
        assert seen == sorted(set(seen)), "a scan must stay ordered and never repeat a key"
        assert set(keys[:100]) | set(keys[200:]) <= set(seen)
        assert set(seen) <= set(keys) | {"k:0"}

    @pytest.mark.anyio
    async def test_a_scan_can_be_abandoned(self, storage: Storage) -> None:
        await storage.set_many((f"k:{index:04d}", index) for index in range(50))
        async for _ in storage.keys("k:"):
            break
        await storage.set("after", 1)
        assert await storage.get("after") == 1

    # -- values -----------------------------------------------------------------------------

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "value",
        [b"", b"\x00", bytes(range(256)), b"\xff" * 1000, b"{not json"],
        ids=["empty", "nul", "all-bytes", "high", "not-json"],
    )
    async def test_bytes_come_back_unchanged(self, storage: Storage, value: bytes) -> None:
        await storage.set_raw("raw", value)
        assert await storage.get_raw("raw") == value
        assert await storage.has("raw")

    @pytest.mark.anyio
    async def test_sixteen_mib_values_are_stored(self, storage: Storage) -> None:
        if not self.large_values:
            pytest.skip("the driver declares large_values = False")
        value = (bytes(range(256)) * (_SIXTEEN_MIB // 256 + 1))[: _SIXTEEN_MIB + 1]
        await storage.set_raw("big", value)
        # Compared first and described after, so a failure prints sizes, not 16 MiB of bytes.
        for where, got in (
            ("get_raw", await storage.get_raw("big")),
            ("get_many_raw", (await storage.get_many_raw(["big"]))[0]),
        ):
            same = got == value
            assert same, f"{where} returned {describe(got)}, stored {describe(value)}"

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "value",
        [
            None,
            True,
            False,
            0,
            -(2**63),
            2**64 - 1,
            1.5,
            -0.0,
            1e308,
            "",
            "\u00e9\U0001f600",
            [],
            {},
            [1, "two", None, [3.0]],
            {"nested": {"list": [{"a": 1}]}},
        ],
        ids=repr,
    )
    async def test_json_values_read_back_equal(self, storage: Storage, value: Any) -> None:
        await storage.set("value", value)
        assert await storage.get("value") == value
        assert (await storage.get_many(["value"]))[0] == value

    @pytest.mark.anyio
    async def test_tuples_read_back_as_lists(self, storage: Storage) -> None:
        await storage.set("tuple", (1, (2, 3)))
        assert await storage.get("tuple") == [1, [2, 3]]

    @pytest.mark.anyio
    @pytest.mark.parametrize("value", UNSERIALIZABLE_VALUES, ids=repr)
    async def test_unserializable_value_is_refused_and_nothing_written(
        self, storage: Storage, value: Any
    ) -> None:
        await storage.set("kept", "old")
        with pytest.raises(SerializationError):
            await storage.set("kept", value)
        with pytest.raises(SerializationError):
            await storage.set("new", value)
        with pytest.raises(SerializationError):
            await storage.set_many([("first", 1), ("second", value)])
        assert await storage.get("kept") == "old"
        assert await _collect(storage) == ["kept"]

    @pytest.mark.anyio
    async def test_missing_key_reads_none_and_deletes_quietly(self, storage: Storage) -> None:
        assert await storage.get("missing") is None
        assert await storage.get_raw("missing") is None
        assert not await storage.has("missing")
        await storage.delete("missing")
        await storage.delete_many(["missing", "also:missing"])
        assert await _collect(storage) == []

    @pytest.mark.anyio
    async def test_set_replaces_the_whole_value(self, storage: Storage) -> None:
        await storage.set("k", {"a": 1, "b": [1, 2, 3]})
        await storage.set("k", {"c": 2})
        assert await storage.get("k") == {"c": 2}
        await storage.set_raw("k", b"x" * 10_000)
        await storage.set_raw("k", b"y")
        assert await storage.get_raw("k") == b"y"

    @pytest.mark.anyio
    async def test_stored_null_is_present(self, storage: Storage) -> None:
        await storage.set("null", None)
        assert await storage.has("null")
        assert await _collect(storage) == ["null"]

    # -- batches ----------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_get_many_answers_in_the_order_asked(self, storage: Storage) -> None:
        await storage.set_many({"a": 1, "b": 2, "c": 3})
        assert await storage.get_many(["c", "missing", "a", "c", "b"]) == [3, None, 1, 3, 2]
        assert await storage.get_many([]) == []

    @pytest.mark.anyio
    async def test_set_many_takes_a_mapping_or_pairs_and_last_wins(self, storage: Storage) -> None:
        await storage.set_many({"a": 1, "b": 2})
        await storage.set_many([("c", 3), ("a", 10), ("a", 11)])
        await storage.set_many(iter([("d", 4)]))
        await storage.set_many([])
        assert await storage.get_many(["a", "b", "c", "d"]) == [11, 2, 3, 4]

    @pytest.mark.anyio
    async def test_large_batches_round_trip(self, storage: Storage) -> None:
        items = {f"batch:{index:05d}": {"n": index} for index in range(_MANY)}
        await storage.set_many(items)
        assert await storage.get_many(list(items)) == list(items.values())
        await storage.delete_many(list(items)[::2])
        assert await _collect(storage) == list(items)[1::2]

    @pytest.mark.anyio
    async def test_delete_many_skips_missing_keys(self, storage: Storage) -> None:
        await storage.set_many({"a": 1, "b": 2, "c": 3})
        await storage.delete_many(["a", "missing", "c", "a"])
        assert await _collect(storage) == ["b"]

    @pytest.mark.anyio
    async def test_clear_removes_exactly_what_keys_would_yield(self, storage: Storage) -> None:
        keys = ["a", "ab", "a:b", "a:b:c", "A", "b", "`", "a%", "ba"]
        await storage.set_many((key, 1) for key in keys)
        await storage.clear("a")
        assert await _collect(storage) == sorted(["A", "b", "`", "ba"])
        await storage.clear("a%")
        await storage.clear("b")
        assert await _collect(storage) == sorted(["A", "`"])
        await storage.clear()
        assert await _collect(storage) == []

    @pytest.mark.anyio
    async def test_clear_of_many_keys_leaves_neighbours(self, storage: Storage) -> None:
        await storage.set_many((f"k:{index:05d}", 1) for index in range(_MANY))
        await storage.set_many({"k": 1, "k;": 1, "j:1": 1})
        await storage.clear("k:")
        assert await _collect(storage) == ["j:1", "k", "k;"]

    @pytest.mark.anyio
    async def test_items_yield_keys_with_values_in_order(self, storage: Storage) -> None:
        await storage.set_many({"b": 2, "a": 1, "c:x": [3]})
        assert [pair async for pair in storage.items()] == [("a", 1), ("b", 2), ("c:x", [3])]
        assert [pair async for pair in storage.items("c")] == [("c:x", [3])]

    # -- concurrency ------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_concurrent_writers_lose_nothing(self, storage: Storage) -> None:
        async def writer(task: int) -> None:
            for index in range(20):
                await storage.set(f"w:{task:03d}:{index:03d}", [task, index])

        async with anyio.create_task_group() as group:
            for task in range(25):
                group.start_soon(writer, task)
        keys = await _collect(storage, "w:")
        assert len(keys) == 25 * 20
        values = await storage.get_many(keys)
        assert values == [[int(key[2:5]), int(key[6:9])] for key in keys]

    @pytest.mark.anyio
    async def test_concurrent_writes_to_one_key_leave_one_whole_value(
        self, storage: Storage
    ) -> None:
        candidates = [bytes([task]) * 100_000 for task in range(10)]

        async def writer(value: bytes) -> None:
            for _ in range(3):
                await storage.set_raw("contended", value)

        async with anyio.create_task_group() as group:
            for value in candidates:
                group.start_soon(writer, value)
            for _ in range(10):
                seen = await storage.get_raw("contended")
                assert seen is None or seen in candidates
        assert await storage.get_raw("contended") in candidates

    # -- lifetime ---------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_use_after_close_raises_storage_closed(self, storage: Storage) -> None:
        await storage.set("a", 1)
        await storage.clear()
        await storage.close()
        await storage.close()
        for operation in (
            lambda: storage.get("a"),
            lambda: storage.set("a", 1),
            lambda: storage.delete("a"),
            lambda: storage.get_many(["a"]),
            lambda: storage.set_many({"a": 1}),
            lambda: storage.delete_many(["a"]),
            lambda: storage.clear(),
            lambda: _collect(storage),
        ):
            with pytest.raises(StorageClosed):
                await operation()

    @pytest.mark.anyio
    async def test_a_new_driver_sees_what_an_earlier_one_wrote(
        self, make_storage: Callable[[], Storage], storage: Storage
    ) -> None:
        if not self.persistent:
            pytest.skip("the driver declares persistent = False")
        await storage.set_many({"kept:1": 1, "kept:2": {"two": 2}})
        async with make_storage() as again:
            assert await again.get_many(["kept:1", "kept:2"]) == [1, {"two": 2}]
            assert await _collect(again) == ["kept:1", "kept:2"]

    # -- random sequences -------------------------------------------------------------------

    def test_state_machine(
        self, make_storage: Callable[[], Storage], anyio_backend: str, clock: TestClock
    ) -> None:
        """Random sequences of every operation agree with a dict model."""
        with start_blocking_portal(anyio_backend) as portal:
            storage = make_storage()
            machine: type[StorageStateMachine] = type(
                "Machine",
                (StorageStateMachine,),
                {
                    "storage": storage,
                    "portal": portal,
                    "make_storage": staticmethod(make_storage),
                    "persistent": self.persistent,
                    "conditional": bool(getattr(storage.driver, "conditional_writes", False)),
                    # A wrapped driver (the default batch path) reports non-atomic batches: the
                    # machine then only requires that the failing changes were not applied.
                    "atomic_commits": storage.driver.atomic_batches,
                    "expiry": bool(getattr(storage.driver, "expiry", False)),
                    "clock": clock,
                },
            )
            try:
                state_machine_test = machine.TestCase
                state_machine_test.settings = active_settings()
                state_machine_test("runTest").runTest()
            finally:
                portal.call(machine.storage.clear)
                portal.call(machine.storage.close)
