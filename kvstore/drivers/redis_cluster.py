"""The Redis Cluster driver: a base split into buckets that spread over the cluster's nodes.

Layout. A base ``B`` is split into a fixed number of buckets (``buckets``, default 16). Bucket
``i`` is a single-node base of its own (the five structures and the scripts of
:mod:`kvstore.drivers.redis`, unchanged) whose Redis keys carry the hash tag ``{B/i/j}``: the
values hash ``{B/i/j}:kv``, the index ``{B/i/j}:keys``, and ``:ver``, ``:at``, ``:exp``. All
five share the tag, so they sit in one slot and every script runs on one node; ``j`` is the
smallest number that puts bucket ``i`` of ``n`` in the ``i``-th ``n``-th of the 16,384 slots,
so the buckets spread evenly over the slot ranges ``redis-cli --cluster create`` hands out (and
so over the masters). ``j`` depends on ``B``, ``i`` and ``n`` alone: every client computes the
same names. A key lives in bucket ``crc32(utf-8 bytes of the key) mod n`` (:func:`zlib.crc32`,
stable across processes and Python versions, unlike ``hash()``).

The bucket count is chosen when a base is first used and recorded in the cluster: the string key
``{B}:meta`` holds ``buckets=n``, written with ``SET NX``. Every client reads it before its first
operation, and one configured with another count gets :class:`ConfigurationError` rather than
looking for keys in the wrong buckets. ``clear()`` empties the buckets and keeps the record.

Bases never meet: a base may not contain ``{`` or ``}`` (refused at construction), so the tag of
a bucket is the text between the first braces and ``B/i/j`` is read back by its last two
slashes; names with different suffixes never meet (``:meta`` is a sixth suffix).

Scans. ``keys(prefix)`` reads the first page of every bucket concurrently, then merges the
buckets' ordered pages (a k-way merge on a heap), fetching a bucket's next page only when the
merge reaches its end: the result is complete, in order and streaming, and costs the matches
plus one round trip per bucket, never a pass over the store. ``clear(prefix)`` runs each
bucket's page-wise clear, removing exactly the keys a scan yields (and expired ones).

Batches. ``set_many``, ``delete_many``, ``get_many`` and ``set_many_expiring`` group their keys
by bucket and send one script per bucket, concurrently: **atomic within a bucket, not across
buckets** (``atomic_batches`` is False). A reader may see one bucket's part of a batch before
another's, and a failure part way (a node down) can leave some buckets' parts applied and not
others. A caller needing all or nothing across keys keeps them in one key, as on MongoDB.

Conditional writes. ``get_versioned``, ``set_if``, ``delete_if`` and a ``commit`` whose keys
fall in one bucket are one script, as atomic as on a single node. A ``commit`` across buckets
runs in two steps: first every bucket checks its conditions (one read-only script each,
concurrently); if any fails it raises :class:`~kvstore.errors.Conflict` naming every failing
key, having written nothing. Then the buckets holding a condition apply their parts, each
atomically and re-checking its conditions, concurrently; and only once all of those applied,
the buckets holding unconditional changes alone. Another client that changed a key between the
two steps makes that bucket's part fail (Conflict naming its keys): the other conditional
buckets' parts may be applied, and no unconditional-only part is. Readers can see such a commit
half applied.

Durability. Redis replicates asynchronously: a master that dies may take its last acknowledged
writes with it. With ``wait_replicas=n`` every write is followed by ``WAIT n timeout`` on the
same connection (sent together, one round trip), where the timeout is half of
``operation_timeout``; if fewer than ``n`` replicas confirm the write in time, the operation
raises :class:`BackendUnavailable`, and the write **may have been applied** (on the master, maybe
not on a replica). WAIT narrows the loss window; it does not make Redis strongly consistent (a
failover can still pick a replica that missed a write acknowledged to ``n`` others if ``n`` is
less than the replicas of that master).

Failover. redis-py's cluster client follows MOVED and ASK redirects and reloads the topology on
a connection failure. The driver turns off redis-py's own command retries and retries itself
(after a connection failure, CLUSTERDOWN, TRYAGAIN, a slot not yet covered), backing off up to
0.25 s, until ``operation_timeout``: during a failover an operation either succeeds on the
promoted replica or raises :class:`BackendUnavailable` at its deadline. A retried conditional
script behaves as on a single node (see :mod:`kvstore.drivers.redis`): it recognises its own
earlier run, and reports an unknown outcome as :class:`BackendUnavailable`, never a Conflict.

asyncio only, as the single-node driver.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import traceback
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from kvstore.conditional import AnyVersion, Change, Versioned
from kvstore.driver import BaseDriver, conflict
from kvstore.drivers._extras import missing_extra
from kvstore.drivers._settings import settle, timeout_seconds, whole_number
from kvstore.drivers._translate import ErrorTable, Translator, described
from kvstore.errors import BackendError, ConfigurationError, Conflict, InvalidKey
from kvstore.expiry import Meta
from kvstore.keys import validate_key
from kvstore.logs import silent_until_configured
from kvstore.urls import parse_url, positive_float, positive_int, take_options

try:
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.backoff import NoBackoff
    from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
    from redis.exceptions import (
        AskError,
        ClusterDownError,
        MaxConnectionsError,
        NoScriptError,
        RedisClusterException,
        RedisError,
        ResponseError,
        SlotNotCoveredError,
        TryAgainError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry

    from kvstore.drivers import redis as single
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("redis", "redis+cluster", "redis") from error

__all__ = ["RedisClusterDriver", "from_url", "redis_cluster_driver"]

_T = TypeVar("_T")

_log = logging.getLogger("kvstore.redis_cluster")
silent_until_configured("redis_cluster")

SCHEMES = ("redis+cluster",)
DEFAULT_PORT = 6379
DEFAULT_BUCKETS = 16
# Above this, a scan's one round trip per bucket dominates small scans, and finding the tags
# (about n tries per bucket) slows the first use.
MAX_BUCKETS = 1024
DEFAULT_POOL_SIZE = 50
# Fewest keys per scan page of one bucket: with many buckets, smaller pages cost round trips.
BUCKET_PAGE_MIN = 128
# Backoff between the driver's own retries during a failover: doubling from 20 ms, at most
# 250 ms, until operation_timeout.
RETRY_FIRST = 0.02
RETRY_CAP = 0.25

# Errors after which the command is sent again (after a backoff) until the deadline: the node
# is unreachable, or the cluster is reconfiguring (failover, slot migration).
_RETRYABLE = (
    RedisConnectionError, RedisTimeoutError, ClusterDownError, TryAgainError,
    SlotNotCoveredError, AskError, OSError,
)
_FAILURES = (*single._FAILURES, RedisClusterException)

# The scripts that write: with wait_replicas, each is followed by WAIT.
_WRITES = frozenset({
    single._SET_SHA, single._DELETE_SHA, single._SET_MANY_SHA, single._CLEAR_SHA,
    single._EXPIRE_SHA, single._PURGE_SHA, single._SET_IF_SHA, single._DELETE_IF_SHA,
    single._COMMIT_SHA,
})


class _TooFewReplicas(RedisError):
    """WAIT counted fewer replicas than ``wait_replicas``: the write may or may not last."""


# What means "cannot be reached now, or the outcome is unknown": BackendUnavailable.
_UNREACHABLE = (
    *single._UNREACHABLE, ClusterDownError, TryAgainError, RedisClusterException, _TooFewReplicas
)


def bucket_of(key: str, buckets: int) -> int:
    """The bucket that holds ``key`` in a base of ``buckets`` buckets: CRC32 of its UTF-8."""
    return zlib.crc32(key.encode("utf-8")) % buckets


def bucket_stem(base: str, index: int, buckets: int) -> str:
    """The hash-tagged stem of bucket ``index`` of ``buckets``: ``{base/index/j}``.

    ``j`` is the smallest number putting the tag's slot in the bucket's share of the slots.
    """
    low = index * REDIS_CLUSTER_HASH_SLOTS // buckets
    high = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // buckets
    tries = 0
    while True:
        tag = f"{base}/{index}/{tries}"
        if low <= key_slot(tag.encode("utf-8")) < high:
            return "{" + tag + "}"
        tries += 1


@dataclass(frozen=True, slots=True)
class _Arguments:
    """The arguments of :func:`redis_cluster_driver`, handed to the driver as one value."""

    url: str
    base: str | None
    buckets: int | None
    wait_replicas: int | None
    pool_size: int | None
    connect_timeout: float | None
    operation_timeout: float | None
    client_name: str | None


_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "base": str,
    "buckets": positive_int,
    "wait_replicas": single._non_negative_int,
    "pool_size": positive_int,
    "connect_timeout": positive_float,
    "operation_timeout": positive_float,
    "client_name": str,
}


class RedisClusterDriver(BaseDriver):
    """Stores one base of a Redis Cluster in buckets; see the module docstring for the layout.

    Build it with :func:`redis_cluster_driver` (or a ``redis+cluster://`` URL). Unreachable
    nodes, a cluster that stays down past ``operation_timeout`` and too few replicas for
    ``wait_replicas`` raise :class:`BackendUnavailable`; other server errors
    :class:`BackendError`; each names the driver and the nodes, never a password.
    """

    name = "redis_cluster"
    supports_trio = False
    atomic_batches = False
    conditional_writes = True
    expiry = True

    def __init__(self, arguments: _Arguments) -> None:
        parsed = parse_url(
            arguments.url, schemes=SCHEMES, multi_host=True, default_port=DEFAULT_PORT
        )
        options = take_options(parsed.options, _OPTIONS, where=self.name)
        if parsed.path not in ("", "0"):
            raise ConfigurationError(
                f"{self.name}: a cluster has only database 0; the URL path must be empty or /0, "
                f"not /{parsed.path!r}"
            )
        nodes = [(host or "localhost", port or DEFAULT_PORT) for host, port in parsed.hosts]
        if not nodes:
            nodes = [("localhost", DEFAULT_PORT)]
        self.where = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in nodes)
        where = f"redis cluster at {self.where}"

        def pick(setting: str, argument: Any, default: Any) -> Any:
            given = {setting: argument, f"?{setting}": options.pop(setting, None)}
            return settle(setting, given, default, where=where)

        base: str = pick("base", arguments.base, "agentx")
        try:
            validate_key(base)
        except InvalidKey as error:
            raise ConfigurationError(f"invalid Redis base: {error}") from None
        if "{" in base or "}" in base:
            raise ConfigurationError(
                f"{where}: a cluster base may not contain {{ or }} (they would change the "
                "hash tag that places its buckets)"
            )
        self.base = base
        self.buckets = whole_number(
            "buckets", pick("buckets", arguments.buckets, DEFAULT_BUCKETS), minimum=1,
            where=where,
        )
        if self.buckets > MAX_BUCKETS:
            raise ConfigurationError(f"{where}: buckets must be at most {MAX_BUCKETS}")
        # One bucket: every batch and commit is one script on one node, as on a single server.
        self.atomic_batches = self.buckets == 1
        self.wait_replicas = whole_number(
            "wait_replicas", pick("wait_replicas", arguments.wait_replicas, 0), minimum=0,
            where=where,
        )
        pool_size = whole_number(
            "pool_size", pick("pool_size", arguments.pool_size, DEFAULT_POOL_SIZE), minimum=1,
            where=where,
        )
        connect_timeout = timeout_seconds(
            "connect_timeout",
            pick("connect_timeout", arguments.connect_timeout, single.DEFAULT_CONNECT_TIMEOUT),
            where=where,
        )
        self.operation_timeout = timeout_seconds(
            "operation_timeout",
            pick("operation_timeout", arguments.operation_timeout,
                 single.DEFAULT_OPERATION_TIMEOUT),
            where=where,
        )
        client_name = pick("client_name", arguments.client_name, None)
        credentials: dict[str, Any] = {}
        if parsed.username:
            credentials["username"] = parsed.username
        if parsed.password:
            credentials["password"] = parsed.password
        self._cluster_options: dict[str, Any] = {
            "startup_nodes": [ClusterNode(host, port) for host, port in nodes],
            "max_connections": pool_size,
            "socket_timeout": self.operation_timeout,
            "socket_connect_timeout": connect_timeout,
            # The driver retries itself (see the module docstring): redis-py's retries would
            # hide whether a script was sent twice.
            "retry": Retry(NoBackoff(), 0),
            "client_name": client_name,
            **credentials,
        }
        self._meta = f"{{{base}}}:meta"
        self._record = f"buckets={self.buckets}".encode()
        self._agreed = False
        self._agreeing = asyncio.Lock()
        self._client: RedisCluster | None = None
        self._slots = asyncio.Semaphore(pool_size)
        self._errors = Translator(
            ErrorTable(unavailable=_UNREACHABLE, describe=self._describe),
            driver=self.name,
            where=self.where,
            secret=parsed.password or "",
        )
        self._buckets = [_Bucket(self, bucket_stem(base, i, self.buckets))
                         for i in range(self.buckets)]

    def __repr__(self) -> str:
        return f"RedisClusterDriver(where={self.where!r}, base={self.base!r})"

    # -- the client, the bucket record, errors ----------------------------------------------

    def _cluster(self) -> RedisCluster:
        # No I/O and no await: concurrent first uses cannot race.
        self.ensure_open()
        client = self._client
        if client is None:
            client = self._client = RedisCluster(**self._cluster_options)
        return client

    async def _agree(self, client: RedisCluster) -> None:
        """Record the bucket count if the base has none, else check it is ours (once)."""
        await client.set(self._meta, self._record, nx=True)
        found = await client.get(self._meta)
        if found != self._record:
            shown = found.decode("utf-8", "replace") if isinstance(found, bytes) else found
            raise ConfigurationError(
                f"redis cluster at {self.where}: base {self.base!r} was created with "
                f"{shown!r}, but this client is configured with buckets={self.buckets}; "
                "every client of a base must use the count it was created with"
            )
        self._agreed = True

    def _describe(self, error: BaseException) -> str:
        if type(error) is TimeoutError:
            return f"no answer within operation_timeout={self.operation_timeout:g}s"
        return described(error)

    def translate(self, error: BaseException) -> BackendError:
        """The typed error for a client exception, logged at DEBUG."""
        failure = self._errors.error(error)
        _log.debug("%s", failure)
        return failure

    async def call(
        self, bucket: _Bucket, command: Callable[[RedisCluster], Awaitable[_T]]
    ) -> _T:
        """Run ``command`` for ``bucket`` under the deadline, retrying through failovers."""
        client = self._cluster()
        last: BaseException | None = None
        try:
            async with asyncio.timeout(self.operation_timeout):
                await self._slots.acquire()
                try:
                    failures = 0
                    while True:
                        if self._client is not client:
                            self.ensure_open()  # closed while this task waited
                        try:
                            try:
                                if not self._agreed:
                                    # One task at a time: the first use also loads the
                                    # topology, which redis-py does not expect to run twice at
                                    # once on fresh connections.
                                    async with self._agreeing:
                                        if not self._agreed:
                                            await self._agree(client)
                                return await command(client)
                            except NoScriptError:
                                # A node that never ran the scripts (first use, a promoted
                                # replica, a restart): load them there and run again.
                                await bucket.load_scripts(client)
                                return await command(client)
                        except (*_RETRYABLE, AttributeError) as caught:
                            error = _lost_connection(caught)
                            last = error
                            failures += 1
                            if not isinstance(error, MaxConnectionsError):
                                # Sent, maybe run: a conditional script must know (see the
                                # single-node driver). A full node pool sent nothing.
                                single._RETRIED.set(True)
                            _log.info(
                                "redis cluster at %s: %s; retrying (attempt %d)",
                                self.where, described(error), failures,
                            )
                            await asyncio.sleep(min(RETRY_CAP, RETRY_FIRST * 2 ** failures))
                finally:
                    self._slots.release()
        except TimeoutError as error:
            raise self.translate(last if last is not None else error) from None
        except _FAILURES as error:
            raise self.translate(error) from None

    async def send(self, client: RedisCluster, anchor: str, *command: Any) -> Any:
        """Send ``command`` (whose keys share ``anchor``'s slot); WAIT after it if asked to.

        WAIT must follow the write on the same connection, so with ``wait_replicas`` both go
        to the slot's node in one packet on one connection.
        """
        if not self.wait_replicas:
            return await client.execute_command(*command)
        await client.initialize()
        node = client.get_node_from_key(anchor)
        if node is None:
            raise SlotNotCoveredError(f"no node serves the slot of {anchor!r} yet")
        wait_ms = max(1, int(self.operation_timeout * 500))
        connection = node.acquire_connection()
        try:
            await node.disconnect_if_needed(connection)
            await connection.send_packed_command(
                connection.pack_commands([command, ("WAIT", self.wait_replicas, wait_ms)])
            )
            failure: ResponseError | None = None
            reply: Any = None
            try:
                reply = await node.parse_response(connection, command[0])
            except ResponseError as error:
                failure = error  # the WAIT reply still has to be read
            acknowledged = await node.parse_response(connection, "WAIT")
        except (RedisConnectionError, RedisTimeoutError, OSError):
            # The node is gone or stalled: reload the topology before the retry.
            await connection.disconnect()
            client._initialize = True
            raise
        finally:
            node.release(connection)
        if failure is not None:
            if isinstance(failure, (AskError, ClusterDownError, TryAgainError)):
                client._initialize = True  # a moved slot: look it up again, then retry
            raise failure
        if int(acknowledged) < self.wait_replicas:
            raise _TooFewReplicas(
                f"only {int(acknowledged)} of wait_replicas={self.wait_replicas} replicas "
                f"confirmed the write within {wait_ms} ms; it was applied on the master and "
                "may be lost if the master fails now"
            )
        return reply

    def _bucket(self, key: str) -> _Bucket:
        return self._buckets[bucket_of(key, self.buckets)]

    def _grouped(self, keys: Sequence[str]) -> dict[int, list[int]]:
        """Positions of ``keys`` by bucket number, in order within each bucket."""
        groups: dict[int, list[int]] = {}
        buckets = self.buckets
        for position, key in enumerate(keys):
            groups.setdefault(bucket_of(key, buckets), []).append(position)
        return groups

    # -- primitives -------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value of ``key``, or ``None`` if absent or expired: one script, one node."""
        return await self._bucket(key).get(key)

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` in its bucket: one script."""
        await self._bucket(key).set(key, value)

    async def delete(self, key: str) -> None:
        """Remove ``key`` from its bucket: one script."""
        await self._bucket(key).delete(key)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield the live keys starting with ``prefix`` in order: a k-way merge of the buckets."""
        self.ensure_open()
        pagers = [bucket.pages(prefix) for bucket in self._buckets]
        try:
            firsts = await _gathered([anext(pager, None) for pager in pagers])
            pages: list[list[bytes]] = []
            heap: list[tuple[bytes, int, int]] = []
            for number, page in enumerate(firsts):
                pages.append(page or [])
                if page:
                    heap.append((page[0], number, 0))
            heapq.heapify(heap)
            # Members compare as UTF-8 bytes, which is code point order, as each bucket's index.
            while heap:
                member, number, position = heap[0]
                yield member.decode("utf-8")
                position += 1
                if position == len(pages[number]):
                    following = await anext(pagers[number], None)
                    if following is None:
                        heapq.heappop(heap)
                        continue
                    pages[number], position = following, 0
                heapq.heapreplace(heap, (pages[number][position], number, position))
        finally:
            for pager in pagers:
                await pager.aclose()

    async def close(self) -> None:
        """Close every node's connections; idempotent."""
        if self.closed:
            return
        self.mark_closed()
        client, self._client = self._client, None
        if client is not None:
            try:
                async with asyncio.timeout(self.operation_timeout):
                    await client.aclose()
            except (*_FAILURES, TimeoutError):
                pass  # best effort: the connections are dropped either way

    # -- batches ----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values of ``keys`` in order: one script per bucket, concurrently."""
        return await self._read_by_bucket(keys, lambda bucket, part: bucket.get_many(part))

    async def _read_by_bucket(
        self, keys: Sequence[str], read: Callable[[_Bucket, list[str]], Awaitable[list[_T | None]]]
    ) -> list[_T | None]:
        """``read`` each bucket's share of ``keys``, concurrently; the answers in order."""
        self.ensure_open()
        groups = self._grouped(keys)
        if len(groups) <= 1:
            return await read(self._bucket(keys[0]), list(keys)) if keys else []
        found: list[_T | None] = [None] * len(keys)
        replies = await _gathered([
            read(self._buckets[number], [keys[i] for i in positions])
            for number, positions in groups.items()
        ])
        for positions, answers in zip(groups.values(), replies, strict=True):
            for position, answer in zip(positions, answers, strict=True):
                found[position] = answer
        return found

    async def _by_bucket(
        self, keys: Sequence[str], each: Callable[[_Bucket, list[int]], Awaitable[None]]
    ) -> None:
        """Run ``each`` once per bucket holding some of ``keys``, concurrently."""
        self.ensure_open()
        groups = self._grouped(keys)
        await _all(each(self._buckets[number], positions) for number, positions in groups.items())

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair: atomic within a bucket, the buckets concurrently (not across)."""
        await self._by_bucket(
            [key for key, _ in items],
            lambda bucket, positions: bucket.set_many([items[i] for i in positions]),
        )

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key: atomic within a bucket, the buckets concurrently (not across)."""
        await self._by_bucket(
            keys, lambda bucket, positions: bucket.delete_many([keys[i] for i in positions])
        )

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix`` from every bucket, concurrently."""
        self.ensure_open()
        await _all(bucket.clear(prefix) for bucket in self._buckets)

    # -- conditional writes -------------------------------------------------------------------

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        """Value and version of ``key``, read at one instant by one script."""
        return await self._bucket(key).get_versioned(key)

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        """Write ``value`` only if ``key`` is at ``expected``; one script in its bucket."""
        return await self._bucket(key).set_if(key, value, expected)

    async def delete_if(self, key: str, expected: int) -> None:
        """Delete ``key`` only if it is at ``expected``; one script in its bucket."""
        await self._bucket(key).delete_if(key, expected)

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        """Atomic when every key is in one bucket; else checked everywhere, then applied.

        See the module docstring for what a commit across buckets leaves when another client
        interferes between its two steps.
        """
        self.ensure_open()
        groups = self._grouped([change.key for change in changes])
        if len(groups) <= 1:
            return await self._bucket(changes[0].key).commit(changes) if changes else []
        checks = {
            number: [Change[bytes].check(changes[i].key, expected)
                     for i in positions
                     if not isinstance(expected := changes[i].expected, AnyVersion)]
            for number, positions in groups.items()
        }
        outcomes = await asyncio.gather(
            *(self._buckets[number].commit(found) for number, found in checks.items() if found),
            return_exceptions=True,
        )
        _raise_conflicts(outcomes)
        results: list[int | None] = [None] * len(changes)
        # The buckets holding a condition first, then (only if all of those applied) the ones
        # holding unconditional changes alone: a commit that loses a race writes nothing
        # outside the buckets of its conditions.
        conditional = [number for number in groups if checks[number]]
        free = [number for number in groups if not checks[number]]
        for numbers in (conditional, free):
            applied = await asyncio.gather(
                *(self._buckets[number].commit([changes[i] for i in groups[number]])
                  for number in numbers),
                return_exceptions=True,
            )
            _raise_conflicts(applied)
            for number, versions in zip(numbers, applied, strict=True):
                assert isinstance(versions, list)
                for position, version in zip(groups[number], versions, strict=True):
                    results[position] = version
        return results

    # -- expiry and metadata ------------------------------------------------------------------

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` to expire ``ttl`` seconds after its node's clock at the write."""
        await self._bucket(key).set_expiring(key, value, ttl)

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """Store every pair to expire after ``ttl``: atomic within a bucket, not across.

        Each bucket's part reads its own node's clock, so parts on different nodes may differ
        by the nodes' clock skew.
        """
        await self._by_bucket(
            [key for key, _ in items],
            lambda bucket, positions: bucket.set_many_expiring(
                [items[i] for i in positions], ttl
            ),
        )

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Set (or with ``None`` clear) a live key's expiry; one script in its bucket."""
        return await self._bucket(key).expire(key, ttl)

    async def get_meta(self, key: str) -> Meta | None:
        """Size, write time, expiry and version of a live key; one script in its bucket."""
        return await self._bucket(key).get_meta(key)

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        """:meth:`get_meta` of each of ``keys`` in order: the bucket's batch read, concurrently."""
        return await self._read_by_bucket(keys, lambda bucket, part: bucket.get_meta_many(part))

    async def purge_expired(self, limit: int = 1000) -> int:
        """Remove up to ``limit`` expired keys, bucket after bucket."""
        self.ensure_open()
        removed = 0
        for bucket in self._buckets:
            if removed >= limit:
                break
            removed += await bucket.purge_expired(limit - removed)
        return removed


def _lost_connection(error: BaseException) -> BaseException:
    """``error`` itself, or for redis-py's connection race a ConnectionError in its place.

    redis-py's cluster client, after one command's connection failed, disconnects the node's
    other connections while commands may be using them; such a command then fails with an
    AttributeError deep inside redis-py (its stream is gone): a lost connection, retried as one.
    An AttributeError raised anywhere else is a bug, and goes on as it is.
    """
    if not isinstance(error, AttributeError):
        return error
    frames = traceback.extract_tb(error.__traceback__)
    if not frames or f"{os.sep}redis{os.sep}" not in frames[-1].filename:
        raise error
    return RedisConnectionError(f"the connection was closed under the command ({error})")


async def _gathered(calls: Sequence[Awaitable[_T]]) -> list[_T]:
    """Await every call concurrently and return their results in order.

    The first failure is raised only once every call has finished, so nothing of the operation
    runs on after it returns or raises (and a scan's pages are never read while being closed).
    """
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return cast("list[_T]", outcomes)


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Await every call concurrently; the first failure is raised after all have finished."""
    await _gathered(list(calls))


def _raise_conflicts(outcomes: Sequence[object]) -> None:
    """Raise the first non-Conflict failure, else one Conflict naming every failing key."""
    failing: list[str] = []
    for outcome in outcomes:
        if isinstance(outcome, Conflict):
            failing.extend(outcome.keys)
        elif isinstance(outcome, BaseException):
            raise outcome
    if failing:
        raise conflict(failing)


class _Bucket(single.RedisDriver):
    """One bucket: a single-node base under a hash-tagged stem, run through the cluster driver.

    Every operation is the single-node driver's own code; only the way a command reaches the
    server differs (the owner's cluster client, its deadline and its retries).
    """

    def __init__(self, owner: RedisClusterDriver, stem: str) -> None:
        # Deliberately not the parent's __init__: the owner holds the configuration and the
        # client; a bucket only names its keys.
        self._owner = owner
        self.base = owner.base
        self.where = owner.where
        self._operation_timeout = owner.operation_timeout
        self._use_stem(stem)
        # A merged scan holds one page per bucket: about SCAN_PAGE keys in all, as on one node.
        self._page = max(BUCKET_PAGE_MIN, single.SCAN_PAGE // owner.buckets)

    def ensure_open(self) -> None:
        """Raise :class:`StorageClosed` once the owning driver is closed."""
        self._owner.ensure_open()

    def pages(self, prefix: str) -> AsyncGenerator[list[bytes], None]:
        """This bucket's live keys starting with ``prefix``, one non-empty page at a time."""
        return self._pages(prefix)

    async def _call(self, command: Callable[[Any], Awaitable[_T]]) -> _T:
        return await self._owner.call(self, command)

    def _translate(self, error: BaseException) -> BackendError:
        return self._owner.translate(error)

    def _script(self, client: Any, sha: bytes, *args: Any) -> Awaitable[Any]:
        keys = self._get_keys if sha is single._GET_SHA else self._keys
        if sha in _WRITES:
            return self._owner.send(client, self._hash, "EVALSHA", sha, *keys, *args)
        command: Callable[..., Awaitable[Any]] = client.execute_command
        return command("EVALSHA", sha, *keys, *args)

    async def _read_large(self, client: Any, key: str) -> bytes | None:
        # No MULTI through the cluster client here: the read script, with no size limit.
        return cast("bytes | None", await self._script(client, single._GET_SHA, key,
                                                       single._NO_LIMIT))

    async def _set_large(self, client: Any, key: str, value: bytes, version: str) -> bool:
        # No WATCH/MULTI through the cluster client here: the caller runs the write script.
        return False

    async def _untimed(self, client: Any, reads: Sequence[tuple[Any, ...]]) -> list[Any] | None:
        # A cluster client has no MULTI across commands here; the read scripts answer a base
        # with or without expiries exactly, in one call on one node.
        return None

    async def clear(self, prefix: str = "") -> None:
        """Remove this bucket's keys starting with ``prefix``; ``""`` unlinks its five keys."""
        if prefix:
            await super().clear(prefix)
            return
        await self._call(lambda client: self._owner.send(client, self._hash, "UNLINK",
                                                         *self._names))

    async def load_scripts(self, client: RedisCluster) -> None:
        """Load every script on the node serving this bucket's slot."""
        node = client.get_node_from_key(self._hash)
        await asyncio.gather(*(
            client.execute_command("SCRIPT", "LOAD", script, target_nodes=node)
            for script in single._SCRIPTS.values()
        ))


def redis_cluster_driver(
    url: str = "redis+cluster://localhost:6379",
    base: str | None = None,
    *,
    buckets: int | None = None,
    wait_replicas: int | None = None,
    pool_size: int | None = None,
    connect_timeout: float | None = None,
    operation_timeout: float | None = None,
    client_name: str | None = None,
) -> RedisClusterDriver:
    """Return a Redis Cluster driver storing ``base`` in ``buckets`` buckets (no I/O yet).

    ``url`` is ``redis+cluster://host:port,host:port/`` (any reachable nodes: the rest are
    discovered) with the options ``?base=``, ``?buckets=`` (default 16, at most 1024; fixed
    when the base is first used, see the module docstring), ``?wait_replicas=`` (default 0),
    ``?pool_size=`` (connections per node and operations in flight, default 50),
    ``?connect_timeout=`` (default 5 s), ``?operation_timeout=`` (default 10 s, bounding each
    operation including its retries through a failover) and ``?client_name=``. Each setting may
    be given as an argument instead, not both with different values; anything malformed or
    unknown raises :class:`ConfigurationError`.
    """
    return RedisClusterDriver(
        _Arguments(
            url=url,
            base=base,
            buckets=buckets,
            wait_replicas=wait_replicas,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
            client_name=client_name,
        )
    )


def from_url(url: str) -> RedisClusterDriver:
    """Build a driver from a ``redis+cluster://`` URL; see :func:`redis_cluster_driver`."""
    return redis_cluster_driver(url)
