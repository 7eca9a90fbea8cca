"""Looking after a store: ``backup`` (SQLite online backup with retention) and ``check``."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final
from urllib.parse import quote

from kvstore.cli._common import CLIError, Target
from kvstore.drivers.sqlite import SQLiteDriver

__all__ = ["BACKUP_NAME", "backup_name", "prune_backups", "run_backup", "run_check"]

#: Backup files are ``agentx-<UTC time>.db``; retention touches only names of this form.
BACKUP_NAME: Final = re.compile(r"agentx-(\d{8}T\d{6}Z)\.db")
_STAMP: Final = "%Y%m%dT%H%M%SZ"
# Reserved probe keys for ``check``: a fresh uuid each time, deleted straight after.
PROBE_BASE: Final = "__kvstore_check__"
# Integrity problems printed before the rest are only counted.
_SHOWN_PROBLEMS: Final = 20


def backup_name(moment: datetime) -> str:
    """Return the backup file name for ``moment`` (in UTC)."""
    return f"agentx-{moment.astimezone(UTC).strftime(_STAMP)}.db"


def _connect_read_only(path: str) -> sqlite3.Connection:
    """Open an existing database without creating it or taking any write lock."""
    if not os.path.isfile(path):
        raise CLIError(f"there is no SQLite database at {path}")
    return sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True)


def _backup(source_path: str, destination: Path) -> None:
    """Copy a consistent snapshot of ``source_path`` to ``destination``, which must not exist."""
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
    try:
        source = _connect_read_only(source_path)
        try:
            target = sqlite3.connect(partial)
            try:
                source.backup(target)
                # The copy inherits WAL mode; switch it back so the backup is one file.
                target.execute("PRAGMA journal_mode = DELETE")
            finally:
                target.close()
        finally:
            source.close()
        # A hard link fails if the name is taken, so an existing backup is never replaced.
        os.link(partial, destination)
    except FileExistsError:
        raise CLIError(f"{destination} already exists; nothing was overwritten") from None
    except sqlite3.Error as error:
        raise CLIError(f"cannot back up {source_path}: {error}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()


def prune_backups(directory: Path, keep_days: float, now: datetime, keep: Path) -> list[Path]:
    """Delete backups in ``directory`` whose name says they are older than ``keep_days``.

    Only files named like :data:`BACKUP_NAME` are considered, and their age comes from the
    timestamp in the name, not from file times (which copies and restores change). ``keep`` is
    never deleted. Returns the deleted paths, oldest first.
    """
    cutoff = now - timedelta(days=keep_days)
    removed: list[Path] = []
    for path in sorted(directory.iterdir()):
        match = BACKUP_NAME.fullmatch(path.name)
        if match is None or path == keep or not path.is_file():
            continue
        try:
            taken = datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC)
        except ValueError:
            continue  # digits in the right places but no real date: not one of ours
        if taken < cutoff:
            path.unlink()
            removed.append(path)
    return removed


def _backup_directory(option: str | None, target: Target) -> Path:
    directory = Path(option).expanduser() if option is not None else target.agentx_dir / "backups"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def run_backup(args: argparse.Namespace, target: Target) -> int:
    """Back the SQLite database up to ``--to``, then apply ``--keep-days`` retention."""
    driver = target.sqlite("backup")
    await driver.close()  # never opened: only its resolved path is needed
    directory = _backup_directory(args.to, target)
    now = datetime.now(UTC)
    destination = directory / backup_name(now)
    _backup(driver.path, destination)
    print(f"backed up {driver.path} to {destination}")
    if args.keep_days is not None:
        for path in prune_backups(directory, args.keep_days, now, destination):
            print(f"removed old backup {path}")
    return 0


def _integrity(path: str) -> None:
    try:
        conn = _connect_read_only(path)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise CLIError(f"integrity check of {path} failed: {error}") from None
    problems = [str(row[0]) for row in rows]
    if problems != ["ok"]:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = (
            f" (and {len(problems) - _SHOWN_PROBLEMS} more)"
            if len(problems) > _SHOWN_PROBLEMS
            else ""
        )
        raise CLIError(f"integrity check of {path} found {len(problems)} problems: {shown}{more}")
    print(f"integrity check of {path}: ok")


async def run_check(args: argparse.Namespace, target: Target) -> int:
    """Check the store: SQLite integrity, then a scan and (unless read-only) a probe write."""
    storage = target.storage()
    try:
        driver = storage.driver
        if isinstance(driver, SQLiteDriver) and not driver.in_memory:
            _integrity(driver.path)
        await storage.open()
        async for _ in storage.keys():
            break
        if not args.read_only:
            probe = f"{PROBE_BASE}:{uuid.uuid4().hex}"
            token = uuid.uuid4().bytes
            await storage.set_raw(probe, token)
            try:
                read_back = await storage.get_raw(probe)
            finally:
                await storage.delete(probe)
            if read_back != token:
                raise CLIError("a probe value written to the store did not read back equal")
    finally:
        await storage.close()
    action = "read" if args.read_only else "read, write and delete"
    print(f"{target.display}: reachable; {action} ok")
    return 0
