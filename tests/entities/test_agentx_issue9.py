"""AgentX repositories on the generic layer: what issue 9 adds (mappings, message order and
pages, the layout of old messages, malformed documents, updates that lose nothing)."""

from __future__ import annotations

import anyio
import pytest

from entities import (
    MalformedDocument,
    Message,
    Persistence,
    RecordNotFound,
    ValidationError,
    create_persistence,
)
from entities.keys import KeyLayout
from kvstore.storage import Storage
from tests.entities.factories import T0, container, image, message, session

pytestmark = pytest.mark.anyio


async def test_repositories_take_the_stored_camel_case_form(persistence: Persistence) -> None:
    await persistence.containers.save_container(container("c1").to_document())
    await persistence.images.save_image(image("i1").to_document())
    await persistence.sessions.save_session(session("s1").to_document())
    await persistence.sessions.add_message("s1", message("m1").to_document())
    assert await persistence.containers.find_container_by_id("c1") == container("c1")
    assert await persistence.images.find_images_by_name("My Assistant") == [image("i1")]
    assert await persistence.sessions.find_session_by_id("s1") == session("s1")
    assert await persistence.sessions.get_messages("s1") == [message("m1")]
    with pytest.raises(ValidationError, match="lacks containerId"):
        await persistence.images.save_image({"imageId": "i2", "image_id": "snake"})
    with pytest.raises(ValidationError):
        await persistence.sessions.add_message(
            "s1", {**message("m2").to_document(), "subtype": "x"}
        )
    assert await persistence.images.find_image_by_id("i2") is None
    assert await persistence.sessions.get_messages("s1") == [message("m1")]


async def test_messages_in_one_millisecond_come_back_in_the_order_added(
    persistence: Persistence,
) -> None:
    await persistence.sessions.save_session(session("s1"))
    for number in (9, 10, 11):
        await persistence.sessions.add_message("s1", message(f"msg-{number}", T0))
    ids = [m.id for m in await persistence.sessions.get_messages("s1")]
    assert ids == ["msg-9", "msg-10", "msg-11"]


async def test_the_order_holds_when_another_persistence_continues_the_session(
    root_storage: Storage,
) -> None:
    # Two Persistence objects share nothing but the store, as two processes would.
    async with await create_persistence(root_storage) as first:
        await first.sessions.save_session(session("s1"))
        await first.sessions.add_message("s1", message("msg-9", T0))
        await first.sessions.add_message("s1", message("msg-10", T0))
    async with await create_persistence(root_storage) as second:
        await second.sessions.add_message("s1", message("msg-11", T0))
        assert [m.id for m in await second.sessions.get_messages("s1")] == [
            "msg-9",
            "msg-10",
            "msg-11",
        ]


async def test_readding_a_message_replaces_it_in_place(persistence: Persistence) -> None:
    sessions = persistence.sessions
    await sessions.save_session(session("s1"))
    await sessions.add_message("s1", message("a", T0, "first"))
    await sessions.add_message("s1", message("b", T0))
    await sessions.add_message("s1", message("a", T0, "edited"))
    assert await sessions.get_messages("s1") == [message("a", T0, "edited"), message("b", T0)]


async def test_get_messages_pages_through_every_message_in_order(
    persistence: Persistence,
) -> None:
    sessions = persistence.sessions
    await sessions.save_session(session("s1"))
    added = [message(f"m{number}", T0 + number // 7) for number in range(120)]
    for item in added:
        await sessions.add_message("s1", item)
    assert await sessions.get_messages("s1") == added
    pages: list[list[Message]] = []
    after: Message | None = None
    while page := await sessions.get_messages("s1", limit=25, after=after):
        pages.append(page)
        after = page[-1]
    assert [len(page) for page in pages] == [25, 25, 25, 25, 20]
    assert [item for page in pages for item in page] == added
    assert await sessions.get_messages("s1", limit=3) == added[:3]


async def test_messages_stored_before_sequences_stay_readable_and_first_in_their_ms(
    persistence: Persistence,
) -> None:
    sessions = persistence.sessions
    await sessions.save_session(session("s1"))
    layout = KeyLayout(persistence.storage.base)
    # The layout before issue 9: messages:<session>:<ts>:<message>, ordered by id at one ts.
    for item in (message("old-b", T0), message("old-a", T0), message("old-c", T0 + 1)):
        await persistence.storage.set(
            layout.message("s1", item.timestamp, item.id), item.to_document()
        )
    await sessions.add_message("s1", message("new-1", T0))
    await sessions.add_message("s1", message("new-0", T0 - 1))
    await sessions.add_message("s1", message("old-b", T0, "replaced in place"))
    assert [m.id for m in await sessions.get_messages("s1")] == [
        "new-0",
        "old-a",
        "old-b",
        "new-1",
        "old-c",
    ]
    assert (await sessions.get_messages("s1"))[2].content == "replaced in place"
    await sessions.delete_session("s1")
    assert [key async for key in persistence.storage.keys()] == []


async def test_one_malformed_document_is_named_or_skipped_through_on_error(
    persistence: Persistence,
) -> None:
    images = persistence.images
    await images.save_image(image("i1"))
    await images.save_image(image("i3"))
    await persistence.storage.set("images:i2", {"imageId": "i2"})
    with pytest.raises(MalformedDocument) as caught:
        await images.find_all_images()
    assert caught.value.key == "images:i2"
    skipped: list[ValidationError] = []
    assert [i.image_id for i in await images.find_all_images(on_error=skipped.append)] == [
        "i1",
        "i3",
    ]
    assert [getattr(error, "key", "") for error in skipped] == ["images:i2"]


async def test_concurrent_update_metadata_loses_no_key(persistence: Persistence) -> None:
    images = persistence.images
    await images.save_image(image("i1"))
    async with anyio.create_task_group() as group:
        for number in range(50):
            group.start_soon(images.update_metadata, "i1", {f"k{number}": number})
    stored = await images.find_image_by_id("i1")
    assert stored is not None
    assert stored.metadata == {f"k{n}": n for n in range(50)}


async def test_add_message_after_delete_session_raises_and_leaves_nothing(
    persistence: Persistence,
) -> None:
    sessions = persistence.sessions
    await sessions.save_session(session("s1"))
    await sessions.add_message("s1", message("kept-before-delete"))
    await sessions.delete_session("s1")
    with pytest.raises(RecordNotFound):
        await sessions.add_message("s1", message("late"))
    await sessions.save_session(session("s1"))
    assert await sessions.get_messages("s1") == []
