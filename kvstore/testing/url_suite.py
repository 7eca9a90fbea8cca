"""The conformance suite pointed at the URL in ``KVSTORE_CONFORMANCE_URL``.

Run it through ``python -m kvstore.testing URL``, which sets the variables this module reads.
"""

from __future__ import annotations

import os

import pytest

from kvstore import create_storage
from kvstore.driver import BaseDriver
from kvstore.testing.suite import DriverConformance, DriverFactory
from kvstore.testing.url_env import EPHEMERAL_VARIABLE, URL_VARIABLE

_URL = os.environ.get(URL_VARIABLE, "")


def _make() -> BaseDriver:
    if not _URL:
        pytest.fail(f"set {URL_VARIABLE}, or run: python -m kvstore.testing URL")
    # Through create_storage, so the URL's wrapper options (?compress=zstd...) are tested too.
    return create_storage(_URL).driver


def _supports_trio() -> bool:
    # Building a driver does no I/O, so asking one is cheap and honest.
    return bool(_URL) and _make().supports_trio


class TestDriverAtURL(DriverConformance):
    """Every conformance test against new drivers made from one URL."""

    persistent = os.environ.get(EPHEMERAL_VARIABLE, "") in ("", "0")
    async_backends = ("asyncio", "trio") if _supports_trio() else ("asyncio",)

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        return _make
