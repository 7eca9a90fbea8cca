"""The conformance suite pointed at the URL in ``KVSTORE_CONFORMANCE_URL``.

Run it through ``python -m kvstore.testing URL``, which sets the variables this module reads.
"""

from __future__ import annotations

import os

import pytest

from kvstore.driver import as_base_driver
from kvstore.registry import driver_from_url
from kvstore.testing.suite import DriverConformance, DriverFactory
from kvstore.testing.url_env import EPHEMERAL_VARIABLE, URL_VARIABLE


class TestDriverAtURL(DriverConformance):
    """Every conformance test against new drivers made from one URL."""

    persistent = os.environ.get(EPHEMERAL_VARIABLE, "") in ("", "0")

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        url = os.environ.get(URL_VARIABLE)
        if not url:
            pytest.fail(f"set {URL_VARIABLE}, or run: python -m kvstore.testing URL")
        return lambda: as_base_driver(driver_from_url(url))
