"""What a session holds, and what a request changed in it.

:class:`Keys` is the session's dict: the payloads loaded from Redis,
deserialized on first read, and what the request set, deleted or changed in
place (found by comparing bytes, and only for values it read); a new
session reads :data:`NO_KEYS` until it changes.
:class:`Reserved` is the rest of the record that the session keeps as
numbers: its creation time and own timeout, and the reserved fields of a
later format, carried as they are. Each gives its share of a stored
session's delta and of a new key's fields; the session
(:mod:`.session`) puts the shares together with the flash queues'
(:mod:`.flash`) and the user binding's (:mod:`.users`): together they
are :class:`Contents`.
"""

from __future__ import annotations

import math
import time
from types import MappingProxyType
from typing import Any

from . import limits
from .flash import FlashQueues
from .serializers import Serializer
from .users import UserBinding
from .values import (
    CREATED,
    FLASH,
    RESERVED,
    SLID,
    TIMEOUT,
    USER,
    USER_DETAILS,
    Record,
    SessionSeal,
    field_name,
    key_name,
)

__all__ = [
    "MISSING",
    "NO_KEYS",
    "PENDING",
    "Contents",
    "DecodeError",
    "Keys",
    "Reserved",
    "deadline",
    "slid_payload",
]


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

    __slots__ = (
        "_detect_changes",
        "_serializer",
        "changed_all",
        "data",
        "decoded",
        "loaded",
        "touched",
    )

    def __init__(self, serializer: Serializer, detect_changes: bool) -> None:
        self._serializer = serializer
        self._detect_changes = detect_changes
        #: Payloads of the fields as loaded, by key (see :meth:`adopt`).
        self.loaded: dict[str, bytes] = {}
        #: Keys to values, or to :data:`PENDING` until first read.
        self.data: dict[str, Any] = {}
        #: Keys this request assigned or deleted: always part of the delta.
        self.touched: set[str] = set()
        #: Loaded keys deserialized by this request: they may change in place.
        self.decoded: list[str] = []
        #: ``changed()`` was called: values read are saved if they differ.
        self.changed_all = False

    def adopt(self, loaded: dict[str, bytes]) -> None:
        """Take a stored session's payloads by key (none read yet)."""
        self.loaded = loaded
        self.data = dict.fromkeys(loaded, PENDING)

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


class _NoKeys(Keys):
    """:data:`NO_KEYS`: empty, and nothing about it can change."""

    __slots__ = ()

    def __init__(self) -> None:
        empty: list[tuple[str, object]] = [
            ("_serializer", None),
            ("_detect_changes", False),
            ("loaded", MappingProxyType({})),
            ("data", MappingProxyType({})),
            ("touched", frozenset()),
            ("decoded", ()),
            ("changed_all", False),
        ]
        for name, value in empty:
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise TypeError("NO_KEYS is shared: a session takes keys of its own first")


#: The keys of a new session until it needs keys of its own (its first
#: change): one instance shared by every such session, so read-only (its
#: containers too), and a session that changed it would fail, not leak.
NO_KEYS: Keys = _NoKeys()


def deadline(
    record: Record, timeout: int | None, absolute_timeout: int | None
) -> float:
    """When a stored session ends if nothing slides it: its idle deadline
    (its own timeout, else ``timeout``, after its last slide) or its
    absolute one, whichever is first (``inf``: neither)."""
    reserved = Reserved(timeout)
    reserved.adopt(record)  # the session's own timeout and last slide
    return reserved.deadline(absolute_timeout)


def slid_payload(when: float) -> bytes:
    """A :data:`SLID` payload: microseconds, always as wide (so that what a
    session takes in Redis does not change with the digits of the time)."""
    return b"%.6f" % when


class Reserved:
    """The session's creation time, its own timeout, and the reserved fields
    of a later format (verified, kept as they are)."""

    __slots__ = (
        "created",
        "later",
        "legacy_ttl",
        "own_timeout",
        "slid",
        "slide_interval",
        "timeout",
        "timeout_changed",
    )

    def __init__(self, timeout: int | None, slide_interval: int = 0) -> None:
        #: The factory's timeout, or the session's own.
        self.timeout = timeout
        #: The session has a timeout of its own (its :data:`TIMEOUT` field).
        self.own_timeout = False
        #: This request gave it one (``adjust_timeout_for_session``).
        self.timeout_changed = False
        #: A moved legacy session's key may not outlive the old one's TTL.
        self.legacy_ttl: int | None = None
        self.created = time.time()
        #: When a stored session's expiry was last set from its timeout
        #: (its :data:`SLID`, else its creation); ``None`` for a new one.
        self.slid: float | None = None
        #: The factory's ``slide_interval`` (``0``: the load script slides
        #: on every read, and saves leave :data:`SLID` alone).
        self.slide_interval = slide_interval
        self.later: dict[bytes, bytes] = {}

    def adopt(self, record: Record) -> None:
        """Take a stored session's reserved fields."""
        assert record.created is not None  # parse(strict=True) checks it
        self.created = record.created
        self.slid = record.created if record.slid is None else record.slid
        self.later = record.later
        if record.timeout is not None:
            self.timeout = record.timeout or None
            self.own_timeout = True

    def deadline(self, absolute_timeout: int | None) -> float:
        """When a stored session ends if nothing slides it: its last slide
        plus its timeout, or its absolute deadline, whichever is first
        (``inf``: neither)."""
        assert self.slid is not None  # a stored session's (adopt)
        at = math.inf if self.timeout is None else self.slid + self.timeout
        if absolute_timeout is not None:
            at = min(at, self.created + absolute_timeout)
        return at

    def ended(self, absolute_timeout: int | None, now: float) -> bool:
        """The session is past its absolute deadline."""
        return absolute_timeout is not None and now >= self.created + absolute_timeout

    def add_slide(self, changes: dict[bytes, bytes], writing: bool) -> None:
        """Add :data:`SLID`, now, when the save of a stored session that
        slides lazily sets its expiry: when it writes anyway, or when the
        slide is due (then it is the whole save): ``slide_interval`` seconds
        (a tenth of the session's own timeout, if shorter) have passed since
        the last slide. Never for a session without expiry."""
        if not self.slide_interval or self.slid is None or self.timeout is None:
            return
        interval = self.slide_interval
        if self.own_timeout:
            interval = min(interval, self.timeout // 10)
        now = time.time()
        if writing or now - self.slid >= interval:
            self.slid = now
            changes[SLID] = slid_payload(now)

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
        if self.slid is not None:  # a stored session moves: its expiry is set now
            fields += [SLID, seal.seal(SLID, slid_payload(time.time()))]
        if self.own_timeout:
            fields += [TIMEOUT, seal.seal(TIMEOUT, self._timeout_payload())]
        for field, payload in self.later.items():
            fields += [field, seal.seal(field, payload)]
        return fields

    def stored_payload(self, field: bytes) -> bytes:
        """The payload of a loaded reserved field, written again as it was."""
        if field == CREATED:
            return repr(self.created).encode()
        if field == SLID:
            assert self.slid is not None  # loaded with the field
            return slid_payload(self.slid)
        if field == TIMEOUT:
            return self._timeout_payload()
        return self.later[field]


class Contents:
    """Everything a session holds: its keys, its reserved numbers and its
    flash queues, with the hash as loaded (``stored``, empty for a new
    session). It works out a stored session's delta and a new key's
    fields, the user binding's share (:class:`.users.UserBinding`) given."""

    __slots__ = (
        "_checked",
        "_serializer",
        "flash",
        "keys",
        "reseal",
        "reserved",
        "stored",
    )

    def __init__(
        self,
        serializer: Serializer,
        detect_changes: bool,
        timeout: int | None,
        slide_interval: int = 0,
    ) -> None:
        """A new session's contents: empty, created now."""
        self._serializer = serializer
        self.keys = Keys(serializer, detect_changes)
        self.reserved = Reserved(timeout, slide_interval)
        #: The hash as loaded, field to stored value: their sizes are what
        #: the session takes in Redis before this request's save.
        self.stored: dict[bytes, bytes] = {}
        #: The flash queues, made when flash is used or the load found some.
        self.flash: FlashQueues | None = None
        #: Fields that only a fallback secret verified: sealed anew on save.
        self.reseal: set[bytes] = set()
        #: :meth:`check_size`'s delta, which :meth:`delta` then returns once.
        self._checked: tuple[dict[bytes, bytes], list[bytes]] | None = None

    def adopt(self, record: Record, stored: dict[bytes, bytes]) -> None:
        """Take a stored session, its MACs checked (``record``), as what a
        new session's contents hold: done once, before anything else."""
        self.keys.adopt(record.keys)
        self.reserved.adopt(record)
        self.stored = stored
        if record.flash:
            self.flash = FlashQueues(self._serializer, record.flash)
        self.reseal = record.reseal

    def queues(self) -> FlashQueues:
        """The flash queues, made now if there are none."""
        if self.flash is None:
            self.flash = FlashQueues(self._serializer)
        return self.flash

    def delta(self, users: UserBinding) -> tuple[dict[bytes, bytes], list[bytes]]:
        """Payloads of the fields to set, and the fields to delete (the
        binding's own change is not among them: see ``users``)."""
        if self._checked is not None:  # worked out by check_size
            delta, self._checked = self._checked, None
            return delta
        changes: dict[bytes, bytes] = {}
        deleted: list[bytes] = []
        self.keys.add_delta(changes, deleted)
        if self.flash is not None:
            self.flash.add_delta(changes, deleted)
        self.reserved.add_delta(changes)
        for field in self.reseal:
            if field not in changes and field not in deleted:
                changes[field] = self._stored_payload(field, users)
        self.reserved.add_slide(changes, bool(changes or deleted))
        return changes, deleted

    def _stored_payload(self, field: bytes, users: UserBinding) -> bytes:
        """The payload of a loaded field that is written again as it was."""
        if field in (USER, USER_DETAILS):
            return users.stored_payload(field)
        if field.startswith(FLASH):
            assert self.flash is not None  # loaded with the field
            return self.flash.payloads[field]
        if field[:1] == RESERVED:
            return self.reserved.stored_payload(field)
        # The bytes loaded, not the value serialized again: with
        # detect_changes off, a change in place is saved only after changed().
        return self.keys.loaded[key_name(field)]

    def fields(
        self, seal: SessionSeal, target: tuple[str | None, bytes | None]
    ) -> list[bytes]:
        """Every field of the session, bound to ``target``, for a new key
        (flat)."""
        fields = self.reserved.fields(seal) + self.keys.fields(seal)
        if self.flash is not None:
            fields += self.flash.fields(seal)
        return fields + UserBinding.fields(seal, target)

    def check_size(
        self,
        limit: int,
        fields: list[bytes] | None,
        users: UserBinding,
        target: tuple[str | None, bytes | None],
    ) -> None:
        """:class:`~.exceptions.SessionTooLarge` if the save would make the
        session take more than ``limit`` bytes in Redis: a new key's
        ``fields``, or (``None``) the stored hash with the delta applied,
        which :meth:`delta` then returns instead of working it out again."""
        if fields is not None:
            pairs = iter(fields)
            sizes = {f: len(v) for f, v in zip(pairs, pairs, strict=True)}
        else:
            changes, deleted = self._checked = self.delta(users)
            bound, unbound = users.field_changes(target)
            if not (changes or bound):
                return  # nothing grows
            sizes = limits.sizes_after(
                self.stored, {**changes, **bound}, [*deleted, *unbound]
            )
        limits.check(limit, sizes)
