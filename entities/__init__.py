"""AgentX entities over kvstore: containers, images, sessions and their messages.

Start with :func:`create_persistence`::

    async with create_persistence("sqlite:///agentx.db") as persistence:
        await persistence.containers.save_container(
            ContainerRecord(container_id="c1", created_at=now, updated_at=now)
        )
        images = await persistence.images.find_images_by_container_id("c1")

Records are frozen dataclasses with snake_case fields, stored as the original camelCase JSON
documents. Ids and names are arbitrary non-empty strings; :mod:`entities.keys` documents the key
layout and :mod:`entities.persistence` the namespace. Malformed input raises
:class:`ValidationError` and writes nothing.

The repositories are declarations on a generic layer that other packages use for their own
entity types: :class:`Entity` (with :class:`Index` and :class:`Children`) declares a type,
:class:`Repository` stores it (see :mod:`entities.declarations` and
:mod:`entities.repository`); :mod:`entities.agentx` holds AgentX's declarations.
"""

from __future__ import annotations

from entities.children import ChildRepository
from entities.containers import ContainerRepository
from entities.declarations import Children, Entity, Index
from entities.errors import (
    EntityError,
    MalformedDocument,
    RecordChanged,
    RecordConflict,
    RecordExists,
    RecordNotFound,
    SchemaVersionError,
    UniqueViolation,
    ValidationError,
)
from entities.images import ImageRepository
from entities.persistence import (
    DEFAULT_NAMESPACE,
    Persistence,
    PersistenceOpening,
    create_persistence,
)
from entities.records import (
    ContainerRecord,
    ImageRecord,
    JSONObject,
    Message,
    MessageSubtype,
    SessionRecord,
    ToolCall,
)
from entities.repository import Repository
from entities.sessions import SessionRepository

__all__ = [
    "DEFAULT_NAMESPACE",
    "ChildRepository",
    "Children",
    "ContainerRecord",
    "ContainerRepository",
    "Entity",
    "EntityError",
    "ImageRecord",
    "ImageRepository",
    "Index",
    "JSONObject",
    "MalformedDocument",
    "Message",
    "MessageSubtype",
    "Persistence",
    "PersistenceOpening",
    "RecordChanged",
    "RecordConflict",
    "RecordExists",
    "RecordNotFound",
    "Repository",
    "SchemaVersionError",
    "SessionRecord",
    "SessionRepository",
    "ToolCall",
    "UniqueViolation",
    "ValidationError",
    "create_persistence",
]
