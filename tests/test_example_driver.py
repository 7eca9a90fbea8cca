"""The README's example driver passes the conformance suite, as a third party's would."""

from __future__ import annotations

import pytest

from examples.custom_driver import DictDriver
from kvstore.testing import DriverConformance, DriverFactory


class TestDictDriver(DriverConformance):
    persistent = False

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        return DictDriver
