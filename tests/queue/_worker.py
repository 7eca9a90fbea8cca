"""Child processes for the multi-process queue tests; driven over stdin/stdout, never by timing.

Every line a child prints reports something that already happened (the call returned), and is
flushed at once, so a parent that kills the child and reads its output to the end knows exactly
what the child had acknowledged. PATH is a SQLite file, or a ``sqlite://`` URL (to pass options
such as ``synchronous=NORMAL``).

python -m tests.queue._worker publish PATH TOPIC NAME COUNT
    opens the queue, prints "ready", waits for a line on stdin, publishes COUNT events
    {"p": NAME, "i": i} one at a time, prints "done".
python -m tests.queue._worker publish-forever PATH TOPIC NAME
    publishes event(NAME, i) for i = 0, 1, ... one at a time, printing "CURSOR I" after each
    publish returned, until killed.
python -m tests.queue._worker publish-batches PATH TOPIC NAME SIZE
    publishes batches of SIZE events (batch b holds event(NAME, i, b) for i = b*SIZE ...) with
    publish_many, printing "B CURSOR..." after each publish_many returned, until killed.
python -m tests.queue._worker consume PATH TOPIC CONSUMER LAST
    consumes TOPIC as CONSUMER, acking each entry and then printing "CURSOR I", until it
    has handled the event with i == LAST (never, if LAST is -1).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from eventqueue import EventQueue, create_queue


def _open(target: str) -> EventQueue:
    return create_queue(url=target) if "://" in target else create_queue(target)


def event(name: str, i: int, batch: int | None = None) -> dict[str, Any]:
    """The event publisher ``name`` stores as its ``i``-th; its size varies so pages differ."""
    body: dict[str, Any] = {"p": name, "i": i, "pad": f"{name}/{i}/" * (i % 97)}
    if batch is not None:
        body["b"] = batch
    return body


async def publish(path: str, topic: str, name: str, count: int) -> None:
    async with _open(path) as queue:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for i in range(count):
            await queue.publish(topic, {"p": name, "i": i})
        print("done", flush=True)


async def publish_forever(path: str, topic: str, name: str) -> None:
    async with _open(path) as queue:
        i = 0
        while True:
            cursor = await queue.publish(topic, event(name, i))
            print(cursor, i, flush=True)
            i += 1


async def publish_batches(path: str, topic: str, name: str, size: int) -> None:
    async with _open(path) as queue:
        batch = 0
        while True:
            events = [event(name, batch * size + k, batch) for k in range(size)]
            cursors = await queue.publish_many(topic, events)
            print(batch, *cursors, flush=True)
            batch += 1


async def consume(path: str, topic: str, consumer: str, last: int) -> None:
    async with _open(path) as queue:
        async for entry in queue.consume(topic, consumer):
            await queue.ack(consumer, topic, entry.cursor)
            print(entry.cursor, entry.event["i"], flush=True)
            if entry.event["i"] == last:
                return


def main(argv: list[str]) -> None:
    mode, path, topic, *rest = argv
    if mode == "publish":
        asyncio.run(publish(path, topic, rest[0], int(rest[1])))
    elif mode == "publish-forever":
        asyncio.run(publish_forever(path, topic, rest[0]))
    elif mode == "publish-batches":
        asyncio.run(publish_batches(path, topic, rest[0], int(rest[1])))
    elif mode == "consume":
        asyncio.run(consume(path, topic, rest[0], int(rest[1])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
