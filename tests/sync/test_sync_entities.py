"""The blocking repositories: the entity API without ``await``, on every local driver and Redis."""

from __future__ import annotations

import asyncio

import pytest

from entities import (
    ContainerRecord,
    ImageRecord,
    Message,
    RecordNotFound,
    SessionRecord,
    ValidationError,
)
from entities.sync import create_persistence
from kvstore.errors import StorageClosed
from kvstore.sync import create_storage
from tests.sync.conftest import Backend

pytestmark = pytest.mark.timeout(240)


def _records() -> tuple[ContainerRecord, ImageRecord, SessionRecord]:
    return (
        ContainerRecord(container_id="c1", created_at=1, updated_at=1),
        ImageRecord(
            image_id="i1",
            container_id="c1",
            session_id="s0",
            name="base",
            created_at=2,
            updated_at=2,
        ),
        SessionRecord(
            session_id="s1", image_id="i1", container_id="c1", created_at=3, updated_at=3
        ),
    )


def test_records_round_trip_and_a_container_delete_cascades(backend: Backend) -> None:
    container, image, session = _records()
    with create_persistence(backend.new_driver()) as persistence:
        persistence.containers.save_container(container)
        persistence.images.save_image(image)
        persistence.sessions.save_session(session)
        persistence.sessions.add_message(
            "s1", Message(id="m1", subtype="user", content="hi", timestamp=4)
        )
        assert persistence.containers.find_container_by_id("c1") == container
        assert persistence.images.find_images_by_container_id("c1") == [image]
        assert persistence.sessions.find_session_by_image_id("i1") == session
        assert [m.content for m in persistence.sessions.get_messages("s1")] == ["hi"]
        persistence.containers.delete_container("c1")
        assert persistence.images.find_image_by_id("i1") is None
        assert persistence.sessions.find_all_sessions() == []
        assert list(persistence.storage.keys()) == []


def test_errors_keep_their_entity_types() -> None:
    with create_persistence("memory://") as persistence:
        with pytest.raises(RecordNotFound):
            persistence.images.update_metadata("missing", {"a": 1})
        with pytest.raises(ValidationError):
            persistence.containers.find_container_by_id("")


def test_a_blocking_storage_passed_in_is_shared_and_left_open() -> None:
    with create_storage("memory://") as storage:
        with create_persistence(storage, namespace="app") as persistence:
            persistence.containers.save_container(_records()[0])
        assert list(storage.keys()) == ["app:containers:c1"]
    assert storage.closed


def test_a_closed_persistence_refuses_calls() -> None:
    persistence = create_persistence("memory://")
    persistence.close()
    persistence.close()
    with pytest.raises(StorageClosed):
        persistence.containers.find_container_by_id("c1")


def test_repositories_work_from_inside_a_running_event_loop() -> None:
    with create_persistence("memory://") as persistence:

        async def cell() -> bool:
            persistence.containers.save_container(_records()[0])
            return persistence.containers.container_exists("c1")

        assert asyncio.run(cell())
