"""A private MariaDB server for tests that stop and restart one, or need their own settings.

It runs ``mariadbd`` on a free loopback port with its data in a temporary directory, as root
(``--user=root``, as CI runs), and never touches the shared server on port 3306.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pymysql

from tests.support.outage import sigstop_and_wait
from tests.support.servers import free_port

__all__ = ["MariaDBInstance", "mariadb_available"]

_READY_SECONDS = 60.0
_STOP_SECONDS = 60.0


def mariadb_available() -> str | None:
    """Return why a private server cannot be started here, or ``None`` if it can."""
    for program in ("mariadbd", "mariadb-install-db"):
        if shutil.which(program) is None and not Path(f"/usr/sbin/{program}").exists():
            return f"{program} is not installed"
    return None


def _program(name: str) -> str:
    found = shutil.which(name)
    return found if found is not None else f"/usr/sbin/{name}"


class MariaDBInstance:
    """One ``mariadbd`` on ``127.0.0.1:port``: root with an empty password, database ``test``.

    ``start()`` initialises the data directory the first time and waits until the server
    accepts connections; ``stop()`` shuts it down cleanly and waits for the process to end, so
    that ``start()`` again serves the same data on the same port.
    """

    def __init__(self, directory: Path, *, max_allowed_packet: str = "64M") -> None:
        self.directory = directory
        self.port = free_port()
        self.max_allowed_packet = max_allowed_packet
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``mysql://`` URL of the ``test`` database."""
        return f"mysql://root@127.0.0.1:{self.port}/test"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _initialise(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                _program("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={self.data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        """Start the server (initialising the data directory once) and wait until it is ready."""
        if not self.data.exists():
            self._initialise()
        log = (self.directory / "mariadbd.out").open("ab")
        self._process = subprocess.Popen(
            [
                _program("mariadbd"),
                "--no-defaults",
                f"--datadir={self.data}",
                "--user=root",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.directory / 'mariadbd.sock'}",
                f"--pid-file={self.directory / 'mariadbd.pid'}",
                f"--log-error={self.directory / 'mariadbd.err'}",
                f"--max-allowed-packet={self.max_allowed_packet}",
                "--innodb-buffer-pool-size=32M",
                "--skip-log-bin",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_SECONDS
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"mariadbd exited early; see {self.directory / 'mariadbd.err'}")
            try:
                connection = pymysql.connect(
                    host="127.0.0.1", port=self.port, user="root", connect_timeout=1
                )
            except pymysql.MySQLError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mariadbd on port {self.port} never became ready") from None
                time.sleep(0.1)  # polling for readiness, not synchronising the code under test
                continue
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE IF NOT EXISTS test")
            connection.close()
            return

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM) and wait until the process has ended."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would, and wait until the process has ended.

        ``start()`` then serves the same data (InnoDB recovers from its redo log).
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.kill()
        process.wait()

    def pause(self) -> None:
        """Stop the server (SIGSTOP): its connections stay open and nothing answers."""
        assert self._process is not None
        sigstop_and_wait(self._process.pid)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> MariaDBInstance:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
