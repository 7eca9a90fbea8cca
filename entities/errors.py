"""The errors the entity layer raises on purpose.

Storage failures keep their own types from :mod:`kvstore.errors` (``BackendError``,
``BackendUnavailable``, ``StorageClosed``); these cover what the entity layer itself refuses.

- :class:`ValidationError`: input is malformed; nothing was written. Its subclasses say more:
  :class:`MalformedDocument` (a *stored* document cannot be read; names its key) and
  :class:`SchemaVersionError` (a document was written by newer code than this one).
- :class:`RecordNotFound`: the operation needs a record that does not exist.
- :class:`RecordConflict`: a conditional write found the record (or a unique index value) not
  as it required; nothing of the record was written. Subclasses: :class:`RecordExists`,
  :class:`RecordChanged`, :class:`UniqueViolation`.
"""

from __future__ import annotations

from kvstore.errors import PersistenceError

__all__ = [
    "EntityError",
    "MalformedDocument",
    "RecordChanged",
    "RecordConflict",
    "RecordExists",
    "RecordNotFound",
    "SchemaVersionError",
    "UniqueViolation",
    "ValidationError",
]


class EntityError(PersistenceError):
    """Base class of every error the entity layer raises on purpose.

    It descends from :class:`kvstore.errors.PersistenceError`, the root that the storage and
    queue errors share.
    """


class ValidationError(EntityError, ValueError):
    """A record, document or id is malformed (wrong type, empty id, bad subtype, too long).

    Raised before anything is written, so a refused call leaves the stored data unchanged.
    """


class MalformedDocument(ValidationError):
    """The document stored under ``key`` cannot be read as a record (``reason`` says why).

    Reads raise it naming the key, so one bad document is found and fixed rather than skipped;
    listings take an ``on_error`` callback to receive it instead and return the rest.
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"the document stored under {key!r} is malformed: {reason}")


class SchemaVersionError(ValidationError):
    """A document carries schema version ``found``, newer than the ``supported`` one this code
    knows (or not a version at all). It is never read as an older record: upgrade the code.

    ``key`` names the stored document, or is ``""`` for a document passed in by a caller.
    """

    def __init__(self, key: str, found: object, supported: int) -> None:
        self.key = key
        self.found = found
        self.supported = supported
        where = f"the document stored under {key!r}" if key else "the document"
        super().__init__(
            f"{where} has schema version {found!r}; this code reads versions 1 to {supported}"
        )


class RecordNotFound(EntityError, LookupError):
    """An operation needs a record that does not exist (``update_metadata`` on a missing image,
    ``add_message`` to a missing session)."""


class RecordConflict(EntityError):
    """A conditional write found its record, or a unique index value, not as it required.

    The record was not written. ``key`` names the record's key.
    """

    def __init__(self, message: str, *, key: str) -> None:
        self.key = key
        super().__init__(message)


class RecordExists(RecordConflict):
    """A create-only save found a record with that id already stored."""


class RecordChanged(RecordConflict):
    """A replace-if-unchanged save (or an ``update`` out of attempts) found the record written
    or deleted since the version it was given was read."""


class UniqueViolation(RecordConflict):
    """A save would give a unique index value that another record already holds.

    ``index`` names the index, ``value`` the value and ``holder`` the id of the record holding
    it; ``key`` is the record that was refused.
    """

    def __init__(self, *, key: str, index: str, value: str, holder: str) -> None:
        self.index = index
        self.value = value
        self.holder = holder
        super().__init__(
            f"index {index!r} value {value!r} is already held by the record {holder!r}", key=key
        )
