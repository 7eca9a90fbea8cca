"""Logging that stays silent until the application configures it.

Without a handler anywhere on its path, a record at WARNING or above reaches logging's
last-resort handler, that is stderr: a library that lets that happen writes to stderr by itself.
A :class:`logging.NullHandler` counts as a handler and does not stop propagation, so records
still reach every handler the application sets up.
"""

from __future__ import annotations

import logging

__all__ = ["silent_until_configured"]


def silent_until_configured(*names: str) -> None:
    """Give each named logger (ours or a client library's) a ``NullHandler``, once."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
            logger.addHandler(logging.NullHandler())
