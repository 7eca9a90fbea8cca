"""The generic entity layer on memory: a declared entity's repository, unique indexes, schema
versions, pagination, update, rebuild_indexes, and bad input that writes nothing."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import anyio
import orjson
import pytest

from entities import (
    Children,
    Entity,
    Index,
    MalformedDocument,
    RecordChanged,
    RecordExists,
    RecordNotFound,
    Repository,
    SchemaVersionError,
    UniqueViolation,
    ValidationError,
)
from kvstore.conditional import Versioned
from kvstore.drivers.memory import MemoryDriver, memory_driver
from kvstore.storage import Storage

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    project: str
    title: str
    votes: int = 0
    assignee: str | None = None


@dataclass(frozen=True)
class Comment:
    comment_id: str
    at: int
    text: str


COMMENTS: Entity[Comment] = Entity(Comment, collection="comments", id="comment_id")
TICKETS: Entity[Ticket] = Entity(
    Ticket,
    collection="tickets",
    id="ticket_id",
    indexes=[
        Index("by_project", "project"),
        Index("by_slug", lambda ticket: ticket.title.lower().replace(" ", "-"), unique=True),
        Index("by_assignee", "assignee"),
    ],
    children=[Children("comments", COMMENTS, order="at")],
)


@pytest.fixture
async def storage() -> Any:
    async with Storage(memory_driver()) as opened:
        yield opened


@pytest.fixture
def tickets(storage: Storage) -> Repository[Ticket]:
    return Repository(storage, TICKETS)


async def _keys(storage: Storage) -> list[str]:
    return [key async for key in storage.keys()]


async def test_a_declared_entity_round_trips_in_camel_case(
    storage: Storage, tickets: Repository[Ticket]
) -> None:
    ticket = Ticket("t1", "p1", "Fix login", assignee="ann")
    await tickets.save(ticket)
    assert await tickets.get("t1") == ticket
    assert await tickets.exists("t1")
    assert await storage.get("tickets:t1") == {
        "ticketId": "t1",
        "project": "p1",
        "title": "Fix login",
        "votes": 0,
        "assignee": "ann",
    }
    assert set(await _keys(storage)) == {
        "tickets:t1",
        "idx:tickets:by_project:p1:t1",
        "idx:tickets:by_slug:fix-login",
        "idx:tickets:by_assignee:ann:t1",
    }
    assert await storage.get("idx:tickets:by_slug:fix-login") == "t1"


async def test_lookups_by_field_and_by_function_follow_changes(
    tickets: Repository[Ticket],
) -> None:
    await tickets.save(Ticket("t1", "p1", "One"))
    await tickets.save(Ticket("t2", "p1", "Two", assignee="bo"))
    await tickets.save(Ticket("t3", "p2", "Three"))
    assert [t.ticket_id for t in await tickets.find("by_project", "p1")] == ["t1", "t2"]
    assert await tickets.find_one("by_slug", "two") == Ticket("t2", "p1", "Two", assignee="bo")
    await tickets.save(Ticket("t2", "p2", "Deux"))
    assert [t.ticket_id for t in await tickets.find("by_project", "p1")] == ["t1"]
    assert [t.ticket_id for t in await tickets.find("by_project", "p2")] == ["t2", "t3"]
    assert await tickets.find_one("by_slug", "two") is None
    assert await tickets.find("by_assignee", "bo") == []
    with pytest.raises(ValueError, match="no index 'nope'"):
        await tickets.find("nope", "x")


async def test_create_only_refuses_an_existing_id_and_writes_nothing(
    storage: Storage, tickets: Repository[Ticket]
) -> None:
    await tickets.create(Ticket("t1", "p1", "One"))
    before = {key: await storage.get(key) for key in await _keys(storage)}
    with pytest.raises(RecordExists):
        await tickets.create(Ticket("t1", "p9", "Other"))
    assert {key: await storage.get(key) for key in await _keys(storage)} == before


async def test_replace_if_unchanged_refuses_a_stale_version(tickets: Repository[Ticket]) -> None:
    await tickets.save(Ticket("t1", "p1", "One"))
    read = await tickets.get_versioned("t1")
    assert read is not None
    await tickets.replace(replace(read.value, votes=1), read.version)
    with pytest.raises(RecordChanged):
        await tickets.replace(replace(read.value, votes=2), read.version)
    assert await tickets.get("t1") == Ticket("t1", "p1", "One", votes=1)
    with pytest.raises(RecordChanged):
        await tickets.replace(Ticket("missing", "p", "M"), read.version)
    assert not await tickets.exists("missing")


async def test_a_unique_value_is_held_by_one_record_and_released_on_change_and_delete(
    storage: Storage, tickets: Repository[Ticket]
) -> None:
    await tickets.save(Ticket("t1", "p1", "Same Title"))
    with pytest.raises(UniqueViolation) as caught:
        await tickets.save(Ticket("t2", "p2", "same title"))
    assert (caught.value.index, caught.value.value, caught.value.holder) == (
        "by_slug",
        "same-title",
        "t1",
    )
    assert not await tickets.exists("t2")
    assert await tickets.find("by_project", "p2") == []
    # Renaming t1 releases its old value; deleting it releases the new one.
    await tickets.save(Ticket("t1", "p1", "Renamed"))
    await tickets.save(Ticket("t2", "p2", "same title"))
    with pytest.raises(UniqueViolation):
        await tickets.create(Ticket("t3", "p3", "RENAMED"))
    await tickets.delete("t1")
    await tickets.save(Ticket("t3", "p3", "RENAMED"))
    assert await tickets.find_one("by_slug", "renamed") == Ticket("t3", "p3", "RENAMED")


async def test_concurrent_claims_of_one_unique_value_leave_one_winner(
    tickets: Repository[Ticket],
) -> None:
    outcomes: list[str] = []

    async def claim(number: int) -> None:
        try:
            await tickets.save(Ticket(f"t{number}", "p", "Contested"))
            outcomes.append("won")
        except UniqueViolation:
            outcomes.append("lost")

    async with anyio.create_task_group() as group:
        for number in range(20):
            group.start_soon(claim, number)
    assert outcomes.count("won") == 1
    assert len(await tickets.find_all()) == 1


async def test_update_retries_so_concurrent_updates_all_apply(
    tickets: Repository[Ticket],
) -> None:
    await tickets.save(Ticket("t1", "p", "Votes"))
    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(tickets.update, "t1", lambda t: replace(t, votes=t.votes + 1))
    stored = await tickets.get("t1")
    assert stored is not None
    assert stored.votes == 100
    with pytest.raises(RecordNotFound):
        await tickets.update("missing", lambda t: t)
    with pytest.raises(ValidationError, match="keep the id"):
        await tickets.update("t1", lambda t: replace(t, ticket_id="t2"))


async def test_find_all_pages_in_id_order(tickets: Repository[Ticket]) -> None:
    ids = [f"t{number:03d}" for number in range(57)]
    for ticket_id in reversed(ids):
        await tickets.save(Ticket(ticket_id, "p", f"title {ticket_id}"))
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = await tickets.find_all(limit=10, after=after)
        if not page:
            break
        pages.append([t.ticket_id for t in page])
        after = page[-1].ticket_id
    assert [len(page) for page in pages] == [10, 10, 10, 10, 10, 7]
    assert [ticket_id for page in pages for ticket_id in page] == ids
    assert [t.ticket_id for t in await tickets.find_all()] == ids
    with pytest.raises(ValidationError):
        await tickets.find_all(limit=0)


async def test_one_malformed_document_is_named_or_reported_and_the_rest_returned(
    storage: Storage, tickets: Repository[Ticket]
) -> None:
    await tickets.save(Ticket("t1", "p", "One"))
    await tickets.save(Ticket("t3", "p", "Three"))
    await storage.set("tickets:t2", {"ticketId": "t2", "unknownField": 1})
    with pytest.raises(MalformedDocument) as caught:
        await tickets.find_all()
    assert caught.value.key == "tickets:t2"
    reported: list[ValidationError] = []
    found = await tickets.find_all(on_error=reported.append)
    assert [t.ticket_id for t in found] == ["t1", "t3"]
    assert [getattr(error, "key", None) for error in reported] == ["tickets:t2"]
    with pytest.raises(MalformedDocument, match="tickets:t2"):
        await tickets.get("t2")


async def test_rebuild_indexes_restores_lost_entries_and_removes_stale_ones(
    storage: Storage, tickets: Repository[Ticket]
) -> None:
    await tickets.save(Ticket("t1", "p1", "One"))
    await tickets.save(Ticket("t2", "p1", "Two"))
    await storage.clear("idx:")
    # Stale entries a crash could leave: a hint, and a unique claim by a record never written.
    await storage.set("idx:tickets:by_project:p9:t1", 1)
    await storage.set("idx:tickets:by_slug:ghost", "t-crashed")
    # A claim of t2's own value by a writer that died, which t2 must get back.
    await storage.set("idx:tickets:by_slug:two", "t-dead")
    removed = await tickets.rebuild_indexes()
    assert removed == 3
    assert [t.ticket_id for t in await tickets.find("by_project", "p1")] == ["t1", "t2"]
    assert await tickets.find_one("by_slug", "two") == Ticket("t2", "p1", "Two")
    await tickets.save(Ticket("t9", "p", "Ghost"))  # the released value is free again


async def test_delete_cascades_to_children_and_their_counter(
    storage: Storage, tickets: Repository[Ticket]
) -> None:
    comments = tickets.children("comments")
    await tickets.save(Ticket("t1", "p", "One"))
    await comments.add("t1", Comment("c2", 5, "second"))
    await comments.add("t1", {"commentId": "c1", "at": 5, "text": "third"})
    await comments.add("t1", Comment("c0", 1, "first"))
    assert [c.comment_id for c in await comments.find_all("t1")] == ["c0", "c2", "c1"]
    await tickets.delete("t1")
    assert await _keys(storage) == []
    with pytest.raises(RecordNotFound):
        await comments.add("t1", Comment("c3", 1, "late"))
    assert await _keys(storage) == []


@dataclass(frozen=True)
class TicketV1:
    ticket_id: str
    title: str


@dataclass(frozen=True)
class TicketV3:
    ticket_id: str
    summary: str
    tags: tuple[str, ...] = ()

    def to_document(self) -> dict[str, Any]:
        return {"ticketId": self.ticket_id, "summary": self.summary, "tags": list(self.tags)}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> TicketV3:
        return cls(document["ticketId"], document["summary"], tuple(document["tags"]))


def _rename_title(document: dict[str, Any]) -> dict[str, Any]:
    return {"ticketId": document["ticketId"], "summary": document["title"]}


def _add_tags(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "tags": []}


V1: Entity[TicketV1] = Entity(TicketV1, collection="tickets", id="ticket_id")
V3: Entity[TicketV3] = Entity(
    TicketV3,
    collection="tickets",
    id="ticket_id",
    version=3,
    upgrades={1: _rename_title, 2: _add_tags},
    indexes=[Index("by_summary", "summary")],
)


async def test_old_documents_read_upgraded_and_migrate_rewrites_them(storage: Storage) -> None:
    old = Repository(storage, V1)
    await old.save(TicketV1("t1", "First"))
    await old.save(TicketV1("t2", "Second"))
    assert await storage.get("tickets:t1") == {"ticketId": "t1", "title": "First"}  # no _schema
    new = Repository(storage, V3)
    assert await new.get("t1") == TicketV3("t1", "First")
    await new.save(TicketV3("t3", "Third", ("x",)))
    assert await storage.get("tickets:t3") == {
        "ticketId": "t3",
        "summary": "Third",
        "tags": ["x"],
        "_schema": 3,
    }
    assert await new.migrate() == 2
    assert await storage.get("tickets:t1") == {
        "ticketId": "t1",
        "summary": "First",
        "tags": [],
        "_schema": 3,
    }
    assert await new.migrate() == 0
    assert await new.find("by_summary", "Second") == [TicketV3("t2", "Second")]
    # The old code refuses what the new code wrote, rather than reading it wrong.
    with pytest.raises(SchemaVersionError) as caught:
        await old.get("t1")
    assert (caught.value.key, caught.value.found, caught.value.supported) == ("tickets:t1", 3, 1)


class _WriteAfterRead(MemoryDriver):
    """A memory driver on which another writer's write of ``key`` lands right after the first
    versioned read of it: between migrate's read and its conditional rewrite."""

    def __init__(self, key: str, document: bytes) -> None:
        super().__init__()
        self.pending: tuple[str, bytes] | None = (key, document)

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        found = await super().get_versioned(key)
        if self.pending is not None and self.pending[0] == key:
            self.pending = None
            await self.set(key, orjson.dumps(_CONCURRENT))
        return found


_CONCURRENT = {"ticketId": "t1", "summary": "Written meanwhile", "tags": ["w"], "_schema": 3}


async def test_migrate_never_overwrites_a_concurrent_writer() -> None:
    driver = _WriteAfterRead("tickets:t1", orjson.dumps(_CONCURRENT))
    async with Storage(driver) as storage:
        await storage.set("tickets:t1", {"ticketId": "t1", "title": "Old"})
        new = Repository(storage, V3)
        assert await new.migrate() == 0
        assert driver.pending is None
        assert await new.get("t1") == TicketV3("t1", "Written meanwhile", ("w",))


async def test_a_document_newer_than_the_code_is_a_typed_error_and_writes_nothing(
    storage: Storage,
) -> None:
    old = Repository(storage, V1)
    await storage.set("tickets:t1", {"ticketId": "t1", "summary": "S", "tags": [], "_schema": 3})
    before = await _keys(storage)
    with pytest.raises(SchemaVersionError):
        await old.get("t1")
    with pytest.raises(SchemaVersionError):
        await old.save(TicketV1("t1", "overwrite with older code"))
    with pytest.raises(SchemaVersionError):
        await old.update("t1", lambda t: t)
    with pytest.raises(SchemaVersionError):
        await old.save({"ticketId": "t2", "title": "given", "_schema": 7})
    reported: list[ValidationError] = []
    assert await old.find_all(on_error=reported.append) == []
    assert [type(error) for error in reported] == [SchemaVersionError]
    assert await _keys(storage) == before
    assert await storage.get("tickets:t1") == {
        "ticketId": "t1",
        "summary": "S",
        "tags": [],
        "_schema": 3,
    }


def _exploding(ticket: Ticket) -> str:
    raise RuntimeError("boom")


async def test_bad_input_gets_a_typed_error_and_writes_nothing(
    storage: Storage, tickets: Repository[Ticket]
) -> None:
    exploding = Repository(
        storage,
        Entity(Ticket, collection="tickets", id="ticket_id", indexes=[Index("x", _exploding)]),
    )
    with pytest.raises(ValidationError, match="index 'x' could not compute its value"):
        await exploding.save(Ticket("t1", "p", "T"))
    for missing_id in ("", None, 7):
        with pytest.raises(ValidationError, match="ticket_id"):
            await tickets.save(Ticket(missing_id, "p", "T"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await tickets.save({"project": "p", "title": "no id"})
    with pytest.raises(ValidationError):
        await tickets.save(Ticket("t1", "p", "T", votes=float("nan")))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await tickets.save("not a ticket")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await tickets.children("comments").add("t1", Comment("c", -1, "bad order"))
    assert await _keys(storage) == []


def test_declarations_are_checked_when_made() -> None:
    with pytest.raises(TypeError, match="no field 'nope'"):
        Entity(Ticket, collection="tickets", id="nope")
    with pytest.raises(ValueError, match="collection name"):
        Entity(Ticket, collection="Bad Name", id="ticket_id")
    with pytest.raises(ValueError, match="upgrades"):
        Entity(Ticket, collection="tickets", id="ticket_id", version=2)
    with pytest.raises(ValueError, match="distinct"):
        Entity(
            Ticket,
            collection="tickets",
            id="ticket_id",
            indexes=[Index("a", "project"), Index("a", "title")],
        )
