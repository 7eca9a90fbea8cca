"""The repositories on memory, SQLite and Redis: lookups, hints, messages, cascades."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import anyio
import orjson
import pytest

from entities import (
    Message,
    Persistence,
    RecordNotFound,
    ToolCall,
    ValidationError,
    create_persistence,
)
from entities.keys import KeyLayout
from kvstore.drivers.memory import MemoryDriver
from kvstore.storage import Storage
from tests.entities.factories import T0, container, image, message, session

pytestmark = pytest.mark.anyio

HOSTILE_IDS = [
    "a",
    "a:b",
    "a:b:c",
    "b",
    "%",
    "%3A",
    "%253A",
    ":",
    "a%3Ab",
    "..",
    "../a",
    "*",
    "a_%",
    "é",
    "e\u0301",
    "日本語 id",
    "tab\tnewline\n",
    "a b",
]


async def _all_keys(storage: Storage) -> list[str]:
    return [key async for key in storage.keys()]


async def test_container_crud(persistence: Persistence) -> None:
    repo = persistence.containers
    assert await repo.find_container_by_id("c1") is None
    assert not await repo.container_exists("c1")
    await repo.save_container(container("c1"))
    await repo.save_container(container("c2"))
    assert await repo.find_container_by_id("c1") == container("c1")
    assert await repo.container_exists("c1")
    assert await repo.find_all_containers() == [container("c1"), container("c2")]


async def test_documents_are_stored_camel_case_under_the_namespace(
    persistence: Persistence, root_storage: Storage
) -> None:
    await persistence.images.save_image(image())
    assert await root_storage.get("agentx:images:img1") == image().to_document()
    assert set(await _all_keys(root_storage)) == {
        "agentx:images:img1",
        "agentx:idx:images:by_container:c1:img1",
        "agentx:idx:images:by_name:My Assistant:img1",
    }


async def test_image_lookups(persistence: Persistence) -> None:
    images = persistence.images
    await images.save_image(image("i1", "c1", "alpha"))
    await images.save_image(image("i2", "c1", "beta"))
    await images.save_image(image("i3", "c2", "alpha"))
    assert await images.find_image_by_id("i2") == image("i2", "c1", "beta")
    assert await images.find_image_by_id("nope") is None
    assert [i.image_id for i in await images.find_images_by_container_id("c1")] == ["i1", "i2"]
    assert [i.image_id for i in await images.find_images_by_name("alpha")] == ["i1", "i3"]
    assert await images.find_images_by_name("alph") == []
    assert len(await images.find_all_images()) == 3


async def test_saving_a_moved_image_moves_its_index_entries(
    persistence: Persistence, root_storage: Storage
) -> None:
    images = persistence.images
    await images.save_image(image("i1", "c1", "old"))
    await images.save_image(image("i1", "c2", "new"))
    assert await images.find_images_by_container_id("c1") == []
    assert await images.find_images_by_name("old") == []
    assert await images.find_images_by_container_id("c2") == [image("i1", "c2", "new")]
    assert await images.find_images_by_name("new") == [image("i1", "c2", "new")]
    assert set(await _all_keys(root_storage)) == {
        "agentx:images:i1",
        "agentx:idx:images:by_container:c2:i1",
        "agentx:idx:images:by_name:new:i1",
    }


async def test_stale_and_dangling_hints_never_show_a_wrong_answer(
    persistence: Persistence,
) -> None:
    storage, layout = persistence.storage, KeyLayout(persistence.storage.base)
    await persistence.images.save_image(image("i1", "c2", "real"))
    await persistence.sessions.save_session(session("s1", "i1", "c2"))
    # What a crash between writes leaves behind: entries naming a record that is elsewhere, and
    # entries naming a record that was never written.
    await storage.set(layout.image_by_container("c1", "i1"), 1)
    await storage.set(layout.image_by_name("ghost-name", "i1"), 1)
    await storage.set(layout.image_by_container("c1", "never-written"), 1)
    await storage.set(layout.session_by_container("c1", "s1"), 1)
    await storage.set(layout.session_by_image("other", "s1"), 1)
    await storage.set(layout.images_by_container_prefix("c1") + "x:y", 1)

    assert await persistence.images.find_images_by_container_id("c1") == []
    assert await persistence.images.find_images_by_name("ghost-name") == []
    assert await persistence.sessions.find_sessions_by_container_id("c1") == []
    assert await persistence.sessions.find_session_by_image_id("other") is None
    assert await persistence.images.find_images_by_container_id("c2") == [image("i1", "c2", "real")]


async def test_hostile_ids_never_collide(persistence: Persistence) -> None:
    for number, hostile in enumerate(HOSTILE_IDS):
        await persistence.containers.save_container(container(hostile))
        await persistence.images.save_image(image(hostile, hostile, hostile))
        await persistence.sessions.save_session(session(hostile, hostile, hostile))
        await persistence.sessions.add_message(hostile, message(hostile, T0 + number))
    for number, hostile in enumerate(HOSTILE_IDS):
        assert await persistence.containers.find_container_by_id(hostile) == container(hostile)
        assert await persistence.images.find_image_by_id(hostile) == image(
            hostile, hostile, hostile
        )
        assert await persistence.images.find_images_by_name(hostile) == [
            image(hostile, hostile, hostile)
        ]
        assert await persistence.images.find_images_by_container_id(hostile) == [
            image(hostile, hostile, hostile)
        ]
        assert await persistence.sessions.find_sessions_by_container_id(hostile) == [
            session(hostile, hostile, hostile)
        ]
        assert await persistence.sessions.find_session_by_image_id(hostile) == session(
            hostile, hostile, hostile
        )
        assert await persistence.sessions.get_messages(hostile) == [message(hostile, T0 + number)]
    assert len(await persistence.containers.find_all_containers()) == len(HOSTILE_IDS)
    # Deleting one hostile id's records touches no other's.
    await persistence.containers.delete_container("a")
    assert await persistence.images.find_image_by_id("a:b") is not None
    assert await persistence.sessions.get_messages("a:b") == [message("a:b", T0 + 1)]
    assert len(await persistence.images.find_all_images()) == len(HOSTILE_IDS) - 1


async def test_too_long_ids_raise_and_write_nothing(
    persistence: Persistence, root_storage: Storage
) -> None:
    long_id = "x" * 1010
    with pytest.raises(ValidationError, match="too long"):
        await persistence.containers.save_container(container(long_id))
    # The record key fits; the name index entry does not: nothing may be written.
    with pytest.raises(ValidationError, match="too long"):
        await persistence.images.save_image(image("i1", "c1", "n" * 1000))
    with pytest.raises(ValidationError, match="too long"):
        await persistence.sessions.save_session(session("s" * 500, "i" * 500))
    with pytest.raises(ValidationError, match="too long"):
        await persistence.images.find_image_by_id(long_id + "x" * 100)
    assert await _all_keys(root_storage) == []


async def test_bad_arguments_raise_validation_error(persistence: Persistence) -> None:
    with pytest.raises(ValidationError):
        await persistence.images.find_image_by_id("")
    with pytest.raises(ValidationError):
        await persistence.sessions.get_messages(42)  # type: ignore[arg-type]
    # A mapping is taken in the stored form (issue 9), so the refusals are a mapping that is
    # not a valid document and a value that is neither a record nor a mapping.
    with pytest.raises(ValidationError):
        await persistence.images.save_image({**image().to_document(), "imageId": ""})
    with pytest.raises(ValidationError):
        await persistence.images.save_image([image().to_document()])  # type: ignore[arg-type]


async def test_messages_come_back_ordered_by_timestamp_then_order_added(
    persistence: Persistence,
) -> None:
    sessions = persistence.sessions
    await sessions.save_session(session("s1"))
    added = [
        message("b", T0 + 10),
        message("z", T0),
        Message(
            id="a", subtype="tool_call", content=(ToolCall(id="t", name="ls"),), timestamp=T0 + 10
        ),
        message("early", 9),  # Fewer digits must still sort first.
    ]
    for item in added:
        await sessions.add_message("s1", item)
    # "b" and "a" share a timestamp: they come back in the order added (issue 9), not by id.
    assert [m.id for m in await sessions.get_messages("s1")] == ["early", "z", "b", "a"]
    assert (await sessions.get_messages("s1"))[3] == added[2]


async def test_add_message_to_a_missing_session_raises_and_writes_nothing(
    persistence: Persistence, root_storage: Storage
) -> None:
    with pytest.raises(RecordNotFound):
        await persistence.sessions.add_message("missing", message("m"))
    assert await _all_keys(root_storage) == []


async def test_concurrent_add_message_loses_none(persistence: Persistence) -> None:
    sessions = persistence.sessions
    await sessions.save_session(session("s1"))
    async with anyio.create_task_group() as group:
        for number in range(200):
            # Every task shares one timestamp: the id alone tells them apart.
            group.start_soon(sessions.add_message, "s1", message(f"m{number:03d}", T0))
    stored = await sessions.get_messages("s1")
    assert [m.id for m in stored] == [f"m{number:03d}" for number in range(200)]


async def test_clear_messages_keeps_the_session(persistence: Persistence) -> None:
    sessions = persistence.sessions
    await sessions.save_session(session("s1"))
    await sessions.save_session(session("s10"))
    await sessions.add_message("s1", message("m1"))
    await sessions.add_message("s10", message("m1"))
    await sessions.clear_messages("s1")
    assert await sessions.get_messages("s1") == []
    assert await sessions.get_messages("s10") == [message("m1")]
    assert await sessions.find_session_by_id("s1") == session("s1")


async def test_find_session_by_image_id_returns_the_latest(persistence: Persistence) -> None:
    sessions = persistence.sessions
    await sessions.save_session(session("s1", "i1", updated_at=T0 + 5))
    await sessions.save_session(session("s2", "i1", updated_at=T0 + 9))
    await sessions.save_session(session("s3", "i1", updated_at=T0))
    assert await sessions.find_session_by_image_id("i1") == session("s2", "i1", updated_at=T0 + 9)
    assert len(await sessions.find_sessions_by_image_id("i1")) == 3
    assert len(await sessions.find_all_sessions()) == 3


async def test_update_metadata_merges_and_stamps(persistence: Persistence) -> None:
    images = persistence.images
    await images.save_image(dataclasses.replace(image(), metadata={"keep": 1, "over": 1}))
    updated = await images.update_metadata("img1", {"over": 2, "claudeSdkSessionId": "sdk"})
    assert updated.metadata == {"keep": 1, "over": 2, "claudeSdkSessionId": "sdk"}
    assert updated.updated_at >= T0
    assert await images.find_image_by_id("img1") == updated
    with pytest.raises(RecordNotFound):
        await images.update_metadata("missing", {})


async def test_delete_session_removes_messages_and_index_entries(
    persistence: Persistence, root_storage: Storage
) -> None:
    sessions = persistence.sessions
    await sessions.save_session(session("s1"))
    await sessions.add_message("s1", message("m1"))
    await sessions.delete_session("s1")
    await sessions.delete_session("s1")  # Deleting again is no error.
    assert await sessions.find_session_by_id("s1") is None
    assert await sessions.get_messages("s1") == []
    assert await _all_keys(root_storage) == []


async def test_delete_image_deletes_its_sessions(
    persistence: Persistence, root_storage: Storage
) -> None:
    await persistence.images.save_image(image("i1", "c1"))
    await persistence.images.save_image(image("i2", "c1"))
    await persistence.sessions.save_session(session("s1", "i1", "c1"))
    await persistence.sessions.save_session(session("s2", "i2", "c1"))
    await persistence.sessions.add_message("s1", message("m"))
    await persistence.sessions.add_message("s2", message("m"))
    await persistence.images.delete_image("i1")
    assert await persistence.images.find_image_by_id("i1") is None
    assert await persistence.sessions.find_session_by_id("s1") is None
    assert await persistence.sessions.get_messages("s1") == []
    assert await persistence.sessions.find_session_by_id("s2") == session("s2", "i2", "c1")
    assert await persistence.sessions.get_messages("s2") == [message("m")]
    assert not [key for key in await _all_keys(root_storage) if "i1" in key or "s1" in key]


async def test_delete_container_deletes_everything_it_holds(
    persistence: Persistence, root_storage: Storage
) -> None:
    await persistence.containers.save_container(container("c1"))
    await persistence.containers.save_container(container("c2"))
    await persistence.images.save_image(image("i1", "c1"))
    await persistence.images.save_image(image("i2", "c2"))
    # A session in c1 made from c2's image, and one in c2 made from c1's image.
    await persistence.sessions.save_session(session("s1", "i2", "c1"))
    await persistence.sessions.save_session(session("s2", "i1", "c2"))
    await persistence.sessions.save_session(session("s3", "i2", "c2"))
    for session_id in ("s1", "s2", "s3"):
        await persistence.sessions.add_message(session_id, message("m"))
    # A stale hint left by a crash must be cleaned too.
    await persistence.storage.set(KeyLayout("agentx").image_by_container("c1", "i2"), 1)

    await persistence.containers.delete_container("c1")

    assert not await persistence.containers.container_exists("c1")
    assert await persistence.images.find_all_images() == [image("i2", "c2")]
    assert [s.session_id for s in await persistence.sessions.find_all_sessions()] == ["s3"]
    assert await persistence.sessions.get_messages("s1") == []
    assert await persistence.sessions.get_messages("s2") == []
    assert await persistence.sessions.get_messages("s3") == [message("m")]
    assert not [key for key in await _all_keys(root_storage) if "c1" in key]


class _InterleavingDriver(MemoryDriver):
    """A memory driver on which, right after the first batch delete, another writer's save of
    ``record_key`` lands: the interleaving that could otherwise lose an index entry."""

    def __init__(self, record_key: str, document: bytes) -> None:
        super().__init__()
        self.pending: tuple[str, bytes] | None = (record_key, document)

    async def delete_many(self, keys: Sequence[str]) -> None:
        await super().delete_many(keys)
        if self.pending is not None:
            key, document = self.pending
            self.pending = None
            await self.set(key, document)


async def test_a_move_racing_a_save_back_keeps_the_index_entry() -> None:
    # Writer B re-saves the image in c1 while writer A moves it to c2: B's entry for c1 was
    # written before A's save, A deletes it as stale, then B's record lands.
    driver = _InterleavingDriver("agentx:images:i1", orjson.dumps(image("i1", "c1").to_document()))
    async with await create_persistence(driver) as persistence:
        await persistence.images.save_image(image("i1", "c1"))
        await persistence.images.save_image(image("i1", "c2"))
        assert driver.pending is None
        assert await persistence.images.find_image_by_id("i1") == image("i1", "c1")
        assert await persistence.images.find_images_by_container_id("c1") == [image("i1", "c1")]
