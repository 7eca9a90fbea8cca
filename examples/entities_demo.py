"""Entities demo: save a container, image and session, add messages, then copy everything to
another storage the way the original guide's "Data Migration" section does.

Run: ``python -m examples.entities_demo [SOURCE_URL] [TARGET_URL]`` (both default to memory).
"""

from __future__ import annotations

import sys

import anyio

from entities import (
    ContainerRecord,
    ImageRecord,
    Message,
    Persistence,
    SessionRecord,
    ToolCall,
    create_persistence,
)


async def copy_all(source: Persistence, target: Persistence) -> int:
    """Copy every record and message from ``source`` to ``target``; return the message count."""
    for container in await source.containers.find_all_containers():
        await target.containers.save_container(container)
    for image in await source.images.find_all_images():
        await target.images.save_image(image)
    copied = 0
    for session in await source.sessions.find_all_sessions():
        await target.sessions.save_session(session)
        for message in await source.sessions.get_messages(session.session_id):
            await target.sessions.add_message(session.session_id, message)
            copied += 1
    return copied


async def main(source_url: str, target_url: str) -> None:
    now = 1_700_000_000_000
    async with create_persistence(source_url) as source:
        await source.containers.save_container(
            ContainerRecord(container_id="container-1", created_at=now, updated_at=now)
        )
        await source.images.save_image(
            ImageRecord(
                image_id="img_abc123",
                container_id="container-1",
                session_id="session-1",
                name="My Assistant",
                system_prompt="You are helpful.",
                created_at=now,
                updated_at=now,
            )
        )
        await source.sessions.save_session(
            SessionRecord(
                session_id="session-1",
                image_id="img_abc123",
                container_id="container-1",
                created_at=now,
                updated_at=now,
            )
        )
        await source.sessions.add_message(
            "session-1", Message(id="msg-1", subtype="user", content="Hello!", timestamp=now)
        )
        await source.sessions.add_message(
            "session-1",
            Message(
                id="msg-2",
                subtype="tool_call",
                content=(ToolCall(id="call-1", name="search", input={"q": "weather"}),),
                timestamp=now + 1,
            ),
        )
        async with create_persistence(target_url) as target:
            copied = await copy_all(source, target)
            images = await target.images.find_images_by_name("My Assistant")
            print(
                f"copied {copied} messages; images named 'My Assistant': "
                f"{[image.image_id for image in images]}"
            )
            for message in await target.sessions.get_messages("session-1"):
                print(message.to_document())


if __name__ == "__main__":
    arguments = sys.argv[1:] + ["memory://"] * (2 - len(sys.argv[1:]))
    anyio.run(main, arguments[0], arguments[1])
