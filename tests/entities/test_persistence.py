"""create_persistence: what it accepts, where records live, who closes what."""

from __future__ import annotations

from pathlib import Path

import pytest

from entities import create_persistence
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.redis import redis_driver
from kvstore.errors import BackendUnavailable, InvalidKey, StorageClosed
from kvstore.storage import Storage
from tests.entities.factories import container
from tests.support.servers import free_port

pytestmark = pytest.mark.anyio


async def test_from_a_url_owns_and_closes_its_storage() -> None:
    persistence = await create_persistence("memory://")
    await persistence.containers.save_container(container())
    assert await persistence.containers.container_exists("c1")
    await persistence.close()
    await persistence.close()
    with pytest.raises(StorageClosed):
        await persistence.containers.container_exists("c1")


async def test_from_a_driver() -> None:
    async with await create_persistence(memory_driver()) as persistence:
        await persistence.containers.save_container(container())
        assert await persistence.storage.get("containers:c1") == container().to_document()
        assert persistence.storage.base == "agentx"


async def test_default_is_the_sqlite_file_under_agentx_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTX_DIR", str(tmp_path))
    async with await create_persistence() as persistence:
        await persistence.containers.save_container(container())
    assert (tmp_path / "data" / "agentx.db").exists()
    async with await create_persistence() as reopened:
        assert await reopened.containers.find_container_by_id("c1") == container()


async def test_a_storage_passed_in_stays_open_and_namespace_can_be_root() -> None:
    storage = Storage(memory_driver())
    async with await create_persistence(storage, namespace="") as persistence:
        await persistence.containers.save_container(container())
    assert [key async for key in storage.keys()] == ["containers:c1"]
    await storage.close()


async def test_invalid_namespace_is_refused() -> None:
    with pytest.raises(InvalidKey):
        await create_persistence(Storage(memory_driver()), namespace="a::b")


async def test_unreachable_backend_fails_at_creation() -> None:
    driver = redis_driver(url=f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)
    with pytest.raises(BackendUnavailable):
        await create_persistence(driver)
