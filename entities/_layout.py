"""The keys of one entity type (the generic form of the layout :mod:`entities.keys` documents).

``<x>`` is one segment encoded by :func:`~entities.keys.encode_segment`::

    <collection>:<id>                              the record's document
    idx:<collection>:<index>:<value>:<id>          a non-unique index entry (value 1), a hint
    idx:<collection>:<index>:<value>               a unique index entry: the holder's id
    <children>:<parent>:<order>@<seq>:<child>      a child (order: 16 digits, seq: 12 digits)
    <children>:<parent>:<order>:<child>            a child written before sequences existed
    seq:<children>:<parent>                        the parent's child counter and epoch

Children of one order value sort with the old form first (``:`` sorts before ``@``), then by
sequence: key order is child order, so a page of children is one ordered scan.
"""

from __future__ import annotations

from typing import Any

from entities._checks import TIMESTAMP_DIGITS
from entities.declarations import Children, Entity
from entities.keys import SEQUENCE_DIGITS, KeyBudget, decode_segment, encode_segment

__all__ = ["SEQUENCE_DIGITS", "EntityLayout", "parse_child_key"]

MAX_SEQUENCE = 10**SEQUENCE_DIGITS - 1


class EntityLayout:
    """Builds one entity's keys, refusing any longer than the bytes left after ``namespace``."""

    __slots__ = ("entity", "fit")

    def __init__(self, entity: Entity[Any], namespace: str = "") -> None:
        self.entity = entity
        #: Return a key, or raise ValidationError saying what is too long.
        self.fit = KeyBudget(namespace).fit

    @property
    def records_prefix(self) -> str:
        """Prefix of every record key."""
        return f"{self.entity.collection}:"

    def record(self, record_id: str) -> str:
        """Key of a record."""
        return self.fit(
            self.records_prefix + encode_segment(record_id), f"{self.entity.id_field} is"
        )

    def id_from_record_key(self, key: str) -> str:
        """The id a record key names (ValueError if not one of ours)."""
        return decode_segment(key[len(self.records_prefix) :])

    @property
    def index_root(self) -> str:
        """Prefix of every index entry of the entity."""
        return f"idx:{self.entity.collection}:"

    def entries_prefix(self, index: str, value: str) -> str:
        """Prefix of the non-unique entries of ``index`` for ``value``."""
        return self.fit(
            f"{self.index_root}{index}:{encode_segment(value)}:", f"index {index!r} value is"
        )

    def entry(self, index: str, value: str, record_id: str) -> str:
        """A non-unique index entry: ``record_id`` has ``value`` in ``index``."""
        return self.fit(
            self.entries_prefix(index, value) + encode_segment(record_id),
            f"index {index!r} value and {self.entity.id_field} are",
        )

    def unique(self, index: str, value: str) -> str:
        """The unique index entry of ``value``; it holds the id of the record owning it."""
        return self.fit(
            f"{self.index_root}{index}:{encode_segment(value)}", f"index {index!r} value is"
        )

    def children_prefix(self, children: Children[Any], parent_id: str) -> str:
        """Prefix of every child of ``parent_id``, in child order."""
        return self.fit(
            f"{children.name}:{encode_segment(parent_id)}:", f"{self.entity.id_field} is"
        )

    def order_prefix(self, children: Children[Any], parent_id: str, order: int) -> str:
        """Prefix of the children of one order value (both key forms)."""
        return f"{self.children_prefix(children, parent_id)}{order:0{TIMESTAMP_DIGITS}d}"

    def child(
        self,
        children: Children[Any],
        parent_id: str,
        order: int,
        child_id: str,
        sequence: int | None,
    ) -> str:
        """Key of one child; ``sequence`` ``None`` gives the form written before sequences."""
        position = "" if sequence is None else f"@{sequence:0{SEQUENCE_DIGITS}d}"
        return self.fit(
            f"{self.order_prefix(children, parent_id, order)}{position}:{encode_segment(child_id)}",
            f"{self.entity.id_field} and {children.name} id are",
        )

    def sequence(self, children: Children[Any], parent_id: str) -> str:
        """Key of the parent's child counter."""
        return self.fit(
            f"seq:{children.name}:{encode_segment(parent_id)}", f"{self.entity.id_field} is"
        )


def parse_child_key(rest: str) -> tuple[int, int | None, str] | None:
    """Split what follows a children prefix into ``(order, sequence, child id)``; ``None`` if
    the key is not of either form."""
    position, separator, encoded = rest.partition(":")
    if not separator:
        return None
    order_text, _, sequence_text = position.partition("@")
    try:
        child_id = decode_segment(encoded)
        order = int(order_text)
        sequence = int(sequence_text) if sequence_text else None
    except ValueError:
        return None
    return order, sequence, child_id
