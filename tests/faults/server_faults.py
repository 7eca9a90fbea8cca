"""The fault suite every server driver runs: the faults any private server takes, and the tests.

Writers run on one storage while a fault strikes the server. Every operation returns or raises
BackendUnavailable within operation_timeout (plus scheduling slack), nothing untyped escapes,
every acknowledged write is there afterwards, and the same storage keeps working. The short runs
are the default; ``pytest -m chaos`` runs the long loops.

A module for one server subclasses :class:`ServerFaultTests` with a module-level ``server``
fixture, ``open_driver`` (the driver the ``storage`` fixture opens), its label, operation
timeout and number of chaos cycles, and its ``server_side_fault``: the driver's own way to kill
the storage's connections from the server side, run along with the generic faults below. With
:class:`SilentOutageTests` too, a last test checks that an application that set up no logging
sees nothing on its stderr through an outage.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Generic, Protocol, TypeVar

import pytest

from kvstore.driver import Driver
from kvstore.storage import Storage
from tests.support.outage import FaultTally, check_fault_outcome, run_writers_through, wait_for
from tests.support.quiet import check_silent_through

Fault = Callable[[FaultTally], None]


class FaultableServer(Protocol):
    """A private server the faults can kill, stop, pause and start again."""

    @property
    def url(self) -> str:
        """The URL the driver opens."""

    def start(self) -> None:
        """Start it on the same port and data directory, and wait until it answers."""

    def stop(self) -> None:
        """Stop it cleanly; its data stays on disk."""

    def kill(self) -> None:
        """Kill it with SIGKILL (no clean shutdown)."""

    def pause(self) -> None:
        """SIGSTOP it: connections stay open, nothing answers."""

    def resume(self) -> None:
        """SIGCONT a paused server."""


S = TypeVar("S", bound=FaultableServer)


def _down_until_a_failure(down: Callable[[], None], up: Callable[[], None], what: str) -> Fault:
    """``down()``, wait until an operation fails (``what``), then ``up()``."""

    def fault(tally: FaultTally) -> None:
        tally.failed_event.clear()
        down()
        wait_for(tally.failed_event, what)
        up()

    return fault


def kill_and_restart(server: FaultableServer) -> Fault:
    """SIGKILL the server, wait until an operation fails, start it again."""
    return _down_until_a_failure(
        server.kill, server.start, "an operation failing while the server is dead"
    )


def pause_and_resume(server: FaultableServer) -> Fault:
    """SIGSTOP the server, wait until an operation times out, SIGCONT it."""

    def fault(tally: FaultTally) -> None:
        tally.failed_event.clear()
        server.pause()
        try:
            wait_for(tally.failed_event, "an operation timing out on the stopped server")
        finally:
            server.resume()

    return fault


def restart(server: FaultableServer) -> Fault:
    """Stop the server cleanly (its own shutdown), wait until an operation fails, start it."""
    return _down_until_a_failure(
        server.stop, server.start, "an operation failing while the server is stopped"
    )


def connection_fault(action: Callable[[S], None]) -> Callable[[S], Fault]:
    """A fault that is one act on the server, such as killing the storage's connections."""

    def factory(server: S) -> Fault:
        def fault(tally: FaultTally) -> None:
            action(server)

        return fault

    return factory


def fresh_name() -> str:
    """A table or collection name of one test's own."""
    return f"faults_{uuid.uuid4().hex[:10]}"


class ServerFaultTests(Generic[S]):
    """Faults under load on one server; the subclass supplies what differs per server."""

    label: str  # the name in the printed summary lines
    operation_timeout: float
    connect_timeout = 1.0
    chaos_cycles: int
    # The driver's own fault: its name and factory, such as ("CLIENT KILL", kill_clients).
    server_side_fault: tuple[str, Callable[[S], Fault]]
    # Whether the faults include a clean stop and start ("restart").
    clean_restart = False

    @property
    def faults(self) -> dict[str, Callable[[S], Fault]]:
        """The faults by name, in the order the chaos loop draws from."""
        name, server_side = self.server_side_fault
        return {
            "kill -9 and restart": kill_and_restart,
            **({"restart": restart} if self.clean_restart else {}),
            name: server_side,
            "SIGSTOP then SIGCONT": pause_and_resume,
        }

    def open_driver(self, server: S) -> Driver:
        """The driver of the storage under test, with this class's timeouts."""
        raise NotImplementedError

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "fault" in metafunc.fixturenames:
            metafunc.parametrize("fault", list(self.faults))

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    async def storage(self, server: S) -> AsyncIterator[Storage]:
        async with Storage(self.open_driver(server)) as opened:
            yield opened

    @pytest.mark.anyio
    async def test_a_fault_mid_load_loses_no_acknowledged_write(
        self, fault: str, server: S, storage: Storage
    ) -> None:
        tally = await run_writers_through(
            storage, self.faults[fault](server), operation_timeout=self.operation_timeout
        )
        found = await check_fault_outcome(storage, tally)
        print(tally.summary(self.label, fault, found))

    @pytest.mark.chaos
    @pytest.mark.anyio
    async def test_many_random_faults_mid_load(self, server: S, storage: Storage) -> None:
        chooser = random.Random(7)
        for cycle in range(self.chaos_cycles):
            fault = chooser.choice(list(self.faults))
            tally = await run_writers_through(
                storage,
                self.faults[fault](server),
                operation_timeout=self.operation_timeout,
                after_fault=200,
                prefix=f"c{cycle}:",
            )
            found = await check_fault_outcome(storage, tally)
            print(tally.summary(self.label, f"cycle {cycle}: {fault}", found))


class SilentOutageTests(Generic[S]):
    """An application that set up no logging sees nothing on its stderr through an outage."""

    quiet_database = ""  # appended to the server's URL, for a URL that names no database
    operation_timeout: float

    def test_nothing_reaches_stderr_through_an_outage(self, server: S) -> None:
        url = (
            f"{server.url}{self.quiet_database}"
            f"?connect_timeout=1&operation_timeout={self.operation_timeout:g}"
        )
        check_silent_through(url, server.stop, server.start)
