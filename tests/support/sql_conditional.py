"""Conditional-write tests the SQL server drivers share: versions, old tables, races.

PostgreSQL and MySQL/MariaDB store versions the same way (a ``version`` column added to the
table of the release before versions), so the same checks apply to both. A driver's test
module binds them with a subclass of :class:`SQLConditionalWrites` whose ``sql`` fixture
returns a :class:`SQLAdapter`: how to make a driver on a table, the driver's old-layout DDL, a
raw query on the shared server, and the two probes the concurrent-insert test needs. Tests that
only one server can run (how its pooled connections are killed, its column types) stay in the
driver's module, on that subclass.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, cast

import anyio
import pytest

from kvstore.conditional import LEGACY_VERSION, Change, Versioned
from kvstore.driver import BaseDriver
from kvstore.errors import Conflict
from kvstore.storage import Storage

__all__ = [
    "OpenTransaction",
    "SQLAdapter",
    "SQLConditionalWrites",
    "check_a_conditional_write_survives_a_dropped_pool",
]


class OpenTransaction(Protocol):
    """Another client's connection holding a transaction that has not ended yet."""

    def commit(self) -> None:
        """End the transaction, keeping its writes."""

    def rollback(self) -> None:
        """End the transaction, undoing its writes."""

    def close(self) -> None:
        """Close the connection."""


class SQLAdapter(ABC):
    """What the shared tests need to know of one SQL driver and its shared test server."""

    #: The URL of the shared test server's database.
    url: ClassVar[str]
    #: ``module:function`` of the driver's factory, called as ``factory(url, table)`` in a
    #: subprocess.
    factory_path: ClassVar[str]
    #: The ``CREATE TABLE`` the driver ran before versions existed, with ``{quoted}`` for the
    #: table's quoted name (copied per driver from kvstore at commit 8c0e158).
    pre_versions_table: ClassVar[str]

    @abstractmethod
    def driver(self, table: str, **options: Any) -> BaseDriver:
        """Return a new, unopened driver on ``table`` of the shared server."""

    @abstractmethod
    def quote(self, name: str) -> str:
        """Return ``name`` quoted as an identifier in this server's SQL."""

    @abstractmethod
    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` on the shared server in autocommit and return its rows, if any."""

    @abstractmethod
    def raw_key(self, key: str) -> str | bytes:
        """Return ``key`` as the key column takes it in a raw statement."""

    @abstractmethod
    def insert_uncommitted(self, table: str, key: str, value: bytes) -> OpenTransaction:
        """Insert a row from another connection whose transaction is left open."""

    @abstractmethod
    def commit_is_waiting(self, table: str) -> bool:
        """Whether a commit through :meth:`driver` on ``table`` now waits for a lock."""

    def drop_table(self, table: str) -> None:
        """Drop ``table`` if it exists."""
        self.query(f"DROP TABLE IF EXISTS {self.quote(table)}")

    def make_pre_versions_table(self, table: str, rows: dict[str, Any]) -> None:
        """(Re)create ``table`` in the layout from before versions, holding ``rows``."""
        quoted = self.quote(table)
        self.drop_table(table)
        self.query(self.pre_versions_table.format(quoted=quoted))
        for key, value in rows.items():
            self.query(
                f"INSERT INTO {quoted} ({self.quote('key')}, {self.quote('value')}) "
                "VALUES (%s, %s)",
                (self.raw_key(key), json.dumps(value).encode()),
            )

    def rows(self, table: str) -> list[tuple[str, bytes, int]]:
        """Every row of ``table`` as ``(key, value, version)``, in key order."""
        key, value, version = (self.quote(name) for name in ("key", "value", "version"))
        found = self.query(
            f"SELECT {key}, {value}, {version} FROM {self.quote(table)} ORDER BY {key}"
        )
        # MySQL returns the VARBINARY key as bytes, PostgreSQL the text key as str.
        return [
            (row_key if isinstance(row_key, str) else bytes(row_key).decode(), bytes(data), number)
            for row_key, data, number in found
        ]


# Each process opens its own driver; they also race to create the table.
_COUNTER_WORKER = """
import asyncio, importlib, sys
from kvstore.storage import Storage

async def main(factory_path, url, table, times):
    module, name = factory_path.split(":")
    factory = getattr(importlib.import_module(module), name)
    async with Storage(factory(url, table)) as storage:
        for _ in range(times):
            await storage.update("counter", lambda n: (n or 0) + 1, attempts=100_000)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


class SQLConditionalWrites:
    """The shared conditional-write tests; a subclass defines the ``sql`` fixture."""

    @pytest.fixture
    def sql(self) -> SQLAdapter:
        """Return the adapter for the driver under test (override)."""
        raise NotImplementedError("an SQLConditionalWrites subclass must define sql")

    @pytest.fixture
    def helper_table(self, sql: SQLAdapter) -> Iterator[str]:
        """A table name of this test's own, dropped afterwards."""
        name = f"sqlsrv_helper_{uuid.uuid4().hex[:12]}"
        yield name
        sql.drop_table(name)

    @pytest.mark.anyio
    async def test_a_table_from_before_versions_is_upgraded_in_place(
        self, sql: SQLAdapter, helper_table: str
    ) -> None:
        sql.make_pre_versions_table(helper_table, {"a": "old a", "b": "old b", "c": [1]})
        async with Storage(sql.driver(helper_table)) as storage:
            assert await storage.get("a") == "old a"
            assert await storage.get_versioned("c") == Versioned([1], LEGACY_VERSION)
            with pytest.raises(Conflict):
                await storage.replace("a", "never", 12345)
            with pytest.raises(Conflict):
                await storage.create("a", "never")
            version = await storage.replace("a", "new a", LEGACY_VERSION)
            assert version != LEGACY_VERSION
            assert await storage.get_versioned("a") == Versioned("new a", version)
            await storage.delete_if("b", LEGACY_VERSION)
            assert await storage.get("b") is None
            await storage.set("d", 4)
            found = await storage.get_versioned("d") or Versioned(None, 0)
            assert found.version != LEGACY_VERSION
        assert [(key, version == 0) for key, _, version in sql.rows(helper_table)] == [
            ("a", False), ("c", True), ("d", False)
        ]

    @pytest.mark.anyio
    async def test_drivers_upgrading_one_old_table_at_once_all_succeed(
        self, sql: SQLAdapter, helper_table: str
    ) -> None:
        for _ in range(3):
            sql.make_pre_versions_table(helper_table, {"k": "v"})
            # Separate drivers, so separate connections: the ALTERs race on the server.
            drivers = [sql.driver(helper_table, pool_size=1) for _ in range(8)]
            try:
                found: list[Versioned[bytes] | None] = [None] * len(drivers)

                async def read(
                    index: int, driver: BaseDriver, found: list[Versioned[bytes] | None] = found
                ) -> None:
                    found[index] = await driver.get_versioned("k")

                async with anyio.create_task_group() as group:
                    for index, driver in enumerate(drivers):
                        group.start_soon(read, index, driver)
            finally:
                for driver in drivers:
                    await driver.close()
            assert found == [Versioned(b'"v"', LEGACY_VERSION)] * len(drivers)
            assert sql.rows(helper_table) == [("k", b'"v"', 0)]

    @pytest.mark.anyio
    async def test_a_failed_commit_writes_nothing(
        self, sql: SQLAdapter, helper_table: str
    ) -> None:
        async with Storage(sql.driver(helper_table)) as storage:
            version_a = await storage.create("a", 1)
            await storage.set("b", 2)
            before = sql.rows(helper_table)
            with pytest.raises(Conflict) as caught:
                await storage.commit([
                    Change.replace("a", 10, version_a),  # holds
                    Change.create("new", 3),  # holds
                    Change.delete("a2"),  # no condition
                    Change.check("absent", None),  # holds
                    Change.create("b", 20),  # fails: b exists
                    Change.check("c", 7),  # fails: c is absent
                ])
            assert sorted(caught.value.keys) == ["b", "c"]
            # Nothing written, and no placeholder row left behind.
            assert sql.rows(helper_table) == before
            # The same batch without the failing changes goes through whole.
            versions = await storage.commit([
                Change.replace("a", 10, version_a),
                Change.create("new", 3),
                Change.check("absent", None),
                Change.check("b", (await storage.get_versioned("b") or Versioned(0, 0)).version),
            ])
            written_a, written_new, *checks = versions
            assert checks == [None, None]
            assert written_a is not None
            assert written_new is not None
            assert await storage.get_versioned("a") == Versioned(10, written_a)
            assert await storage.get_versioned("new") == Versioned(3, written_new)
        assert [key for key, _, _ in sql.rows(helper_table)] == ["a", "b", "new"]

    @pytest.mark.anyio
    async def test_concurrent_creators_of_one_key_exactly_one_wins(
        self, sql: SQLAdapter, helper_table: str
    ) -> None:
        async with Storage(sql.driver(helper_table)) as storage:
            for round_number in range(5):
                prize = f"prize:{round_number}"
                winners: list[int] = []

                async def racer(
                    index: int, prize: str = prize, winners: list[int] = winners
                ) -> None:
                    try:
                        if index % 2:
                            await storage.create(prize, index)
                        else:
                            # A batch: its own key is written only if it wins the prize too.
                            await storage.commit(
                                [Change.create(prize, index), Change.put(f"{prize}:{index}", index)]
                            )
                    except Conflict:
                        return
                    winners.append(index)

                async with anyio.create_task_group() as group:
                    for index in range(16):
                        group.start_soon(racer, index)
                assert len(winners) == 1
                assert await storage.get(prize) == winners[0]
                mine = [key async for key in storage.keys(f"{prize}:")]
                assert mine == ([f"{prize}:{winners[0]}"] if winners[0] % 2 == 0 else [])

    @pytest.mark.anyio
    async def test_concurrent_updates_from_tasks_lose_nothing(
        self, sql: SQLAdapter, helper_table: str
    ) -> None:
        async with Storage(sql.driver(helper_table)) as storage:

            async def by_commit() -> None:
                # The same increment as a batch, with a check that holds: commits and update's
                # single-key writes must exclude each other too.
                while True:
                    found = await storage.get_versioned("counter")
                    change = (
                        Change.create("counter", 1)
                        if found is None
                        else Change.replace("counter", cast(int, found.value) + 1, found.version)
                    )
                    try:
                        await storage.commit([change, Change.check("absent", None)])
                    except Conflict:
                        continue
                    return

            async def worker(index: int) -> None:
                for _ in range(10):
                    if index % 2:
                        await by_commit()
                    else:
                        # Many attempts: this checks that no increment is lost, not how few
                        # retries twenty tasks on one key need.
                        await storage.update("counter", lambda n: (n or 0) + 1, attempts=10_000)

            async with anyio.create_task_group() as group:
                for index in range(20):
                    group.start_soon(worker, index)
            assert await storage.get("counter") == 200

    def test_concurrent_updates_from_four_processes_lose_nothing(
        self, sql: SQLAdapter, helper_table: str
    ) -> None:
        # The processes also race to create the table.
        processes = [
            subprocess.Popen(
                [
                    sys.executable, "-c", _COUNTER_WORKER,
                    sql.factory_path, sql.url, helper_table, "50",
                ],
                stderr=subprocess.PIPE,
            )
            for _ in range(4)
        ]
        for process in processes:
            _, errors = process.communicate(timeout=240)
            assert process.returncode == 0, errors.decode()
        assert [(key, json.loads(value)) for key, value, _ in sql.rows(helper_table)] == [
            ("counter", 200)
        ]

    @pytest.mark.anyio
    @pytest.mark.parametrize("other_commits", [True, False])
    async def test_a_commit_checks_against_a_concurrent_insert_once_it_ends(
        self, sql: SQLAdapter, helper_table: str, other_commits: bool
    ) -> None:
        async with Storage(sql.driver(helper_table)) as storage:
            await storage.set("other", 0)
            # Another client's transaction has inserted "k" and not ended yet.
            writer = sql.insert_uncommitted(helper_table, "k", b"1")
            try:
                outcome: list[BaseException | None] = []

                async def run_commit() -> None:
                    try:
                        await storage.commit([Change.check("k", None), Change.put("mine", 1)])
                    except Conflict as error:
                        outcome.append(error)
                    else:
                        outcome.append(None)

                async with anyio.create_task_group() as group:
                    group.start_soon(run_commit)
                    # The commit must wait for that transaction, not decide on what it saw
                    # before: its wait is seen on the server (it cannot end before the writer).
                    for _ in range(1000):
                        if sql.commit_is_waiting(helper_table):
                            break
                        await anyio.sleep(0.01)
                    else:
                        pytest.fail("the commit never waited for the other transaction")
                    assert outcome == []
                    if other_commits:
                        writer.commit()
                    else:
                        writer.rollback()
            finally:
                writer.close()
            if other_commits:
                assert len(outcome) == 1
                assert isinstance(outcome[0], Conflict)
                assert await storage.get("mine") is None
            else:
                assert outcome == [None]
                assert await storage.get("mine") == 1
                assert await storage.get("k") is None
        assert ("k" in [key for key, _, _ in sql.rows(helper_table)]) is other_commits

    @pytest.mark.anyio
    async def test_every_unconditional_write_gives_a_new_version(
        self, sql: SQLAdapter, helper_table: str
    ) -> None:
        async with Storage(sql.driver(helper_table)) as storage:
            seen: set[int] = set()

            async def version_of(key: str) -> int:
                found = await storage.get_versioned(key)
                assert found is not None
                return found.version

            for _ in range(3):
                await storage.set("k", 1)  # the same value: still a new version
                seen.add(await version_of("k"))
                await storage.set_many({"k": 1, "j": 2})
                seen.add(await version_of("k"))
            assert len(seen) == 6
            assert LEGACY_VERSION not in seen
            old = await version_of("j")
            await storage.delete("j")
            assert await storage.get_versioned("j") is None
            with pytest.raises(Conflict):
                await storage.replace("j", 3, old)


async def check_a_conditional_write_survives_a_dropped_pool(
    storage: Storage, drop_pool: Callable[[], Awaitable[None]]
) -> None:
    """A conditional write is applied once after the server closed the pooled connection.

    ``drop_pool`` closes, on the server, every connection ``storage`` holds (as an idle
    timeout or a restart would) and returns once they are gone; how is the server's own.
    """
    version = await storage.create("k", 1)
    await drop_pool()
    # A conditional write is never sent twice; it is sent on a live connection instead of
    # failing on the dead one, and applied once (a replay would conflict with itself).
    written = await storage.replace("k", 2, version)
    assert await storage.get_versioned("k") == Versioned(2, written)
