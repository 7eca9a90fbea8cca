"""The blocking API mirrors the async one: every public member has a twin, or a stated reason.

A method added to an async class without a blocking twin (or an entry in the module's
``ABSENT``) fails here, as does a twin whose parameters drifted from its async method's.
"""

from __future__ import annotations

import inspect
from typing import Any

import eventqueue
import eventqueue.sync
import pytest

import entities
import entities.sync
import kvstore
import kvstore.sync
import kvstore.sync.storage
from kvstore.storage import Storage as AsyncStorage

PAIRS: list[tuple[type[Any], type[Any], dict[str, str]]] = [
    (AsyncStorage, kvstore.sync.Storage, kvstore.sync.storage.ABSENT),
    (entities.Persistence, entities.sync.Persistence, entities.sync.ABSENT),
    (entities.ContainerRepository, entities.sync.ContainerRepository, entities.sync.ABSENT),
    (entities.ImageRepository, entities.sync.ImageRepository, entities.sync.ABSENT),
    (entities.SessionRepository, entities.sync.SessionRepository, entities.sync.ABSENT),
    (eventqueue.EventQueue, eventqueue.sync.Queue, eventqueue.sync.ABSENT),
    (eventqueue.Subscription, eventqueue.sync.Subscription, eventqueue.sync.ABSENT),
]
_IDS = [f"{pair[1].__module__}.{pair[1].__name__}" for pair in PAIRS]
_DUNDERS = ("__aenter__", "__aexit__", "__call__")


def _public(cls: type[Any]) -> set[str]:
    names = {name for name in dir(cls) if not name.startswith("_")}
    return names | {name for name in _DUNDERS if name in vars(cls)}


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    parameters = list(inspect.signature(function).parameters.values())
    return [(p.name, p.kind, p.default) for p in parameters if p.name != "self"]


@pytest.mark.parametrize(("async_cls", "blocking_cls", "absent"), PAIRS, ids=_IDS)
def test_every_public_member_has_a_blocking_twin_or_a_reason(
    async_cls: type[Any], blocking_cls: type[Any], absent: dict[str, str]
) -> None:
    missing = {name for name in _public(async_cls) - set(absent) if not hasattr(blocking_cls, name)}
    assert not missing, f"{blocking_cls.__name__} lacks {sorted(missing)} (mirror or list them)"
    for name in set(absent) & _public(async_cls):
        assert absent[name], name
        assert not hasattr(blocking_cls, name), name


@pytest.mark.parametrize(("async_cls", "blocking_cls", "absent"), PAIRS, ids=_IDS)
def test_twins_take_the_same_parameters(
    async_cls: type[Any], blocking_cls: type[Any], absent: dict[str, str]
) -> None:
    for name in _public(async_cls) - set(absent):
        twin, original = getattr(blocking_cls, name), getattr(async_cls, name)
        if callable(original) and not isinstance(original, type):
            assert _shape(twin) == _shape(original), name
            assert twin.__doc__, f"{blocking_cls.__name__}.{name} has no docstring"


def test_every_reason_names_a_real_async_member() -> None:
    checks: list[tuple[Any, list[type[Any]]]] = [
        (kvstore.sync.storage, [AsyncStorage]),
        (entities.sync, [entities.Persistence, entities.ContainerRepository]),
        (eventqueue.sync, [eventqueue.EventQueue]),
    ]
    for module, classes in checks:
        for name in module.ABSENT:
            assert any(name in _public(cls) for cls in classes), (module.__name__, name)


def test_the_async_context_manager_has_a_plain_twin() -> None:
    for _, blocking_cls, _ in PAIRS[:2] + PAIRS[5:6]:
        assert hasattr(blocking_cls, "__enter__")
        assert hasattr(blocking_cls, "__exit__")


@pytest.mark.parametrize(
    ("blocking", "original"),
    [
        (kvstore.sync.create_storage, kvstore.create_storage),
        (entities.sync.create_persistence, entities.create_persistence),
        (eventqueue.sync.create_queue, eventqueue.create_queue),
    ],
    ids=["create_storage", "create_persistence", "create_queue"],
)
def test_factories_take_the_same_parameters(blocking: Any, original: Any) -> None:
    assert _shape(blocking) == _shape(original)
    assert blocking.__doc__
