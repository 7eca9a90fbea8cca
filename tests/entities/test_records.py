"""Records: field checks, camelCase documents, and round trips."""

from __future__ import annotations

from typing import Any

import pytest

from entities import (
    ContainerRecord,
    ImageRecord,
    Message,
    SessionRecord,
    ToolCall,
    ValidationError,
)
from tests.entities.factories import T0, container, image, session


def test_image_document_is_camel_case_and_omits_absent_optionals() -> None:
    document = image().to_document()
    assert document == {
        "imageId": "img1",
        "containerId": "c1",
        "sessionId": "s-img1",
        "name": "My Assistant",
        "systemPrompt": "You are helpful.",
        "createdAt": T0,
        "updatedAt": T0,
    }


@pytest.mark.parametrize(
    "record",
    [
        container(),
        ContainerRecord(container_id="c", created_at=1, updated_at=2, config={"a": [1, {"b": 2}]}),
        image(),
        ImageRecord(
            image_id="i",
            container_id="c",
            session_id="s",
            name="n",
            description="",
            system_prompt="p",
            parent_image_id="parent",
            mcp_servers={"fs": {"command": "x", "args": ["-v"]}},
            metadata={"claudeSdkSessionId": "sdk"},
            created_at=0,
            updated_at=0,
        ),
        session(),
        Message(id="m", subtype="assistant", content="hi", timestamp=5),
        Message(
            id="m",
            subtype="tool_call",
            content=(
                ToolCall(id="t1", name="read", input={"path": "/x"}),
                ToolCall(id="t2", name="ls"),
            ),
            timestamp=5,
        ),
    ],
)
def test_documents_round_trip(record: Any) -> None:
    assert type(record).from_document(record.to_document()) == record


def test_session_and_container_documents_use_original_names() -> None:
    assert session().to_document() == {
        "sessionId": "s1",
        "imageId": "img1",
        "containerId": "c1",
        "createdAt": T0,
        "updatedAt": T0,
    }
    assert container().to_document() == {"containerId": "c1", "createdAt": T0, "updatedAt": T0}


def test_tool_call_content_document_is_a_list_of_calls() -> None:
    message = Message(
        id="m",
        subtype="tool_call",
        content=[ToolCall(id="t", name="n", input={"k": 1})],  # type: ignore[arg-type]
        timestamp=1,
    )
    assert message.content == (ToolCall(id="t", name="n", input={"k": 1}),)
    assert message.to_document()["content"] == [{"id": "t", "name": "n", "input": {"k": 1}}]


def test_record_keeps_its_own_copy_of_dicts() -> None:
    config: dict[str, Any] = {"nested": {"x": 1}}
    record = ContainerRecord(container_id="c", created_at=1, updated_at=1, config=config)
    config["nested"]["x"] = 2
    record.to_document()["config"]["nested"]["x"] = 3
    assert record.config == {"nested": {"x": 1}}


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: ContainerRecord(container_id="", created_at=1, updated_at=1), "empty"),
        (lambda: ContainerRecord(container_id=7, created_at=1, updated_at=1), "must be a str"),  # type: ignore[arg-type]
        (lambda: ContainerRecord(container_id="c", created_at=1.5, updated_at=1), "int"),  # type: ignore[arg-type]
        (lambda: ContainerRecord(container_id="c", created_at=True, updated_at=1), "int"),
        (lambda: ContainerRecord(container_id="c", created_at="1", updated_at=1), "int"),  # type: ignore[arg-type]
        (lambda: ContainerRecord(container_id="c", created_at=-1, updated_at=1), "between"),
        (lambda: ContainerRecord(container_id="c", created_at=10**16, updated_at=1), "between"),
        (lambda: ContainerRecord(container_id="c", created_at=1, updated_at=1, config=[1]), "dict"),  # type: ignore[arg-type]
        (
            lambda: ContainerRecord(
                container_id="c", created_at=1, updated_at=1, config={"x": float("nan")}
            ),
            "JSON",
        ),
        (lambda: ContainerRecord(container_id="\ud800", created_at=1, updated_at=1), "surrogate"),
        (lambda: image(name=""), "name must not be empty"),
        (lambda: session(image_id=""), "image_id must not be empty"),
        (lambda: Message(id="m", subtype="system", content="x", timestamp=1), "subtype"),  # type: ignore[arg-type]
        (lambda: Message(id="", subtype="user", content="x", timestamp=1), "empty"),
        (lambda: Message(id="m", subtype="user", content=3, timestamp=1), "content"),  # type: ignore[arg-type]
        (lambda: Message(id="m", subtype="user", content=("x",), timestamp=1), "ToolCall"),  # type: ignore[arg-type]
        (lambda: Message(id="m", subtype="user", content="x", timestamp=1.0), "int"),  # type: ignore[arg-type]
        (lambda: ToolCall(id="t", name="", input={}), "empty"),
    ],
)
def test_bad_fields_raise_validation_error(build: Any, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        build()


@pytest.mark.parametrize(
    ("kind", "document", "fragment"),
    [
        (SessionRecord, [], "must be a dict"),
        (SessionRecord, {"sessionId": "s"}, "lacks"),
        (
            ContainerRecord,
            {"containerId": "c", "createdAt": 1, "updatedAt": 1, "cfg": 1},
            "unknown",
        ),
        (
            Message,
            {"id": "m", "subtype": "user", "content": [{"id": "t"}], "timestamp": 1},
            "lacks name",
        ),
        (Message, {"id": "m", "subtype": "user", "content": "x", "timestamp": "1"}, "int"),
        # Every required field and one more; an optional field where a required one is missing.
        (
            Message,
            {"id": "m", "subtype": "user", "content": "x", "timestamp": 1, "pinned": True},
            "unknown fields pinned",
        ),
        (ContainerRecord, {"containerId": "c", "createdAt": 1, "config": {}}, "lacks updatedAt"),
        (
            ContainerRecord,
            {"containerId": "c", "createdAt": 1, "updatedAt": 1, "config": {}, "cfg": 1},
            "unknown fields cfg",
        ),
    ],
)
def test_bad_documents_raise_validation_error(kind: Any, document: object, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        kind.from_document(document)


def test_validation_error_is_a_value_error() -> None:
    assert issubclass(ValidationError, ValueError)
