"""Run code against the checkout from before versions existed, to build stores in the old layout.

``KVSTORE_BASE_CHECKOUT`` names a checkout of the commit before conditional writes (8c0e158);
it defaults to ``/work/wt/base``. :func:`run_old_code` runs a script in a subprocess whose
``kvstore`` is that checkout's, so the test's store is written by the old driver itself, not by
a re-creation of it. Tests skip when no such checkout is present.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

__all__ = ["BASE_CHECKOUT", "run_old_code"]

BASE_CHECKOUT = Path(os.environ.get("KVSTORE_BASE_CHECKOUT", "/work/wt/base"))


def run_old_code(script: str, *arguments: str, timeout: float = 120.0) -> str:
    """Run ``script`` (Python source) with the base checkout's ``kvstore``; return its stdout.

    Skips the calling test if the checkout is missing; fails it if the script fails or if the
    ``kvstore`` it imported is not the checkout's.
    """
    package = BASE_CHECKOUT / "kvstore"
    if not package.is_dir():
        pytest.skip(f"no pre-versions checkout at {BASE_CHECKOUT} (set KVSTORE_BASE_CHECKOUT)")
    guard = (
        "import kvstore, pathlib, sys\n"
        f"assert pathlib.Path(kvstore.__file__).resolve().parent == pathlib.Path({str(package)!r})"
        ".resolve(), kvstore.__file__\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(BASE_CHECKOUT)}
    # Run from an empty directory: the working directory comes first on sys.path and would
    # otherwise shadow the checkout with this one's kvstore.
    with tempfile.TemporaryDirectory(prefix="kvstore-old-layout-") as cwd:
        completed = subprocess.run(
            [sys.executable, "-c", guard + script, *arguments],
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout
