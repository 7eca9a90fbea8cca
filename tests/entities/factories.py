"""Small record builders for the entity tests."""

from __future__ import annotations

from entities import ContainerRecord, ImageRecord, Message, SessionRecord

T0 = 1_700_000_000_000


def container(container_id: str = "c1") -> ContainerRecord:
    return ContainerRecord(container_id=container_id, created_at=T0, updated_at=T0)


def image(
    image_id: str = "img1", container_id: str = "c1", name: str = "My Assistant"
) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        container_id=container_id,
        session_id=f"s-{image_id}",
        name=name,
        system_prompt="You are helpful.",
        created_at=T0,
        updated_at=T0,
    )


def session(
    session_id: str = "s1", image_id: str = "img1", container_id: str = "c1", updated_at: int = T0
) -> SessionRecord:
    return SessionRecord(
        session_id=session_id,
        image_id=image_id,
        container_id=container_id,
        created_at=T0,
        updated_at=updated_at,
    )


def message(message_id: str, timestamp: int = T0, text: str = "hello") -> Message:
    return Message(id=message_id, subtype="user", content=text, timestamp=timestamp)
