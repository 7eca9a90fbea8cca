"""create_persistence: what it accepts, where records live, who closes what."""

from __future__ import annotations

from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from entities import create_persistence
from kvstore.driver import BaseDriver
from kvstore.drivers.memory import memory_driver
from kvstore.drivers.redis import redis_driver
from kvstore.errors import BackendUnavailable, ConfigurationError, InvalidKey, StorageClosed
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


async def test_async_with_without_await_opens_and_closes_what_it_opened() -> None:
    driver = memory_driver()
    async with create_persistence(driver) as persistence:
        await persistence.containers.save_container(container())
        assert await persistence.containers.container_exists("c1")
    assert driver.closed
    with pytest.raises(StorageClosed):
        await persistence.containers.container_exists("c1")


async def test_async_with_without_await_leaves_a_storage_passed_in_open() -> None:
    storage = Storage(memory_driver())
    async with create_persistence(storage) as persistence:
        await persistence.containers.save_container(container())
    assert not storage.closed
    assert [key async for key in storage.keys()] == ["agentx:containers:c1"]
    await storage.close()


async def test_an_error_in_the_block_closes_the_storage_and_propagates() -> None:
    driver = memory_driver()
    with pytest.raises(LookupError, match="from the block"):
        async with create_persistence(driver):
            raise LookupError("from the block")
    assert driver.closed


async def _open_in(form: str, source: BaseDriver) -> None:
    """Open a Persistence over ``source`` in one of the three forms a user may write."""
    if form == "async with":
        async with create_persistence(source):
            pytest.fail("the block ran although the backend is unreachable")
    elif form == "async with await":
        async with await create_persistence(source):
            pytest.fail("the block ran although the backend is unreachable")
    else:
        await create_persistence(source)


@pytest.mark.parametrize("form", ["async with", "async with await", "await"])
async def test_a_failed_open_closes_the_driver_it_was_given(form: str) -> None:
    driver = redis_driver(url=f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)
    with pytest.raises(BackendUnavailable):
        await _open_in(form, driver)
    assert driver.closed


async def test_a_failed_open_leaves_a_storage_passed_in_to_its_owner() -> None:
    driver = redis_driver(url=f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)
    storage = Storage(driver)
    with pytest.raises(BackendUnavailable):
        async with create_persistence(storage):
            pytest.fail("the block ran although the backend is unreachable")
    assert not storage.closed
    await storage.close()


async def test_a_bad_url_raises_on_opening_and_creating_opens_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTX_DIR", str(tmp_path))
    create_persistence()  # never awaited or entered: nothing is opened, nothing written
    assert not (tmp_path / "data").exists()
    with pytest.raises(ConfigurationError):
        async with create_persistence("sqlite:///"):
            pytest.fail("the block ran with a bad URL")


async def test_it_opens_once_like_a_coroutine() -> None:
    opening = create_persistence("memory://")
    async with opening as persistence:
        assert await persistence.containers.find_all_containers() == []
        with pytest.raises(RuntimeError, match="already awaited or entered"):
            await opening


def test_a_blocking_portal_opens_it_in_both_forms() -> None:
    # What a blocking facade builds on: portal.call awaits what it returns, and the context
    # manager form wraps as any async context manager does.
    with start_blocking_portal() as portal:
        opened = portal.call(create_persistence, "memory://")
        portal.call(opened.containers.save_container, container())
        portal.call(opened.close)
        with portal.wrap_async_context_manager(create_persistence("memory://")) as persistence:
            assert portal.call(persistence.containers.container_exists, "c1") is False
        with pytest.raises(StorageClosed):
            portal.call(persistence.containers.container_exists, "c1")
