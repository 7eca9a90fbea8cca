"""Encryption: values stored with AES-GCM under a keyring of named keys, so keys can rotate.

Each stored value is ``0x00 'e'``, one byte giving the key id's length, the key id (ASCII),
a random 12-byte nonce, then the AES-GCM ciphertext and its 16-byte tag. The associated data is
the header (so the key id cannot be swapped) and the storage key the value is stored under: a
value copied to another key does not decrypt there.

Only values are encrypted. Key names (the storage keys) stay plaintext in the backend, as do
value sizes (within 30 bytes) and write times.

A keyring maps key ids to 128, 192 or 256-bit keys. Writes use the ``current`` key; reads use
whichever key the value names, so after adding a new key and making it current, values written
under the old keys still read (re-write them to move them to the new key, then drop the old key).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from kvstore.driver import Driver
from kvstore.errors import ConfigurationError, MissingDependency
from kvstore.wrappers.base import ValueCodec
from kvstore.wrappers.errors import DecryptionError

__all__ = ["ENCRYPTED", "Encryption", "parse_keyring"]

#: The first two bytes of every encrypted value.
ENCRYPTED: Final = b"\x00e"
_NONCE = 12
_TAG = 16
_KEY_ID: Final = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_KEY_SIZES: Final = (16, 24, 32)


def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as error:
        raise MissingDependency(
            "encryption needs cryptography: pip install 'agentx-persistence[encryption]'"
        ) from error
    return AESGCM


def parse_keyring(text: str) -> tuple[dict[str, bytes], str]:
    """Read ``"ID:BASE64KEY,ID:BASE64KEY"`` into a keyring and its current (first) key id.

    The format of the environment variable an ``encryption_keys_env`` URL option names. Raises
    :class:`ConfigurationError` whose message never holds a key.
    """
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(text.split(","), start=1):
        key_id, colon, encoded = entry.strip().partition(":")
        if not colon or not key_id:
            raise ConfigurationError(
                f"keyring entry {position} is not ID:BASE64KEY (entries are separated by ',')"
            )
        try:
            keys[key_id] = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"keyring entry {position} ({key_id!r}): the key is not valid base64"
            ) from None
    return keys, next(iter(keys))


class Encryption(ValueCodec):
    """Encrypt values with AES-GCM under ``keys[current]``; read with any key in ``keys``.

    ``keys`` maps key ids (1-64 characters of ``A-Z a-z 0-9 . _ -``) to keys of 16, 24 or 32
    bytes (``AESGCM.generate_key(bit_length=256)`` or ``os.urandom(32)``). A value whose key id
    is not in ``keys``, that fails authentication (wrong key, altered, or copied from another
    storage key), or that was never encrypted raises :class:`DecryptionError`.
    """

    rank: ClassVar[int] = 60

    def __init__(self, inner: Driver, *, keys: Mapping[str, bytes], current: str) -> None:
        aesgcm = _aesgcm()
        if not keys:
            raise ConfigurationError("encryption needs at least one key")
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError(
                    f"encryption key id {key_id!r}: 1-64 characters of A-Z a-z 0-9 . _ -"
                )
            if not isinstance(key, bytes) or len(key) not in _KEY_SIZES:
                size = f"{len(key)} bytes" if isinstance(key, bytes) else type(key).__name__
                raise ConfigurationError(
                    f"encryption key {key_id!r} must be 16, 24 or 32 bytes, not {size}"
                )
        if current not in keys:
            raise ConfigurationError(f"the current key id {current!r} is not in the keyring")
        super().__init__(inner)
        self.current = current
        self.key_ids = tuple(keys)
        self._ciphers = {key_id: aesgcm(key) for key_id, key in keys.items()}
        self._invalid_tag: type[Exception] = _invalid_tag()
        self._header = _header(current)
        self._cipher = self._ciphers[current]

    def encode(self, key: str, value: bytes) -> bytes:
        """Return ``value`` encrypted under the current key, bound to ``key``."""
        nonce = os.urandom(_NONCE)
        sealed: bytes = self._cipher.encrypt(nonce, value, self._header + key.encode())
        return self._header + nonce + sealed

    def decode(self, key: str, stored: bytes) -> bytes:
        """Return the plaintext of ``stored``, checked against ``key``; raise if it fails."""
        key_id, body_start = self._parse_header(key, stored)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DecryptionError(
                f"the value of {key!r} was encrypted with key id {key_id!r}, which is not in "
                f"the keyring ({', '.join(repr(known) for known in self.key_ids)})",
                key=key,
                key_id=key_id,
            )
        header = stored[:body_start]
        nonce = stored[body_start : body_start + _NONCE]
        try:
            sealed = stored[body_start + _NONCE :]
            plain: bytes = cipher.decrypt(nonce, sealed, header + key.encode())
        except self._invalid_tag:
            raise DecryptionError(
                f"the value of {key!r} fails authentication with key id {key_id!r}: the key is "
                "wrong, or the value was altered or copied from another key",
                key=key,
                key_id=key_id,
            ) from None
        return plain

    def value_size(self, key: str, stored: bytes) -> int:
        """The plaintext's size, from the stored size (AES-GCM adds a fixed overhead)."""
        _, body_start = self._parse_header(key, stored)
        return len(stored) - body_start - _NONCE - _TAG

    def _parse_header(self, key: str, stored: bytes) -> tuple[str, int]:
        if stored[:2] != ENCRYPTED or len(stored) < 3:
            raise DecryptionError(
                f"the value of {key!r} is not encrypted (it was written without the encryption "
                "wrapper)",
                key=key,
            )
        body_start = 3 + stored[2]
        if len(stored) < body_start + _NONCE + _TAG:
            raise DecryptionError(f"the encrypted value of {key!r} is truncated", key=key)
        key_id = stored[3:body_start].decode("ascii", errors="replace")
        return key_id, body_start


def _header(key_id: str) -> bytes:
    encoded = key_id.encode("ascii")
    return ENCRYPTED + bytes([len(encoded)]) + encoded


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag
