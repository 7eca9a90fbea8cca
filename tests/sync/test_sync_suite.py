"""The conformance suite's own clauses, run through the blocking facade on every driver.

Each clause of :class:`kvstore.testing.DriverConformance` that uses nothing but the storage it is
given (and its own ``parametrize`` values) runs here unchanged, over :class:`Awaiting`: an object
with the async :class:`~kvstore.storage.Storage` surface whose every ``await`` makes one blocking
call, from inside a running event loop, as a notebook cell does. So the suite's assertions are
checked on what the blocking API returns and raises.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from kvstore.sync import Storage
from kvstore.testing import DriverConformance

pytestmark = pytest.mark.timeout(240)

# Clauses left out, and why.
LEFT_OUT = {
    # Tasks on one loop that await a blocking call run one after another: these would pass
    # without racing anything. Threads race through the facade in test_sync_threads.py.
    "test_concurrent_writers_lose_nothing": "needs tasks that overlap",
    "test_concurrent_writes_to_one_key_leave_one_whole_value": "needs tasks that overlap",
    # Sixteen MiB values through a thread hop add nothing over the round trips above.
    "test_sixteen_mib_values_are_stored": "size, not the facade",
}


class Awaiting:
    """The async storage surface over a blocking storage: each await is one blocking call."""

    def __init__(self, blocking: Storage) -> None:
        self._blocking = blocking

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._blocking, name)
        if name in ("keys", "items", "items_raw"):
            # Called now, so that an invalid prefix raises at the call, as it does async.
            return lambda *args, **kwargs: _stream(attribute(*args, **kwargs))
        if name == "with_prefix":
            return lambda *args, **kwargs: Awaiting(attribute(*args, **kwargs))
        if not callable(attribute) or name == "mount":
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attribute(*args, **kwargs)

        return call


async def _stream(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    for item in iterator:
        yield item


def _cases() -> Iterator[Any]:
    """Each clause that takes only ``storage`` and its own parameters, once per parameter set."""
    for name, clause in sorted(vars(DriverConformance).items()):
        if not name.startswith("test_") or name in LEFT_OUT:
            continue
        marks = [m for m in getattr(clause, "pytestmark", []) if m.name == "parametrize"]
        axes = [_axis(mark) for mark in marks]
        wanted = {"self", "storage"}.union(*(names for names, _ in axes))
        if set(inspect.signature(clause).parameters) != wanted:
            continue  # the clause needs a fixture of the suite's (a driver factory, a clock)
        for combination in itertools.product(*(values for _, values in axes)):
            arguments = {key: value for part, _ in combination for key, value in part.items()}
            yield pytest.param(name, arguments, id="-".join([name, *(i for _, i in combination)]))


def _axis(mark: pytest.Mark) -> tuple[list[str], list[tuple[dict[str, Any], str]]]:
    """The argument names of one ``parametrize`` mark, and each value set with its id."""
    argnames, argvalues = mark.args[0], mark.args[1]
    names = [n.strip() for n in argnames.split(",")] if isinstance(argnames, str) else argnames
    ids = mark.kwargs.get("ids")
    axis = []
    for index, given in enumerate(argvalues):
        is_param = isinstance(given, tuple) and hasattr(given, "marks")  # a pytest.param(...)
        values = given.values if is_param else given if len(names) > 1 else (given,)
        if is_param and given.id is not None:
            label = given.id
        elif callable(ids):
            label = str(ids(given))
        else:
            label = str(ids[index]) if ids else str(index)
        axis.append((dict(zip(names, values, strict=True)), label))
    return list(names), axis


@pytest.mark.parametrize(("clause", "arguments"), list(_cases()))
def test_suite_clause_holds_through_the_facade(
    storage: Storage, clause: str, arguments: dict[str, Any]
) -> None:
    suite = DriverConformance()
    run = functools.partial(getattr(suite, clause), Awaiting(storage), **arguments)
    anyio.run(run)
