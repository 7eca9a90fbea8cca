"""Child processes for the multi-process queue tests; driven over stdin/stdout, never by timing.

python -m tests.queue._worker publish PATH TOPIC NAME COUNT
    opens the queue, prints "ready", waits for a line on stdin, publishes COUNT events
    {"p": NAME, "i": i} one at a time, prints "done".
python -m tests.queue._worker consume PATH TOPIC CONSUMER LAST
    consumes TOPIC as CONSUMER, acking each entry and then printing "CURSOR I", until it
    has handled the event with i == LAST.
"""

from __future__ import annotations

import asyncio
import sys

from eventqueue import create_queue


async def publish(path: str, topic: str, name: str, count: int) -> None:
    async with create_queue(path) as queue:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for i in range(count):
            await queue.publish(topic, {"p": name, "i": i})
        print("done", flush=True)


async def consume(path: str, topic: str, consumer: str, last: int) -> None:
    async with create_queue(path) as queue:
        async for entry in queue.consume(topic, consumer):
            await queue.ack(consumer, topic, entry.cursor)
            print(entry.cursor, entry.event["i"], flush=True)
            if entry.event["i"] == last:
                return


def main(argv: list[str]) -> None:
    mode, path, topic, name, number = argv
    if mode == "publish":
        asyncio.run(publish(path, topic, name, int(number)))
    elif mode == "consume":
        asyncio.run(consume(path, topic, name, int(number)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
