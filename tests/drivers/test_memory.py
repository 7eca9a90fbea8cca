"""The memory driver passes the conformance suite."""

from __future__ import annotations

import pytest

from kvstore.drivers.memory import memory_driver
from kvstore.testing import DriverConformance, DriverFactory


class TestMemoryDriver(DriverConformance):
    persistent = False

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        return memory_driver
