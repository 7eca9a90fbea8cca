"""AgentX entities over kvstore: containers, images, sessions and their messages.

Start with :func:`create_persistence`::

    async with await create_persistence("sqlite:///agentx.db") as persistence:
        await persistence.containers.save_container(
            ContainerRecord(container_id="c1", created_at=now, updated_at=now)
        )
        images = await persistence.images.find_images_by_container_id("c1")

Records are frozen dataclasses with snake_case fields, stored as the original camelCase JSON
documents. Ids and names are arbitrary non-empty strings; :mod:`entities.keys` documents the key
layout and :mod:`entities.persistence` the namespace. Malformed input raises
:class:`ValidationError` and writes nothing.
"""

from __future__ import annotations

from entities.containers import ContainerRepository
from entities.errors import RecordNotFound, ValidationError
from entities.images import ImageRepository
from entities.persistence import DEFAULT_NAMESPACE, Persistence, create_persistence
from entities.records import (
    ContainerRecord,
    ImageRecord,
    JSONObject,
    Message,
    MessageSubtype,
    SessionRecord,
    ToolCall,
)
from entities.sessions import SessionRepository

__all__ = [
    "DEFAULT_NAMESPACE",
    "ContainerRecord",
    "ContainerRepository",
    "ImageRecord",
    "ImageRepository",
    "JSONObject",
    "Message",
    "MessageSubtype",
    "Persistence",
    "RecordNotFound",
    "SessionRecord",
    "SessionRepository",
    "ToolCall",
    "ValidationError",
    "create_persistence",
]
