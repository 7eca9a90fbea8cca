"""A small tmpfs for disk-full tests, mounted for one test where the machine allows it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@contextmanager
def small_tmpfs(directory: Path, size: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` bytes on ``directory`` (created) and unmount it afterwards.

    Skips the test, saying why, where mounting is not allowed (not root, no ``mount``, a
    container without the capability).
    """
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("disk-full tests mount a small tmpfs, which needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("disk-full tests need the mount and umount commands")
    directory.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield directory
    finally:
        # A lazy unmount as the fallback, so that a file left open cannot keep it mounted.
        if _run("umount", str(directory)).returncode != 0:
            _run("umount", "-l", str(directory))
