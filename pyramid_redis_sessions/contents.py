"""What a session holds, and what a request changed in it.

:class:`Keys` is the session's dict: the payloads loaded from Redis,
deserialized on first read, and what the request set, deleted or changed in
place (found by comparing bytes, and only for values it read).
:class:`Reserved` is the rest of the record that the session keeps as
numbers: its creation time and own timeout, and the reserved fields of a
later format, carried as they are. Each gives its share of a stored
session's delta and of a new key's fields; the session
(:mod:`.session`) puts the shares together with the flash queues'
(:mod:`.flash`) and the user binding's (:mod:`.users`).
"""

from __future__ import annotations

import math
import time
from typing import Any

from .serializers import Serializer
from .values import CREATED, TIMEOUT, Record, SessionSeal, field_name

__all__ = ["MISSING", "PENDING", "DecodeError", "Keys", "Reserved"]


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: In :attr:`Keys.data`: a field loaded from Redis, not deserialized yet.
PENDING: Any = _Marker("<not deserialized>")
#: What :meth:`Keys.value` returns for a key the session does not hold.
MISSING: Any = _Marker("<missing>")

#: Values that cannot change in place, so reading them never needs a
#: serialization at the end of the request to see whether they changed.
_IMMUTABLE = frozenset({str, int, float, bool, bytes, complex, type(None)})


class DecodeError(Exception):
    """A loaded value did not deserialize; the serializer's error is the
    ``__cause__``."""


class Keys:
    """The session's keys and values, and this request's changes to them."""

    def __init__(
        self,
        serializer: Serializer,
        detect_changes: bool,
        loaded: dict[str, bytes] | None = None,
    ) -> None:
        self._serializer = serializer
        self._detect_changes = detect_changes
        #: Payloads of the fields as loaded, by key.
        self.loaded: dict[str, bytes] = loaded or {}
        #: Keys to values, or to :data:`PENDING` until first read.
        self.data: dict[str, Any] = dict.fromkeys(self.loaded, PENDING)
        #: Keys this request assigned or deleted: always part of the delta.
        self.touched: set[str] = set()
        #: Loaded keys deserialized by this request: they may change in place.
        self.decoded: list[str] = []
        #: ``changed()`` was called: values read are saved if they differ.
        self.changed_all = False

    def value(self, key: str) -> Any:
        """The value of ``key`` (:data:`MISSING` if there is none),
        deserialized now if it was not yet; :class:`DecodeError` if it will
        not deserialize."""
        value = self.data.get(key, MISSING)
        if value is not PENDING:
            return value
        try:
            value = self._serializer.loads(self.loaded[key])
        except Exception as e:  # a serializer may raise anything on bad bytes
            raise DecodeError(key) from e
        self.data[key] = value
        self.decoded.append(key)
        return value

    def decode_all(self) -> None:
        """Deserialize every loaded value not read yet (:class:`DecodeError`)."""
        for key, value in list(self.data.items()):
            if value is PENDING:
                self.value(key)

    def _payload(self, key: str) -> bytes:
        value = self.data[key]
        if value is PENDING:
            return self.loaded[key]
        payload: bytes = self._serializer.dumps(value)
        return payload

    def _changed_in_place(self, key: str, value: Any) -> bytes | None:
        """The new payload of a loaded, read value if it changed, else None."""
        if not (self.changed_all or self._detect_changes):
            return None
        if type(value) in _IMMUTABLE:
            return None
        loaded = self.loaded[key]
        payload: bytes = self._serializer.dumps(value)
        if payload == loaded:
            return None
        # Bytes differ, yet the value may not (a set pickles in hash order,
        # which differs between processes): compare the values themselves.
        if self._serializer.loads(loaded) == value:
            return None
        return payload

    def add_delta(self, changes: dict[bytes, bytes], deleted: list[bytes]) -> None:
        """Add the payloads of the keys to set and the fields to delete. Only
        keys this request wrote or deserialized can have changed."""
        dumps = self._serializer.dumps
        loaded = self.loaded
        for key in self.touched:
            if key in self.data:
                written: bytes = dumps(self.data[key])
                if written != loaded.get(key):
                    changes[field_name(key)] = written
            elif key in loaded:
                deleted.append(field_name(key))
        for key in self.decoded:
            if key not in self.touched and key in self.data:
                payload = self._changed_in_place(key, self.data[key])
                if payload is not None:
                    changes[field_name(key)] = payload

    def fields(self, seal: SessionSeal) -> list[bytes]:
        """Every key's field and sealed value (flat), for a new key."""
        fields: list[bytes] = []
        for key in self.data:
            field = field_name(key)
            fields += [field, seal.seal(field, self._payload(key))]
        return fields


class Reserved:
    """The session's creation time, its own timeout, and the reserved fields
    of a later format (verified, kept as they are)."""

    def __init__(self, timeout: int | None, record: Record | None = None) -> None:
        #: The factory's timeout, or the session's own.
        self.timeout = timeout
        #: The session has a timeout of its own (its :data:`TIMEOUT` field).
        self.own_timeout = False
        #: This request gave it one (``adjust_timeout_for_session``).
        self.timeout_changed = False
        #: A moved legacy session's key may not outlive the old one's TTL.
        self.legacy_ttl: int | None = None
        self.created = time.time()
        self.later: dict[bytes, bytes] = {}
        if record is not None:
            assert record.created is not None  # parse(strict=True) checks it
            self.created = record.created
            self.later = record.later
            if record.timeout is not None:
                self.timeout = record.timeout or None
                self.own_timeout = True

    def give_timeout(self, timeout: int | None, *, changed: bool = True) -> None:
        """Give the session its own timeout (``None``: no expiry)."""
        self.timeout = timeout
        self.own_timeout = True
        self.timeout_changed = changed

    def ttl(self, absolute_timeout: int | None) -> int | None:
        """The key's TTL if saved now (``None``: no expiry)."""
        ttl = self.timeout
        if absolute_timeout is not None:
            left = max(1, math.ceil(self.created + absolute_timeout - time.time()))
            ttl = left if ttl is None else min(ttl, left)
        if self.legacy_ttl is not None:
            ttl = self.legacy_ttl if ttl is None else min(ttl, self.legacy_ttl)
        return ttl

    def _timeout_payload(self) -> bytes:
        return str(self.timeout or 0).encode()

    def add_delta(self, changes: dict[bytes, bytes]) -> None:
        """Add the payload of a timeout given by this request."""
        if self.timeout_changed:
            changes[TIMEOUT] = self._timeout_payload()

    def fields(self, seal: SessionSeal) -> list[bytes]:
        """The reserved fields of a new key (flat)."""
        fields = [CREATED, seal.seal(CREATED, repr(self.created).encode())]
        if self.own_timeout:
            fields += [TIMEOUT, seal.seal(TIMEOUT, self._timeout_payload())]
        for field, payload in self.later.items():
            fields += [field, seal.seal(field, payload)]
        return fields

    def stored_payload(self, field: bytes) -> bytes:
        """The payload of a loaded reserved field, written again as it was."""
        if field == CREATED:
            return repr(self.created).encode()
        if field == TIMEOUT:
            return self._timeout_payload()
        return self.later[field]
