"""A private PostgreSQL server for tests that stop and restart their server (outage tests).

It gets its own data directory (initdb, trust auth, superuser ``root``) in a fresh temporary
directory and listens on a free loopback port. PostgreSQL refuses to run as root, so when the
tests run as root (CI) the directory is handed to the ``postgres`` OS user and every server
command runs through ``runuser -u postgres --``.
"""

from __future__ import annotations

import glob
import os
import shutil
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

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are cut off, committed data kept)."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast",
                      "-D", str(self.data))

    def remove(self) -> None:
        """Stop the server if it runs and delete its files."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
