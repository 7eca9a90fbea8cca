"""A private PostgreSQL server for tests that stop and restart their server (outage tests).

It gets its own data directory (initdb, trust auth, superuser ``root``) in a fresh temporary
directory and listens on a free loopback port. PostgreSQL refuses to run as root, so when the
tests run as root (CI) the directory is handed to the ``postgres`` OS user and every server
command runs through ``runuser -u postgres --``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.support.servers import free_port

__all__ = ["PostgreSQLInstance"]

READY_ATTEMPTS = 200
READY_POLL_SECONDS = 0.05
SERVER_USER = "postgres"


def _bindir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


class PostgreSQLInstance:
    """One private cluster; ``start``/``stop`` may alternate, keeping port and data."""

    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) found")
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="kvtest-pg-"))
        self.data = self.root / "data"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "root",
                  "--no-sync", "-E", "UTF8", "--locale", "C")

    @staticmethod
    def available() -> bool:
        """Whether PostgreSQL's server binaries are installed."""
        return _bindir() is not None

    @property
    def url(self) -> str:
        """A ``postgresql://`` URL for database ``postgres`` as superuser ``root``."""
        return f"postgresql://root@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", SERVER_USER, "--"] if self._as_root else []
        subprocess.run(
            [*prefix, *command], check=True, capture_output=True, timeout=120, cwd=self.root
        )

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
                  "-l", str(self.root / "server.log"), "-o", options)
        for _ in range(READY_ATTEMPTS):
            try:
                with psycopg.connect(self.url, connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                    return
            except psycopg.OperationalError:
                time.sleep(READY_POLL_SECONDS)
        raise RuntimeError(f"the private PostgreSQL on port {self.port} never became ready")

    def _server_pids(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, ...), postmaster first."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    # The parent pid is the 4th field, after "(command)", which may hold spaces.
                    fields = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                if int(fields[1]) == postmaster:
                    children.append(int(entry.name))
        return [postmaster, *children]

    def _signal_all(self, signum: int) -> None:
        for pid in self._server_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def kill(self) -> None:
        """SIGKILL the postmaster and every child at once, as a machine crash would, and wait
        until the postmaster is gone (its data directory then needs crash recovery)."""
        pids = self._server_pids()
        self._signal_all(signal.SIGKILL)
        for _ in range(READY_ATTEMPTS):
            if not any(Path(f"/proc/{pid}").exists() for pid in pids):
                return
            time.sleep(READY_POLL_SECONDS)
        raise RuntimeError("the private PostgreSQL survived SIGKILL")

    def pause(self) -> None:
        """SIGSTOP every server process: connections are still accepted, nothing answers."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT every server process."""
        self._signal_all(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are cut off, committed data kept)."""
        pids = self._server_pids()
        if pids and Path(f"/proc/{pids[0]}").exists():  # not after kill(): nothing to stop
            self._signal_all(signal.SIGCONT)  # a paused server could not act on the request
            self._run(str(self.bindir / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast",
                      "-D", str(self.data))

    def remove(self) -> None:
        """Stop the server if it runs and delete its files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
