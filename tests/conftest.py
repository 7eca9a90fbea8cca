"""Shared test configuration: the Hypothesis profile, the anyio backend default, time limits."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_timeout  # type: ignore[import-untyped]

from kvstore.testing.profiles import load_active_profile

load_active_profile()


def pytest_report_header() -> list[str]:
    """Say which MongoDB the tests talk to: a real server, or the SecantusDB stand-in."""
    from tests.support.mongodb_server import report_header

    return [report_header()]


# After the limit SIGALRM comes again this often: asyncio swallows an exception raised while one
# of its callbacks runs (it logs it and carries on), so one alarm can go unnoticed.
ALARM_REPEAT = 5.0
# How long past its time limit a test may keep running before the backstop ends the run: a test
# the alarms could not stop is hung for good.
BACKSTOP_GRACE = 60.0
_IN_PHASE = pytest.StashKey[bool]()


def _in_phase(item: pytest.Item) -> Iterator[None]:
    # Alarms fail a test only inside its setup, call or teardown: raised in pytest's own code
    # between them (making a report), the exception would abort the whole run.
    item.stash[_IN_PHASE] = True
    try:
        yield
    finally:
        item.stash[_IN_PHASE] = False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Open the window in which an alarm may fail the test (see ``_in_phase``)."""
    return (yield from _in_phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Open the window in which an alarm may fail the test (see ``_in_phase``)."""
    return (yield from _in_phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Open the window in which an alarm may fail the test (see ``_in_phase``)."""
    return (yield from _in_phase(item))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Arm pytest-timeout's signal method for ``item``, repeating, with a thread as a backstop.

    At the limit SIGALRM fails the test with every thread's stack and the run goes on; the alarm
    repeats until the test is over, in case asyncio swallowed it. Some hangs
    outlive every alarm (a trio test; an asyncio task that ignores cancellation, which hangs the
    loop's cancel-all-tasks), so if the test is still running ``BACKSTOP_GRACE`` seconds after its
    limit, a thread names it, prints every stack and ends the run: CI fails instead of stalling.
    Other methods (and tests run off the main thread) are left to pytest-timeout.
    """
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None
    alarms = 0

    def on_alarm(signum: int, frame: object) -> None:
        __tracebackhide__ = True
        nonlocal alarms
        if not item.stash.get(_IN_PHASE, False):
            return
        alarms += 1
        if alarms == 1:
            pytest_timeout.timeout_sigalrm(item, settings)  # prints the stacks, then fails
        pytest.fail(f"Timeout (>{settings.timeout:g}s) from pytest-timeout (alarm {alarms})")

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
    signal.setitimer(signal.ITIMER_REAL, settings.timeout, ALARM_REPEAT)
    timer.start()
    return True
