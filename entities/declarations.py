"""Declaring an entity type: its record class, id, indexes, children and schema version.

A higher-level package declares each entity once and gets a typed
:class:`~entities.repository.Repository` for it::

    @dataclass(frozen=True)
    class Ticket:
        ticket_id: str
        project: str
        title: str

    TICKETS = Entity(
        Ticket, collection="tickets", id="ticket_id",
        indexes=[Index("by_project", "project"), Index("by_title", "title", unique=True)],
    )

Documents: a record class with ``to_document()`` and a ``from_document(doc)`` class method
controls its stored form; otherwise every dataclass field is stored under its camelCase name
(``ticket_id`` -> ``ticketId``), ``None`` fields left out. A document's schema version is the
``_schema`` field; a document without it is version 1, so documents written before versions
existed read unchanged, and version-1 documents stay byte-for-byte what older code wrote and
reads. A record class at version N > 1 gives ``upgrades={1: one_to_two, 2: two_to_three, ...}``:
each takes a document of its version (without ``_schema``) and returns the next version's.
Reads upgrade on the fly; :meth:`Repository.migrate` rewrites stored documents; a document newer
than N raises :class:`~entities.errors.SchemaVersionError`, never read as something else.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from entities._checks import MAX_TIMESTAMP, check_id, check_object
from entities.errors import MalformedDocument, SchemaVersionError, ValidationError

__all__ = ["SCHEMA_FIELD", "Children", "Entity", "Index"]

R = TypeVar("R")
C = TypeVar("C")

#: The document field holding the schema version (absent means version 1).
SCHEMA_FIELD = "_schema"
# Collection, index and children names: fixed identifiers, so keys stay readable and parsable.
_NAME = re.compile("[a-z][a-z0-9_]*")


def _check_name(name: object, what: str) -> str:
    if type(name) is not str or _NAME.fullmatch(name) is None:
        raise ValueError(f"{what} must match [a-z][a-z0-9_]*, got {name!r}")
    return name


def _getter(source: str | Callable[[Any], object], what: str) -> Callable[[Any], object]:
    if isinstance(source, str):
        field = source
        return lambda record: getattr(record, field)
    if callable(source):
        return source
    raise TypeError(f"{what} must be a field name or a function of the record, not {source!r}")


@dataclass(frozen=True, slots=True)
class Index(Generic[R]):
    """A secondary index named ``name``, over a field (its name) or a function of the record.

    The value must be a non-empty ``str`` (an ``int`` is indexed as its decimal text); ``None``
    leaves the record out of the index. A ``unique`` index lets at most one record hold a
    value: saving a second raises :class:`~entities.errors.UniqueViolation`.
    """

    name: str
    of: str | Callable[[R], object]
    unique: bool = False
    # ``of`` as a function, made once: every record read through the index asks for its value.
    _value: Callable[[R], object] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name, "an index name")
        object.__setattr__(self, "_value", _getter(self.of, f"index {self.name!r}"))

    def value_of(self, record: R) -> str | None:
        """Return the record's value in this index (``None``: not indexed).

        Raises :class:`~entities.errors.ValidationError` if the index function raises or
        returns something other than ``None``, a ``str`` or an ``int``.
        """
        try:
            value = self._value(record)
        except Exception as error:
            raise ValidationError(
                f"index {self.name!r} could not compute its value: {type(error).__name__}: {error}"
            ) from error
        if value is None:
            return None
        if type(value) is int:
            return str(value)
        return check_id(value, f"index {self.name!r} value")


@dataclass(frozen=True, slots=True)
class Children(Generic[C]):
    """Records of ``entity`` held by a parent record, ordered by ``order`` then by the order
    they were added; deleting the parent deletes them.

    ``name`` is the key prefix of the children (``messages``). ``order`` is a field name or a
    function giving an ``int`` from 0 to 9_999_999_999_999_999 (a timestamp in ms, say).
    """

    name: str
    entity: Entity[C]
    order: str | Callable[[C], int]
    # ``order`` as a function, made once (see Index).
    _order: Callable[[C], object] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name, "a children name")
        object.__setattr__(self, "_order", _getter(self.order, f"children {self.name!r} order"))

    def order_of(self, child: C) -> int:
        """Return the child's sort key; raise ValidationError if it is not a fitting int."""
        try:
            value = self._order(child)
        except Exception as error:
            raise ValidationError(
                f"children {self.name!r} order could not be computed: {error}"
            ) from error
        if type(value) is not int or not 0 <= value <= MAX_TIMESTAMP:
            raise ValidationError(
                f"children {self.name!r} order must be an int from 0 to {MAX_TIMESTAMP}, "
                f"got {value!r}"
            )
        return value


class Entity(Generic[R]):
    """The declaration of one entity type: what a :class:`~entities.repository.Repository`
    needs to store, index, upgrade and cascade its records.

    ``record`` is a frozen dataclass; ``collection`` the key prefix of its records; ``id`` the
    name of its id field (a non-empty ``str``). ``version`` is the current schema version and
    ``upgrades`` maps each older version to the function upgrading its documents by one step.
    """

    __slots__ = (
        "_from_document",
        "_to_document",
        "children",
        "collection",
        "id_field",
        "indexes",
        "record",
        "upgrades",
        "version",
    )

    def __init__(
        self,
        record: type[R],
        *,
        collection: str,
        id: str,
        indexes: Sequence[Index[R]] = (),
        children: Sequence[Children[Any]] = (),
        version: int = 1,
        upgrades: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] | None = None,
    ) -> None:
        if not (isinstance(record, type) and dataclasses.is_dataclass(record)):
            raise TypeError(f"an entity's record must be a dataclass, not {record!r}")
        names = {field.name for field in dataclasses.fields(record)}
        if id not in names:
            raise TypeError(f"{record.__name__} has no field {id!r} to serve as its id")
        if type(version) is not int or version < 1:
            raise ValueError(f"version must be an int >= 1, not {version!r}")
        upgrades = dict(upgrades or {})
        missing = [step for step in range(1, version) if step not in upgrades]
        if missing or set(upgrades) - set(range(1, version)):
            raise ValueError(
                f"upgrades must give one function for each version 1..{version - 1} "
                f"(missing {missing}, extra {sorted(set(upgrades) - set(range(1, version)))})"
            )
        seen = [index.name for index in indexes] + [child.name for child in children]
        if len(set(seen)) != len(seen):
            raise ValueError(f"index and children names must be distinct: {seen}")
        self.record = record
        self.collection = _check_name(collection, "a collection name")
        self.id_field = id
        self.indexes: tuple[Index[R], ...] = tuple(indexes)
        self.children: tuple[Children[Any], ...] = tuple(children)
        self.version = version
        self.upgrades = upgrades
        to_document = getattr(record, "to_document", None)
        from_document = getattr(record, "from_document", None)
        # Field name -> document name, worked out once for the default codec.
        stored = {field.name: camel_case(field.name) for field in dataclasses.fields(record)}
        self._to_document: Callable[[R], object] = (
            to_document
            if callable(to_document)
            else lambda item: _default_to_document(item, stored)
        )
        self._from_document: Callable[[dict[str, Any]], R] = (
            from_document
            if callable(from_document)
            else lambda document: _default_from_document(record, document, stored)
        )

    def __repr__(self) -> str:
        return f"Entity({self.record.__name__}, collection={self.collection!r})"

    def index(self, name: str) -> Index[R]:
        """Return the index called ``name``; raise ValueError naming the known ones."""
        for index in self.indexes:
            if index.name == name:
                return index
        known = ", ".join(index.name for index in self.indexes) or "none"
        raise ValueError(f"{self!r} has no index {name!r} (known: {known})")

    def child(self, name: str) -> Children[Any]:
        """Return the children declaration called ``name``."""
        for child in self.children:
            if child.name == name:
                return child
        raise ValueError(f"{self!r} has no children {name!r}")

    # -- records <-> documents -----------------------------------------------------------------

    def id_of(self, record: R) -> str:
        """Return the record's id; raise ValidationError if it is missing or not an id."""
        return check_id(getattr(record, self.id_field, None), self.id_field)

    def coerce(self, value: object) -> R:
        """Return ``value`` as a record: a record passes, a mapping in the stored form is
        parsed (and upgraded) exactly as a stored document; anything else is refused."""
        if isinstance(value, self.record):
            self.id_of(value)
            return value
        if isinstance(value, Mapping):
            return self.parse(dict(value))
        raise ValidationError(
            f"expected a {self.record.__name__} or a mapping in its stored form, "
            f"not {type(value).__name__}"
        )

    def document(self, record: R) -> dict[str, Any]:
        """Return the JSON document stored for ``record``, with its schema version.

        Raises ValidationError if the document is not a JSON object that reads back equal.
        """
        raw = self._to_document(record)
        document = check_object(raw, f"the {self.record.__name__} document")
        if SCHEMA_FIELD in document:
            raise ValidationError(
                f"the {self.record.__name__} document uses the reserved field {SCHEMA_FIELD!r}"
            )
        if self.version > 1:
            document[SCHEMA_FIELD] = self.version
        return document

    def schema_of(self, document: object, key: str = "") -> int:
        """Return the schema version of a document (1 when it has none); raise
        SchemaVersionError for a version newer than this code or not a positive int."""
        found = document.get(SCHEMA_FIELD, 1) if isinstance(document, dict) else 1
        if type(found) is not int or not 1 <= found <= self.version:
            raise SchemaVersionError(key, found, self.version)
        return found

    def parse(self, document: object, key: str = "") -> R:
        """Build a record from a stored (or given) document, upgrading an older one.

        Raises :class:`SchemaVersionError` for a newer document, :class:`MalformedDocument`
        naming ``key`` for a stored one that does not parse (ValidationError when ``key`` is
        ``""``).
        """
        version = self.schema_of(document, key)
        try:
            if not isinstance(document, dict):
                raise ValidationError(
                    f"a {self.record.__name__} document must be a dict, "
                    f"not {type(document).__name__}"
                )
            if version == self.version and SCHEMA_FIELD not in document:
                # The usual stored document, current and unmarked: read as it is, no copy.
                return self._from_document(document)
            current = {name: value for name, value in document.items() if name != SCHEMA_FIELD}
            for step in range(version, self.version):
                current = self.upgrades[step](current)
            return self._from_document(current)
        except ValidationError as error:
            if not key or isinstance(error, MalformedDocument):
                raise
            raise MalformedDocument(key, str(error)) from error
        except Exception as error:
            if not key:
                raise ValidationError(
                    f"not a {self.record.__name__} document: {type(error).__name__}: {error}"
                ) from error
            raise MalformedDocument(key, f"{type(error).__name__}: {error}") from error


def camel_case(name: str) -> str:
    """``parent_image_id`` -> ``parentImageId``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _default_to_document(record: object, stored: dict[str, str]) -> dict[str, Any]:
    document = {}
    for name, stored_name in stored.items():
        value = getattr(record, name)
        if value is not None:
            document[stored_name] = value
    return document


def _default_from_document(record: type[R], document: dict[str, Any], stored: dict[str, str]) -> R:
    names = {stored_name: name for name, stored_name in stored.items()}
    unknown = sorted(str(name) for name in document if name not in names)
    if unknown:
        raise ValidationError(f"the {record.__name__} document has unknown fields {unknown}")
    try:
        return record(**{names[name]: value for name, value in document.items()})
    except TypeError as error:
        raise ValidationError(f"not a {record.__name__} document: {error}") from None
