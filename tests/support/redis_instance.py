"""A private redis-server for tests that stop and restart their server (outage tests).

It runs on a free loopback port with its data in a temporary directory and append-only
persistence fsynced on every write, so every write the server acknowledged survives a restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.servers import free_port

__all__ = ["RedisInstance"]

# Bounded wait for the server to answer PING after a start.
READY_ATTEMPTS = 200
READY_POLL_SECONDS = 0.05


class RedisInstance:
    """One redis-server process; ``start``/``stop`` may alternate, keeping port and data."""

    def __init__(self, directory: Path, port: int | None = None, password: str = "") -> None:
        self.directory = directory
        self.port = port or free_port()
        self.password = password
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        """Whether a redis-server binary is on the PATH."""
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this instance's database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and return once it answers PING (raises if it never does)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(READY_ATTEMPTS):
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if self._answers_ping():
                return
            time.sleep(READY_POLL_SECONDS)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} never became ready")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                # With a password set, an unauthenticated PING is refused: still, it answered.
                return connection.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would, and wait until it is gone."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """Stop the server with SIGSTOP: it keeps accepting connections and answers nothing."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it finishes its append-only file) and wait for it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)  # a paused server could not act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
