"""The persisted entities: typed, frozen records with snake_case fields.

Each record checks its fields when built (raising :class:`~entities.errors.ValidationError`) and
converts to and from the camelCase JSON document the original guide describes
(``{"imageId": ..., "containerId": ..., "createdAt": ...}``). Optional fields that are ``None``
are left out of documents; a document may carry them as ``null`` or omit them. Documents with
unknown fields are refused, so a misspelt field in imported data is reported, not dropped.

Timestamps are ``int`` milliseconds since the epoch, from 0 to 9_999_999_999_999_999. Dict fields
(``config``, ``mcp_servers``, ``metadata``, ``input``) must be JSON objects; the record keeps its
own deep copy, so changing the dict passed in does not change the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Self, TypeAlias, cast, get_args

import orjson

from entities._checks import (
    check_id,
    check_object,
    check_optional_object,
    check_optional_text,
    check_text,
    check_timestamp,
    document_fields,
)
from entities.errors import ValidationError

__all__ = [
    "ContainerRecord",
    "ImageRecord",
    "JSONObject",
    "Message",
    "MessageSubtype",
    "SessionRecord",
    "ToolCall",
]

JSONObject: TypeAlias = dict[str, Any]
"""A JSON object: ``str`` keys, JSON values."""

MessageSubtype: TypeAlias = Literal["user", "assistant", "tool_call", "tool_result"]
"""Who or what produced a message."""

_SUBTYPES: frozenset[str] = frozenset(get_args(MessageSubtype))


def _put(record: object, name: str, value: object) -> None:
    # Frozen dataclasses refuse normal assignment; checks store normalised copies this way.
    object.__setattr__(record, name, value)


def _drop_none(document: dict[str, Any]) -> dict[str, Any]:
    # Dict fields are copied so that changing a returned document never changes the record.
    return {
        name: orjson.loads(orjson.dumps(value)) if type(value) is dict else value
        for name, value in document.items()
        if value is not None
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerRecord:
    """An isolation boundary grouping images and sessions (document: ``containerId`` ...)."""

    container_id: str
    created_at: int
    updated_at: int
    config: JSONObject | None = None

    def __post_init__(self) -> None:
        check_id(self.container_id, "container_id")
        check_timestamp(self.created_at, "created_at")
        check_timestamp(self.updated_at, "updated_at")
        _put(self, "config", check_optional_object(self.config, "config"))

    def to_document(self) -> JSONObject:
        """Return the camelCase JSON document stored for this record."""
        return _drop_none(
            {
                "containerId": self.container_id,
                "createdAt": self.created_at,
                "updatedAt": self.updated_at,
                "config": self.config,
            }
        )

    @classmethod
    def from_document(cls, document: object) -> Self:
        """Build a record from its camelCase document; raise ValidationError if malformed."""
        doc = document_fields(document, "container", _CONTAINER_REQUIRED, _CONTAINER_OPTIONAL)
        return cls(
            container_id=doc["containerId"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
            config=doc.get("config"),
        )


_CONTAINER_REQUIRED = frozenset({"containerId", "createdAt", "updatedAt"})
_CONTAINER_OPTIONAL = frozenset({"config"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    """A conversation snapshot within a container (document: ``imageId``, ``containerId`` ...).

    ``name`` is a non-empty display name (images are looked up by it); ``parent_image_id`` names
    the image this one was forked from, if any; ``mcp_servers`` maps server names to their
    configuration; ``metadata`` holds provider-specific data.
    """

    image_id: str
    container_id: str
    session_id: str
    name: str
    created_at: int
    updated_at: int
    description: str | None = None
    system_prompt: str | None = None
    parent_image_id: str | None = None
    mcp_servers: JSONObject | None = None
    metadata: JSONObject | None = None

    def __post_init__(self) -> None:
        check_id(self.image_id, "image_id")
        check_id(self.container_id, "container_id")
        check_id(self.session_id, "session_id")
        check_id(self.name, "name")
        check_timestamp(self.created_at, "created_at")
        check_timestamp(self.updated_at, "updated_at")
        check_optional_text(self.description, "description")
        check_optional_text(self.system_prompt, "system_prompt")
        if self.parent_image_id is not None:
            check_id(self.parent_image_id, "parent_image_id")
        _put(self, "mcp_servers", check_optional_object(self.mcp_servers, "mcp_servers"))
        _put(self, "metadata", check_optional_object(self.metadata, "metadata"))

    def to_document(self) -> JSONObject:
        """Return the camelCase JSON document stored for this record."""
        return _drop_none(
            {
                "imageId": self.image_id,
                "containerId": self.container_id,
                "sessionId": self.session_id,
                "name": self.name,
                "description": self.description,
                "systemPrompt": self.system_prompt,
                "parentImageId": self.parent_image_id,
                "mcpServers": self.mcp_servers,
                "metadata": self.metadata,
                "createdAt": self.created_at,
                "updatedAt": self.updated_at,
            }
        )

    @classmethod
    def from_document(cls, document: object) -> Self:
        """Build a record from its camelCase document; raise ValidationError if malformed."""
        doc = document_fields(document, "image", _IMAGE_REQUIRED, _IMAGE_OPTIONAL)
        return cls(
            image_id=doc["imageId"],
            container_id=doc["containerId"],
            session_id=doc["sessionId"],
            name=doc["name"],
            description=doc.get("description"),
            system_prompt=doc.get("systemPrompt"),
            parent_image_id=doc.get("parentImageId"),
            mcp_servers=doc.get("mcpServers"),
            metadata=doc.get("metadata"),
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


_IMAGE_REQUIRED = frozenset(
    {"imageId", "containerId", "sessionId", "name", "createdAt", "updatedAt"}
)
_IMAGE_OPTIONAL = frozenset(
    {"description", "systemPrompt", "parentImageId", "mcpServers", "metadata"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """A conversation history, made from an image in a container (document: ``sessionId`` ...)."""

    session_id: str
    image_id: str
    container_id: str
    created_at: int
    updated_at: int

    def __post_init__(self) -> None:
        check_id(self.session_id, "session_id")
        check_id(self.image_id, "image_id")
        check_id(self.container_id, "container_id")
        check_timestamp(self.created_at, "created_at")
        check_timestamp(self.updated_at, "updated_at")

    def to_document(self) -> JSONObject:
        """Return the camelCase JSON document stored for this record."""
        return {
            "sessionId": self.session_id,
            "imageId": self.image_id,
            "containerId": self.container_id,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def from_document(cls, document: object) -> Self:
        """Build a record from its camelCase document; raise ValidationError if malformed."""
        doc = document_fields(document, "session", _SESSION_REQUIRED, frozenset())
        return cls(
            session_id=doc["sessionId"],
            image_id=doc["imageId"],
            container_id=doc["containerId"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )


_SESSION_REQUIRED = frozenset({"sessionId", "imageId", "containerId", "createdAt", "updatedAt"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One tool invocation requested by the assistant.

    ``id`` is the call's id (a later ``tool_result`` message refers to it), ``name`` the tool's
    name and ``input`` its JSON arguments. Document: ``{"id", "name", "input"}``.
    """

    id: str
    name: str
    input: JSONObject = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_id(self.id, "tool call id")
        check_id(self.name, "tool call name")
        _put(self, "input", check_object(self.input, "tool call input"))

    def to_document(self) -> JSONObject:
        """Return the JSON document for this call."""
        return _drop_none({"id": self.id, "name": self.name, "input": self.input})

    @classmethod
    def from_document(cls, document: object) -> Self:
        """Build a call from its document; raise ValidationError if malformed."""
        doc = document_fields(document, "tool call", _TOOL_REQUIRED, _TOOL_OPTIONAL)
        return cls(id=doc["id"], name=doc["name"], input=doc.get("input") or {})


_TOOL_REQUIRED = frozenset({"id", "name"})
_TOOL_OPTIONAL = frozenset({"input"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One message of a session.

    ``content`` is text, or a tuple of :class:`ToolCall` (a list is accepted and stored as a
    tuple); any subtype may carry either form, though ``tool_call`` messages usually carry calls.
    A message is identified within its session by ``(timestamp, id)``: adding the same pair again
    replaces it. Document: ``{"id", "subtype", "content", "timestamp"}``, calls as a JSON array.
    """

    id: str
    subtype: MessageSubtype
    content: str | tuple[ToolCall, ...]
    timestamp: int

    def __post_init__(self) -> None:
        check_id(self.id, "message id")
        if type(self.subtype) is not str or self.subtype not in _SUBTYPES:
            raise ValidationError(
                f"message subtype must be one of {', '.join(sorted(_SUBTYPES))}, "
                f"got {self.subtype!r}"
            )
        check_timestamp(self.timestamp, "message timestamp")
        content: object = self.content
        if isinstance(content, list):
            content = tuple(content)
            _put(self, "content", content)
        if isinstance(content, tuple):
            for call in content:
                if not isinstance(call, ToolCall):
                    raise ValidationError(
                        f"message content items must be ToolCall, not {type(call).__name__}"
                    )
        else:
            check_text(content, "message content")

    def to_document(self) -> JSONObject:
        """Return the JSON document stored for this message."""
        content: str | list[JSONObject] = (
            self.content
            if isinstance(self.content, str)
            else [call.to_document() for call in self.content]
        )
        return {
            "id": self.id,
            "subtype": self.subtype,
            "content": content,
            "timestamp": self.timestamp,
        }

    @classmethod
    def from_document(cls, document: object) -> Self:
        """Build a message from its document; raise ValidationError if malformed."""
        doc = document_fields(document, "message", _MESSAGE_REQUIRED, frozenset())
        raw: object = doc["content"]
        content: object = (
            tuple(ToolCall.from_document(item) for item in raw) if isinstance(raw, list) else raw
        )
        return cls(
            id=doc["id"],
            subtype=doc["subtype"],
            content=cast("str | tuple[ToolCall, ...]", content),
            timestamp=doc["timestamp"],
        )


_MESSAGE_REQUIRED = frozenset({"id", "subtype", "content", "timestamp"})
