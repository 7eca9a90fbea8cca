"""A blocking kvstore, for scripts, notebooks and threads: the async API without ``await``.

::

    from kvstore.sync import create_storage

    with create_storage("sqlite:///data.db") as storage:
        storage.set("users:alice", {"name": "Alice"})
        print(storage.get("users:alice"))

:class:`Storage` has the async :class:`kvstore.storage.Storage`'s methods, names and errors;
``keys`` and ``items`` return plain iterators. Each call runs the async method on an event loop
the storage owns (:class:`~kvstore.sync.runner.Runner`): in the calling thread, even where an
asyncio loop runs (a notebook; about ten microseconds per call), and from every thread on the
memory, SQLite and local-file drivers; on a daemon thread once another thread, or a thread
running trio, calls a storage on a server driver (a thread hop per call). Closing the storage
stops that loop.
"""

from __future__ import annotations

from kvstore.sync.runner import BlockingCallInLoop
from kvstore.sync.storage import Storage, create_storage

__all__ = ["BlockingCallInLoop", "Storage", "create_storage"]
