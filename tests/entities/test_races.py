"""What must hold with several processes (issue 9), on SQLite, Redis and PostgreSQL.

Each test spawns worker processes (:mod:`tests.entities.race_workers`) on one store URL of its
own (a fresh SQLite file, a Redis base, a PostgreSQL table), removed afterwards. These need the
drivers' conditional writes; on a driver without them the workers fail with NotSupported.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from entities import create_persistence
from entities.keys import decode_segment
from tests.entities import race_workers
from tests.entities.factories import image
from tests.support.servers import POSTGRESQL_URL, REDIS_URL, server_unreachable

pytestmark = pytest.mark.anyio

ROUNDS = 300
CHAOS_ROUNDS = 3000
SESSION_IDS = ["s0", "s1", "s2"]
# Seconds a whole multi-process run may take before it is declared hung.
RUN_LIMIT = 150


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        server_unreachable(f"Redis at {REDIS_URL} is unreachable: {error}")
    base = f"entities_race_{uuid.uuid4().hex[:12]}"
    try:
        yield f"{REDIS_URL}?base={base}"
    finally:
        for key in client.scan_iter(match=f"{base}*"):
            client.delete(key)
        client.close()


def _postgresql_url() -> Iterator[str]:
    try:
        admin = psycopg.connect(POSTGRESQL_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        server_unreachable(f"PostgreSQL at {POSTGRESQL_URL} is unreachable: {error}")
    table = f"entities_race_{uuid.uuid4().hex[:12]}"
    try:
        separator = "&" if "?" in POSTGRESQL_URL else "?"
        yield f"{POSTGRESQL_URL}{separator}table={table}"
    finally:
        admin.execute(f'DROP TABLE IF EXISTS "{table}"')
        admin.close()


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a store of this test's own on the backend named by the parameter."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race.db'}"
    elif request.param == "redis":
        yield from _redis_url()
    else:
        yield from _postgresql_url()


def _run(
    context: SpawnContext,
    targets: list[tuple[Callable[..., None], tuple[Any, ...]]],
    limit: float = RUN_LIMIT,
) -> list[tuple[str, int, Any]]:
    """Run each target in its own spawned process; return what each put on the queue.

    Fails if a worker dies or the run takes more than ``limit`` seconds.
    """
    results: Any = context.Queue()
    processes = [
        context.Process(target=target, args=(*args, results), daemon=True)
        for target, args in targets
    ]
    for process in processes:
        process.start()
    collected: list[tuple[str, int, Any]] = []
    deadline = time.monotonic() + limit
    try:
        while len(collected) < len(processes):
            try:
                collected.append(results.get(timeout=1))
                continue
            except queue.Empty:
                pass
            codes = [process.exitcode for process in processes]
            if any(code not in (None, 0) for code in codes) or time.monotonic() > deadline:
                # A worker died (its traceback is on stderr) or the run hung.
                pytest.fail(f"workers did not all report (exit codes {codes})")
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0, f"worker exited with {process.exitcode}"
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
    return collected


@pytest.mark.timeout(240)
async def test_four_processes_of_update_metadata_keep_every_key(store_url: str) -> None:
    async with await create_persistence(store_url) as persistence:
        await persistence.images.save_image(image("img"))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    _run(
        context,
        [(race_workers.update_metadata, (store_url, worker, 100, barrier)) for worker in range(4)],
    )
    async with await create_persistence(store_url) as persistence:
        stored = await persistence.images.find_image_by_id("img")
    assert stored is not None
    assert stored.metadata == {f"w{w}-{n}": n for w in range(4) for n in range(100)}


async def _race_add_message_and_delete_session(
    store_url: str, rounds: int, limit: float = RUN_LIMIT
) -> None:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    barrier = context.Barrier(3)
    reports = _run(
        context,
        [
            (race_workers.add_messages, (store_url, 0, SESSION_IDS, stop, barrier)),
            (race_workers.add_messages, (store_url, 1, SESSION_IDS, stop, barrier)),
            (race_workers.delete_sessions, (store_url, SESSION_IDS, rounds, stop, barrier)),
        ],
        limit,
    )
    adds = [entry for role, _, log in reports if role == "adder" for entry in log]
    (operations,) = [log for role, _, log in reports if role == "deleter"]

    async with await create_persistence(store_url) as persistence:
        existing = {
            session_id
            for session_id in SESSION_IDS
            if await persistence.sessions.find_session_by_id(session_id) is not None
        }
        stored: dict[str, list[str]] = {
            session_id: [m.id for m in await persistence.sessions.get_messages(session_id)]
            for session_id in SESSION_IDS
        }
        message_keys = [key async for key in persistence.storage.keys("messages:")]

    # 1. No message under a session that does not exist (looking at the raw keys too).
    orphans = [key for key in message_keys if decode_segment(key.split(":")[1]) not in existing]
    assert orphans == [], f"messages under deleted sessions: {orphans[:10]}"

    # 2. A message acknowledged before a delete of its session began is gone for good, even
    #    though the id was re-created; a message whose add failed is not stored.
    outcome = {message_id: (start, end, result) for _, message_id, start, end, result in adds}
    for session_id, message_ids in stored.items():
        deletes = [s for op, sid, s, _ in operations if op == "delete" and sid == session_id]
        last_delete_start = max(deletes, default=float("-inf"))
        for message_id in message_ids:
            _, end, result = outcome[message_id]
            assert result == "ok", f"{message_id} is stored though its add failed"
            assert end > last_delete_start, (
                f"{message_id} was acknowledged before a delete of {session_id} began and came back"
            )

    # 3. An add that began after a delete returned failed, unless the id was re-created
    #    before the add ended: a re-create that overlaps the add may take effect before it, as
    #    one that ended before the add began must.
    #    And an add with no delete near it, to a session that existed, succeeded.
    for session_id, message_id, start, end, result in adds:
        timeline = [(op, s, e) for op, sid, s, e in operations if sid == session_id]
        before = [index for index, (_, _, e) in enumerate(timeline) if e < start]
        last = before[-1] if before else None
        if result == "ok" and last is not None and timeline[last][0] == "delete":
            recreated = any(op == "save" and s < end for op, s, _ in timeline[last + 1 :])
            assert recreated, (
                f"{message_id} to {session_id} began after the delete returned and succeeded"
            )
        overlapping = [op for op, s, e in timeline if s < end and e > start]
        if last is not None and timeline[last][0] == "save" and not overlapping:
            assert result == "ok", f"{message_id} failed though {session_id} existed throughout"

    # The race was real: adds both landed and were refused, and deletes removed messages.
    results = [result for *_, result in adds]
    assert results.count("ok") > 0
    assert results.count("missing") > 0
    assert len([op for op, *_ in operations if op == "delete"]) == rounds


@pytest.mark.timeout(240)
async def test_add_message_racing_delete_session(store_url: str) -> None:
    await _race_add_message_and_delete_session(store_url, ROUNDS)


@pytest.mark.chaos
@pytest.mark.timeout(1700)
async def test_add_message_racing_delete_session_long(store_url: str) -> None:
    await _race_add_message_and_delete_session(store_url, CHAOS_ROUNDS, limit=1500)


@pytest.mark.timeout(180)
async def test_message_order_holds_when_another_process_continues_the_session(
    store_url: str,
) -> None:
    async with await create_persistence(store_url) as persistence:
        await persistence.sessions.save_session(race_workers.session_record("s1"))
    context = multiprocessing.get_context("spawn")
    _run(context, [(race_workers.add_in_order, (store_url, "s1", ["msg-9", "msg-10"]))])
    _run(context, [(race_workers.add_in_order, (store_url, "s1", ["msg-11"]))])
    async with await create_persistence(store_url) as persistence:
        messages = await persistence.sessions.get_messages("s1")
    assert [m.id for m in messages] == ["msg-9", "msg-10", "msg-11"]
