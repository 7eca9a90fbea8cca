"""The memory driver passes the conformance suite, on a clock the expiry clauses move."""

from __future__ import annotations

import pytest

from kvstore.drivers.memory import memory_driver
from kvstore.testing import DriverConformance, DriverFactory
from kvstore.testing.clock import TestClock


class TestMemoryDriver(DriverConformance):
    persistent = False
    manual_clock = True

    @pytest.fixture
    def driver_factory(self, clock: TestClock) -> DriverFactory:
        return lambda: memory_driver(clock=clock)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_purge_frees_expired_keys_and_expiring_writes_purge_a_few() -> None:
    clock = TestClock(manual=True)
    driver = memory_driver(clock=clock)
    await driver.set_many_expiring([(f"old{n:03}", b"x") for n in range(250)], 1.0)
    await driver.set("live", b"y")
    await clock.advance(2.0)
    # Expired, but never read: still held until something purges them.
    assert len(driver._values) == 251
    # An expiring write purges a small batch (once per second of the driver's clock).
    await driver.set_expiring("new", b"z", 60.0)
    assert len(driver._values) == 252 - 100
    await driver.set_expiring("new2", b"z", 60.0)
    assert len(driver._values) == 253 - 100  # not again within the same second
    assert await driver.purge_expired(100) == 100
    assert await driver.purge_expired(100) == 50
    assert sorted(driver._values) == ["live", "new", "new2"]
    assert sorted(driver._expiry) == ["new", "new2"]
