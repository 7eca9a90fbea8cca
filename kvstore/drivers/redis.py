"""The Redis driver: per base, hashes of values, versions and write times, and two sorted sets.

Key layout. A storage with base ``B`` owns at most five Redis keys: the hash ``B:kv`` (field =
key, value = bytes), the sorted set ``B:keys`` (member = key, every score 0), the ordered index,
the hash ``B:ver`` (field = key, value = the key's version as a decimal string, see
:mod:`kvstore.conditional`), the hash ``B:at`` (field = key, value = when it was last written,
milliseconds since the epoch as a decimal string) and the sorted set ``B:exp`` (member = a key
that expires, score = its expiry instant in milliseconds; keys that never expire are not in it,
and a base without expiring keys has no ``B:exp`` at all). Members with equal scores sort by
their bytes, and UTF-8 byte order is code point order, so ``ZRANGEBYLEX [P (succ(P)`` pages
through exactly the keys starting with ``P`` in key order, at a cost that grows with the
matches, not with the size of the base or of the database.

Versions, and the upgrade from older layouts. A key in ``B:kv`` with no field in ``B:ver``
is at :data:`~kvstore.conditional.LEGACY_VERSION` (0): that is how a base written before
versions existed reads, so it needs no migration step at all, and the first write of each key
gives it a version. Likewise a key with no field in ``B:at`` was written before write times were
kept (``Meta.written_at`` is ``None``), and a key not in ``B:exp`` never expires. Versions are
drawn in Python (:func:`~kvstore.conditional.new_version`) and reach the scripts as decimal
strings, which the scripts compare as strings: Lua numbers are doubles, and a string never loses
a digit. Whether a key exists is always decided by ``B:kv`` (and ``B:exp``), so a stray field in
``B:ver`` or ``B:at`` (left by a process still running an older driver, which deletes without
touching them) never makes an absent key look present. Such a process must not write a base
whose users rely on conditional writes or TTLs: its writes leave a key's version, write time and
expiry unchanged (a key it rewrites keeps its old expiry).

Expiry. The server's clock decides: every script that needs "now" reads ``TIME`` itself, once
per call, as whole milliseconds, so a batch has one instant and clients with skewed clocks
agree. A key is expired once its ``B:exp`` score is at or before now, and from then on it is
absent to every operation, purged or not: each read script checks the key's score (``get``
reads ``B:kv`` and ``B:exp`` only; batches use ZMSCORE), scans skip expired members by their
scores inside the script, never sending them to the client, and conditions see them as absent.
A base that holds no expiry at all pays almost nothing for this: a plain write also writes the
write time and removes the key from ``B:exp``, and ``get_many`` and scans read as before inside
one MULTI that checks ``B:exp`` does not exist. Physical removal is bounded and automatic:
``purge_expired`` takes the oldest expired keys from ``B:exp`` (ZRANGEBYSCORE, at most
``PURGE_STEP`` per script call) and removes them from all five keys; every expiring write
(``set_expiring``, ``set_many_expiring``, ``expire``) purges ``AUTO_PURGE`` of them in the same
script, at most once a second per driver instance; and a scan purges the expired keys it met,
at most ``SCAN_PURGE`` per call. Writes without a TTL never purge.

Tenants never meet: two bases map to ten different Redis keys, because ``X:kv == Y:kv`` only
when ``X == Y`` (likewise for the other suffixes), and names with different suffixes never
meet: ``:kv``, ``:keys``, ``:ver``, ``:at`` and ``:exp`` end in five different characters. The
bases ``app``, ``app2``, ``app:x`` and ``app:ver`` therefore share nothing, and no key character
can reach outside its base: keys are hash fields and set members, never parts of a Redis key
name or a pattern.

Every write runs a small Lua script: one round trip, atomic, so the five keys never disagree
and ``set_many`` / ``delete_many`` / ``commit`` are all or nothing (as with MULTI/EXEC, no
client ever sees half a batch; a foreign value of the wrong type at one of the base's keys, the
one thing that could make a command fail half-way, as Redis has no rollback, fails a script
before its first write). A conditional script checks every condition before
its first write, so a failed one writes nothing and returns the failing keys.

Large values never pass through Lua, where a string entering or leaving a script costs the
server about 1.5 ms per MiB: ``set`` of a value over ``LARGE_VALUE`` sends, in one packet, a WATCH
of the five keys, a small script checking their types, and one MULTI of a plain HSET and the
bookkeeping script. On foreign data the check marks a watched key as modified (without changing
it), so the EXEC aborts; a concurrent change aborts it too. Either way the script path runs
instead, so the write is as atomic as the script and still refuses foreign data before writing;
``get`` learns from its script that a value is large and reads it with HGET, ZSCORE and TIME in
one MULTI, deciding expiry by the server's clock as the script does.

Waiting is bounded. Each operation (the wait for a pooled connection, the command, and the one
retry on a fresh connection after a dropped one) runs under one deadline, ``operation_timeout``;
each new connection must connect and answer a PING within ``connect_timeout``. A server that
accepts connections and never answers (stopped with SIGSTOP) is therefore reported as
:class:`BackendUnavailable` within ``connect_timeout`` when a connection is new, and within
``operation_timeout`` when a pooled one was waiting for its reply. redis-py drops a connection
whose command was interrupted, so a timed-out operation never leaves a reply behind for the next
one to read.

The retry after a dropped connection may run a script the server had already run (the reply was
lost, not the command). Unconditional writes are idempotent (a plain write run twice only moves
its write time on; an expiring one, its expiry too). A conditional script that writes
recognises its own earlier run by the fresh version it brings (a random 52-bit number nobody
else can have written) and reports success without writing again. When a retried conditional
script finds its condition failing (another client wrote the key in between, or the first run
was a delete), the driver cannot tell whether the first run applied, so it raises
:class:`BackendUnavailable` (outcome unknown), never :class:`Conflict`: a Conflict would make
``update`` apply its function a second time. One case stays open: a create whose first run
applied, then someone else deleted the key before the retry, is applied a second time.

asyncio only: ``redis.asyncio`` does not run under trio.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import inspect
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
    Sized,
)
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from kvstore.conditional import LEGACY_VERSION, Action, AnyVersion, Change, Versioned, new_version
from kvstore.driver import BaseDriver, conflict
from kvstore.drivers._deadlines import Deadlines
from kvstore.drivers._extras import missing_extra
from kvstore.drivers._settings import settle, timeout_seconds, whole_number
from kvstore.drivers._translate import ErrorTable, Translator, described
from kvstore.errors import (
    BackendError,
    ConfigurationError,
    Conflict,
    InvalidKey,
)
from kvstore.expiry import Meta, from_millis, ttl_millis
from kvstore.keys import prefix_successor, validate_key
from kvstore.logs import silent_until_configured
from kvstore.urls import ParsedURL, boolean, parse_url, positive_float, positive_int, take_options

try:
    import redis.asyncio as aioredis
    from redis.asyncio.connection import AbstractConnection
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise missing_extra("redis", "redis", "redis") from error

__all__ = ["RedisDriver", "from_url", "redis_driver"]

_T = TypeVar("_T")

# Retries, reconnects and pool resets are logged here (INFO), never with a password.
_log = logging.getLogger("kvstore.redis")
silent_until_configured("redis")



class _SilentServer(RedisError):
    """A new connection got no answer to its handshake within connect_timeout.

    Not a redis-py ConnectionError or TimeoutError on purpose: redis-py retries those, which
    would multiply the wait; this one ends the operation at once as BackendUnavailable.
    """


class _NotingBackoff(ExponentialBackoff):
    """redis-py's exponential backoff, noting in :data:`_RETRIED` that a command will be resent.

    redis-py's Retry asks its backoff for a delay only when a command failed and is about to be
    sent again, in the task that sent it; so the note costs nothing on the path without failures.
    The conditional methods read it: a resent script may have run twice (see the module
    docstring).
    """

    def __init__(self, where: str) -> None:
        super().__init__(cap=0.25, base=0.02)
        self._where = where

    def compute(self, failures: int) -> float:
        """The delay before the next attempt; notes (and logs) the retry first."""
        _RETRIED.set(True)
        _log.info(
            "redis at %s: a command failed on a lost connection; resending it on a new one "
            "(retry %d)",
            self._where,
            failures,
        )
        return super().compute(failures)


# Set (in the running task's context) when a command failed and redis-py resends it.
_RETRIED: contextvars.ContextVar[bool] = contextvars.ContextVar("_RETRIED", default=False)


class _LostReply(RedisError):
    """A retried conditional script found its condition failing: its outcome is unknown."""


# Everything a redis-py call can raise; _translate turns each into a kvstore error.
_FAILURES = (RedisError, OSError, TimeoutError)
# Those that mean the server cannot be reached now (or the outcome is unknown).
_UNREACHABLE = (
    RedisConnectionError, RedisTimeoutError, _SilentServer, _LostReply, OSError, TimeoutError
)

# Keys fetched per ZRANGEBYLEX page while scanning or clearing: bounds memory per round trip.
SCAN_PAGE = 1000
# Keys per HMGET in get_many; larger requests send several in one transaction.
BATCH_CHUNK = 5000
# Keys per get_meta_many script call: about six commands each, run while the server waits.
META_CHUNK = 1000
# Index members one scan call may visit looking for a page of live keys (the rest are expired),
# and how many expired ones it met it may purge: bounds the server's work per call.
SCAN_VISITS = 16 * SCAN_PAGE
SCAN_PURGE = SCAN_PAGE
# Expired keys one purge_expired script call removes at most.
PURGE_STEP = 1000
# Expiring writes purge this many expired keys, at most once every AUTO_PURGE_EVERY seconds
# per driver instance.
AUTO_PURGE = 100
AUTO_PURGE_EVERY = 1.0

# Values longer than this (bytes) never pass through Lua, where entering or leaving a script
# copies them at about 1.5 ms per MiB of server time: set stores them with a plain HSET and get
# reads them with a plain HGET, each in a MULTI (see _set_large and _read_large).
LARGE_VALUE = 64 * 1024
_LARGE_LIMIT = str(LARGE_VALUE).encode()
# Keys a driver remembers as holding large values (see _seen_large).
LARGE_HINTS = 1024
# The read script's limit when nothing is too large for it (a Redis value is at most 512 MiB).
_NO_LIMIT = str(1 << 53).encode()

DEFAULT_PORT = 6379
DEFAULT_POOL_SIZE = 50
DEFAULT_CONNECT_TIMEOUT = 5.0
# Ten seconds: a 10,000-item batch or a 16 MiB value takes well under a second on a healthy
# server, so this only ever fires on a server that is stopped, overloaded or cut off, and it
# stays short enough that such a server is reported while a caller still cares.
DEFAULT_OPERATION_TIMEOUT = 10.0
SCHEMES = ("redis", "rediss")

# The scripts. KEYS are the base's five Redis keys, in this order: values hash, index, versions
# hash, write times hash, expiry sorted set (see the module docstring); only _GET_SCRIPT, the
# hottest, takes just the two it reads. Each script is built from the pieces it needs and no
# more: every function a script defines is created again on every call, which a single-key
# script would feel.
#
# Instants are whole milliseconds of the server's clock (TIME, truncated), read at most once per
# call, so one call sees one instant. Numbers are written with %.0f: Lua's default format keeps
# only 14 digits.
_CLOCK = """
local now_ms
local function now()
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_ms
end
local function ms(n) return string.format('%.0f', n) end
"""
# Whether key k is expired, or live (present and not expired). Needs _CLOCK.
_EXPIRED = """
local function expired(k)
  local at = redis.call('ZSCORE', KEYS[5], k)
  return at ~= false and tonumber(at) <= now()
end
local function live(k)
  return redis.call('HEXISTS', KEYS[1], k) == 1 and not expired(k)
end
"""
# Removes the keys of a list from all five structures; unpack() is limited by Lua's C stack
# (about 8000 values), hence the steps.
_REMOVE = """
local function remove(list)
  for first = 1, #list, 4000 do
    local last = math.min(first + 3999, #list)
    redis.call('HDEL', KEYS[1], unpack(list, first, last))
    redis.call('ZREM', KEYS[2], unpack(list, first, last))
    redis.call('HDEL', KEYS[3], unpack(list, first, last))
    redis.call('HDEL', KEYS[4], unpack(list, first, last))
    redis.call('ZREM', KEYS[5], unpack(list, first, last))
  end
end
"""
# Removes up to limit expired keys, found by their expiry scores; returns how many. Needs
# _CLOCK and _REMOVE.
_PURGE = """
local function purge(limit)
  if limit <= 0 then return 0 end
  local gone = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', ms(now()), 'LIMIT', 0, limit)
  remove(gone)
  return #gone
end
"""
# A command failing half-way through a script is not rolled back, and a foreign value of another
# type at the index, the versions, the write times or the expiries is the one thing that could
# make one fail after another had written: every script checks them before its first write. The
# values hash needs no look: every script reaches it before its first write, and a command
# refused for a wrong type changes nothing.
_FOREIGN = """
local function foreign()
  local function kind(key) return redis.call('TYPE', key)['ok'] end
  local z, v, a, e = kind(KEYS[2]), kind(KEYS[3]), kind(KEYS[4]), kind(KEYS[5])
  return (z ~= 'zset' and z ~= 'none') or (v ~= 'hash' and v ~= 'none')
    or (a ~= 'hash' and a ~= 'none') or (e ~= 'zset' and e ~= 'none')
end
local function refused()
  return redis.error_reply('WRONGTYPE a Redis key of base ' .. KEYS[1] .. ' holds foreign data')
end
"""
_GUARD = _FOREIGN + "if foreign() then return refused() end\n"
# A plain write's bookkeeping for key ARGV[1]: its index entry, the new version (the last ARGV),
# the write time now, no expiry.
_STAMP = """
local key = ARGV[1]
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], 0, key)
redis.call('HSET', KEYS[3], key, ARGV[#ARGV])
redis.call('HSET', KEYS[4], key, t[1] .. string.format('%03d', math.floor(t[2] / 1000)))
redis.call('ZREM', KEYS[5], key)
"""
# ARGV: key, value, version. A plain write: the value, then its bookkeeping.
_SET_SCRIPT = _GUARD + "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n" + _STAMP
# ARGV: key, version. The bookkeeping alone, for a large value that the same MULTI stores with a
# plain HSET (see _set_large): no guard, _CHECK_SCRIPT checked the types under WATCH. Sent as EVAL
# with its text, never EVALSHA: a script unknown to the server fails only at EXEC, after the
# HSET before it has run.
_STAMP_SCRIPT = _STAMP
# No ARGV. Run under WATCH of the five keys, before the MULTI of a large write (see _set_large):
# 1 when each key holds its own type or nothing. Otherwise 0, after marking a watched key as
# modified without changing it, which makes the EXEC that follows abort: the MULTI then writes
# nothing. The mark adds and removes the field or member '' (no key of a base can be empty) on
# one of the base's own keys, with commands the driver needs anyway; only when none can take
# it (all five foreign, or '' written there by someone else) is the values hash marked instead,
# its expiry set and restored. Either happens inside this one script, so nobody sees it. Sent
# as EVAL with its text, for the reason above: a check that failed to run would not stop the
# MULTI.
_CHECK_SCRIPT = """
local own = {'hash', 'zset', 'hash', 'hash', 'zset'}
local kinds, foreign = {}, false
for i = 1, 5 do
  kinds[i] = redis.call('TYPE', KEYS[i])['ok']
  if kinds[i] ~= own[i] and kinds[i] ~= 'none' then foreign = true end
end
if not foreign then return 1 end
for i = 1, 5 do
  local k = KEYS[i]
  if kinds[i] == 'zset' and own[i] == 'zset' then
    if not redis.call('ZSCORE', k, '') then
      redis.call('ZADD', k, 0, '')
      redis.call('ZREM', k, '')
      return 0
    end
  elseif kinds[i] == 'none' or (kinds[i] == 'hash' and own[i] == 'hash') then
    if redis.call('HEXISTS', k, '') == 0 then
      redis.call('HSET', k, '', '')
      redis.call('HDEL', k, '')
      return 0
    end
  end
end
local k = KEYS[1]
local ttl = redis.call('PTTL', k)
if ttl == -1 then
  redis.call('PEXPIRE', k, 86400000)
  redis.call('PERSIST', k)
else
  -- PEXPIRETIME (Redis 7.0) gives the same instant back; before 7.0, the nearest millisecond.
  local at = redis.pcall('PEXPIRETIME', k)
  if type(at) ~= 'number' then
    local t = redis.call('TIME')
    at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
  end
  redis.call('PEXPIREAT', k, at)
end
return 0
"""
# ARGV: keys.
_DELETE_SCRIPT = _GUARD + _REMOVE + "remove(ARGV)"
# ARGV: TTL in ms ('' for none), how many expired keys to purge first, then key, value, key,
# value... then one version per pair. One instant for the batch. One script call is atomic and
# sends each key once.
_SET_MANY_SCRIPT = _GUARD + _CLOCK + _REMOVE + _PURGE + """
local ttl = ARGV[1]
purge(tonumber(ARGV[2]))
local count = (#ARGV - 2) / 3
local pairs_end = 2 + 2 * count
local stamp = ms(now())
local expiry = ttl ~= '' and ms(now() + tonumber(ttl))
-- A plain write clears expiries, but a base that holds none has nothing to clear.
local clear = not expiry and redis.call('EXISTS', KEYS[5]) == 1
for first = 3, pairs_end, 4000 do
  local last = math.min(first + 3999, pairs_end)
  redis.call('HSET', KEYS[1], unpack(ARGV, first, last))
  local members, versions, stamps, expiries = {}, {}, {}, {}
  local m, e = 0, 0
  for i = first, last, 2 do
    local key = ARGV[i]
    members[m + 1], members[m + 2] = 0, key
    versions[m + 1], versions[m + 2] = key, ARGV[pairs_end + (i - 1) / 2]
    stamps[m + 1], stamps[m + 2] = key, stamp
    m = m + 2
    if expiry then
      expiries[e + 1], expiries[e + 2] = expiry, key
      e = e + 2
    elseif clear then
      expiries[e + 1] = key
      e = e + 1
    end
  end
  redis.call('ZADD', KEYS[2], unpack(members))
  redis.call('HSET', KEYS[3], unpack(versions))
  redis.call('HSET', KEYS[4], unpack(stamps))
  if expiry then
    redis.call('ZADD', KEYS[5], unpack(expiries))
  elseif clear then
    redis.call('ZREM', KEYS[5], unpack(expiries))
  end
end
"""
# ARGV: low, high, page size. Deletes one page of a prefix atomically (expired keys too) and
# returns how many keys it removed.
_CLEAR_PAGE_SCRIPT = _GUARD + _REMOVE + """
local found = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
remove(found)
return #found
"""
# KEYS: the values hash and the expiries only. ARGV: key, size limit. Its value, or nil if absent
# or expired; the integer 1 instead of a value longer than the limit, which the caller then reads
# without Lua (see _read_large): a string entering or leaving Lua is copied, which costs a server
# about 1.5 ms per MiB. Reads only, so it needs no guard: a foreign type makes a read fail before
# anything happened.
_GET_SCRIPT = """
if redis.call('HSTRLEN', KEYS[1], ARGV[1]) > tonumber(ARGV[2]) then return 1 end
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value then
  local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if at then
    local t = redis.call('TIME')
    if tonumber(at) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
      return false
    end
  end
end
return value
"""
# ARGV: keys. Their values in order, nil for each absent or expired key, then whether the base
# holds expiries at all (1 or 0: see get_many).
_GET_MANY_SCRIPT = _CLOCK + """
local n = #ARGV
local timed = redis.call('EXISTS', KEYS[5])
local found, f = {}, 0
for first = 1, n, 4000 do
  local last = math.min(first + 3999, n)
  local values = redis.call('HMGET', KEYS[1], unpack(ARGV, first, last))
  local expiries = timed == 1 and redis.call('ZMSCORE', KEYS[5], unpack(ARGV, first, last))
  for i = 1, #values do
    local value = values[i]
    if expiries and expiries[i] and tonumber(expiries[i]) <= now() then value = false end
    found[f + i] = value
  end
  f = f + #values
end
found[f + 1] = timed
return found
"""
# ARGV: key. Value and version at one instant; a value without a version is at version 0.
_GET_VERSIONED_SCRIPT = _CLOCK + _EXPIRED + """
local key = ARGV[1]
local value = redis.call('HGET', KEYS[1], key)
if not value or expired(key) then return {false, false} end
return {value, redis.call('HGET', KEYS[3], key)}
"""
# ARGV: keys. One reply a key, read at one instant: nil for a key that is not live, else its
# size (HSTRLEN: the value never travels), write time, expiry and version, space-separated,
# each empty if unset. One string rather than four replies: the client parses a quarter as much.
_GET_META_SCRIPT = _CLOCK + _EXPIRED + """
local found = {}
for i = 1, #ARGV do
  local key = ARGV[i]
  if live(key) then
    found[i] = redis.call('HSTRLEN', KEYS[1], key) .. ' '
      .. (redis.call('HGET', KEYS[4], key) or '') .. ' '
      .. (redis.call('ZSCORE', KEYS[5], key) or '') .. ' '
      .. (redis.call('HGET', KEYS[3], key) or '')
  else
    found[i] = false
  end
end
return found
"""
# ARGV: key, TTL in ms ('' to clear the expiry), how many expired keys to purge first. Returns 1
# if the key was live (then only its expiry changed), else 0 (then nothing but the purge ran).
_EXPIRE_SCRIPT = _GUARD + _CLOCK + _EXPIRED + _REMOVE + _PURGE + """
local key, ttl = ARGV[1], ARGV[2]
purge(tonumber(ARGV[3]))
if not live(key) then return 0 end
if ttl == '' then
  redis.call('ZREM', KEYS[5], key)
else
  redis.call('ZADD', KEYS[5], ms(now() + tonumber(ttl)), key)
end
return 1
"""
# ARGV: limit. Removes up to limit expired keys from every structure; returns how many.
_PURGE_SCRIPT = _GUARD + _CLOCK + _REMOVE + _PURGE + "return purge(tonumber(ARGV[1]))"
# ARGV: low, high (ZRANGEBYLEX bounds), page size, how many index members one call may visit,
# how many of the expired ones met it may purge. Returns the live keys of one page, then where
# the next page starts ('' at the end, else the last member visited, exclusive), then whether
# the base holds expiries (see keys()). Expired members are skipped here by their scores, never
# sent to the client, and those met are purged (bounded), so that later scans do not meet them.
_SCAN_SCRIPT = _FOREIGN + _CLOCK + _REMOVE + """
local low, high, size = ARGV[1], ARGV[2], tonumber(ARGV[3])
local budget, purgeable = tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', KEYS[5]) == 0 then
  local page = redis.call('ZRANGEBYLEX', KEYS[2], low, high, 'LIMIT', 0, size + 1)
  -- One member past the page says there is more: it becomes the page's last key.
  local n = math.min(#page, size)
  page[n + 1], page[n + 2] = #page > size and page[size] or '', 0
  return page
end
local found, dead, after = {}, {}, ''
while after == '' do
  local page = redis.call('ZRANGEBYLEX', KEYS[2], low, high, 'LIMIT', 0, size + 1)
  if #page == 0 then break end
  local expiries = redis.call('ZMSCORE', KEYS[5], unpack(page))
  for i = 1, #page do
    if expiries[i] and tonumber(expiries[i]) <= now() then
      if #dead < purgeable then dead[#dead + 1] = page[i] end
    elseif #found == size then
      after = found[size]  -- a live key past a full page: there is more
      break
    else
      found[#found + 1] = page[i]
    end
  end
  budget = budget - #page
  if after ~= '' or #page <= size then break end
  low = '(' .. page[#page]
  if budget <= 0 then after = page[#page] end
end
if #dead > 0 then
  if foreign() then return refused() end
  remove(dead)
end
found[#found + 1], found[#found + 2] = after, 1
return found
"""
# The version of key ``k`` as the conditions see it: false when absent or expired (decided by
# the values hash and the expiries alone, see the module docstring), '0' for a value written
# before versions existed. Conditions arrive as strings: '' means "must be absent", '*' "no
# condition", anything else is a decimal version, compared as a string. write() is a plain write.
_CURRENT = """
local function current(k, stamp)
  if not live(k) then return false end
  return stamp or '0'
end
local function wanted(expected)
  if expected == '' then return false end
  return expected
end
local function write(k, value, version)
  redis.call('HSET', KEYS[1], k, value)
  redis.call('ZADD', KEYS[2], 0, k)
  redis.call('HSET', KEYS[3], k, version)
  redis.call('HSET', KEYS[4], k, ms(now()))
  redis.call('ZREM', KEYS[5], k)
end
"""
# ARGV: key, value, expected, new version. Returns 1 if written, 0 if the condition failed.
# A key already at the new version means this very call ran before and redis-py retried it after
# losing the reply (see the module docstring): success, without writing again.
_SET_IF_SCRIPT = _GUARD + _CLOCK + _EXPIRED + _CURRENT + """
local key, new = ARGV[1], ARGV[4]
local stamp = redis.call('HGET', KEYS[3], key)
if stamp == new then return 1 end
if current(key, stamp) ~= wanted(ARGV[3]) then return 0 end
write(key, ARGV[2], new)
return 1
"""
# ARGV: key, expected. Returns 1 if deleted, 0 if the condition failed.
_DELETE_IF_SCRIPT = _GUARD + _CLOCK + _EXPIRED + _REMOVE + _CURRENT + """
local key = ARGV[1]
if current(key, redis.call('HGET', KEYS[3], key)) ~= wanted(ARGV[2]) then return 0 end
remove({key})
return 1
"""
# ARGV: five per change: action ('w' write, 'd' delete, 'c' check), key, expected (as above),
# value ('' unless a write), new version ('' unless a write). Every condition is checked before
# the first write; returns the keys whose condition failed (then nothing was written), else an
# empty list. A write key already at its new version means the batch ran before (see set_if).
_COMMIT_SCRIPT = _GUARD + _CLOCK + _EXPIRED + _REMOVE + _CURRENT + """
local n = #ARGV
local failed = {}
for i = 1, n, 5 do
  local action, key, expected = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if action == 'w' or expected ~= '*' then
    local stamp = redis.call('HGET', KEYS[3], key)
    if action == 'w' and stamp == ARGV[i + 4] then return {} end
    if expected ~= '*' and current(key, stamp) ~= wanted(expected) then
      failed[#failed + 1] = key
    end
  end
end
if #failed > 0 then return failed end
for i = 1, n, 5 do
  local action, key = ARGV[i], ARGV[i + 1]
  if action == 'w' then
    write(key, ARGV[i + 3], ARGV[i + 4])
  elseif action == 'd' then
    remove({key})
  end
end
return failed
"""


def _meta(size: bytes, written: bytes, expires: bytes, version: bytes) -> Meta:
    """The :class:`Meta` of a live key's fields in the metadata script's reply (empty: unset)."""
    return Meta(
        size=int(size),
        written_at=from_millis(int(written)) if written else None,
        expires_at=from_millis(int(float(expires))) if expires else None,
        version=int(version) if version else LEGACY_VERSION,
    )


def _sha1(script: str) -> bytes:
    # Hex digests as bytes, as EVALSHA sends them: redis-py passes bytes on without encoding.
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest().encode()


# By digest, to load a script the server does not know yet (first use, or after a restart).
_SCRIPTS = {
    _sha1(script): script
    for script in (
        _SET_SCRIPT, _DELETE_SCRIPT, _SET_MANY_SCRIPT, _CLEAR_PAGE_SCRIPT, _GET_SCRIPT,
        _GET_MANY_SCRIPT, _GET_VERSIONED_SCRIPT, _GET_META_SCRIPT, _EXPIRE_SCRIPT, _PURGE_SCRIPT,
        _SCAN_SCRIPT, _SET_IF_SCRIPT, _DELETE_IF_SCRIPT, _COMMIT_SCRIPT,
    )
}
_SET_SHA = _sha1(_SET_SCRIPT)
_DELETE_SHA = _sha1(_DELETE_SCRIPT)
_SET_MANY_SHA = _sha1(_SET_MANY_SCRIPT)
_CLEAR_SHA = _sha1(_CLEAR_PAGE_SCRIPT)
_GET_SHA = _sha1(_GET_SCRIPT)
_GET_MANY_SHA = _sha1(_GET_MANY_SCRIPT)
_GET_VERSIONED_SHA = _sha1(_GET_VERSIONED_SCRIPT)
_GET_META_SHA = _sha1(_GET_META_SCRIPT)
_EXPIRE_SHA = _sha1(_EXPIRE_SCRIPT)
_PURGE_SHA = _sha1(_PURGE_SCRIPT)
_SCAN_SHA = _sha1(_SCAN_SCRIPT)
_SET_IF_SHA = _sha1(_SET_IF_SCRIPT)
_DELETE_IF_SHA = _sha1(_DELETE_IF_SCRIPT)
_COMMIT_SHA = _sha1(_COMMIT_SCRIPT)
# The condition of a Change as the scripts read it.
_ABSENT, _ANY = "", "*"
_NO_TTL = ""
_CHANGE_CODES = {Action.WRITE: "w", Action.DELETE: "d", Action.CHECK: "c"}


@dataclass(frozen=True, slots=True)
class _Arguments:
    """The arguments of :func:`redis_driver`, handed to :class:`RedisDriver` as one value."""

    url: str
    base: str | None
    pool_size: int | None
    connect_timeout: float | None
    operation_timeout: float | None
    retries: int | None
    client_name: str | None
    redis_options: dict[str, Any]


class RedisDriver(BaseDriver):
    """Stores keys under one ``base`` of a Redis database; see the module docstring for the layout.

    Build it with :func:`redis_driver` (or a ``redis://`` URL); the class is for annotations and
    ``isinstance``. Unreachable servers and timeouts raise :class:`BackendUnavailable`; other
    server errors :class:`BackendError`; each names the driver and ``host:port/db``, never a
    password.
    """

    name = "redis"
    supports_trio = False
    atomic_batches = True
    conditional_writes = True
    expiry = True

    def __init__(self, arguments: _Arguments) -> None:
        url, base, pool_size = arguments.url, arguments.base, arguments.pool_size
        connect_timeout, operation_timeout = arguments.connect_timeout, arguments.operation_timeout
        retries, client_name = arguments.retries, arguments.client_name
        redis_options = dict(arguments.redis_options)
        parsed = parse_url(url, schemes=SCHEMES, default_port=DEFAULT_PORT)
        tls = parsed.scheme == "rediss"
        options = take_options(
            parsed.options, {**_OPTIONS, **_TLS_OPTIONS} if tls else _OPTIONS, where=self.name
        )
        host, port = parsed.hosts[0] if parsed.hosts else ("", None)
        host, port = host or "localhost", port or DEFAULT_PORT  # redis-py's defaults
        database = self._database(parsed, options.pop("db", None))
        shown_host = f"[{host}]" if ":" in host else host
        self.where = f"{shown_host}:{port}/{database}"
        where = f"redis at {self.where}"

        def pick(setting: str, argument: Any, default: Any, *aliases: str) -> Any:
            # One setting, from an argument or the URL, under our name or redis-py's.
            given = {setting: argument, f"?{setting}": options.pop(setting, None)}
            for alias in aliases:
                given[alias] = redis_options.pop(alias, None)
                given[f"?{alias}"] = options.pop(alias, None)
            return settle(setting, given, default, where=where)

        chosen_base: str = pick("base", base, "agentx")
        try:
            validate_key(chosen_base)
        except InvalidKey as error:
            raise ConfigurationError(f"invalid Redis base: {error}") from None
        self.base = chosen_base
        self._pool_size = whole_number(
            "pool_size",
            pick("pool_size", pool_size, DEFAULT_POOL_SIZE, "max_connections"),
            minimum=1,
            where=where,
        )
        self._connect_timeout = timeout_seconds(
            "connect_timeout",
            pick("connect_timeout", connect_timeout, DEFAULT_CONNECT_TIMEOUT,
                 "socket_connect_timeout"),
            where=where,
        )
        self._operation_timeout = timeout_seconds(
            "operation_timeout",
            pick("operation_timeout", operation_timeout, DEFAULT_OPERATION_TIMEOUT,
                 "socket_timeout"),
            where=where,
        )
        attempts = whole_number("retries", pick("retries", retries, 1), minimum=0, where=where)
        name = pick("client_name", client_name, None)
        connection_class = aioredis.SSLConnection if tls else aioredis.Connection
        self._connection_options = {
            "connection_class": connection_class,
            "max_connections": self._pool_size,
            "host": host,
            "port": port,
            "db": database,
            **self._credentials(parsed, redis_options, where),
            # No socket_timeout: the operation's deadline (see _call) already bounds every send
            # and read, the retry included, and a cancelled read drops its connection. With one,
            # redis-py wraps every send in asyncio.wait_for (a new task in Python 3.11) and every
            # read in a timeout of its own: a point get or delete ran 1.2-1.4x faster without
            # (A/B in one process, medians of 7 rounds of 2,000), as fast as the raw client.
            "socket_timeout": None,
            "socket_connect_timeout": self._connect_timeout,
            # A stale pooled connection (server restarted) is retried on a fresh one.
            "retry": Retry(_NotingBackoff(self.where), attempts),
            "client_name": name,
            "redis_connect_func": self._handshake,
            **self._native_options(connection_class, options, redis_options, where),
        }
        self._use_stem(chosen_base)
        self._client: aioredis.Redis | None = None
        self._errors = Translator(
            ErrorTable(unavailable=_UNREACHABLE, describe=self._describe),
            driver=self.name,
            where=self.where,
        )
        # redis-py's BlockingConnectionPool waits for a free connection but costs ~10 µs per
        # command; a semaphore in front of the plain pool bounds connections just as well and
        # costs nothing while a connection is free.
        self._slots = asyncio.Semaphore(self._pool_size)
        # The operation's deadline: one shared timer, not one asyncio.timeout per operation.
        self._deadlines = Deadlines(self._operation_timeout)

    def _use_stem(self, stem: str) -> None:
        """Name the five Redis keys of the base, ``stem`` then a suffix, and reset the hints.

        ``stem`` is the base here; a Redis Cluster bucket uses a hash-tagged stem instead (see
        :mod:`kvstore.drivers.redis_cluster`), keeping the same structures and scripts.
        """
        self._hash = f"{stem}:kv"
        self._index = f"{stem}:keys"
        self._versions = f"{stem}:ver"
        self._written = f"{stem}:at"
        self._expiries = f"{stem}:exp"
        # EVALSHA's numkeys and KEYS: the five Redis keys, in the order the scripts expect, or
        # the two _GET_SCRIPT reads.
        # Encoded once here rather than by redis-py on every call.
        self._names = (self._hash, self._index, self._versions, self._written, self._expiries)
        self._keys = (b"5", *(name.encode() for name in self._names))
        self._get_keys = (b"2", self._hash.encode(), self._expiries.encode())
        # The packed start of a script call (EVALSHA, digest, key names) by digest and count of
        # further arguments, for calls of at most _HEAD_ARGS of them: the point operations.
        self._heads: dict[tuple[bytes, int], bytes] = {}
        # When the next expiring write may purge (time.monotonic()): at most once a second.
        self._next_purge = 0.0
        # Whether the base held expiries when last seen: get_many and keys() then go straight to
        # their scripts instead of first trying the plain reads (see _untimed). A hint only:
        # both paths are exact.
        self._timed = False
        # Keys per scan page. A cluster bucket uses fewer: a scan holds a page of every bucket.
        self._page = SCAN_PAGE
        # Keys last seen holding a value over LARGE_VALUE, oldest first (a dict as an ordered
        # set): get reads them without the script. A hint only: every read path is exact.
        self._large: dict[str, None] = {}

    # -- configuration ----------------------------------------------------------------------

    def _database(self, parsed: ParsedURL, option: int | None) -> int:
        path: int | None = None
        if parsed.path:
            try:
                path = _database(parsed.path)
            except ValueError:
                # redis-py would silently use database 0 here: refuse instead.
                raise ConfigurationError(
                    "redis: the URL path must be a database number such as /0 or /15, not "
                    f"/{parsed.path!r}"
                ) from None
        if path is not None and option is not None and path != option:
            raise ConfigurationError(
                f"redis: the URL names database {path} in its path and {option} in ?db="
            )
        return path if path is not None else option if option is not None else 0

    @staticmethod
    def _credentials(parsed: ParsedURL, given: dict[str, Any], where: str) -> dict[str, Any]:
        credentials: dict[str, Any] = {}
        for field, from_url in (("username", parsed.username), ("password", parsed.password)):
            argument = given.pop(field, None)
            if argument is not None and from_url is not None:
                # Never compare or show them: the values are secrets.
                raise ConfigurationError(f"{where}: {field} is given both in the URL and as an "
                                         "argument; give it once")
            value = argument if argument is not None else from_url
            if value:  # as redis-py reads a URL: an empty user or password is none at all
                credentials[field] = value
        return credentials

    @staticmethod
    def _native_options(
        connection_class: type[AbstractConnection],
        from_url: dict[str, Any],
        given: dict[str, Any],
        where: str,
    ) -> dict[str, Any]:
        known = _connection_parameters(connection_class) - _OWN_CONNECTION_SETTINGS
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown option(s) {', '.join(unknown)} for redis-py's "
                f"{connection_class.__name__}"
            )
        merged = dict(from_url)
        for option, value in given.items():
            if option in merged and merged[option] != value:
                raise ConfigurationError(
                    f"{where}: {option} is given both in the URL and as an argument, with "
                    "different values; give it once"
                )
            merged[option] = value
        return merged

    # -- connection -------------------------------------------------------------------------

    def _redis(self) -> aioredis.Redis:
        # Building the pool does no I/O and has no await, so concurrent first uses cannot race:
        # the first one to run creates it. Connections open lazily inside the pool.
        self.ensure_open()
        client = self._client
        if client is None:
            pool = aioredis.ConnectionPool(**self._connection_options)
            client = self._client = aioredis.Redis(connection_pool=pool)
        return client

    async def _handshake(self, connection: AbstractConnection) -> None:
        # redis-py's own handshake sends nothing with the default settings, so a server that
        # accepts connections and never answers would only show at the first command's
        # operation_timeout. A PING, under connect_timeout, reports it within that instead.
        try:
            async with asyncio.timeout(self._connect_timeout):
                await connection.on_connect()
                await connection.send_command("PING", check_health=False)
                await connection.read_response()
        except TimeoutError:
            raise _SilentServer(
                f"no answer to the connection handshake within "
                f"connect_timeout={self._connect_timeout:g}s"
            ) from None

    async def _call(self, command: Callable[[aioredis.Redis], Awaitable[_T]]) -> _T:
        """Run ``command`` on the client under the operation's deadline, errors translated."""
        client = self._redis()
        try:
            with self._deadlines():
                await self._slots.acquire()
                try:
                    if self._client is not client:
                        # Closed while this task waited: the pool would reopen connections.
                        self.ensure_open()
                    try:
                        return await command(client)
                    except NoScriptError:
                        # First use on this server, or its script cache was emptied (a
                        # restart): load every script, then run the command again (a script
                        # the server did not know never ran).
                        await self._load_scripts(client)
                        return await command(client)
                finally:
                    self._slots.release()
        except _FAILURES as error:
            raise self._translate(error) from None

    def _translate(self, error: BaseException) -> BackendError:
        failure = self._errors.error(error)
        _log.debug("%s", failure)
        return failure

    def _describe(self, error: BaseException) -> str:
        if type(error) is TimeoutError:
            # Our own deadline (see Deadlines), which carries no message of its own.
            return (
                f"no answer (or no free connection) within "
                f"operation_timeout={self._operation_timeout:g}s"
            )
        # redis-py's messages name the host and the cause, never the password.
        return described(error)

    def _run(self, sha: bytes, *args: Any) -> Awaitable[Any]:
        """Run the script ``sha`` with ``args`` through :meth:`_call`: deadline, errors, loading.

        Not a coroutine itself: no frame more on the awaited path.
        """
        return self._call(lambda client: self._script(client, sha, *args))

    def _script(self, client: aioredis.Redis, sha: bytes, *args: Any) -> Awaitable[Any]:
        """Run a script by its digest; :meth:`_call` loads the scripts if the server lacks one.

        Not a coroutine itself: one frame less on every operation.
        """
        count = len(args)
        head = self._heads.get((sha, count))
        if head is None:
            start = (b"EVALSHA", sha, *(self._get_keys if sha is _GET_SHA else self._keys))
            if count <= _HEAD_ARGS:
                head = self._heads[sha, count] = _head(start, count)
            else:
                args = (*start, *args)  # a batch: packed whole, keeping no start
        packed = _packed(args, head)
        return _on_connection(client, lambda connection: _ask(connection, packed))

    @staticmethod
    async def _load_scripts(client: aioredis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        for script in _SCRIPTS.values():
            pipe.script_load(script)
        await pipe.execute()

    async def _untimed(
        self, client: aioredis.Redis, reads: Sequence[tuple[Any, ...]]
    ) -> list[Any] | None:
        """The replies to ``reads`` run in one transaction, if the base has no expiry.

        A base that holds no expiry (no key was ever given a TTL, or all such keys are gone)
        has no expired key, so plain reads are exact there and cost no script. EXISTS runs in
        the same MULTI as the reads, at the same instant (:meth:`_transaction`: one packet, no
        pipeline object, whose bookkeeping cost a 1,000-key scan page a sixth of its time).
        ``None`` when the base does hold expiries: then the caller runs its script, and later
        calls start there.
        """
        timed, *replies = await self._transaction(client, (("EXISTS", self._expiries), *reads))
        if timed:
            self._timed = True
            return None
        return replies

    def _nothing_in(self, batch: Sized) -> bool:
        """Whether ``batch`` is empty: then the call does nothing but check the driver is open."""
        if batch:
            return False
        self.ensure_open()
        return True

    # -- primitives -------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if absent or expired."""
        return cast("bytes | None", await self._call(lambda client: self._get(client, key)))

    async def _get(self, client: aioredis.Redis, key: str) -> bytes | None:
        # A key last seen large goes straight to the plain read (exact for any size), saving
        # the script's round trip; any other key asks the script, whose integer reply is the
        # marker of a value over LARGE_VALUE.
        if key not in self._large:
            found = await self._script(client, _GET_SHA, key, _LARGE_LIMIT)
            if found.__class__ is not int:
                return cast("bytes | None", found)
        return await self._read_large(client, key)

    async def _read_large(self, client: aioredis.Redis, key: str) -> bytes | None:
        """Read a large value without Lua: HGET, its expiry and the server's clock in one MULTI.

        Exact on its own (one instant, the server's clock), whatever happened to the key since
        the read script saw it.
        """
        value, expiry, (seconds, micros) = await self._transaction(client, (
            ("HGET", self._hash, key), ("ZSCORE", self._expiries, key), ("TIME",)
        ))
        if value is not None and len(value) > LARGE_VALUE:
            self._seen_large(key)
        else:
            self._large.pop(key, None)
        if expiry is not None and float(expiry) <= int(seconds) * 1000 + int(micros) // 1000:
            return None
        return cast("bytes | None", value)

    def _seen_large(self, key: str) -> None:
        """Note that ``key`` holds a large value, forgetting the oldest note past LARGE_HINTS."""
        large = self._large
        large[key] = None
        if len(large) > LARGE_HINTS:
            del large[next(iter(large))]

    async def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``: value, index entry and a new version in one script.

        A value over ``LARGE_VALUE`` goes in one MULTI instead, with the same effect (see
        :meth:`_set_large`).
        """
        version = str(new_version())
        if len(value) > LARGE_VALUE:
            await self._call(lambda client: self._set_big(client, key, value, version))
            self._seen_large(key)
            return
        if self._large:
            self._large.pop(key, None)
        await self._run(_SET_SHA, key, value, version)

    async def _set_big(self, client: aioredis.Redis, key: str, value: bytes, version: str) -> None:
        if not await self._set_large(client, key, value, version):
            # Foreign data or a concurrent write: the script decides (and refuses foreign data).
            await self._script(client, _SET_SHA, key, value, version)

    async def _set_large(
        self, client: aioredis.Redis, key: str, value: bytes, version: str
    ) -> bool:
        """Write a large value without passing it through Lua; ``False`` if it wrote nothing.

        One packet, one round trip: WATCH of the base's five keys, the type check
        (:data:`_CHECK_SCRIPT`, what the scripts' guard does), then one MULTI of a plain HSET of
        the value and the bookkeeping script. Foreign data makes the check touch a watched key,
        and a change to any of the five keys after the WATCH does the same, so the EXEC aborts
        and nothing is written; both give ``False``, and the caller runs the script. The check
        used to be a round trip of its own (WATCH and TYPEs, then the MULTI): one packet made
        a 1 MiB set 1.1-1.6x faster on this busy machine (A/B in one process, three runs of
        medians of 9 rounds of 40 sets), level with raw redis-py's MULTI of SET and ZADD.
        """
        async def work(connection: AbstractConnection) -> bool:
            try:
                replies = await _exchange(connection, (
                    ("WATCH", *self._names),
                    ("EVAL", _CHECK_SCRIPT, *self._keys),
                    ("MULTI",),
                    ("HSET", self._hash, key, value),
                    ("EVAL", _STAMP_SCRIPT, *self._keys, key, version),
                    ("EXEC",),
                ))
            except BaseException:
                # Never hand a connection that may still be watching back to the pool.
                await connection.disconnect(nowait=True)
                raise
            return _executed(replies[-1]) is not None

        return await _on_connection(client, work)

    async def _transaction(
        self, client: aioredis.Redis, commands: Sequence[tuple[Any, ...]]
    ) -> list[Any]:
        """The replies of ``commands`` run in one MULTI/EXEC on one pooled connection.

        Sent as one packet without redis-py's pipeline object, whose bookkeeping costs more
        than the round trip for a few commands.
        """
        async def work(connection: AbstractConnection) -> list[Any]:
            replies = await _exchange(connection, (("MULTI",), *commands, ("EXEC",)))
            return cast("list[Any]", _executed(replies[-1]))

        return await _on_connection(client, work)

    async def delete(self, key: str) -> None:
        """Remove ``key``, its index entry and its version in one atomic script call."""
        await self._run(_DELETE_SHA, key)

    # -- conditional writes -------------------------------------------------------------------

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        """Return the value of ``key`` and its version, read at one instant by one script call."""
        value, version = await self._run(_GET_VERSIONED_SHA, key)
        if value is None:
            return None
        return Versioned(value, LEGACY_VERSION if version is None else int(version))

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        """Check every condition, then apply every change, in one atomic script call.

        Raises :class:`Conflict` naming every key whose condition failed; then nothing was
        written. :class:`BackendUnavailable` when the outcome is unknown (a lost reply, see the
        module docstring).
        """
        if self._nothing_in(changes):
            return []
        args: list[str | bytes] = []
        versions: list[int | None] = []
        for change in changes:
            value: bytes | str = ""
            stamp = ""
            if change.action is Action.WRITE:
                version = new_version()
                versions.append(version)
                assert change.value is not None  # a write carries its value
                value, stamp = change.value, str(version)
            else:
                versions.append(None)
            args += (_CHANGE_CODES[change.action], change.key, _condition(change.expected), value,
                     stamp)
        failed, retried = await self._conditional(_COMMIT_SHA, *args)
        if failed:
            raise self._refused([key.decode("utf-8") for key in failed], retried)
        return versions

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        """Write ``value`` only if ``key`` is at ``expected`` (``None``: absent); one script call.

        Returns the new version; raises :class:`Conflict`, writing nothing, otherwise.
        """
        version = new_version()
        written, retried = await self._conditional(
            _SET_IF_SHA, key, value, _condition(expected), str(version)
        )
        if not written:
            raise self._refused([key], retried)
        return version

    async def delete_if(self, key: str, expected: int) -> None:
        """Delete ``key`` only if it is at version ``expected``; one script call."""
        deleted, retried = await self._conditional(_DELETE_IF_SHA, key, _condition(expected))
        if not deleted:
            raise self._refused([key], retried)

    async def _conditional(self, sha: bytes, *args: Any) -> tuple[Any, bool]:
        """Run a conditional script; return its reply and whether redis-py sent it twice."""
        token = _RETRIED.set(False)
        try:
            reply = await self._run(sha, *args)
            return reply, _RETRIED.get()
        finally:
            _RETRIED.reset(token)

    def _refused(self, keys: list[str], retried: bool) -> Conflict | BackendError:
        """The error for a conditional script that found conditions failing on ``keys``.

        A :class:`Conflict`, unless redis-py sent the script twice (``retried``): then the first
        run may have applied it, and the outcome is unknown (see the module docstring).
        """
        if not retried:
            return conflict(keys)
        return self._translate(_LostReply(
            "the connection dropped while a conditional write ran, and the retry found its "
            "condition failing: it may or may not have been applied"
        ))

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield the live keys starting with ``prefix`` in order, ``SCAN_PAGE`` per round trip."""
        async for page in self._pages(prefix):
            for key in _decoded(page):
                yield key

    async def _pages(self, prefix: str) -> AsyncGenerator[list[bytes], None]:
        """Yield the live keys starting with ``prefix`` in order, one non-empty page at a time."""
        low, high = _lex_range(prefix)
        while True:
            # One call per page: a paused or abandoned scan holds no connection.
            def page_from(
                client: aioredis.Redis, low: bytes = low
            ) -> Awaitable[tuple[list[bytes], bytes]]:
                return self._scan_page(client, low, high)

            page, after = await self._call(page_from)
            if page:
                yield page
            if not after:
                return
            # Keyset pagination: writes between pages can neither repeat nor skip a key.
            low = b"(" + after

    async def _scan_page(
        self, client: aioredis.Redis, low: bytes, high: bytes
    ) -> tuple[list[bytes], bytes]:
        """One page of live keys from ``low`` on, and the member the next page starts after.

        The member is empty at the end. One past the page is fetched to tell whether another
        page exists, which saves the empty round trip a scan would end with whenever the
        matches fill whole pages. On a base with expiries the scan script skips expired keys
        by their expiry (never sending them here), and purges those it met, bounded.
        """
        if not self._timed:
            found = await self._untimed(
                client, (("ZRANGEBYLEX", self._index, low, high, "LIMIT", 0, self._page + 1),)
            )
            if found is not None:
                page: list[bytes] = found[0]
                more = len(page) > self._page
                return page[: self._page], page[self._page - 1] if more else b""
        *page, after, timed = await self._script(
            client, _SCAN_SHA, low, high, self._page, SCAN_VISITS, SCAN_PURGE
        )
        self._timed = bool(timed)
        return page, after

    async def close(self) -> None:
        """Close the pool's connections; idempotent."""
        if self.closed:
            return
        self.mark_closed()
        client, self._client = self._client, None
        if client is not None:
            # Best effort and bounded (a stopped server may never answer the goodbye): the
            # connections are dropped either way.
            with contextlib.suppress(*_FAILURES):
                async with asyncio.timeout(self._operation_timeout):
                    with contextlib.suppress(*_FAILURES):
                        await client.aclose()
                    await client.connection_pool.disconnect()

    # -- batches ----------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Return the values of ``keys`` in order (``None`` if absent or expired), at one instant.

        One MULTI of HMGETs on a base without expiries, else one script call.
        """
        if self._nothing_in(keys):
            return []

        reads = [
            ("HMGET", self._hash, *keys[start : start + BATCH_CHUNK])
            for start in range(0, len(keys), BATCH_CHUNK)
        ]

        async def read(client: aioredis.Redis) -> list[bytes | None]:
            if not self._timed:
                chunks = await self._untimed(client, reads)
                if chunks is not None:
                    return [value for chunk in chunks for value in chunk]
            *values, timed = await self._script(client, _GET_MANY_SHA, *keys)
            self._timed = bool(timed)
            return cast("list[bytes | None]", values)

        return await self._call(read)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store every pair, the last one per key winning, all or nothing in one script call."""
        await self._write_many(items, _NO_TTL, 0)

    async def _write_many(self, items: Sequence[tuple[str, bytes]], ttl: str, purge: int) -> None:
        """Run the batch write script: ``ttl`` in ms or ``_NO_TTL``, ``purge`` expired first."""
        if self._nothing_in(items):
            return
        # HSET with a repeated field keeps the last value, so pairs need no de-duplication.
        flat: list[str | bytes | int] = [ttl, purge]
        flat.extend(part for pair in items for part in pair)
        flat.extend(str(new_version()) for _ in items)
        await self._run(_SET_MANY_SHA, *flat)

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove every key in ``keys``, all or nothing in one script call."""
        if self._nothing_in(keys):
            return
        await self._run(_DELETE_SHA, *keys)

    async def clear(self, prefix: str = "") -> None:
        """Remove every key starting with ``prefix``; ``""`` unlinks the base's five Redis keys."""
        if not prefix:
            # UNLINK frees a large hash in the background instead of blocking the server.
            await self._call(lambda client: client.unlink(*self._names))
            return
        low, high = _lex_range(prefix)
        # Page by page, each page atomic and under its own deadline, so a huge prefix never
        # blocks the server, or this call's deadline, for long.
        while True:
            removed = await self._run(_CLEAR_SHA, low, high, SCAN_PAGE)
            if int(removed) < SCAN_PAGE:
                return

    # -- expiry and metadata ------------------------------------------------------------------

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` to expire ``ttl`` seconds after the server's clock at the write."""
        await self._write_many([(key, value)], str(ttl_millis(ttl)), self._purge_due())

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        """Store every pair to expire ``ttl`` seconds from one server instant; one script call."""
        await self._write_many(items, str(ttl_millis(ttl)), self._purge_due())

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Set (or with ``None`` clear) a live key's expiry, from the server's clock; one script."""
        wanted = _NO_TTL if ttl is None else str(ttl_millis(ttl))
        purge = self._purge_due()
        found = await self._run(_EXPIRE_SHA, key, wanted, purge)
        return bool(found)

    async def get_meta(self, key: str) -> Meta | None:
        """Size, write time, expiry and version of a live key, read by one script call."""
        return (await self.get_meta_many((key,)))[0]

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        """:meth:`get_meta` of each of ``keys`` in order: a script call per ``META_CHUNK`` keys.

        Each call reads its keys at one instant and holds the server for a bounded time.
        """
        if self._nothing_in(keys):
            return []
        metas: list[Meta | None] = []
        for start in range(0, len(keys), META_CHUNK):
            found = await self._run(_GET_META_SHA, *keys[start : start + META_CHUNK])
            metas.extend(None if reply is None else _meta(*reply.split(b" ")) for reply in found)
        return metas

    async def purge_expired(self, limit: int = 1000) -> int:
        """Remove up to ``limit`` expired keys, found by the expiry index, ``PURGE_STEP`` a call.

        Each call is one atomic script, so a large limit never blocks the server for long.
        """
        removed = 0
        while removed < limit:
            step = min(PURGE_STEP, limit - removed)
            count = int(await self._run(_PURGE_SHA, step))
            removed += count
            if count < step:
                break
        return removed

    def _purge_due(self) -> int:
        """How many expired keys an expiring write purges: ``AUTO_PURGE`` once a second, else 0.

        Only expiring writes purge, so a base that never uses TTLs pays nothing for it.
        """
        now = time.monotonic()
        if now < self._next_purge:
            return 0
        self._next_purge = now + AUTO_PURGE_EVERY
        return AUTO_PURGE

    def __repr__(self) -> str:
        return f"RedisDriver(where={self.where!r}, base={self.base!r})"


# Arguments longer than this are sent as their own buffer rather than copied into the packet.
_INLINE = 16 * 1024


# Script calls with at most this many arguments after the key names reuse a packed start.
_HEAD_ARGS = 4


def _packed(args: Sequence[str | bytes | int], head: bytes | None = None) -> list[bytes]:
    """One command in Redis's wire format (RESP), as the buffers to send in order.

    redis-py's own packer checks and converts every argument through several calls, which
    dominates a 2,000-item batch's client time; the driver only ever sends str, bytes and int.
    With ``head`` (from :func:`_head`), ``args`` are the arguments that follow its own.
    """
    chunks: list[bytes] = []
    parts = [b"*%d" % len(args) if head is None else head]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d" % len(data))
        if len(data) > _INLINE:
            parts.append(b"")
            chunks += (b"\r\n".join(parts), data)
            parts = [b""]
        else:
            parts.append(data)
    parts.append(b"")
    chunks.append(b"\r\n".join(parts))
    return chunks


def _head(args: Sequence[str | bytes | int], more: int) -> bytes:
    """The packed start of a command of ``args`` then ``more`` arguments, for :func:`_packed`.

    Packing the digest and the key names of a script call again on every call was the largest
    part of packing a point operation's command.
    """
    (whole,) = _packed(args)  # short arguments only: one buffer
    return b"*%d" % (len(args) + more) + whole[whole.index(b"\r\n") : -2]


async def _on_connection(
    client: aioredis.Redis, work: Callable[[AbstractConnection], Awaitable[_T]]
) -> _T:
    """Run ``work`` on a pooled connection, with redis-py's retry on a fresh one.

    With :func:`_ask` or :func:`_exchange` as ``work``, a command skips redis-py's
    ``execute_command`` (its packer, its response callbacks and its observability hooks).
    """
    pool = client.connection_pool
    take: Callable[[], Awaitable[AbstractConnection]] = pool.get_connection
    connection = await take()
    try:
        retry: Retry = connection.retry
        return await retry.call_with_retry(
            lambda: work(connection), lambda _error: connection.disconnect()
        )
    finally:
        await pool.release(connection)


async def _ask(connection: AbstractConnection, packed: list[bytes]) -> Any:
    """Send one packed command and return its reply (an error reply raises)."""
    await connection.send_packed_command(packed)
    return await connection.read_response()


async def _exchange(
    connection: AbstractConnection, commands: Sequence[tuple[Any, ...]]
) -> list[Any]:
    """Send ``commands`` in one packet and read one reply each; raise the first error reply.

    Every reply is read before raising, so the connection stays in step with the server.
    """
    await connection.send_packed_command(connection.pack_commands(commands))
    replies: list[Any] = []
    failure: ResponseError | None = None
    for _ in commands:
        try:
            replies.append(await connection.read_response())
        except ResponseError as error:
            failure = failure or error
            replies.append(error)
    if failure is not None:
        raise failure
    return replies


def _executed(replies: list[Any] | None) -> list[Any] | None:
    """EXEC's replies (``None`` when a WATCH aborted it); raise the first command's error."""
    for reply in replies or ():
        if isinstance(reply, ResponseError):
            raise reply
    return replies


def _condition(expected: int | AnyVersion | None) -> str:
    """A change's condition as the scripts read it (see ``_CURRENT``)."""
    if expected is None:
        return _ABSENT
    if isinstance(expected, AnyVersion):
        return _ANY
    return str(expected)


def _database(text: str) -> int:
    """A Redis database number: a decimal integer from 0 up."""
    if not text.isdecimal() or not text.isascii():
        raise ValueError("expected a database number (0, 1, 2, ...)")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdecimal() or not text.isascii():
        raise ValueError("expected a whole number from 0 up")
    return int(text)


def _protocol(text: str) -> int:
    if text not in ("2", "3"):
        raise ValueError("expected 2 or 3")
    return int(text)


def _cert_reqs(text: str) -> str:
    if text not in ("none", "optional", "required"):
        raise ValueError("expected none, optional or required")
    return text


# URL query options: ours, then redis-py's own names that users copy from its documentation.
_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "base": str,
    "pool_size": positive_int,
    "connect_timeout": positive_float,
    "operation_timeout": positive_float,
    "retries": _non_negative_int,
    "db": _database,
    "max_connections": positive_int,
    "socket_timeout": positive_float,
    "socket_connect_timeout": positive_float,
    "socket_keepalive": boolean,
    "health_check_interval": _non_negative_int,
    "client_name": str,
    "protocol": _protocol,
}
# TLS options only mean something on rediss://.
_TLS_OPTIONS: Mapping[str, Callable[[str], Any]] = {
    "ssl_cert_reqs": _cert_reqs,
    "ssl_ca_certs": str,
    "ssl_ca_path": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_check_hostname": boolean,
}
# Settings the driver makes itself: a keyword argument may not set them behind its back.
_OWN_CONNECTION_SETTINGS = frozenset(
    {"host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout",
     "retry", "client_name", "connection_class", "max_connections", "decode_responses",
     "redis_connect_func"}
)


def _connection_parameters(connection_class: type[AbstractConnection]) -> frozenset[str]:
    """The keyword arguments redis-py's connection class (and its bases) accept."""
    names: set[str] = set()
    for cls in connection_class.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            names.update(
                name
                for name, parameter in inspect.signature(init).parameters.items()
                if parameter.kind is parameter.KEYWORD_ONLY
                or parameter.kind is parameter.POSITIONAL_OR_KEYWORD
            )
    names.discard("self")
    return frozenset(names)


def _decoded(members: list[bytes]) -> list[str]:
    """A page of index members as ``str``, decoded in one call rather than one a member.

    A key holds no newline (a control character), so the joined page splits back into exactly
    its members; a page that does not (a member written by another program) is decoded one by
    one. A 1,000-key page: about a third of the per-member decoding.
    """
    keys = b"\n".join(members).decode("utf-8").split("\n")
    if len(keys) != len(members):
        return [member.decode("utf-8") for member in members]
    return keys


def _lex_range(prefix: str) -> tuple[bytes, bytes]:
    """Return the ZRANGEBYLEX bounds of the keys that start with ``prefix``."""
    low = b"[" + prefix.encode("utf-8") if prefix else b"-"
    successor = prefix_successor(prefix)
    high = b"(" + successor.encode("utf-8") if successor is not None else b"+"
    return low, high


def redis_driver(
    url: str = "redis://localhost:6379",
    base: str | None = None,
    *,
    pool_size: int | None = None,
    connect_timeout: float | None = None,
    operation_timeout: float | None = None,
    retries: int | None = None,
    client_name: str | None = None,
    **redis_options: Any,
) -> RedisDriver:
    """Return a Redis driver storing its keys under ``base`` (no I/O until first use).

    ``url`` is a ``redis://`` or ``rediss://`` URL read as redis-py reads it (database number
    as the path, ``?base=``, ``?pool_size=``, ``?connect_timeout=``, ``?operation_timeout=``,
    and redis-py's own options); anything malformed or unknown raises
    :class:`ConfigurationError`. ``base`` (default ``agentx``) follows the key rules and
    isolates this storage from every other base in the same database. At most ``pool_size``
    (default 50; redis-py's ``max_connections`` is the same setting) connections are open.
    ``connect_timeout`` (default 5 s; ``socket_connect_timeout``) bounds each connection
    attempt, ``operation_timeout`` (default 10 s; ``socket_timeout``) each whole operation,
    including the wait for a free connection and ``retries`` (default 1) retries on a fresh
    connection.
    Other keyword arguments go to redis-py's connection (``ssl_ca_certs``, ...); a name it
    does not know raises :class:`ConfigurationError`.
    """
    return RedisDriver(
        _Arguments(
            url=url,
            base=base,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            operation_timeout=operation_timeout,
            retries=retries,
            client_name=client_name,
            redis_options=redis_options,
        )
    )


def from_url(url: str) -> RedisDriver:
    """Build a driver from a ``redis://`` or ``rediss://`` URL; see :func:`redis_driver`."""
    return redis_driver(url)
