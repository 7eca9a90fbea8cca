"""Adding a message while its session is deleted and re-created, one interleaving at a time.

:mod:`entities.children` numbers the steps: the adder's A1 (read the parent), A2 (bump the
counter), A3 (write the child), A4 (read the parent and the counter), and the deleter's D1-D3.
The multi-process runs in ``test_races.py`` find interleavings by chance; each test here forces
one of them on a memory driver that runs a scripted step at a chosen call, so that it runs the
same way every time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
import pytest

from entities import Persistence, RecordNotFound, create_persistence
from kvstore.conditional import Action, Change, Versioned
from kvstore.drivers.memory import MemoryDriver
from tests.entities.factories import message, session

pytestmark = pytest.mark.anyio

PARENT = "agentx:sessions:s1"
COUNTER = "agentx:seq:messages:s1"

Step = Callable[[], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _ScriptedDriver(MemoryDriver):
    """A memory driver that runs one-shot steps at chosen calls of the add protocol.

    ``before_counter_read`` runs before the next read of the counter (an add's A2),
    ``after_check_read`` after the next read of the parent and the counter together (an add's
    A4), and ``before_child_write[message_id]`` before that message's child is written (A3).
    """

    def __init__(self) -> None:
        super().__init__()
        self.before_counter_read: Step | None = None
        self.after_check_read: Step | None = None
        self.before_child_write: dict[str, Step] = {}

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        if key == COUNTER and self.before_counter_read is not None:
            step, self.before_counter_read = self.before_counter_read, None
            await step()
        return await super().get_versioned(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = await super().get_many(keys)
        if list(keys) == [PARENT, COUNTER] and self.after_check_read is not None:
            step, self.after_check_read = self.after_check_read, None
            await step()
        return found

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        for change in changes:
            message_id = change.key.rsplit(":", 1)[-1]
            if change.action is Action.WRITE and message_id in self.before_child_write:
                await self.before_child_write.pop(message_id)()
        return await super().commit(changes)


async def _outcome(persistence: Persistence, message_id: str) -> str:
    try:
        await persistence.sessions.add_message("s1", message(message_id))
    except RecordNotFound:
        return "missing"
    return "ok"


async def test_an_add_that_lost_to_a_delete_leaves_the_counter_of_a_later_add_alone() -> None:
    # The loser reads the session (A1); the whole delete runs; the loser creates a counter of
    # a new epoch (A2), writes its child and reads the session absent (A4). Then the session
    # is re-created and a second add begins, with no delete anywhere near it: it takes its
    # number from the loser's counter. The loser, cleaning up, must not remove that counter,
    # or the second add finds it gone at A4 and fails on a session that existed throughout.
    driver = _ScriptedDriver()
    outcomes: dict[str, str] = {}
    async with await create_persistence(driver) as persistence:
        sessions = persistence.sessions
        await sessions.save_session(session("s1"))
        later_add_numbered = anyio.Event()
        loser_done = anyio.Event()

        async def run(message_id: str, then: anyio.Event | None = None) -> None:
            outcomes[message_id] = await _outcome(persistence, message_id)
            if then is not None:
                then.set()

        async def delete_session() -> None:
            await sessions.delete_session("s1")

        async def recreate_and_start_the_later_add() -> None:
            await sessions.save_session(session("s1"))
            group.start_soon(run, "later")
            await later_add_numbered.wait()

        async def hold_the_later_add() -> None:
            later_add_numbered.set()
            await loser_done.wait()

        driver.before_counter_read = delete_session
        driver.after_check_read = recreate_and_start_the_later_add
        driver.before_child_write["later"] = hold_the_later_add
        async with anyio.create_task_group() as group:
            group.start_soon(run, "loser", loser_done)

        assert driver.before_counter_read is None
        assert driver.after_check_read is None
        assert driver.before_child_write == {}
        assert outcomes == {"loser": "missing", "later": "ok"}
        assert [m.id for m in await sessions.get_messages("s1")] == ["later"]


async def test_an_add_that_lost_to_a_delete_removes_the_counter_it_made() -> None:
    # The same loser with no re-create after it: its counter, made after the delete removed
    # the old one, names a session that is gone, and the loser removes it.
    driver = _ScriptedDriver()
    async with await create_persistence(driver) as persistence:
        await persistence.sessions.save_session(session("s1"))

        async def delete_session() -> None:
            await persistence.sessions.delete_session("s1")

        driver.before_counter_read = delete_session
        assert await _outcome(persistence, "loser") == "missing"
        assert driver.before_counter_read is None
        assert [key async for key in persistence.storage.keys()] == []


async def test_an_add_racing_a_delete_and_a_re_create_fails_and_keeps_nothing() -> None:
    # The delete runs between the loser's number (A2) and its write (A3), and the session is
    # re-created before the loser's check (A4): the parent is there, but the counter's epoch
    # changed, so the message written for the deleted session is not kept in the new one.
    driver = _ScriptedDriver()
    async with await create_persistence(driver) as persistence:
        sessions = persistence.sessions
        await sessions.save_session(session("s1"))

        async def delete_and_re_create() -> None:
            await sessions.delete_session("s1")
            await sessions.save_session(session("s1"))

        driver.before_child_write["loser"] = delete_and_re_create
        assert await _outcome(persistence, "loser") == "missing"
        assert driver.before_child_write == {}
        assert await sessions.get_messages("s1") == []
        assert await _outcome(persistence, "next") == "ok"
        assert [m.id for m in await sessions.get_messages("s1")] == ["next"]
