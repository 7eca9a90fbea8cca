"""The folder ``queue/`` never shadows the standard library's ``queue`` module."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()

CHECK = (
    "import queue, concurrent.futures, logging.handlers, pathlib, sys; "
    "print(pathlib.Path(queue.__file__).resolve()); "
    "assert hasattr(queue, 'SimpleQueue')"
)


@pytest.mark.parametrize(
    ("where", "extra_path"),
    [("repo root", ""), ("repo root on PYTHONPATH", str(REPO_ROOT)), ("elsewhere", "")],
)
def test_import_queue_gives_the_standard_library(
    where: str, extra_path: str, tmp_path: Path
) -> None:
    cwd = tmp_path if where == "elsewhere" else REPO_ROOT
    env = {"PYTHONPATH": extra_path} if extra_path else {}
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=cwd,
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(STDLIB)


def test_the_event_queue_imports_as_eventqueue_beside_it() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import queue, eventqueue; print(queue.Queue, eventqueue.create_queue)",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_queue_folder_has_no_init_file() -> None:
    assert not (REPO_ROOT / "queue" / "__init__.py").exists()
