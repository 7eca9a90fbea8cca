"""The event loop a blocking facade runs its async object on, and the helper that mirrors methods.

A driver lives on one event loop, so every call for one storage (or queue) goes to the same loop:
the :class:`Runner` that owns it. Where the loop runs depends on the caller:

- *Inline*, in the caller's own thread: while only one thread uses the runner, each call runs the
  loop in that thread until the call is done. No thread hop: a call costs a few microseconds
  more than awaiting it. This holds in a notebook too, or wherever an asyncio loop already runs
  in the calling thread: that loop is blocked by the call either way, so ours runs in its place
  for the length of the call.
  An object whose work runs on the loop's thread anyway (see
  :meth:`Runner.run_inline_for_all_threads`) runs every thread's calls inline, one at a time.
- *On the loop thread*: otherwise, from the first call made from a second thread, or from a
  thread where another async library (trio) runs, the loop moves for good to a daemon thread
  the runner starts, and every call is handed to it and waited for. A thread hop costs tens of
  microseconds (see ``benchmarks/sync_overhead.py``). A runner made with ``keep_running=True``
  starts there, for objects that work between calls (a queue's subscriptions and retention
  timer).

The loop thread is a daemon: it never keeps the process alive. :meth:`Runner.release` by the last
user shuts the loop down. Exceptions propagate with their own types and tracebacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

from kvstore.errors import KVStoreError

try:  # installed with trio; anyio uses it, when present, to tell which library runs
    import sniffio as _sniffio
except ImportError:  # pragma: no cover - without it, only asyncio can be running
    _sniffio = None  # type: ignore[assignment]

__all__ = ["BlockingCallInLoop", "Mirror", "Mirrored", "Runner", "iterate", "mirror"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
A = TypeVar("A")
F = TypeVar("F", bound=Callable[..., Any])

# Items an iterator brings back from the loop per hop: one hop per key would cost a thread
# switch per key on the loop thread.
PAGE = 256


class BlockingCallInLoop(KVStoreError, RuntimeError):
    """A blocking call was made on the runner's own event loop, where it would wait for itself.

    Raised, instead of a deadlock, when for example an ``update`` callback or a coroutine running
    on the facade's loop calls the blocking API: use the async API there.
    """


class Runner:
    """One event loop for one blocking object and its views, run inline or on a daemon thread.

    ``closed_error`` makes the error a call raises once the runner is shut down (the facade's
    own "closed" error). ``keep_running`` starts the loop thread at once, for objects whose
    background tasks must run between calls.
    """

    __slots__ = (
        "_closed",
        "_closed_error",
        "_gate",
        "_home",
        "_inline_for_all",
        "_loop",
        "_root",
        "_stop",
        "_thread",
        "_users",
    )

    def __init__(
        self, *, closed_error: Callable[[], Exception], keep_running: bool = False
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._closed_error = closed_error
        self._closed = False
        self._users = 0
        # Held while a call runs the loop inline, and while the loop moves to its thread.
        self._gate = threading.Lock()
        self._home: int | None = None
        self._inline_for_all: Callable[[], bool] = _never
        self._thread: threading.Thread | None = None
        # The loop's root task, from the first call to the last release (see _root_task).
        self._stop: asyncio.Future[None] = self._loop.create_future()
        self._root = _root_task(self._loop, self._stop)
        if keep_running:
            with self._gate:
                self._start_thread()

    @property
    def closed(self) -> bool:
        """Whether the last user released the runner (its loop is shut down)."""
        return self._closed

    @property
    def threaded(self) -> bool:
        """Whether calls go to the daemon loop thread (rather than running inline)."""
        return self._thread is not None

    def run_inline_for_all_threads(self, when: Callable[[], bool]) -> None:
        """Let every thread run calls inline, one at a time, while ``when()`` is true.

        For objects whose work runs on the loop's own thread without waiting for I/O (the
        memory, SQLite and local-file drivers): their calls cannot overlap on a loop thread
        either, so handing them to one buys nothing and costs a thread hop each (about 100 us
        on an idle VM, where waking a sleeping core dominates). ``when`` is asked at each call
        from a thread other than the first; it must be cheap.
        """
        self._inline_for_all = when

    # -- users ---------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Count one more user; the loop stays up until each user has released it."""
        with self._gate:
            if self._closed:
                raise self._closed_error()
            self._users += 1

    def release(self) -> None:
        """Count one user less; the last one shuts the loop (and its thread) down."""
        with self._gate:
            self._users -= 1
            if self._users > 0 or self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is None:
                self._stop.set_result(None)
                with _in_place_of_running_loop():
                    _run_to_the_end(self._loop, self._root)
                return
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        if thread is not threading.current_thread():
            thread.join()

    # -- calls ---------------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the runner's loop and return its result (or raise its error)."""
        if self._thread is None:
            running = asyncio._get_running_loop()
            if running is self._loop:
                coroutine.close()
                raise _reentry()
            if not _other_library_running():
                current = threading.get_ident()
                with self._gate:
                    if self._thread is None and (
                        self._home in (None, current) or self._inline_for_all()
                    ):
                        if self._closed:
                            coroutine.close()
                            raise self._closed_error()
                        if self._home is None:
                            self._home = current
                        return _run_inline(self._loop, coroutine)
            with self._gate:
                if self._thread is None and not self._closed:
                    # A second thread, or trio running in this one: the loop moves to a thread
                    # of its own, for good.
                    self._start_thread()
        return self._submit(coroutine)

    def run_sync(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the plain ``function`` on the runner's loop, between its other calls."""

        async def call() -> T:
            return function(*args, **kwargs)

        return self.run(call())

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise self._closed_error()
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise _reentry()
        call = _HandOff(coroutine)
        try:
            self._loop.call_soon_threadsafe(call.start)
        except RuntimeError:  # the loop closed since the check above
            coroutine.close()
            raise self._closed_error() from None
        try:
            call.done.acquire()
        except BaseException:
            # Interrupted while waiting (Ctrl-C): stop the call on the loop too.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(call.abandon)
            raise
        return call.result()

    def _start_thread(self) -> None:
        # Called with the gate held, so no inline call is running the loop meanwhile.
        self._thread = threading.Thread(target=self._serve, name="kvstore.sync loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        _run_to_the_end(self._loop, self._root)


class _HandOff(Generic[T]):
    """One call handed from a caller's thread to the loop thread, and its way back.

    Leaner than ``asyncio.run_coroutine_threadsafe``, which chains an asyncio future to a
    ``concurrent.futures`` one (a condition variable, callbacks both ways): here the task's done
    callback releases a plain lock the caller blocks on. Measured on this 2-core VM, the hop
    went from about 80 to about 50 us per call.
    """

    __slots__ = ("_abandoned", "_coroutine", "_task", "done")

    def __init__(self, coroutine: Coroutine[Any, Any, T]) -> None:
        self._coroutine = coroutine
        self._task: asyncio.Task[T] | None = None
        self._abandoned = False
        self.done = threading.Lock()
        self.done.acquire()

    def start(self) -> None:
        """On the loop: run the call as a task of its own, in a fresh context (see _run_inline)."""
        if self._abandoned:
            self._coroutine.close()
            return
        task = asyncio.get_running_loop().create_task(
            self._coroutine, context=contextvars.Context()
        )
        task.add_done_callback(self._finish)
        self._task = task

    def _finish(self, _task: asyncio.Task[T]) -> None:
        self.done.release()

    def abandon(self) -> None:
        """On the loop: the caller stopped waiting; cancel the call, or never start it."""
        self._abandoned = True
        if self._task is not None:
            self._task.cancel()

    def result(self) -> T:
        """The call's result, or its error raised; only once :attr:`done` was released."""
        assert self._task is not None  # done is released by the task's own callback only
        return self._task.result()


def _never() -> bool:
    return False


def _reentry() -> BlockingCallInLoop:
    return BlockingCallInLoop(
        "a blocking call from the blocking facade's own event loop would wait for itself: "
        "use the async API in code that runs on that loop (callbacks, coroutines)"
    )


def _other_library_running() -> bool:
    """Whether another async library (trio) runs in this thread: our loop cannot run here."""
    return _sniffio is not None and getattr(_sniffio.thread_local, "name", None) is not None


def _root_task(loop: asyncio.AbstractEventLoop, stop: asyncio.Future[None]) -> asyncio.Task[None]:
    """The task that lasts as long as the loop, and that anyio takes for the loop's root task.

    anyio ties its worker threads (``anyio.to_thread``, which the MySQL driver and remote file
    systems use) to the root task, which it recognises by the callback ``run_until_complete``
    adds. Inline calls run the loop with ``run_forever``, so without this each call's own task
    would be the root, and each call would start a worker thread and stop it at the end
    (measured: +500 us per MySQL call). The loop thread runs ``run_until_complete`` on this task.
    """
    root = loop.create_task(_wait(stop), name="kvstore.sync root")
    marker = getattr(asyncio.base_events, "_run_until_complete_cb", None)
    if marker is not None:  # absent in some future Python: workers would be per call again
        root.add_done_callback(marker)
    return root


async def _wait(stop: asyncio.Future[None]) -> None:
    await stop


def _run_inline(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
    # A fresh context: the caller's context variables could name another async library (a
    # thread trio or anyio started), which would mislead anyio inside the driver.
    task = loop.create_task(coroutine, context=contextvars.Context())
    task.add_done_callback(_stop_loop)
    with _in_place_of_running_loop():
        try:
            loop.run_forever()
        finally:
            if not task.done():
                # Interrupted (Ctrl-C) with the call half done: cancel it now, or it would
                # resume inside the next call. The interruption is what propagates.
                task.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_forever()
    return task.result()


@contextlib.contextmanager
def _in_place_of_running_loop() -> Iterator[None]:
    """Let the runner's loop run in this thread even if an asyncio loop is running in it.

    Where an asyncio loop runs in the calling thread (a notebook cell, a coroutine that made a
    blocking call), that loop cannot run while the blocking call holds its thread anyway, so
    ours runs in its place. asyncio refuses to start a loop while it records another as running
    in the thread: the record is set aside for the call and put back after it.
    """
    outer = asyncio._get_running_loop()
    if outer is None:
        yield
        return
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(outer)


def _stop_loop(task: asyncio.Task[Any]) -> None:
    task.get_loop().stop()


def _run_to_the_end(loop: asyncio.AbstractEventLoop, root: asyncio.Task[None]) -> None:
    """Run the loop until ``root`` ends (once its stop future is set), then close it for good."""
    try:
        loop.run_until_complete(root)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


# -- mirrors -----------------------------------------------------------------------------------


class Mirror(Protocol[T_co]):
    """A blocking object: the async object it mirrors, and the runner its calls go through."""

    @property
    def _target(self) -> T_co: ...

    @property
    def _runner(self) -> Runner: ...


class Mirrored(Generic[T]):
    """Base of a blocking twin that holds only its async ``target`` and the ``runner``."""

    __slots__ = ("_runner", "_target")

    def __init__(self, target: T, runner: Runner) -> None:
        """Mirror ``target``, whose calls go through ``runner``."""
        self._target = target
        self._runner = runner


def mirror(
    method: Callable[Concatenate[A, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Mirror[A], P], R]:
    """Return the blocking twin of the async ``method``, to assign in a :class:`Mirror`'s body.

    The twin calls ``method`` on the mirror's target, on its runner's loop, and returns the
    result. It keeps the method's name, docstring and signature (``help`` and ``inspect`` show
    them).
    """

    def blocking(self: Mirror[A], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._runner.run(method(self._target, *args, **kwargs))

    return _named_after(blocking, method)


def _named_after(function: F, method: Callable[..., Any]) -> F:
    functools.update_wrapper(function, method, assigned=("__name__", "__doc__"), updated=())
    function.__qualname__ = f"blocking {method.__qualname__}"
    return function


def iterate(runner: Runner, stream: AsyncIterator[T]) -> Generator[T, None, None]:
    """Yield what ``stream`` (an async iterator on ``runner``'s loop) yields, a page per call.

    Each step to the loop brings back up to a page of items, so a long scan costs one loop call
    per page, not per item. Closing the iterator (or dropping it) closes ``stream``.
    """
    try:
        while True:
            page = runner.run(_next_page(stream))
            yield from page
            if len(page) < PAGE:
                return
    finally:
        closer = getattr(stream, "aclose", None)
        if closer is not None and not runner.closed:
            # Dropped on the loop itself: the loop closes the stream when it shuts down.
            with contextlib.suppress(BlockingCallInLoop):
                runner.run(closer())


async def _next_page(stream: AsyncIterator[T]) -> list[T]:
    page: list[T] = []
    async for item in stream:
        page.append(item)
        if len(page) == PAGE:
            break
    return page
