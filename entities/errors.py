"""The errors the entity layer raises on purpose.

Storage failures keep their own types from :mod:`kvstore.errors` (``BackendError``,
``BackendUnavailable``, ``StorageClosed``); these two cover what the entity layer itself refuses.
"""

from __future__ import annotations

__all__ = ["RecordNotFound", "ValidationError"]


class ValidationError(ValueError):
    """A record, document or id is malformed (wrong type, empty id, bad subtype, too long).

    Raised before anything is written, so a refused call leaves the stored data unchanged.
    """


class RecordNotFound(LookupError):
    """An operation needs a record that does not exist (``update_metadata`` on a missing image,
    ``add_message`` to a missing session)."""
