"""The Redis driver: one hash of values and one sorted set of keys per base, on ``redis.asyncio``.

Key layout. A storage with base ``B`` owns exactly two Redis keys: the hash ``B:kv`` (field =
key, value = bytes) and the sorted set ``B:keys`` (member = key, every score 0), the ordered
index. Members with equal scores sort by their bytes, and UTF-8 byte order is code point order,
so ``ZRANGEBYLEX [P (succ(P)`` pages through exactly the keys starting with ``P`` in key order,
at a cost that grows with the matches, not with the size of the base or of the database.

Tenants never meet: two bases map to four different Redis keys, because ``X:kv == Y:kv`` only
when ``X == Y`` and a name ending in ``:kv`` never equals one ending in ``:keys``. The bases
``app``, ``app2`` and ``app:x`` therefore share nothing, and no key character can reach outside
its base: keys are hash fields and set members, never parts of a Redis key name or a pattern.

Every write runs a small Lua script: one round trip, atomic, so the hash and the index never
disagree and ``set_many`` / ``delete_many`` are all or nothing (as with MULTI/EXEC, no client
ever sees half a batch, and the scripts refuse to start when a foreign value of the wrong type
sits at ``B:kv`` or ``B:keys``, the one thing that could make a command fail half-way, as Redis
has no rollback).

asyncio only: ``redis.asyncio`` does not run under trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from kvstore.driver import BaseDriver
from kvstore.drivers._extras import missing_extra
from kvstore.errors import BackendError, BackendUnavailable, ConfigurationError, InvalidKey
from kvstore.keys import prefix_successor, validate_key
from kvstore.urls import redact_url

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("redis", "redis", "redis") from error

__all__ = ["RedisDriver", "from_url", "redis_driver"]

# Everything a redis-py call can raise; _translate turns each into a kvstore error.
_FAILURES = (RedisError, OSError, TimeoutError)

# Keys fetched per ZRANGEBYLEX page while scanning or clearing: bounds memory per round trip.
SCAN_PAGE = 1000
# Keys per HMGET in get_many; larger requests are pipelined in chunks.
BATCH_CHUNK = 5000

# Each write script first checks that the base's two keys hold what this driver put there: a
# command failing half-way through a script is not rolled back, and a foreign value of another
# type at either key is the one thing that could make one fail after another had written.
_GUARD = """
local function kind(key) return redis.call('TYPE', key)['ok'] end
local h, z = kind(KEYS[1]), kind(KEYS[2])
if (h ~= 'hash' and h ~= 'none') or (z ~= 'zset' and z ~= 'none') then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' or ' .. KEYS[2] .. ' holds foreign data')
end
"""
_SET_SCRIPT = _GUARD + (
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) redis.call('ZADD', KEYS[2], 0, ARGV[1])"
)
_DELETE_SCRIPT = _GUARD + (
    "redis.call('HDEL', KEYS[1], ARGV[1]) redis.call('ZREM', KEYS[2], ARGV[1])"
)
# Batches: ARGV holds key, value, key, value... (or just keys); one script call is atomic and
# sends each key once, where MULTI HSET ZADD would send it twice. unpack() is limited by Lua's
# C stack (about 8000 values), hence the steps.
_SET_MANY_SCRIPT = _GUARD + """
local n = #ARGV
for first = 1, n, 4000 do
  local last = math.min(first + 3999, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, first, last))
  local members = {}
  for i = first, last, 2 do
    members[#members + 1] = 0
    members[#members + 1] = ARGV[i]
  end
  redis.call('ZADD', KEYS[2], unpack(members))
end
"""
_DELETE_MANY_SCRIPT = _GUARD + """
local n = #ARGV
for first = 1, n, 4000 do
  local last = math.min(first + 3999, n)
  redis.call('HDEL', KEYS[1], unpack(ARGV, first, last))
  redis.call('ZREM', KEYS[2], unpack(ARGV, first, last))
end
"""
# Deletes one page of a prefix atomically and returns how many keys it removed.
_CLEAR_PAGE_SCRIPT = _GUARD + """
local found = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
if #found > 0 then
  redis.call('HDEL', KEYS[1], unpack(found))
  redis.call('ZREM', KEYS[2], unpack(found))
end
return #found
"""


def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


_SET_SHA, _DELETE_SHA, _SET_MANY_SHA, _DELETE_MANY_SHA, _CLEAR_SHA = (
    _sha1(script)
    for script in (
        _SET_SCRIPT, _DELETE_SCRIPT, _SET_MANY_SCRIPT, _DELETE_MANY_SCRIPT, _CLEAR_PAGE_SCRIPT
    )
)
# By digest, to load a script the server does not know yet (first use, or after a restart).
_SCRIPTS = {
    _SET_SHA: _SET_SCRIPT,
    _DELETE_SHA: _DELETE_SCRIPT,
    _SET_MANY_SHA: _SET_MANY_SCRIPT,
    _DELETE_MANY_SHA: _DELETE_MANY_SCRIPT,
    _CLEAR_SHA: _CLEAR_PAGE_SCRIPT,
}


class RedisDriver(BaseDriver):
    """Stores keys under one ``base`` of a Redis database; see the module docstring for the layout.

    At most ``max_connections`` connections are open: a task that finds every one busy waits up
    to ``socket_timeout`` seconds for one. Unreachable servers
    and timeouts raise :class:`BackendUnavailable`; other server errors :class:`BackendError`.
    """

    name = "redis"
    supports_trio = False
    atomic_batches = True

    def __init__(
        self,
        url: str = "redis://localhost:6379",
        base: str = "agentx",
        *,
        max_connections: int = 50,
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 5.0,
        retries: int = 1,
        client_name: str | None = None,
        **redis_options: Any,
    ) -> None:
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        try:
            validate_key(base)
        except InvalidKey as error:
            raise ConfigurationError(f"invalid Redis base: {error}") from None
        self.base = base
        self.where = _where(url)
        self._url = url
        password = urlsplit(url).password
        self._password = unquote(password) if password else None
        self._hash = f"{base}:kv"
        self._index = f"{base}:keys"
        self._pool_options: dict[str, Any] = {
            "max_connections": max_connections,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            # A stale pooled connection (server restarted) is retried once on a fresh one.
            "retry": Retry(ExponentialBackoff(cap=0.25, base=0.02), retries),
            "client_name": client_name,
            **redis_options,
        }
        self._client: aioredis.Redis | None = None
        # redis-py's BlockingConnectionPool waits for a free connection but costs ~10 µs per
        # command; a semaphore in front of the plain pool bounds connections just as well and
        # costs nothing while a connection is free.
        self._slots = asyncio.Semaphore(max_connections)
        self._max_connections = max_connections
        self._slot_timeout = socket_timeout

    # -- connection -------------------------------------------------------------------------

    def _redis(self) -> aioredis.Redis:
        # Building the pool does no I/O and has no await, so concurrent first uses cannot race:
        # the first one to run creates it. Connections open lazily inside the pool.
        self.ensure_open()
        client = self._client
        if client is None:
            pool = aioredis.ConnectionPool.from_url(self._url, **self._pool_options)
            client = self._client = aioredis.Redis(connection_pool=pool)
        return client

    async def _take_slot(self) -> None:
        slots = self._slots
        if not slots.locked():
            await slots.acquire()  # free: returns at once
            return
        try:
            async with asyncio.timeout(self._slot_timeout):
                await slots.acquire()
            if self.closed:
                # Closed while this task waited: using the pool now would reopen connections.
                slots.release()
                self.ensure_open()
        except TimeoutError:
            raise BackendUnavailable(
                f"all {self._max_connections} connections stayed busy for {self._slot_timeout}s",
                driver=self.name,
                where=self.where,
            ) from None

    def _translate(self, error: BaseException) -> BackendError:
        text = f"{type(error).__name__}: {error}"
        if self._password:
            text = text.replace(self._password, "***")
        unreachable = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
        kind = BackendUnavailable if isinstance(error, unreachable) else BackendError
        return kind(text, driver=self.name, where=self.where)

    async def _script(self, client: aioredis.Redis, sha: str, *args: Any) -> Any:
        command: Callable[..., Awaitable[Any]] = client.execute_command
        try:
            return await command("EVALSHA", sha, 2, self._hash, self._index, *args)
        except NoScriptError:
            # First use on this server, or its script cache was emptied (restart): load it.
            await command("SCRIPT", "LOAD", _SCRIPTS[sha])
            return await command("EVALSHA", sha, 2, self._hash, self._index, *args)

    # -- primitives -------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` (one HGET)."""
        client = self._redis()
        await self._take_slot()
        try:
            return cast("bytes | None", await client.hget(self._hash, key))
        except _FAILURES as error:
            raise self._translate(error) from None
        finally:
            self._slots.release()

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``: value and index entry in one atomic script call."""
        client = self._redis()
        await self._take_slot()
        try:
            await self._script(client, _SET_SHA, key, value)
        except _FAILURES as error:
            raise self._translate(error) from None
        finally:
            self._slots.release()

    async def delete(self, key: str) -> None:
        """Remove ``key`` and its index entry in one atomic script call."""
        client = self._redis()
        await self._take_slot()
        try:
            await self._script(client, _DELETE_SHA, key)
        except _FAILURES as error:
            raise self._translate(error) from None
        finally:
            self._slots.release()

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield the keys starting with ``prefix`` in order, ``SCAN_PAGE`` per round trip."""
        low, high = _lex_range(prefix)
        while True:
            client = self._redis()
            # The slot is held for one page only: a paused or abandoned scan holds nothing.
            await self._take_slot()
            try:
                # One member past the page tells whether another page exists, which saves the
                # empty round trip a scan would end with whenever the matches fill whole pages.
                page = cast(
                    "list[bytes]",
                    await client.zrangebylex(self._index, low, high, start=0, num=SCAN_PAGE + 1),
                )
            except _FAILURES as error:
                raise self._translate(error) from None
            finally:
                self._slots.release()
            for member in page[:SCAN_PAGE]:
                yield member.decode("utf-8")
            if len(page) <= SCAN_PAGE:
                return
            # Keyset pagination: writes between pages can neither repeat nor skip a key.
            low = b"(" + page[SCAN_PAGE - 1]

    async def close(self) -> None:
        """Close the pool's connections; idempotent."""
        if self.closed:
            return
        self.mark_closed()
        client, self._client = self._client, None
        if client is not None:
            # Best effort: the connections are dropped either way.
            with contextlib.suppress(*_FAILURES):
                await client.aclose()
            with contextlib.suppress(*_FAILURES):
                await client.connection_pool.disconnect()

    # -- batches ----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in order, from HMGET chunks in one round trip."""
        client = self._redis()
        if not keys:
            return []
        await self._take_slot()
        try:
            if len(keys) <= BATCH_CHUNK:
                return cast("list[bytes | None]", await client.hmget(self._hash, list(keys)))
            pipe = client.pipeline(transaction=False)
            for start in range(0, len(keys), BATCH_CHUNK):
                pipe.hmget(self._hash, list(keys[start : start + BATCH_CHUNK]))
            chunks = cast("list[list[bytes | None]]", await pipe.execute())
        except _FAILURES as error:
            raise self._translate(error) from None
        finally:
            self._slots.release()
        return [value for chunk in chunks for value in chunk]

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair, the last one per key winning, all or nothing in one script call."""
        client = self._redis()
        if not items:
            return
        # HSET with a repeated field keeps the last value, so pairs need no de-duplication.
        flat = [part for pair in items for part in pair]
        await self._take_slot()
        try:
            await self._script(client, _SET_MANY_SHA, *flat)
        except _FAILURES as error:
            raise self._translate(error) from None
        finally:
            self._slots.release()

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``, all or nothing in one script call."""
        client = self._redis()
        if not keys:
            return
        await self._take_slot()
        try:
            await self._script(client, _DELETE_MANY_SHA, *keys)
        except _FAILURES as error:
            raise self._translate(error) from None
        finally:
            self._slots.release()

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix``; ``""`` unlinks the base's two Redis keys."""
        client = self._redis()
        await self._take_slot()
        try:
            if not prefix:
                # UNLINK frees a large hash in the background instead of blocking the server.
                await client.unlink(self._hash, self._index)
                return
            low, high = _lex_range(prefix)
            # Page by page, each page atomic, so a huge prefix never blocks the server for long.
            while True:
                removed = int(await self._script(client, _CLEAR_SHA, low, high, SCAN_PAGE))
                if removed < SCAN_PAGE:
                    return
        except _FAILURES as error:
            raise self._translate(error) from None
        finally:
            self._slots.release()

    def __repr__(self) -> str:
        return f"RedisDriver(where={self.where!r}, base={self.base!r})"


def _lex_range(prefix: str) -> tuple[bytes, bytes]:
    """Return the ZRANGEBYLEX bounds of the keys that start with ``prefix``."""
    low = b"[" + prefix.encode("utf-8") if prefix else b"-"
    successor = prefix_successor(prefix)
    high = b"(" + successor.encode("utf-8") if successor is not None else b"+"
    return low, high


def _where(url: str) -> str:
    """Return ``host:port/db`` for errors, without credentials."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return redact_url(url)
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return redact_url(url)
    database = parts.path.lstrip("/") or "0"
    return f"{host}:{port}/{database}"


def redis_driver(
    url: str = "redis://localhost:6379",
    base: str = "agentx",
    *,
    max_connections: int = 50,
    socket_timeout: float = 5.0,
    socket_connect_timeout: float = 5.0,
    retries: int = 1,
    client_name: str | None = None,
    **redis_options: Any,
) -> RedisDriver:
    """Return a Redis driver storing its keys under ``base`` (no I/O until first use).

    ``base`` follows the key rules (non-empty, no control characters, no empty ``:`` segment)
    and isolates this storage from every other base in the same database. ``socket_timeout``
    bounds each command and the wait for a pooled connection; ``socket_connect_timeout`` each
    connection attempt; a failed command is retried ``retries`` times on a fresh connection
    before :class:`BackendUnavailable` is raised. Other keyword arguments go to redis-py's
    connection (``ssl_ca_certs``, ``username``, ...).
    """
    return RedisDriver(
        url,
        base,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        retries=retries,
        client_name=client_name,
        **redis_options,
    )


def from_url(url: str) -> RedisDriver:
    """Build a driver from a ``redis://`` or ``rediss://`` URL.

    ``?base=NAME`` picks the base and ``?max_connections=N`` the pool bound; every other query
    parameter is redis-py's own (``socket_timeout``, ``ssl_cert_reqs``, ...).
    """
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    kept: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "base":
            options["base"] = value
        elif name == "max_connections":
            # Ours, not redis-py's: the driver's own bound sits in front of the pool.
            options["max_connections"] = int(value)
        else:
            kept.append((name, value))
    cleaned = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept), parts.fragment))
    return RedisDriver(cleaned, **options)
