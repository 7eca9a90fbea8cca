"""How the suite describes what a driver returned: short, with sizes instead of large bytes.

A failing clause names itself and shows values a reader can take in: a 16 MiB value appears as
its size and first bytes, never as sixteen million escaped characters.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["describe", "first_difference", "shape_problem"]

# Byte strings longer than this are shown by size and their first bytes.
_SHOWN_BYTES = 48


def describe(value: object) -> str:
    """A short, readable form of ``value``: bytes beyond a few dozen are summarised by size."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        kind = type(value).__name__
        if len(data) <= _SHOWN_BYTES:
            shown = repr(data)
            return shown if kind == "bytes" else f"{kind}({shown})"
        return f"<{kind} of {len(data)} bytes, starting {data[:16]!r}>"
    if isinstance(value, tuple):
        return "(" + ", ".join(describe(item) for item in value) + ")"
    if isinstance(value, list):
        shown = ", ".join(describe(item) for item in value[:8])
        more = f", ... {len(value) - 8} more" if len(value) > 8 else ""
        return f"[{shown}{more}]"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def first_difference(got: Sequence[object], expected: Sequence[object]) -> str | None:
    """Say where two sequences first differ (``None`` if they are equal), in a few lines."""
    for index, (have, want) in enumerate(zip(got, expected, strict=False)):
        if have != want or type(have) is not type(want):
            return (
                f"item {index} of {len(expected)}: got {describe(have)}, expected {describe(want)}"
            )
    if len(got) != len(expected):
        extra = got[len(expected)] if len(got) > len(expected) else expected[len(got)]
        return (
            f"got {len(got)} items, expected {len(expected)} "
            f"(first {'extra' if len(got) > len(expected) else 'missing'}: {describe(extra)})"
        )
    return None


def shape_problem(driver: object) -> str | None:
    """Say what to change if ``driver`` has a common structural mistake, else ``None``.

    Checks that ``keys`` (and ``items``, if present) return async iterators rather than
    coroutines or lists, without starting a scan.
    """
    for method in ("keys", "items"):
        call = getattr(driver, method, None)
        if call is None:
            continue
        result = call("")
        if hasattr(result, "__anext__"):
            # An async generator that never started holds nothing; close it to be tidy.
            continue
        close = getattr(result, "close", None)
        if close is not None:
            close()  # a coroutine never awaited would warn
        kind = type(result).__name__
        return (
            f"{type(driver).__name__}.{method}(prefix) returned a {kind}, not an async iterator."
            f" Write it as an async generator: `async def {method}(self, prefix=''):` with"
            f" `yield` in its body and no `return <list>`; a caller does"
            f" `async for ... in driver.{method}(prefix)` without awaiting the call."
        )
    return None
