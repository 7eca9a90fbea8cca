"""The entity examples run as a user runs them and print what their docstrings promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(module: str, *arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(90)
def test_declare_entity_example_runs() -> None:
    assert _run("examples.declare_entity").splitlines() == [
        "refused: index 'by_title' value 'fix login' is already held by the record 't1'",
        "web: ['t1', 't2']",
        "t1: Ticket(ticket_id='t1', project='web', title='Fix login', votes=1)",
        "comments: ['first', 'second']",
        "left: ['t2']",
    ]


@pytest.mark.timeout(90)
def test_entities_demo_copies_everything() -> None:
    output = _run("examples.entities_demo")
    assert output.startswith("copied 2 messages; images named 'My Assistant': ['img_abc123']")
