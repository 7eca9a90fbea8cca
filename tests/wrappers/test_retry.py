"""Retry: BackendUnavailable is retried with logged, jittered waits, within attempts and a deadline.

Waits are chosen by an injected ``random`` (0 makes them zero), so nothing here sleeps for real
and nothing is timed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from kvstore.conditional import Change
from kvstore.driver import BaseDriver
from kvstore.drivers.memory import memory_driver
from kvstore.errors import BackendUnavailable, ConfigurationError, Conflict
from kvstore.wrappers import Retry
from kvstore.wrappers.base import Wrapper

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Down(Wrapper):
    """Fails the next ``failures`` calls of every operation it overrides, after applying writes
    when ``after_write`` is set (the outcome-unknown case)."""

    def __init__(self, failures: int, *, after_write: bool = False) -> None:
        super().__init__(memory_driver())
        self.failures = failures
        self.after_write = after_write
        self.calls = 0

    def _fail(self) -> None:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise BackendUnavailable("connection refused", driver=self.name, where="db:5432")

    async def get(self, key: str) -> bytes | None:
        self._fail()
        return await self.inner.get(key)

    async def set(self, key: str, value: bytes) -> None:
        self._fail()
        await self.inner.set(key, value)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        if not self.after_write:
            self._fail()
            return await self.inner.commit(changes)
        versions = await self.inner.commit(changes)
        self._fail()
        return versions

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        # Through commit, as BaseDriver's own set_if goes.
        return await BaseDriver.set_if(self, key, value, expected)


def _no_wait() -> float:
    return 0.0


async def test_a_failing_read_is_retried_and_each_retry_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = Down(2)
    retry = Retry(down, attempts=3, random=_no_wait)
    await down.inner.set("a", b"1")
    with caplog.at_level(logging.WARNING, logger="kvstore.retry"):
        assert await retry.get("a") == b"1"
    assert down.calls == 3
    records = [record for record in caplog.records if record.name == "kvstore.retry"]
    assert len(records) == 2
    assert "get on the memory driver failed (attempt 1 of 3)" in records[0].getMessage()


async def test_it_gives_up_after_its_attempts() -> None:
    down = Down(10)
    with pytest.raises(BackendUnavailable):
        await Retry(down, attempts=4, random=_no_wait).set("a", b"1")
    assert down.calls == 4


async def test_a_wait_that_would_pass_the_deadline_is_not_started() -> None:
    down = Down(10)
    # The first wait would be 100 s (random() = 1, base 100 s): past the 1 s deadline.
    retry = Retry(
        down, attempts=5, deadline=1.0, base_delay=100.0, max_delay=100.0, random=lambda: 1.0
    )
    with pytest.raises(BackendUnavailable):
        await retry.get("a")
    assert down.calls == 1


async def test_waits_grow_exponentially_up_to_the_cap_with_full_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def record(delay: float) -> None:
        waits.append(delay)

    monkeypatch.setattr("kvstore.wrappers.retry.anyio.sleep", record)
    retry = Retry(
        Down(5), attempts=6, base_delay=1.0, max_delay=4.0, deadline=60, random=lambda: 0.5
    )
    await retry.get("a")
    assert waits == [0.5, 1.0, 2.0, 2.0, 2.0]  # half of 1, 2, 4, 4, 4


async def test_a_conditional_write_is_never_retried() -> None:
    # The write applied, then the connection dropped: a retry would raise Conflict for a create
    # that succeeded. The caller sees BackendUnavailable and re-reads.
    down = Down(1, after_write=True)
    retry = Retry(down, attempts=5, random=_no_wait)
    with pytest.raises(BackendUnavailable):
        await retry.set_if("k", b"v", None)
    assert await down.inner.get("k") == b"v"
    with pytest.raises(Conflict):  # what a retry would have reported
        await down.inner.set_if("k", b"v", None)


async def test_an_unconditional_commit_is_retried() -> None:
    down = Down(1, after_write=True)
    retry = Retry(down, attempts=5, random=_no_wait)
    versions = await retry.commit([Change.put("k", b"v"), Change.delete("gone")])
    assert versions[0] is not None
    assert versions[1] is None
    assert await down.inner.get("k") == b"v"


async def test_scans_resume_after_the_last_key_without_repeats() -> None:
    from tests.wrappers.support import Flaky

    inner = memory_driver()
    await inner.set_many([(f"k{index:04}", b"v") for index in range(3000)])
    flaky = Flaky(inner, every=3)
    retry = Retry(flaky, attempts=3, random=_no_wait)
    keys = [key async for key in retry.keys("k")]
    assert keys == [f"k{index:04}" for index in range(3000)]
    pairs = [key async for key, _ in retry.items("k")]
    assert pairs == keys
    assert flaky.failures > 0


def test_bad_settings_are_configuration_errors() -> None:
    for options in ({"attempts": 0}, {"deadline": 0}, {"base_delay": -1}, {"max_delay": "1"}):
        with pytest.raises(ConfigurationError):
            Retry(memory_driver(), **options)
