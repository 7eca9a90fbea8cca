"""Contract clauses through the blocking facade, on every local driver and Redis.

``test_sync_suite.py`` runs the conformance suite's own storage clauses through the facade; these
add what those cannot reach: Hypothesis round trips and prefix scans (the suite's strategies),
scans longer than the facade's page, conditional writes, TTL on each driver's clock, views, and
a closed storage. Each test runs on each driver in ``conftest.EVERY``.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore.conditional import Action, Change
from kvstore.drivers.memory import memory_driver
from kvstore.errors import Conflict, StorageClosed
from kvstore.sync import Storage
from kvstore.sync.runner import PAGE
from kvstore.testing import strategies
from tests.sync.conftest import Backend, make_backend

pytestmark = pytest.mark.timeout(240)


def _pass(backend: Backend, seconds: float) -> None:
    """Let ``seconds`` pass on the backend's clock (instantly on a manual one)."""
    anyio.run(backend.clock.advance, seconds)


# -- values ---------------------------------------------------------------------------------


@given(key=strategies.keys(), value=strategies.json_values())
def test_any_json_value_reads_back_equal(storage: Storage, key: str, value: Any) -> None:
    storage.set(key, value)
    assert storage.get(key) == value
    assert storage.has(key)
    assert storage.get_many([key, key]) == [value, value]


@given(key=strategies.keys(), data=strategies.raw_values())
def test_raw_bytes_read_back_unchanged(storage: Storage, key: str, data: bytes) -> None:
    storage.set_raw(key, data)
    assert storage.get_raw(key) == data


# -- scans ----------------------------------------------------------------------------------


@given(keys=st.lists(strategies.keys(), max_size=12, unique=True), data=st.data())
def test_prefix_scan_is_ordered_and_complete(
    storage: Storage, keys: list[str], data: st.DataObject
) -> None:
    storage.clear()
    storage.set_many((key, index) for index, key in enumerate(keys))
    prefix = data.draw(strategies.prefixes(st.sampled_from(keys) if keys else None))
    expected = sorted(key for key in keys if key.startswith(prefix))
    assert list(storage.keys(prefix)) == expected
    assert [key for key, _ in storage.items(prefix)] == expected
    assert dict(storage.items(prefix)) == {key: keys.index(key) for key in expected}


def test_a_scan_longer_than_a_page_yields_every_key_once(storage: Storage) -> None:
    keys = [f"k:{n:05}" for n in range(2 * PAGE + 7)]
    storage.set_many((key, n) for n, key in enumerate(keys))
    assert list(storage.keys("k:")) == keys
    assert list(storage.items("k:")) == [(key, n) for n, key in enumerate(keys)]


def test_an_iterator_left_early_does_not_hold_the_storage(storage: Storage) -> None:
    storage.set_many((f"k{n:04}", n) for n in range(PAGE + 1))
    scan = storage.keys()
    assert next(scan) == "k0000"
    scan.close()  # what ``break`` or dropping it does
    storage.set("after", 1)
    assert storage.get("after") == 1


# -- batches and deletes --------------------------------------------------------------------


def test_batches_keep_order_and_last_write_wins(storage: Storage) -> None:
    storage.set_many([("a", 1), ("b", 2), ("a", 3)])
    assert storage.get_many(["b", "missing", "a"]) == [2, None, 3]
    storage.delete_many(["a", "missing"])
    assert storage.get_many(["a", "b"]) == [None, 2]


def test_delete_removes_and_a_missing_key_is_no_error(storage: Storage) -> None:
    storage.set("a", 1)
    storage.delete("a")
    storage.delete("a")
    assert storage.get("a") is None
    assert not storage.has("a")


def test_view_and_clear_stay_under_their_prefix(storage: Storage) -> None:
    storage.set("other", 0)
    view = storage.with_prefix("ns")
    view.set_many({"a": 1, "b:c": 2})
    assert list(view.keys()) == ["a", "b:c"]
    assert list(storage.keys()) == ["ns:a", "ns:b:c", "other"]
    view.clear()
    assert list(storage.keys()) == ["other"]


def test_a_mounted_driver_serves_its_base_and_scans_span_it(storage: Storage) -> None:
    storage.set_many({"a": 1, "z": 26})
    storage.mount("m", memory_driver())
    storage.set("m:x", "mounted")
    assert list(storage.items()) == [("a", 1), ("m:x", "mounted"), ("z", 26)]
    unmounted = storage.unmount("m")
    assert unmounted.closed
    assert list(storage.keys()) == ["a", "z"]


# -- conditional writes ---------------------------------------------------------------------


def test_conditional_writes_apply_only_while_their_condition_holds(storage: Storage) -> None:
    first = storage.create("k", "one")
    with pytest.raises(Conflict):
        storage.create("k", "again")
    second = storage.replace("k", "two", first)
    with pytest.raises(Conflict):
        storage.replace("k", "stale", first)
    assert storage.get_versioned("k") == ("two", second)
    with pytest.raises(Conflict):
        storage.delete_if("k", first)
    storage.delete_if("k", second)
    assert storage.get("k") is None


def test_commit_is_all_or_nothing_and_update_retries(storage: Storage) -> None:
    version = storage.create("a", 1)
    with pytest.raises(Conflict):
        storage.commit(
            [Change(Action.WRITE, "b", 2, None), Change(Action.WRITE, "a", 9, version + 1)]
        )
    assert storage.get("b") is None
    storage.commit([Change(Action.WRITE, "b", 2, None), Change(Action.DELETE, "a", None, version)])
    assert storage.get_many(["a", "b"]) == [None, 2]
    assert storage.update("b", lambda value: (value or 0) + 1) == 3
    assert storage.get("b") == 3


# -- expiry ---------------------------------------------------------------------------------


def test_a_key_expires_after_its_ttl(storage: Storage, backend: Backend) -> None:
    storage.set("short", 1, ttl=0.5)
    storage.set("long", 2, ttl=datetime.timedelta(hours=1))
    storage.set("never", 3)
    meta = storage.get_meta("short")
    assert meta is not None
    assert meta.expires_at is not None
    _pass(backend, 0.6)
    assert storage.get_many(["short", "long", "never"]) == [None, 2, 3]
    assert list(storage.keys()) == ["long", "never"]


def test_expire_changes_a_keys_expiry_without_rewriting_it(
    storage: Storage, backend: Backend
) -> None:
    storage.set("k", "v")
    assert storage.expire("k", 0.5)
    assert not storage.expire("missing", 0.5)
    _pass(backend, 0.6)
    assert storage.get("k") is None


def test_a_views_default_ttl_applies_to_its_writes(storage: Storage, backend: Backend) -> None:
    view = storage.with_prefix("tmp", ttl=0.5)
    view.set("a", 1)
    view.set("b", 2, ttl=None)
    _pass(backend, 0.6)
    assert view.get_many(["a", "b"]) == [None, 2]


# -- lifetime -------------------------------------------------------------------------------


def test_a_closed_storage_raises_storage_closed(backend: Backend) -> None:
    storage = backend.storage()
    view = storage.with_prefix("v")
    storage.close()
    storage.close()  # idempotent
    assert storage.closed
    assert view.closed
    for operation in (
        lambda: storage.get("a"),
        lambda: storage.set("a", 1),
        lambda: storage.get_many(["a"]),
        lambda: storage.keys(),
        lambda: next(storage.items()),
        lambda: storage.clear(),
        lambda: view.get("a"),
        lambda: storage.with_prefix("x"),
    ):
        with pytest.raises(StorageClosed):
            operation()


@pytest.mark.parametrize("name", ["sqlite-file", "fs", "redis"])
def test_values_survive_a_new_storage_on_a_persistent_driver(name: str, tmp_path: Path) -> None:
    backend = make_backend(name, tmp_path)
    with backend.storage() as storage:
        storage.set("kept", {"a": [1, 2]})
    with backend.storage() as again:
        assert again.get("kept") == {"a": [1, 2]}
        again.clear()
