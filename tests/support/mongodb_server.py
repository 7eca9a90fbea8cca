"""The MongoDB server the tests use: a real one if named, else SecantusDB as a stand-in.

``KVSTORE_TEST_MONGODB_URL`` names a real MongoDB server. Without it, the session starts
SecantusDB (PyPI ``SecantusDB``, a test-only dependency) in a child process
(:class:`SecantusProcess`): it speaks MongoDB's wire protocol over TCP on WiredTiger, so the real
PyMongo async client talks to a real socket, but it is not MongoDB. A child process, not a
thread of the test process: the server's work then never competes with the test for the
interpreter lock, and a fault test can stop (SIGSTOP), kill (SIGKILL) and restart it. The test
run says so in its output (a terminal line and a warning), and
:func:`report_header` gives the line for a ``pytest_report_header`` hook.
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.outage import sigstop_and_wait
from tests.support.servers import MONGODB_URL, free_port, server_unreachable

__all__ = [
    "MongoDBTarget",
    "SecantusProcess",
    "mongodb_target",
    "report_header",
    "secantus_available",
]

_READY_SECONDS = 60.0
_STOP_SECONDS = 30.0

STAND_IN_NOTE = (
    "MongoDB tests run against SecantusDB, a stand-in speaking MongoDB's wire protocol, "
    "NOT a real MongoDB server; set KVSTORE_TEST_MONGODB_URL to test a real one"
)


class SecantusStandInWarning(UserWarning):
    """The MongoDB results of this run rest on SecantusDB, not on MongoDB."""


@dataclass(frozen=True)
class MongoDBTarget:
    """Where the MongoDB tests connect, and whether it is a real MongoDB."""

    url: str
    real: bool

    @property
    def label(self) -> str:
        return "real MongoDB" if self.real else "SecantusDB stand-in"


def report_header() -> str:
    """One line for ``pytest_report_header``: which server the MongoDB tests talk to."""
    if MONGODB_URL:
        return "mongodb: real server from KVSTORE_TEST_MONGODB_URL"
    return f"mongodb: {STAND_IN_NOTE}"


@pytest.fixture(scope="session")
def mongodb_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MongoDBTarget]:
    """The session's MongoDB: ``KVSTORE_TEST_MONGODB_URL`` or an in-process SecantusDB."""
    if MONGODB_URL:
        yield MongoDBTarget(MONGODB_URL, real=True)
        return
    missing = secantus_available()
    if missing is not None:
        server_unreachable(f"no KVSTORE_TEST_MONGODB_URL and {missing}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        # Output capture would swallow the line; lift it for this one message.
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"\n[{STAND_IN_NOTE}]", yellow=True)
    warnings.warn(STAND_IN_NOTE, SecantusStandInWarning, stacklevel=1)
    with SecantusProcess(tmp_path_factory.mktemp("secantus")) as server:
        # The stand-in keeps a record of every retryable write and, past 10,000 of them, sorts
        # them all on each write, so a long session slows to tens of ms a write. The driver's
        # own behaviour does not depend on retryable writes; a real server keeps them on.
        yield MongoDBTarget(f"{server.url}?retryWrites=false", real=False)


def secantus_available() -> str | None:
    """Return why SecantusDB cannot be started here, or ``None`` if it can."""
    if importlib.util.find_spec("secantus") is None:
        return "SecantusDB is not installed (pip install -e '.[dev]')"
    return None


class SecantusProcess:
    """SecantusDB serving ``directory`` on ``127.0.0.1:port`` in a child process.

    ``start()`` waits until it answers; ``stop()`` ends it cleanly (SIGTERM) and ``kill()``
    with SIGKILL, both waiting for the process to end, so that ``start()`` again serves the same
    data directory on the same port. ``pause()`` / ``resume()`` send SIGSTOP / SIGCONT: a
    stopped server keeps its connections open and never answers.
    """

    def __init__(self, directory: Path, *, test_commands: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        # configureFailPoint and the other test-only commands, as mongod's enableTestCommands.
        self.test_commands = test_commands
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``mongodb://`` URL of the server (no database)."""
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int:
        """The server's process id (it must be running)."""
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        """Start the server on its port and data directory; wait until it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "secantusd.toml"
        config.touch()  # an empty configuration: no auto-discovered file changes the settings
        log = (self.directory / "secantus.log").open("ab")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "secantus",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.directory / "data"),
                "--log-level",
                "WARNING",
                *(["--enable-test-commands"] if self.test_commands else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_SECONDS
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"SecantusDB exited early; see {self.directory / 'secantus.log'}"
                )
            if _answers(self.port):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"SecantusDB on port {self.port} never became ready")
            time.sleep(0.1)  # polling for readiness, not synchronising the code under test

    def stop(self) -> None:
        """End the server cleanly (SIGTERM) and wait until the process has ended."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server with SIGKILL (no clean shutdown) and wait until it has ended."""
        self._end(signal.SIGKILL)

    def pause(self) -> None:
        """Stop the server process (SIGSTOP): connections stay open, nothing answers."""
        assert self._process is not None
        sigstop_and_wait(self._process.pid)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        process.send_signal(how)
        try:
            process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> SecantusProcess:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def _answers(port: int) -> bool:
    """Whether a MongoDB ``hello`` on ``port`` gets a reply (a bare TCP accept is not enough)."""
    import pymongo

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    except OSError:
        return False
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=2000, connectTimeoutMS=2000
    )
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()
