"""Shared test configuration: the Hypothesis profile, the anyio backend default, time limits."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import pytest_timeout  # type: ignore[import-untyped]

from kvstore.testing.profiles import active_settings, register_profiles

register_profiles()
active_settings()


def pytest_report_header() -> list[str]:
    """Say which MongoDB the tests talk to: a real server, or the SecantusDB stand-in."""
    from tests.support.mongodb_server import report_header

    return [report_header()]


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Arm pytest-timeout's thread-method timer, naming the test when it fires.

    pytest-timeout's own timer dumps every thread's stack and ends the run, but in a ``-q`` run
    nothing says which test hung (an asyncio test's coroutine is not on any thread's stack).
    Other methods are left to pytest-timeout.
    """
    if settings.method != "thread":
        return None

    def expire() -> None:
        item.config.get_terminal_writer().line(
            f"\n{item.nodeid} exceeded its time limit of {settings.timeout:g} s", red=True
        )
        pytest_timeout.timeout_timer(item, settings)

    timer = threading.Timer(settings.timeout, expire)
    timer.name = f"pytest-timeout {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # what pytest-timeout calls
    timer.start()
    return True
