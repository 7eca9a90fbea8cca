"""The ``kvstore`` of the release before versions, to build stores in the old layouts.

Layout-upgrade tests need a store written by the old driver itself, not by a re-creation of it.
The package is taken from the repository's own history (``git archive`` of
:data:`PRE_VERSIONS_COMMIT`), extracted once per test process, and run in a subprocess whose
``kvstore`` is that copy. A clone without that commit (a shallow one) skips these tests, naming
the commit.
"""

from __future__ import annotations

import atexit
import functools
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

__all__ = ["PRE_VERSIONS_COMMIT", "pre_versions_checkout", "run_old_code"]

#: The last commit whose drivers wrote the layouts without versions.
PRE_VERSIONS_COMMIT = "8c0e158"
_REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _extracted() -> Path | None:
    archive = subprocess.run(
        ["git", "-C", str(_REPO), "archive", "--format=tar", PRE_VERSIONS_COMMIT, "kvstore"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        return None
    target = Path(tempfile.mkdtemp(prefix="kvstore-pre-versions-"))
    atexit.register(shutil.rmtree, target, True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


def pre_versions_checkout() -> Path:
    """A directory holding the pre-versions ``kvstore`` package; skips if history lacks it."""
    target = _extracted()
    if target is None:
        pytest.skip(f"commit {PRE_VERSIONS_COMMIT} is not in this clone's history (shallow?)")
    return target


def run_old_code(script: str, *arguments: str, timeout: float = 120.0) -> str:
    """Run ``script`` (Python source) with the pre-versions ``kvstore``; return its stdout.

    Fails the calling test if the script fails or if the ``kvstore`` it imported is not the old
    one.
    """
    checkout = pre_versions_checkout()
    package = checkout / "kvstore"
    guard = (
        "import kvstore, pathlib, sys\n"
        f"assert pathlib.Path(kvstore.__file__).resolve().parent == pathlib.Path({str(package)!r})"
        ".resolve(), kvstore.__file__\n"
    )
    completed = subprocess.run(
        # -P: the working directory must not shadow the old package with this checkout's.
        [sys.executable, "-P", "-c", guard + script, *arguments],
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout
