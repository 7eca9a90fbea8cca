"""AgentX's entity types, declared on the generic layer (:mod:`entities.declarations`).

The declarations reproduce the key layout :mod:`entities.keys` documents: the collections
``containers``, ``images`` and ``sessions``, the indexes ``idx:images:by_container``,
``idx:images:by_name``, ``idx:sessions:by_container`` and ``idx:sessions:by_image``, and the
messages of a session as its children, ordered by timestamp. Every type is at schema version 1,
so its documents are exactly those the original guide describes.
"""

from __future__ import annotations

from entities.declarations import Children, Entity, Index
from entities.records import ContainerRecord, ImageRecord, Message, SessionRecord

__all__ = ["CONTAINERS", "IMAGES", "MESSAGES", "SESSIONS"]

CONTAINERS: Entity[ContainerRecord] = Entity(
    ContainerRecord, collection="containers", id="container_id"
)
"""Containers: no index; deleting one cascades through the indexes of images and sessions."""

IMAGES: Entity[ImageRecord] = Entity(
    ImageRecord,
    collection="images",
    id="image_id",
    indexes=[Index("by_container", "container_id"), Index("by_name", "name")],
)
"""Images, looked up by container and by name."""

MESSAGES: Entity[Message] = Entity(Message, collection="messages", id="id")
"""Messages: stored only as children of a session."""

SESSIONS: Entity[SessionRecord] = Entity(
    SessionRecord,
    collection="sessions",
    id="session_id",
    indexes=[Index("by_container", "container_id"), Index("by_image", "image_id")],
    children=[Children("messages", MESSAGES, order="timestamp")],
)
"""Sessions, looked up by container and by image, holding their messages."""
