"""Checks that a driver stays silent and bounded: a child process with no logging set up, and
a server that accepts connections and never answers."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# A child that sets up no logging and runs a few operations per line it reads on stdin,
# printing one line of outcomes per phase: what an application that never configured logging
# would see on its stderr is then exactly the child's stderr.
CHILD = r"""
import sys
import anyio
from kvstore import create_storage
from kvstore.errors import BackendUnavailable

async def main(url: str) -> None:
    storage = create_storage(url)
    while phase := sys.stdin.readline().strip():
        outcomes = []
        for index in range(4):
            try:
                await storage.set(f"quiet:{index}", index)
                assert await storage.get(f"quiet:{index}") == index
                outcomes.append("ok")
            except BackendUnavailable:
                outcomes.append("unavailable")
        print(phase, " ".join(outcomes), flush=True)
    await storage.close()

anyio.run(main, sys.argv[1])
"""


class QuietChild:
    """The child process above, driven phase by phase."""

    def __init__(self, url: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", CHILD, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def phase(self, name: str) -> list[str]:
        """Run one phase; return its outcomes (``ok`` / ``unavailable``)."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(name + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline().split()
        assert line, "the child stopped"
        assert line[0] == name, f"the child answered {line!r}"
        return line[1:]

    def finish(self) -> str:
        """End the child; return everything it wrote to stderr."""
        _, stderr = self._process.communicate("\n", timeout=120)
        assert self._process.returncode == 0, stderr
        return stderr


def check_silent_through(url: str, outage: Callable[[], None], recover: Callable[[], None]
                         ) -> None:
    """The child works, fails with BackendUnavailable during ``outage``, works after
    ``recover``, and writes nothing at all to stderr."""
    child = QuietChild(url)
    try:
        assert child.phase("up") == ["ok"] * 4
        outage()
        assert child.phase("down") == ["unavailable"] * 4
        recover()
        assert child.phase("back") == ["ok"] * 4
    finally:
        stderr = child.finish()
    assert stderr == "", stderr


@contextmanager
def silent_server() -> Iterator[int]:
    """A port whose listener completes TCP handshakes (the kernel does) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])
