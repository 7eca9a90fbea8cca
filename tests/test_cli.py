"""The ``kvstore`` command line, run in-process through ``main(argv)`` and once as a process."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import anyio
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvstore import Storage, create_storage, register_driver
from kvstore.cli import main
from kvstore.cli.admin import backup_name
from kvstore.cli.records import Record, RecordError, encode_record, parse_record
from kvstore.cli.transfer import items_with_expiry
from kvstore.drivers.memory import MemoryDriver
from kvstore.drivers.sqlite import sqlite_driver
from kvstore.keys import validate_key
from kvstore.serialization import encode
from kvstore.testing import strategies
from kvstore.wrappers import Statistics
from tests.support.hostile_urls import (
    ALL_SPELLINGS,
    MARK,
    SERVER_SCHEMES,
    hostile_urls,
    spell,
    url_with,
)
from tests.support.servers import REDIS_URL, free_port, server_unreachable

_T = TypeVar("_T")

# Keys whose characters mean something to SQL LIKE, globs, regexes, paths, shells or JSON.
HOSTILE_KEYS = [
    "a",
    "A",
    "a ",
    "a\u0301",
    "%",
    "_",
    "*",
    "?",
    "[x]",
    "'; DROP TABLE agentx_kv; --",
    '"quoted"',
    "back\\slash",
    "../../etc/passwd",
    "ns:key with spaces",
    "emoji:\U0001f600",
    "\U0010ffff",
    "x" * 1024,
    "é" * 512,
]
# Values that are not orjson's own JSON must come back byte for byte, so they travel as base64.
RAW_VALUES = [
    b"",
    b"\xff\xfe\x00binary",
    b"not json",
    b'{"a": 1}',
    b' "padded" ',
    b"123456789012345678901234567890",
    os.urandom(1 << 20),
]


def run(function: Callable[[], Awaitable[_T]]) -> _T:
    return anyio.run(function)


def open_sqlite(path: Path) -> Storage:
    return Storage(sqlite_driver(path))


def seed(path: Path, items: Sequence[tuple[str, bytes]]) -> None:
    async def go() -> None:
        async with open_sqlite(path) as storage:
            await storage.set_many_raw(items)

    run(go)


def read_all(url: str) -> dict[str, bytes]:
    async def go() -> dict[str, bytes]:
        async with create_storage(url) as storage:
            return {key: data async for key, data in storage.items_raw()}

    return run(go)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "agentx"


@pytest.fixture
def db(home: Path) -> Path:
    return home / "data" / "agentx.db"


def cli(home: Path, *argv: str) -> int:
    return main(["--agentx-dir", str(home), *argv])


def assert_one_error_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert lines[-1].startswith("kvstore: error: ")
    assert "Traceback" not in err


# -- get, set, delete, keys -------------------------------------------------------------------


def test_set_then_get_prints_the_json_value(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "set", "users:alice", '{"name": "Alice", "tags": [1, 2]}') == 0
    assert cli(home, "get", "users:alice") == 0
    assert orjson.loads(capsys.readouterr().out) == {"name": "Alice", "tags": [1, 2]}


def test_keys_lists_a_prefix_in_order(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = ["b:2", "a%", "b:1", "a_", "b", "ba"]
    seed(db, [(key, b"1") for key in keys])
    assert cli(home, "keys", "b") == 0
    assert capsys.readouterr().out.splitlines() == ["b", "b:1", "b:2", "ba"]
    # % and _ are data, not LIKE wildcards.
    assert cli(home, "keys", "a%") == 0
    assert capsys.readouterr().out.splitlines() == ["a%"]


def test_raw_set_and_get_pass_bytes_through(
    home: Path,
    db: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payload = b"\x00\xff not json \n\r"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
    assert cli(home, "set", "--raw", "blob") == 0
    assert cli(home, "get", "--raw", "blob") == 0
    assert capsysbinary.readouterr().out == payload


def test_get_of_a_non_json_value_without_raw_fails_clearly(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db, [("blob", b"\xff")])
    assert cli(home, "get", "blob") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_one_error_line(captured.err)
    assert "--raw" in captured.err


def test_get_of_a_missing_key_exits_1(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "get", "nobody") == 1
    assert_one_error_line(capsys.readouterr().err)


def test_set_with_a_value_that_is_not_json_is_a_usage_error(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(home, "set", "k", "not-json") == 2
    assert_one_error_line(capsys.readouterr().err)
    assert read_all(sqlite_url(db)) == {}


def test_an_invalid_key_is_one_error_line_and_writes_nothing(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(home, "set", "a::b", "1") == 1
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "empty segment" in err
    assert read_all(sqlite_url(db)) == {}


def test_delete_removes_every_key_given(home: Path, db: Path) -> None:
    seed(db, [("a", b"1"), ("b", b"2"), ("c", b"3")])
    assert cli(home, "delete", "a", "c", "missing") == 0
    assert read_all(sqlite_url(db)) == {"b": b"2"}


def test_usage_errors_exit_2(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "frobnicate") == 2
    assert cli(home, "import", "--batch", "0", "x.jsonl") == 2
    assert "kvstore: error:" in capsys.readouterr().err


# -- export and import ------------------------------------------------------------------------


@given(key=strategies.keys(), data=strategies.raw_values())
def test_a_record_line_reads_back_as_the_same_key_and_bytes(key: str, data: bytes) -> None:
    line = encode_record(key, data)
    assert line.endswith(b"\n")
    assert b"\n" not in line[:-1]
    assert parse_record(line) == Record(key, data)


@given(key=strategies.keys(), value=strategies.json_values())
def test_values_written_as_json_export_as_readable_json(key: str, value: object) -> None:
    data = encode(value)
    line = orjson.loads(encode_record(key, data))
    assert line == {"key": key, "value": orjson.loads(data)}
    assert parse_record(orjson.dumps(line)) == Record(key, data)


_INT64 = st.integers(-(2**63), 2**63 - 1)
_FIELD_VALUES = st.one_of(st.text(max_size=8), _INT64, st.none(), st.lists(_INT64, max_size=2))
_LINES = st.one_of(
    st.binary(max_size=64),
    st.builds(
        orjson.dumps,
        st.dictionaries(st.sampled_from(["key", "value", "raw", "x"]), _FIELD_VALUES),
    ),
)


@given(_LINES)
def test_parse_record_accepts_only_valid_keys_and_raises_only_record_error(line: bytes) -> None:
    with contextlib.suppress(RecordError):
        record = parse_record(line)
        if record is not None:
            assert validate_key(record.key) == record.key


def test_export_import_round_trip_keeps_every_key_and_byte(home: Path, db: Path) -> None:
    items = [(key, orjson.dumps({"key": key, "n": n})) for n, key in enumerate(HOSTILE_KEYS)]
    items += [(f"raw:{n}", value) for n, value in enumerate(RAW_VALUES)]
    seed(db, items)
    dump = home / "dump.jsonl"
    assert cli(home, "export", "-o", str(dump)) == 0

    lines = [orjson.loads(line) for line in dump.read_bytes().splitlines()]
    assert [line["key"] for line in lines] == sorted(key for key, _ in items)
    by_key = {line["key"]: line for line in lines}
    # orjson's own JSON is exported readable; anything else as base64.
    assert by_key["a"]["value"] == {"key": "a", "n": 0}
    assert base64.b64decode(by_key["raw:3"]["raw"]) == b'{"a": 1}'

    copy = home / "copy.db"
    assert main(["--url", sqlite_url(copy), "import", str(dump)]) == 0
    assert read_all(sqlite_url(copy)) == dict(items)


# -- expiry across export, import and migrate ------------------------------------------------


def seed_expiring(path: Path) -> None:
    async def go() -> None:
        async with open_sqlite(path) as storage:
            await storage.set_many_raw({"t:hour": b"1", "t:hour2": b"2"}, ttl=3600)
            await storage.set_raw("t:day", b"\xff", ttl=86400)
            await storage.set_raw("t:plain", b"3")

    run(go)


def expiries(url: str) -> dict[str, float | None]:
    async def go() -> dict[str, float | None]:
        async with create_storage(url) as storage:
            metas = {key: await storage.get_meta(key) async for key in storage.keys()}
            return {key: meta.expires_at for key, meta in metas.items() if meta is not None}

    return run(go)


def test_export_records_each_expiry_instant_and_import_restores_it(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_expiring(db)
    before = expiries(sqlite_url(db))
    dump = home / "dump.jsonl"
    assert cli(home, "export", "-o", str(dump)) == 0
    lines = {line["key"]: line for line in map(orjson.loads, dump.read_bytes().splitlines())}
    assert {key: line.get("expires_at") for key, line in lines.items()} == before
    assert before["t:plain"] is None
    assert before["t:day"] is not None

    copy = home / "copy.db"
    assert main(["--url", sqlite_url(copy), "import", str(dump)]) == 0
    after = expiries(sqlite_url(copy))
    assert after.keys() == before.keys()
    assert after["t:plain"] is None
    for key in ("t:hour", "t:hour2", "t:day"):
        # The import writes the time left on this machine's clock: the same instant, give or
        # take the milliseconds between reading the clock and the write.
        moved = abs((after[key] or 0) - (before[key] or 0))
        assert moved < 1.0, f"{key}: the expiry moved by {moved} s across export and import"


def test_export_reads_expiries_a_page_at_a_time() -> None:
    """An export asks for the expiry instants of a page of keys in one call, not one a key."""

    async def go() -> tuple[list[tuple[str, bytes, float | None]], dict[str, int]]:
        counted = Statistics(MemoryDriver())
        async with Storage(counted) as storage:
            await storage.set_many_raw({f"k:{i:04d}": b"%d" % i for i in range(1203)})
            await storage.set_many_raw({f"k:{i:04d}": b"t" for i in range(0, 1203, 7)}, ttl=60)
            await storage.delete("k:0500")
            counted.reset()
            records = [record async for record in items_with_expiry(storage, "k:")]
            stats = counted.stats()
            calls: dict[str, int] = {
                name: stats[name].count for name in ("get_meta", "get_meta_many") if name in stats
            }
            expected = []
            for key, data in await collect_raw(storage):
                meta = await storage.get_meta(key)
                assert meta is not None
                expected.append((key, data, meta.expires_at))
            assert records == expected
            return records, calls

    records, calls = run(go)
    assert len(records) == 1202
    assert sum(expires_at is not None for _, _, expires_at in records) == 172
    # 1,202 keys in pages of 500: three batch reads, and no read of one key's metadata.
    assert calls == {"get_meta_many": 3}


async def collect_raw(storage: Storage) -> list[tuple[str, bytes]]:
    return [pair async for pair in storage.items_raw("k:")]


def test_import_skips_records_whose_instant_has_passed(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = home / "dump.jsonl"
    dump.parent.mkdir(parents=True, exist_ok=True)
    dump.write_bytes(
        encode_record("gone", b"1", expires_at=1_000_000.0)
        + encode_record("kept", b"2", expires_at=4_000_000_000.0)
        + encode_record("plain", b"3")
    )
    assert cli(home, "import", str(dump)) == 0
    assert "imported 2 keys" in capsys.readouterr().out
    assert read_all(sqlite_url(db)) == {"kept": b"2", "plain": b"3"}
    after = expiries(sqlite_url(db))
    assert after["plain"] is None
    # The time left is written, so the instant moves by the moment between the two clock reads.
    assert after["kept"] is not None
    assert abs(after["kept"] - 4_000_000_000.0) < 1.0


@pytest.mark.parametrize(
    "line",
    [b'{"key":"k","value":1,"expires_at":"soon"}', b'{"key":"k","value":1,"expires_at":true}'],
)
def test_an_expiry_that_is_not_a_number_is_a_bad_record(line: bytes) -> None:
    with pytest.raises(RecordError, match="expires_at"):
        parse_record(line)


def test_migrate_carries_each_expiry_instant(home: Path, db: Path, tmp_path: Path) -> None:
    seed_expiring(db)
    destination = tmp_path / "dest.db"
    assert cli(home, "migrate", sqlite_url(db), sqlite_url(destination)) == 0
    before, after = expiries(sqlite_url(db)), expiries(sqlite_url(destination))
    assert after.keys() == before.keys()
    assert all(
        (after[key] is None) == (before[key] is None)
        and abs((after[key] or 0) - (before[key] or 0)) < 1.0
        for key in before
    ), f"migrate moved expiries: {before} became {after}"


def test_export_honours_prefix_and_is_quiet_when_piped(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db, [("a:1", b"1"), ("a:2", b'"two"'), ("b:1", b"3")])
    assert cli(home, "export", "--prefix", "a:") == 0
    captured = capsys.readouterr()
    assert [orjson.loads(line) for line in captured.out.splitlines()] == [
        {"key": "a:1", "value": 1},
        {"key": "a:2", "value": "two"},
    ]
    assert captured.err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_export_shows_progress_on_a_terminal(
    home: Path, db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db, [(f"k{n}", b"1") for n in range(3)])
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli(home, "export", "-o", str(home / "out.jsonl")) == 0
    assert "exported: 3 keys" in terminal.getvalue()
    assert "exported" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("bad_line", "complaint"),
    [
        ('{"key": "a::b", "value": 1}', "empty segment"),
        ('{"key": "k", "raw": "not base64!"}', "base64"),
        ('{"key": "k", "value": 1, "raw": "AA=="}', "exactly one"),
        ('{"key": "k", "value": 1, "extra": 2}', "unexpected"),
        ('{"value": 1}', '"key"'),
        ('["k", 1]', "JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_import_rejects_a_bad_line_by_number_and_writes_nothing(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str], bad_line: str, complaint: str
) -> None:
    source = home / "in.jsonl"
    home.mkdir(parents=True, exist_ok=True)
    source.write_text(f'{{"key": "good", "value": 1}}\n\n{bad_line}\n{{"key": "z", "value": 2}}\n')
    assert cli(home, "import", "--batch", "1", str(source)) == 1
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "line 3" in err
    assert complaint in err
    assert read_all(sqlite_url(db)) == {}


def test_import_dry_run_checks_but_writes_nothing(home: Path, db: Path) -> None:
    home.mkdir(parents=True)
    source = home / "in.jsonl"
    source.write_text('{"key": "k", "value": 1}\n')
    assert cli(home, "import", "--dry-run", str(source)) == 0
    assert read_all(sqlite_url(db)) == {}


def test_import_from_stdin_in_batches_later_records_win(
    home: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [{"key": f"k{n}", "value": n} for n in range(7)]
    lines.append({"key": "k0", "raw": base64.b64encode(b"\xff").decode()})
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert cli(home, "import", "--batch", "2", "-") == 0
    expected = {f"k{n}": str(n).encode() for n in range(1, 7)} | {"k0": b"\xff"}
    assert read_all(sqlite_url(db)) == expected


# -- migrate ----------------------------------------------------------------------------------


def test_migrate_copies_and_verifies(
    home: Path, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [(key, key.encode()) for key in HOSTILE_KEYS] + [("other", b"x")]
    seed(db, items)
    destination = tmp_path / "dest.db"
    argv = ["migrate", sqlite_url(db), sqlite_url(destination), "--batch", "3"]
    assert cli(home, *argv) == 0
    out = capsys.readouterr().out
    assert f"verified {len(items)}: {len(items)} identical, 0 different, 0 missing" in out
    assert read_all(sqlite_url(destination)) == dict(items)


def test_migrate_prefix_copies_only_that_prefix(home: Path, db: Path, tmp_path: Path) -> None:
    seed(db, [("a:1", b"1"), ("a:2", b"2"), ("ab", b"3")])
    destination = tmp_path / "dest.db"
    assert cli(home, "migrate", sqlite_url(db), sqlite_url(destination), "--prefix", "a:") == 0
    assert read_all(sqlite_url(destination)) == {"a:1": b"1", "a:2": b"2"}


class _CorruptingDriver(MemoryDriver):
    """Stores values under keys starting ``bad`` with their last byte changed."""

    @staticmethod
    def _spoil(key: str, value: bytes) -> bytes:
        return value[:-1] + b"!" if key.startswith("bad") else value

    async def set(self, key: str, value: bytes) -> None:
        await super().set(key, self._spoil(key, value))

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        await super().set_many([(key, self._spoil(key, value)) for key, value in items])


def test_migrate_verification_catches_a_destination_that_changes_values(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_driver("kvtest-corrupting", lambda url: _CorruptingDriver())
    seed(db, [("bad:1", b'"value"'), ("good", b'"value"'), ("bad:2", b"[1]")])
    assert cli(home, "migrate", sqlite_url(db), "kvtest-corrupting://") == 1
    captured = capsys.readouterr()
    assert "verified 3: 1 identical, 2 different, 0 missing" in captured.out
    assert "'bad:1' differs" in captured.err
    assert captured.err.strip().splitlines()[-1].startswith("kvstore: error: verification failed")


def test_migrate_refuses_a_destination_that_is_the_source(
    home: Path, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(db, [("k", b"1")])
    monkeypatch.chdir(db.parent)
    # The same file spelled two ways.
    assert cli(home, "migrate", sqlite_url(db), "sqlite:///agentx.db") == 1
    assert read_all(sqlite_url(db)) == {"k": b"1"}


@pytest.fixture
def redis_base() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        server_unreachable(f"Redis at {REDIS_URL} is unreachable: {error}")
    base = f"kvtest_cli_{uuid.uuid4().hex[:12]}"
    yield base
    client.delete(*(f"{base}:{part}" for part in ("kv", "keys", "ver", "at", "exp")))
    client.close()


def test_migrate_sqlite_to_redis(
    home: Path, db: Path, redis_base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [(key, key.encode()) for key in HOSTILE_KEYS] + [("raw", RAW_VALUES[1])]
    seed(db, items)
    destination = f"{REDIS_URL}?base={redis_base}"
    assert cli(home, "migrate", sqlite_url(db), destination, "--batch", "5") == 0
    assert f"{len(items)} identical" in capsys.readouterr().out
    assert read_all(destination) == dict(items)


# -- backup -----------------------------------------------------------------------------------


def test_backup_writes_a_timestamped_copy_that_opens(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db, [("k", b'"v"')])
    assert cli(home, "backup") == 0
    backups = list((home / "backups").iterdir())
    assert len(backups) == 1
    assert backups[0].name.startswith("agentx-")
    assert backups[0].suffix == ".db"
    assert str(backups[0]) in capsys.readouterr().out
    assert read_all(sqlite_url(backups[0])) == {"k": b'"v"'}


def test_backup_retention_goes_by_the_timestamp_in_the_name(
    home: Path, db: Path, tmp_path: Path
) -> None:
    seed(db, [("k", b"1")])
    target = tmp_path / "backups"
    target.mkdir()
    now = datetime.now(UTC)
    old = target / backup_name(now - timedelta(days=30))
    recent = target / backup_name(now - timedelta(days=2))
    unrelated = [
        target / "agentx-notes.db",
        target / "notes.txt",
        target / "agentx-19990231T000000Z.db",
    ]
    for path in [old, recent, *unrelated]:
        path.write_bytes(b"x")
    # File times say the opposite of the names: the names must win.
    day = 86400
    os.utime(old, (now.timestamp(), now.timestamp()))
    os.utime(recent, (now.timestamp() - 90 * day, now.timestamp() - 90 * day))

    assert cli(home, "backup", "--to", str(target), "--keep-days", "7") == 0
    names = {path.name for path in target.iterdir()}
    assert old.name not in names
    assert recent.name in names
    assert {path.name for path in unrelated} <= names
    assert len(names) == 5  # recent, the three unrelated files and the new backup


def test_backup_refuses_a_url_that_is_not_sqlite(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--url", "memory://", "backup", "--to", str(home)]) == 1
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "SQLite" in err


# -- check ------------------------------------------------------------------------------------


def test_check_passes_and_leaves_no_probe_behind(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db, [("k", b"1")])
    assert cli(home, "check") == 0
    assert "integrity check" in capsys.readouterr().out
    assert read_all(sqlite_url(db)) == {"k": b"1"}


def test_check_fails_on_a_file_that_is_not_a_database(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database file" * 200)
    assert cli(home, "check") == 1
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "integrity check" in err


def test_check_fails_on_damaged_pages(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db, [(f"key:{n:05}", b"v" * 200) for n in range(2000)])
    size = db.stat().st_size
    page = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    with db.open("r+b") as handle:
        # Overwrite whole pages in the middle of the file: the header stays intact.
        handle.seek((size // page // 2) * page)
        handle.write(b"\xa5" * page * 3)
    assert cli(home, "check") == 1
    assert "integrity check" in capsys.readouterr().err


def test_check_hides_the_password_of_an_unreachable_server(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "redis://user:s3cr%3Dt@127.0.0.1:1/0?socket_connect_timeout=2"
    assert main(["--url", url, "check"]) == 1
    captured = capsys.readouterr()
    assert_one_error_line(captured.err)
    for form in ("s3cr%3Dt", "s3cr=t"):
        assert form not in captured.err + captured.out


# -- as a process -----------------------------------------------------------------------------


def test_runs_as_a_module_end_to_end(home: Path) -> None:
    command = [sys.executable, "-m", "kvstore.cli", "--agentx-dir", str(home)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([*command, "set", "greeting", '"hello"'], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    exported = subprocess.run([*command, "export"], env=env, capture_output=True, check=True)
    assert orjson.loads(exported.stdout) == {"key": "greeting", "value": "hello"}
    assert exported.stderr == b""  # piped: no progress line
    failed = subprocess.run([*command, "get", "a::b"], env=env, capture_output=True)
    assert failed.returncode == 1
    assert failed.stderr.decode().startswith("kvstore: error: ")
    assert b"Traceback" not in failed.stderr


# -- global options after the command ------------------------------------------------------------


def test_global_options_work_after_the_command(
    home: Path, db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db, [("k", b'"v"')])
    assert main(["export", "--url", sqlite_url(db)]) == 0
    assert orjson.loads(capsys.readouterr().out) == {"key": "k", "value": "v"}
    assert main(["get", "k", "--agentx-dir", str(home)]) == 0
    assert capsys.readouterr().out.strip() == '"v"'
    assert main(["keys", f"--url={sqlite_url(db)}"]) == 0
    assert capsys.readouterr().out.split() == ["k"]


def test_a_global_option_given_before_and_after_must_agree(
    home: Path, db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(db, [("k", b'"v"')])
    url = sqlite_url(db)
    assert main(["--url", url, "keys", "--url", url]) == 0
    assert capsys.readouterr().out.split() == ["k"]
    other = sqlite_url(tmp_path / "other.db")
    assert main(["--url", url, "keys", "--url", other]) == 2
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "--url" in err
    assert not (tmp_path / "other.db").exists()


# -- every failure is one line, usage 2, runtime 1 -----------------------------------------------


def assert_only_one_error_line(err: str) -> None:
    assert len(err.strip().splitlines()) == 1, err
    assert_one_error_line(err)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["get"],
        ["get", "k", "extra"],
        ["keys", "--no-such-option"],
        ["import", "--batch", "0"],
        ["import", "--batch", "many"],
        ["backup", "--keep-days", "-1"],
        ["--url"],
        ["keys", "--url"],
        ["set", "k", "not-json"],
        ["--url", "nosuchscheme://x", "keys"],
        ["--url", "not a url", "keys"],
        ["--url", "sqlite:///x.db?tabel=t", "keys"],
        ["--url", "sqlite:///", "keys"],
        ["--url", "memory://somewhere", "keys"],
        ["--url", "file://host/dir", "keys"],
        ["--url", "file:///dir?fsync=maybe", "keys"],
        ["migrate", "memory://", "memory://", "--url", "memory://"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    home: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(home, *argv) == 2
    assert_only_one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "missing"],
        ["get", "a::b"],
        ["--url", "memory://", "backup"],
        ["import", "/no/such/file.jsonl"],
    ],
)
def test_runtime_errors_are_one_line_and_exit_1(
    home: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(home, *argv) == 1
    assert_only_one_error_line(capsys.readouterr().err)


class _BrokenDriver(MemoryDriver):
    """A driver with a bug: its errors are not kvstore's typed ones."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self._error = error

    async def get(self, key: str) -> bytes | None:
        raise self._error


@pytest.mark.parametrize(
    "error",
    [
        TypeError("unexpected keyword argument 'kvstore_probe'"),
        RuntimeError("multi\nline\nmessage"),
        ExceptionGroup("in a task group", [ValueError("inner")]),
        KeyError("k"),
    ],
    ids=["TypeError", "RuntimeError", "ExceptionGroup", "KeyError"],
)
def test_an_unexpected_exception_is_one_line_not_a_traceback(
    error: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    register_driver("kvtest-broken", lambda url: _BrokenDriver(error))
    assert main(["--url", "kvtest-broken://", "get", "k"]) == 1
    err = capsys.readouterr().err
    assert_only_one_error_line(err)
    assert type(error).__name__ in err or "ValueError: inner" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["export", "--help"]) == 0
    assert "--url" in capsys.readouterr().out


# -- no secret in any output ---------------------------------------------------------------------


def test_a_url_in_a_usage_error_is_shown_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "k", "postgresql://u:hunter2@h/db"]) == 2
    err = capsys.readouterr().err
    assert_only_one_error_line(err)
    assert "hunter2" not in err
    assert "postgresql://u:***@h/db" in err


def test_masking_never_touches_other_words(capsys: pytest.CaptureFixture[str]) -> None:
    # The password "tempt" is inside "attempt": only the password itself is masked.
    assert main(["--url", "sqlite://u:tempt@/x.db?application_name=attempt", "keys"]) == 2
    err = capsys.readouterr().err
    assert_only_one_error_line(err)
    assert "sqlite://u:***@/x.db?application_name=attempt" in err


@pytest.mark.parametrize("scheme", ALL_SPELLINGS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_no_hostile_password_reaches_the_output(scheme: str, data: st.DataObject) -> None:
    """Every spelling of every scheme, given as --url before or after the command, or as a
    migrate argument: one error line, no piece of the password in stdout or stderr.

    Server URLs carry an option no driver knows, so the drivers refuse them before any I/O.
    """
    case = data.draw(hostile_urls((scheme,), probe=True))
    where = data.draw(st.sampled_from(["before", "after", "migrate"]))
    argv = {
        "before": ["--url", case.url, "keys"],
        "after": ["keys", "--url", case.url],
        "migrate": ["migrate", "memory://", case.url],
    }[where]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    assert status in (1, 2)
    shown = out.getvalue() + err.getvalue()
    assert MARK not in shown, (case, shown)
    assert_only_one_error_line(err.getvalue())


def test_a_library_log_record_with_the_url_is_redacted(tmp_path: Path) -> None:
    # A driver that logs its URL raw; the command's own log handler redacts it. Run as a
    # process: in-process, pytest's handlers stand where the command's would.
    code = (
        "import logging, sys\n"
        "from kvstore import register_driver\n"
        "from kvstore.cli import main\n"
        "from kvstore.errors import BackendUnavailable\n"
        "def factory(url):\n"
        "    logging.getLogger('somelib').error('cannot reach %s', url)\n"
        "    raise BackendUnavailable('down', driver='kvtest')\n"
        "register_driver('kvtest-logs', factory)\n"
        "sys.exit(main(['--url', 'kvtest-logs://u:hun%40ter2@h/db', 'keys']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 1, done.stderr
    assert "cannot reach kvtest-logs://u:***@h/db" in done.stderr
    assert "hun" not in done.stderr
    assert "Traceback" not in done.stderr


_WORDS = st.sampled_from(
    [
        "get", "set", "delete", "keys", "export", "import", "migrate", "backup", "check",
        "--url", "--agentx-dir", "--raw", "--prefix", "--batch", "--dry-run", "--to",
        "--keep-days", "--read-only", "-o", "--help-me", "-", "--", "k", "a::b", "1", "0",
        "-5", "nan", '"v"', "{", "memory://", "sqlite://", "sqlite:///", "redis://[::1",
        "redis://h:99999/0", "file://u:p@h/d", "nosuch://", "postgresql://u:p@ss@h/db",
        "host=h password='x", "\x00", "é", "",
    ]
)  # fmt: skip


@given(argv=st.lists(_WORDS, max_size=6))
def test_no_command_line_ends_in_a_traceback(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as home:
        out, err = io.StringIO(), io.StringIO()
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            contextlib.chdir(home),
        ):
            status = main(["--agentx-dir", home, *argv])
    assert status in (0, 1, 2), (argv, err.getvalue())
    if status:
        assert_only_one_error_line(err.getvalue())


@pytest.mark.parametrize("spelling", ["encoded", "raw"])
@pytest.mark.parametrize("scheme", [s for s in SERVER_SCHEMES if s != "mongodb+srv"])
def test_an_unreachable_server_is_one_line_without_the_password(
    scheme: str, spelling: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """First use, not only parsing: connecting to a closed port fails without the password."""
    password = f"{MARK} a'b\"c\\:{MARK}"  # needs no encoding, but may have it
    url = url_with(scheme, spell(password, spelling)).replace(":1/", f":{free_port()}/")
    assert main(["check", "--url", url]) == 1
    captured = capsys.readouterr()
    assert_only_one_error_line(captured.err)
    assert MARK not in captured.out + captured.err


def test_migrate_onto_its_own_source_copies_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same directory spelt twice (scheme case, a trailing slash): the one URL parser says so.
    source = f"file://{tmp_path}/kv"
    assert main(["migrate", source, f"FILE://{tmp_path}/kv/"]) == 1
    err = capsys.readouterr().err
    assert_only_one_error_line(err)
    assert "is the source; nothing was copied" in err
