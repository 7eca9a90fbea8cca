"""A higher-level package declaring its own entity type on the entity layer.

Run: ``python -m examples.declare_entity [URL]`` (default ``memory://``; any storage URL with
conditional writes works, e.g. ``sqlite:///tickets.db``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import anyio

from entities import Children, Entity, Index, Repository, UniqueViolation
from kvstore import create_storage


@dataclass(frozen=True)
class Comment:
    """A comment on a ticket; comments come back ordered by ``at``, then as added."""

    comment_id: str
    at: int
    text: str


@dataclass(frozen=True)
class Ticket:
    """A ticket, stored as ``{"ticketId", "project", "title", "votes"}``."""

    ticket_id: str
    project: str
    title: str
    votes: int = 0


TICKETS: Entity[Ticket] = Entity(
    Ticket,
    collection="tickets",
    id="ticket_id",
    indexes=[
        Index("by_project", "project"),
        Index("by_title", lambda ticket: ticket.title.casefold(), unique=True),
    ],
    children=[Children("comments", Entity(Comment, collection="comments", id="comment_id"), "at")],
)


async def main(url: str) -> None:
    """Save, look up, update, comment on and delete tickets."""
    async with create_storage(url) as storage:
        tickets = Repository(storage.with_prefix("tracker"), TICKETS)
        await tickets.save(Ticket("t1", "web", "Fix login"))
        await tickets.save({"ticketId": "t2", "project": "web", "title": "Dark mode"})
        try:
            await tickets.save(Ticket("t3", "api", "fix LOGIN"))
        except UniqueViolation as error:
            print(f"refused: {error}")
        await tickets.update("t1", lambda ticket: replace(ticket, votes=ticket.votes + 1))
        print("web:", [t.ticket_id for t in await tickets.find("by_project", "web")])
        print("t1:", await tickets.find_one("by_title", "fix login"))
        comments = tickets.children("comments")
        for number, text in enumerate(["first", "second", "third"]):
            await comments.add("t1", Comment(f"c{number}", 1_700_000_000_000, text))
        print("comments:", [c.text for c in await comments.find_all("t1", limit=2)])
        await tickets.delete("t1")
        print("left:", [t.ticket_id for t in await tickets.find_all()])


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "memory://")
