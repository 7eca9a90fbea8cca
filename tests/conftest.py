"""Shared test configuration: the Hypothesis profile and the anyio backend default."""

from __future__ import annotations

from kvstore.testing.profiles import active_settings, register_profiles

register_profiles()
active_settings()


def pytest_report_header() -> list[str]:
    """Say which MongoDB the tests talk to: a real server, or the SecantusDB stand-in."""
    from tests.support.mongodb_server import report_header

    return [report_header()]
