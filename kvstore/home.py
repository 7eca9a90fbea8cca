"""The AgentX home: the one folder under which kvstore and eventqueue keep their default files.

``$AGENTX_DIR`` when it is set and not empty, else ``~/.agentx``; default files live in its
``data/`` folder (``agentx.db`` for the storage, ``queue.db`` for the event queue). Read on every
call, so a test or a process that sets ``AGENTX_DIR`` late still moves the files.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["agentx_home", "data_file"]


def agentx_home() -> Path:
    """Return ``$AGENTX_DIR`` (``~`` expanded), or ``~/.agentx`` when it is unset or empty."""
    root = os.environ.get("AGENTX_DIR")
    return Path(root).expanduser() if root else Path.home() / ".agentx"


def data_file(name: str) -> Path:
    """Return the default file ``name`` in the home's ``data/`` folder (nothing is created)."""
    return agentx_home() / "data" / name
