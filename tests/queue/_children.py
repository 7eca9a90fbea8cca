"""The parent side of tests/queue/_worker.py: spawn a worker, read what it printed, kill it.

Tests synchronise only on what a child printed (each line reports a call that had returned),
never on timing: after a SIGKILL, :meth:`Worker.kill` reads the child's output to its end, so
the test knows every line the child managed to print, not only those it had read so far.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 120.0
"""Seconds to wait for a child's next line or its exit; a guard against hangs, never a clock."""


class Worker:
    """One ``tests.queue._worker`` child process with piped stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr

    @classmethod
    async def spawn(cls, stderr: Path, *args: str) -> Worker:
        """Start ``python -m tests.queue._worker ARGS``; its stderr goes to the file ``stderr``."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(ROOT / "queue"), env.get("PYTHONPATH", "")]
        )
        with stderr.open("ab") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.queue._worker",
                *args,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
            )
        return cls(process, stderr)

    def failure_message(self, what: str) -> str:
        """Say what went wrong with the child, with the end of its stderr."""
        errors = self.stderr.read_text(errors="replace")[-4000:] if self.stderr.exists() else ""
        return f"worker {what}; its stderr ends with:\n{errors}"

    async def line(self) -> str:
        """Return the next line the child printed; fail if it exits or stays silent too long."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(DEADLINE):
                raw = await self.process.stdout.readline()
        except TimeoutError:
            pytest.fail(self.failure_message(f"printed nothing for {DEADLINE:g} s (a hang)"))
        if not raw.endswith(b"\n"):
            async with asyncio.timeout(DEADLINE):
                code = await self.process.wait()
            pytest.fail(self.failure_message(f"exited with {code} before answering"))
        return raw.decode().strip()

    async def send(self, text: str) -> None:
        """Write one line to the child's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def wait(self) -> int:
        """Wait for the child to exit by itself and return its exit code."""
        try:
            async with asyncio.timeout(DEADLINE):
                return await self.process.wait()
        except TimeoutError:
            pytest.fail(self.failure_message(f"did not exit within {DEADLINE:g} s (a hang)"))

    async def kill(self) -> list[str]:
        """SIGKILL the child and return the complete lines it printed that were not read yet.

        A line cut short by the kill was never fully printed, so it is not returned.
        """
        assert self.process.stdout is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        async with asyncio.timeout(DEADLINE):
            rest = await self.process.stdout.read()
            await self.process.wait()
        *complete, _partial = rest.decode().split("\n")
        return [line.strip() for line in complete]

    async def stop(self) -> None:
        """Kill the child if it still runs (for ``finally`` blocks)."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
