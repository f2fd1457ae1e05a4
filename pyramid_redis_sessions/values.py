"""Stored fields: every value in a session's hash carries its own MAC.

A session is a Redis hash. Each field's value is::

    b"\\x02" | tag (16 bytes) | payload

``b"\\x02"`` is the format version. ``payload`` is the serializer's bytes of
one session value (or, for the reserved fields, ASCII text). ``tag`` is keyed
BLAKE2b (a MAC by design, 128-bit tag) over::

    b"PRS2" | len(session_id) | session_id | len(field) | field | payload

(lengths as 4-byte big-endian integers)
so a value moved to another field, or to another session's hash, does not
verify. The key is derived from ``secret`` with a salt of its own, never the
key that signs cookies; ``secret_fallbacks`` give further keys that verify
(and mark the field for resealing) but never sign.

Field names: a session key is its UTF-8 bytes. Names of the reserved fields
start with the byte ``0xFF``, which UTF-8 never produces, so no session key
can collide with them.

Cost: one tag is a ``copy()`` of a hash state prepared once per session and
one ``update``, about 0.6 µs; nothing here deserializes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections.abc import Iterable

__all__ = [
    "CREATED",
    "CSRF_KEY",
    "FLASH",
    "FLASH_ORDER_SIZE",
    "FORMAT",
    "MAX_CREATED_SIZE",
    "MAX_SECONDS",
    "RESERVED",
    "SLID",
    "TIMEOUT",
    "USER",
    "USER_DETAILS",
    "BadValue",
    "FieldCodec",
    "Record",
    "SessionSeal",
    "field_name",
    "flash_queue",
    "key_name",
    "parse",
    "parse_created",
    "parse_timeout",
]

#: Names the format in every MAC; the value's first byte is its version.
FORMAT = b"PRS2"
VERSION = b"\x02"
TAG_SIZE = 16
HEADER_SIZE = len(VERSION) + TAG_SIZE
_SALT = b"pyramid_redis_sessions.field"

#: First byte of every reserved field name: never part of UTF-8 text.
RESERVED = b"\xff"
#: ``time.time()`` of the session's creation, as ASCII.
CREATED = b"\xffcreated"
#: The session's own timeout in seconds (``0``: none) when it was given one
#: with ``adjust_timeout_for_session``; absent, the factory's ``timeout``.
TIMEOUT = b"\xfftimeout"
#: ``time.time()`` of the session's last slide (its expiry set again from
#: its timeout by a read), as :data:`CREATED` is written; absent, its
#: creation time.
SLID = b"\xffslid"
#: The user the session is indexed under (UTF-8), when it is bound to one.
USER = b"\xffuser"
#: What the application recorded about the session at login (JSON), if any.
USER_DETAILS = b"\xffuser-details"
#: Pyramid's (and 1.x's) session key of the CSRF token.
CSRF_KEY = "_csrft_"
#: Prefix of flash message fields: ``FLASH + order + b":" + queue``, the
#: order :data:`FLASH_ORDER_SIZE` characters.
FLASH = b"\xffflash:"
#: 20 digits of nanoseconds and 8 random hex digits.
FLASH_ORDER_SIZE = 28


#: The longest timeout a setting or a session may have, in seconds (over
#: 300 years): every expiry a script derives from it is then an integer that
#: Lua prints as digits and Redis's ``EXPIRE`` takes.
MAX_SECONDS = 10**10
#: The longest :data:`CREATED` payload: ``repr()`` of a float written in
#: digits, which ``repr()`` uses from 1e-4 to 1e16.
MAX_CREATED_SIZE = 24
_CREATED_FORM = re.compile(rb"[0-9]+\.[0-9]+")
_TIMEOUT_FORM = re.compile(rb"0|[1-9][0-9]*")


class BadValue(ValueError):
    """A stored value is not one this application wrote."""


def parse_created(payload: bytes) -> float:
    """The time in a :data:`CREATED` payload, which the application writes
    as ``repr()`` of a float; :class:`BadValue` for any other form. The load
    script accepts exactly the same."""
    if len(payload) > MAX_CREATED_SIZE or not _CREATED_FORM.fullmatch(payload):
        raise BadValue("the creation time is not a number as the application writes it")
    return float(payload)


def parse_timeout(payload: bytes) -> int:
    """The timeout in a :data:`TIMEOUT` payload, which the application writes
    as ``str()`` of an int from 0 (no expiry) to
    :data:`MAX_SECONDS`; :class:`BadValue` for any other form. The load
    script accepts exactly the same."""
    if len(payload) > len(str(MAX_SECONDS)) or not _TIMEOUT_FORM.fullmatch(payload):
        raise BadValue("the timeout is not a number as the application writes it")
    seconds = int(payload)
    if seconds > MAX_SECONDS:
        raise BadValue("the timeout is not a number as the application writes it")
    return seconds


def field_name(key: str) -> bytes:
    """The hash field of a session key."""
    return key.encode("utf-8", "surrogatepass")


def key_name(field: bytes) -> str:
    """The session key of a (non-reserved) hash field."""
    return field.decode("utf-8", "surrogatepass")


def flash_queue(field: bytes) -> str:
    """The queue of a flash message's field; :class:`BadValue` if the field
    is not laid out as :data:`FLASH` says."""
    rest = field[len(FLASH) :]
    if rest[FLASH_ORDER_SIZE : FLASH_ORDER_SIZE + 1] != b":":
        raise BadValue("a flash field is malformed")
    return key_name(rest[FLASH_ORDER_SIZE + 1 :])


def _derive_key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _SALT, hashlib.sha256).digest()


class FieldCodec:
    """Derives the MAC keys once; :meth:`for_session` gives the sealer of one
    session's fields."""

    def __init__(self, secret: str, fallbacks: Iterable[str] = ()) -> None:
        self._keys = [_derive_key(secret), *(_derive_key(s) for s in fallbacks)]

    def for_session(self, session_id: str) -> SessionSeal:
        return SessionSeal(self._keys, session_id)


class SessionSeal:
    """Seals and opens the fields of one session id."""

    def __init__(self, keys: list[bytes], session_id: str) -> None:
        self.session_id = session_id
        sid = session_id.encode("utf-8", "surrogatepass")
        self._head = FORMAT + len(sid).to_bytes(4, "big") + sid
        self._keys = keys
        self._states: list[hashlib.blake2b] = []

    def _state(self, index: int) -> hashlib.blake2b:
        while len(self._states) <= index:
            state = hashlib.blake2b(key=self._keys[len(self._states)], digest_size=16)
            state.update(self._head)
            self._states.append(state)
        return self._states[index]

    def _tag(self, index: int, field: bytes, payload: bytes) -> bytes:
        mac = self._state(index).copy()
        mac.update(len(field).to_bytes(4, "big") + field)
        mac.update(payload)
        return mac.digest()

    def seal(self, field: bytes, payload: bytes) -> bytes:
        """The value to store in ``field`` for ``payload``."""
        return VERSION + self._tag(0, field, payload) + payload

    def seals(self, field: bytes, payload: bytes) -> list[bytes]:
        """What ``field`` holds for ``payload`` under each key, ``secret``'s
        first: the values a script may compare a stored field with."""
        return [
            VERSION + self._tag(index, field, payload) + payload
            for index in range(len(self._keys))
        ]

    def open_all(
        self, stored: dict[bytes, bytes]
    ) -> tuple[dict[bytes, bytes], set[bytes]]:
        """Payloads by field for the ``stored`` values by field, and the
        fields that only a fallback secret verified; :class:`BadValue` if any
        field does not verify. The loop the load of every request runs."""
        payloads: dict[bytes, bytes] = {}
        reseal: set[bytes] = set()
        state = self._state(0)
        compare = hmac.compare_digest
        for field, value in stored.items():
            payload = value[HEADER_SIZE:]
            mac = state.copy()
            mac.update(len(field).to_bytes(4, "big") + field)
            mac.update(payload)
            if value[:1] != VERSION or not compare(value[1:HEADER_SIZE], mac.digest()):
                payload, current = self.open(field, value)  # the fallbacks
                if not current:
                    reseal.add(field)
            payloads[field] = payload
        return payloads, reseal

    def open(self, field: bytes, value: bytes) -> tuple[bytes, bool]:
        """The payload of ``value`` and whether ``secret`` (not a fallback)
        sealed it; :class:`BadValue` if no key did."""
        if len(value) < HEADER_SIZE or value[:1] != VERSION:
            raise BadValue("a field is not a signed session value")
        tag, payload = value[1:HEADER_SIZE], value[HEADER_SIZE:]
        for index in range(len(self._keys)):
            if hmac.compare_digest(tag, self._tag(index, field, payload)):
                return payload, index == 0
        raise BadValue("a field's MAC does not verify")


@dataclasses.dataclass(slots=True)
class Record:
    """A stored session's hash, its MACs checked: what :func:`parse` found.
    Payloads are the serializer's bytes: nothing here is deserialized."""

    #: Payloads of the session's keys, by key, for the fields that verify.
    keys: dict[str, bytes] = dataclasses.field(default_factory=dict)
    #: Payloads of the flash message fields that verify, by field.
    flash: dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    #: Reserved fields of a later format that verify, kept as they are.
    later: dict[bytes, bytes] = dataclasses.field(default_factory=dict)
    #: :data:`CREATED`, if it verifies and is a number.
    created: float | None = None
    #: :data:`SLID`, if present (else the session never slid).
    slid: float | None = None
    #: :data:`TIMEOUT`, the session's own timeout (``0``: none), if present.
    timeout: int | None = None
    #: :data:`USER` and :data:`USER_DETAILS` (the details still JSON).
    user: str | None = None
    user_details: bytes | None = None
    #: Fields that only a fallback secret verifies: to seal again.
    reseal: set[bytes] = dataclasses.field(default_factory=set)
    #: Fields that no key verifies (never to be deserialized).
    unverified: set[bytes] = dataclasses.field(default_factory=set)
    #: What is wrong, by field: found with ``strict=False`` only.
    problems: dict[bytes, str] = dataclasses.field(default_factory=dict)


def parse(
    fields: dict[bytes, bytes], seal: SessionSeal, *, strict: bool = True
) -> Record:
    """Check the MAC of every field of a stored session and sort the fields
    into the session's keys, its flash messages and its reserved fields.

    With ``strict`` (what loading a session does), the first field that does
    not verify, a reserved number that is not one or a missing
    :data:`CREATED` raises :class:`BadValue`. Without it (what ``psessions
    show`` does), nothing raises: what is wrong is recorded by field in
    :attr:`Record.problems`, unverified fields are left out (and listed in
    :attr:`Record.unverified`), and a flash field that is not laid out as
    :data:`FLASH` says is kept but reported.
    """
    if strict:
        return _parse_strict(*seal.open_all(fields))
    record = Record()
    payloads = {}
    for name, value in fields.items():
        try:
            payload, current = seal.open(name, value)
        except BadValue:
            record.unverified.add(name)
            record.problems[name] = "does not verify"
            continue
        if not current:
            record.reseal.add(name)
        payloads[name] = payload
    for name, payload in payloads.items():
        if name[:1] != RESERVED:
            record.keys[key_name(name)] = payload
            continue
        try:
            _take_reserved(record, name, payload)
        except BadValue:
            record.problems[name] = "is not a number"
            continue
        if name.startswith(FLASH):
            try:
                flash_queue(name)
            except ValueError:  # BadValue, or a queue that is not UTF-8
                record.problems[name] = "is not a well-formed flash field"
    return record


def _parse_strict(payloads: dict[bytes, bytes], reseal: set[bytes]) -> Record:
    """:func:`parse` of verified ``payloads`` with ``strict``: the load's
    path, in two passes (the keys in one comprehension, then the few
    reserved fields), as the load of every request runs it."""
    record = Record(
        keys={
            name.decode("utf-8", "surrogatepass"): payload
            for name, payload in payloads.items()
            if name[:1] != RESERVED
        },
        reseal=reseal,
    )
    for name, payload in payloads.items():
        if name[:1] == RESERVED:
            _take_reserved(record, name, payload)
    if record.created is None:
        raise BadValue("the session has no creation time")
    return record


def _take_reserved(record: Record, name: bytes, payload: bytes) -> None:
    """Sort one verified reserved field into ``record``; :class:`BadValue`
    for a number not in the form the application writes (and the load
    script accepts: see :func:`parse_created` and :func:`parse_timeout`)."""
    if name.startswith(FLASH):
        record.flash[name] = payload
    elif name == CREATED:
        record.created = parse_created(payload)
    elif name == SLID:
        record.slid = parse_created(payload)
    elif name == TIMEOUT:
        record.timeout = parse_timeout(payload)
    elif name == USER:
        record.user = key_name(payload)
    elif name == USER_DETAILS:
        record.user_details = payload
    else:  # a later format's: verified, kept as it is
        record.later[name] = payload
