"""Tracing: one OpenTelemetry span per driver operation (needs the ``tracing`` extra).

Each operation opens a ``CLIENT`` span named ``kvstore.<operation>`` (``kvstore.get``,
``kvstore.set_many``...) with three attributes: ``kvstore.driver`` (the driver's name, e.g.
``sqlite``), ``kvstore.operation`` and ``kvstore.key_count`` (keys the call names or, for a
scan, keys it yielded). Spans never hold values, keys or prefixes (keys are data: user ids,
e-mail addresses), nor URLs or secrets. A failed operation sets the span's status to ERROR with
the error's class name (``error.type``) and no message, since messages name keys; the exception
is not recorded on the span for the same reason.

Scans (``keys``, ``items``) are spans that stay open until the iteration ends; they are not made
the current span, so spans begun while the caller iterates do not nest under them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, ClassVar, TypeVar

from kvstore.conditional import Change, Versioned
from kvstore.driver import Driver
from kvstore.errors import MissingDependency
from kvstore.expiry import Meta
from kvstore.wrappers.base import Wrapper, closing

__all__ = ["Tracing"]

T = TypeVar("T")


def _trace_api() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as error:
        raise MissingDependency(
            "tracing needs OpenTelemetry: pip install 'agentx-persistence[tracing]'"
        ) from error
    return trace


class Tracing(Wrapper):
    """Open one OpenTelemetry span per operation (see the module docstring for its content).

    ``tracer_provider`` defaults to OpenTelemetry's global one (set by the application).
    """

    rank: ClassVar[int] = 10

    def __init__(self, inner: Driver, *, tracer_provider: Any = None) -> None:
        trace = _trace_api()
        super().__init__(inner)
        from kvstore import __version__

        self._tracer = trace.get_tracer("kvstore", __version__, tracer_provider=tracer_provider)
        self._client = trace.SpanKind.CLIENT
        self._error = trace.Status(trace.StatusCode.ERROR)

    def _attributes(self, operation: str, count: int) -> dict[str, Any]:
        return {
            "kvstore.driver": self.name,
            "kvstore.operation": operation,
            "kvstore.key_count": count,
        }

    async def _traced(self, operation: str, count: int, call: Awaitable[T]) -> T:
        with self._tracer.start_as_current_span(
            f"kvstore.{operation}",
            kind=self._client,
            attributes=self._attributes(operation, count),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                return await call
            except Exception as error:
                span.set_attribute("error.type", type(error).__qualname__)
                span.set_status(self._error)
                raise

    async def _scan(self, operation: str, stream: AsyncIterator[T]) -> AsyncIterator[T]:
        span = self._tracer.start_span(
            f"kvstore.{operation}", kind=self._client, attributes=self._attributes(operation, 0)
        )
        count = 0
        try:
            async with closing(stream):
                async for item in stream:
                    count += 1
                    yield item
        except Exception as error:
            span.set_attribute("error.type", type(error).__qualname__)
            span.set_status(self._error)
            raise
        finally:
            span.set_attribute("kvstore.key_count", count)
            span.end()

    async def get(self, key: str) -> bytes | None:
        # docstring inherited
        return await self._traced("get", 1, self.inner.get(key))

    async def set(self, key: str, value: bytes) -> None:
        # docstring inherited
        await self._traced("set", 1, self.inner.set(key, value))

    async def delete(self, key: str) -> None:
        # docstring inherited
        await self._traced("delete", 1, self.inner.delete(key))

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        # docstring inherited
        return self._scan("keys", self.inner.keys(prefix))

    def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        # docstring inherited
        return self._scan("items", self.inner.items(prefix))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # docstring inherited
        return await self._traced("get_many", len(keys), self.inner.get_many(keys))

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        # docstring inherited
        await self._traced("set_many", len(items), self.inner.set_many(items))

    async def delete_many(self, keys: Sequence[str]) -> None:
        # docstring inherited
        await self._traced("delete_many", len(keys), self.inner.delete_many(keys))

    async def clear(self, prefix: str = "") -> None:
        # docstring inherited
        await self._traced("clear", 0, self.inner.clear(prefix))

    async def get_versioned(self, key: str) -> Versioned[bytes] | None:
        # docstring inherited
        return await self._traced("get_versioned", 1, self.inner.get_versioned(key))

    async def commit(self, changes: Sequence[Change[bytes]]) -> list[int | None]:
        # docstring inherited
        return await self._traced("commit", len(changes), self.inner.commit(changes))

    async def set_if(self, key: str, value: bytes, expected: int | None) -> int:
        # docstring inherited
        return await self._traced("set_if", 1, self.inner.set_if(key, value, expected))

    async def delete_if(self, key: str, expected: int) -> None:
        # docstring inherited
        await self._traced("delete_if", 1, self.inner.delete_if(key, expected))

    async def set_expiring(self, key: str, value: bytes, ttl: float) -> None:
        # docstring inherited
        await self._traced("set_expiring", 1, self.inner.set_expiring(key, value, ttl))

    async def set_many_expiring(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        # docstring inherited
        await self._traced(
            "set_many_expiring", len(items), self.inner.set_many_expiring(items, ttl)
        )

    async def expire(self, key: str, ttl: float | None) -> bool:
        # docstring inherited
        return await self._traced("expire", 1, self.inner.expire(key, ttl))

    async def get_meta(self, key: str) -> Meta | None:
        # docstring inherited
        return await self._traced("get_meta", 1, self.inner.get_meta(key))

    async def get_meta_many(self, keys: Sequence[str]) -> list[Meta | None]:
        # docstring inherited
        return await self._traced("get_meta_many", len(keys), self.inner.get_meta_many(keys))

    async def purge_expired(self, limit: int = 1000) -> int:
        # docstring inherited
        return await self._traced("purge_expired", 0, self.inner.purge_expired(limit))
