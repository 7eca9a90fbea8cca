"""Hold a SQLite database's write lock until told to let go.

Usage: ``python hold_lock.py PATH TABLE``. Takes the write lock with ``BEGIN IMMEDIATE``, writes
the key ``held`` inside the transaction, prints ``locked``, then waits for one line on stdin:
``commit`` commits, anything else (or end of input) rolls back. Prints ``released`` afterwards.
"""

from __future__ import annotations

import sqlite3
import sys


def main(path: str, table: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(f'INSERT OR REPLACE INTO "{table}" (key, value) VALUES (?, ?)', ("held", b"1"))
    print("locked", flush=True)
    command = sys.stdin.readline().strip()
    conn.execute("COMMIT" if command == "commit" else "ROLLBACK")
    conn.close()
    print("released", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
