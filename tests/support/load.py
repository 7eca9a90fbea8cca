"""The concurrency check every server driver passes: many tasks, one storage, a bounded pool."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from kvstore.storage import Storage

TASKS = 200
STEPS = 5


async def check_tasks_share_a_bounded_pool(
    storage: Storage, connections: Callable[[], int], pool_size: int
) -> None:
    """200 tasks write and read through ``storage``: nothing is lost, and ``connections()`` (the
    server's own count of this storage's connections) never exceeds ``pool_size``, and drops to
    zero once the storage is closed. Closes ``storage``."""
    peak = 0

    async def worker(task: int) -> None:
        nonlocal peak
        for step in range(STEPS):
            key = f"t:{task:03d}:{step}"
            await storage.set(key, {"task": task, "step": step})
            assert await storage.get(key) == {"task": task, "step": step}
        peak = max(peak, connections())

    try:
        async with anyio.create_task_group() as group:
            for task in range(TASKS):
                group.start_soon(worker, task)
        keys = [key async for key in storage.keys("t:")]
        assert len(keys) == TASKS * STEPS
        values = await storage.get_many(keys)
        assert values == [{"task": int(key[2:5]), "step": int(key[6])} for key in keys]
        assert 0 < connections() <= pool_size
        assert peak <= pool_size
    finally:
        await storage.close()
    # The server drops a connection shortly after its client hangs up: wait for that, bounded.
    for _ in range(100):
        if connections() == 0:
            break
        await anyio.sleep(0.05)
    assert connections() == 0, "closing the storage left connections open"
