"""The stored value: an authenticated envelope.

A value in Redis is::

    b"PRS1" | HMAC-SHA256(key, b"PRS1" + session_id + b"\\0" + payload) | payload

``payload`` is the serializer's bytes of the envelope that 1.x stored,
``{"managed_dict": {...}, "created": float, "timeout": int | None}``. The MAC
key is derived from ``secret`` with a salt of its own, so it is never the
key that signs cookies. The MAC covers the session id, so a value copied to
another session's key does not verify either.

:meth:`ValueCodec.open` checks the MAC (with ``secret``, then each of
``secret_fallbacks``) before the serializer sees a byte: whoever can write
to Redis without the secret cannot make the application unpickle anything.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["FORMAT", "BadValue", "ValueCodec"]

#: Magic and format version that start every value this package writes.
FORMAT = b"PRS1"
_SALT = b"pyramid_redis_sessions.value"
_MAC_SIZE = hashlib.sha256().digest_size
_HEADER_SIZE = len(FORMAT) + _MAC_SIZE


class BadValue(ValueError):
    """A stored value is not one this application wrote."""


def _derive_key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _SALT, hashlib.sha256).digest()


class ValueCodec:
    """Seals payloads for storage and opens them after checking their MAC."""

    def __init__(self, secret: str, fallbacks: Iterable[str] = ()) -> None:
        self._key = _derive_key(secret)
        self._keys = [self._key, *(_derive_key(s) for s in fallbacks)]

    @staticmethod
    def _mac(key: bytes, session_id: str, payload: bytes) -> bytes:
        mac = hmac.new(key, FORMAT, hashlib.sha256)
        mac.update(session_id.encode("utf-8"))
        mac.update(b"\0")
        mac.update(payload)
        return mac.digest()

    def seal(self, session_id: str, payload: bytes) -> bytes:
        """Return the value to store for ``payload`` under ``session_id``."""
        return FORMAT + self._mac(self._key, session_id, payload) + payload

    def open(self, session_id: str, value: bytes) -> tuple[bytes, bool]:
        """Return the payload of ``value`` and whether ``secret`` (not one of
        the fallbacks) sealed it; raise :class:`BadValue` if none did."""
        if not value.startswith(FORMAT) or len(value) < _HEADER_SIZE:
            raise BadValue("not a signed session value")
        mac = value[len(FORMAT) : _HEADER_SIZE]
        payload = value[_HEADER_SIZE:]
        for key in self._keys:
            if hmac.compare_digest(mac, self._mac(key, session_id, payload)):
                return payload, key is self._key
        raise BadValue("session value MAC does not verify")
