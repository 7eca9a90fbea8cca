"""Value-size limit: a value over the limit is refused, typed, before anything is written."""

from __future__ import annotations

import pytest

from kvstore.conditional import Change
from kvstore.drivers.memory import memory_driver
from kvstore.errors import ConfigurationError, KVStoreError
from kvstore.storage import Storage
from kvstore.wrappers import ValueSizeLimit, ValueTooLarge

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_every_write_path_refuses_a_value_over_the_limit() -> None:
    inner = memory_driver()
    async with Storage(ValueSizeLimit(inner, limit=10)) as storage:
        await storage.set_raw("fits", b"x" * 10)  # at the limit: stored
        for write in (
            lambda: storage.set_raw("big", b"x" * 11),
            lambda: storage.set("big", "x" * 20, ttl=60),
            lambda: storage.set_many_raw([("ok", b"1"), ("big", b"x" * 11)]),
            lambda: storage.set_many_raw([("ok", b"1"), ("big", b"x" * 11)], ttl=60),
            lambda: storage.create_raw("big", b"x" * 11),
            lambda: storage.commit_raw([Change.put("ok", b"1"), Change.create("big", b"x" * 11)]),
        ):
            with pytest.raises(ValueTooLarge) as caught:
                await write()
            assert isinstance(caught.value, KVStoreError)
            assert isinstance(caught.value, ValueError)
            assert (caught.value.key, caught.value.limit) == ("big", 10)
            assert caught.value.size > 10
        # Nothing of any refused batch was written.
        assert [key async for key in inner.keys("")] == ["fits"]


def test_a_bad_limit_is_a_configuration_error() -> None:
    for limit in (0, -1, 1.5, True):
        with pytest.raises(ConfigurationError):
            ValueSizeLimit(memory_driver(), limit=limit)  # type: ignore[arg-type]
