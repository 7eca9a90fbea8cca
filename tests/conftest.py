"""Shared test configuration: the Hypothesis profile, the anyio backend default, time limits."""

from __future__ import annotations

import signal
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


# How long past its time limit a test may keep running after SIGALRM failed it, before the backstop
# ends the run: a test the alarm could not stop is hung for good.
BACKSTOP_GRACE = 60.0


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Arm pytest-timeout's signal method for ``item``, with a thread as a backstop.

    At the limit SIGALRM fails the test with every thread's stack and the run goes on. Some hangs
    outlive that exception (a trio test; an asyncio task that ignores cancellation hangs again in
    the loop's cancel-all-tasks, where no second alarm comes), so if the test is still running
    ``BACKSTOP_GRACE`` seconds later, a thread names it, prints every stack and ends the run:
    CI fails instead of stalling. Other methods (and other threads) are left to pytest-timeout.
    """
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None

    def on_alarm(signum: int, frame: object) -> None:
        __tracebackhide__ = True
        pytest_timeout.timeout_sigalrm(item, settings)

    def backstop() -> None:
        item.config.get_terminal_writer().line(
            f"\n{item.nodeid} still runs {BACKSTOP_GRACE:g} s after its time limit of "
            f"{settings.timeout:g} s: it is hung, so the run ends here",
            red=True,
        )
        pytest_timeout.timeout_timer(item, settings)

    timer = threading.Timer(settings.timeout + BACKSTOP_GRACE, backstop)
    timer.name = f"pytest-timeout backstop {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # what pytest-timeout calls
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    timer.start()
    return True
