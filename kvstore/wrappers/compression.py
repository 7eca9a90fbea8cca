"""Compression: values above a size threshold are stored as zstandard frames.

The stored format, chosen so that values written before the wrapper was added still read:

- a value that does not start with the byte ``0x00`` is stored, and read, as it is. JSON text
  (what :class:`~kvstore.storage.Storage` stores) never starts with ``0x00``, so every value
  written without the wrapper reads back unchanged;
- ``0x00 'z'`` followed by a zstandard frame (which records the original size) is a compressed
  value. A value is compressed only when it is at least ``min_size`` bytes and compressing it
  saves space;
- ``0x00 'r'`` followed by the value is a value of the caller's that itself starts with ``0x00``
  (only raw bytes written with ``set_raw`` can), stored uncompressed.

A value written before the wrapper was added that starts with ``0x00 'z'`` or ``0x00 'r'``
(raw bytes only, never JSON) would be misread; any other one reads as written.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

from kvstore.driver import Driver
from kvstore.errors import ConfigurationError, MissingDependency
from kvstore.wrappers.base import ValueCodec
from kvstore.wrappers.errors import UnreadableValue

__all__ = ["COMPRESSED", "ESCAPED", "Compression"]

#: The header of a compressed value: a zstandard frame follows.
COMPRESSED: Final = b"\x00z"
#: The header of an uncompressed value that starts with ``0x00``: the value follows.
ESCAPED: Final = b"\x00r"
_MARK: Final = 0


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError as error:
        raise MissingDependency(
            "compression needs zstandard: pip install 'agentx-persistence[compression]'"
        ) from error
    return zstandard


class Compression(ValueCodec):
    """Store values of at least ``min_size`` bytes compressed with zstandard at ``level``.

    ``Compression(driver)`` wraps any driver; values below ``min_size`` (default 512 bytes) and
    values that would not shrink are stored as they are. Reading needs no setting: the header
    says whether a value is compressed, so ``min_size`` and ``level`` may change at any time.
    """

    rank: ClassVar[int] = 50

    def __init__(self, inner: Driver, *, min_size: int = 512, level: int = 3) -> None:
        zstandard = _zstandard()
        if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
            raise ConfigurationError(
                f"compression min_size must be a whole number >= 1, not {min_size!r}"
            )
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 22:
            raise ConfigurationError(f"compression level must be 1..22, not {level!r}")
        super().__init__(inner)
        self.min_size = min_size
        self.level = level
        self._error = zstandard.ZstdError
        self._frame_size = zstandard.frame_content_size
        # Compression and decompression run inline (on the event loop's thread), one call at a
        # time: one compressor and one decompressor serve every call.
        self._compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self._decompressor = zstandard.ZstdDecompressor()

    def encode(self, key: str, value: bytes) -> bytes:
        """Return the value compressed with its header, or as it is (escaped if it must be)."""
        if len(value) >= self.min_size:
            frame: bytes = self._compressor.compress(value)
            if len(frame) + len(COMPRESSED) < len(value):
                return COMPRESSED + frame
        if value[:1] == b"\x00":
            return ESCAPED + value
        return value

    def decode(self, key: str, stored: bytes) -> bytes:
        """Return the caller's value for ``stored``; values without a header as they are."""
        if not stored or stored[0] != _MARK:
            return stored
        header = stored[:2]
        if header == ESCAPED:
            return stored[2:]
        if header != COMPRESSED:
            return stored  # raw bytes written before the wrapper, starting with 0x00
        try:
            value: bytes = self._decompressor.decompress(stored[2:])
        except self._error as error:
            raise UnreadableValue(
                f"the value of {key!r} has a compression header but no valid zstandard frame "
                f"({error})",
                key=key,
            ) from None
        return value

    def value_size(self, key: str, stored: bytes) -> int:
        """The caller's value size, from the frame header without decompressing."""
        if stored[:2] == COMPRESSED:
            try:
                size = int(self._frame_size(stored[2:]))
            except self._error:
                size = -1
            if size >= 0:
                return size
        return len(self.decode(key, stored))
