"""The session cookie: only the session id, signed with WebOb.

The cookie value is WebOb's :class:`~webob.cookies.SignedSerializer` output
for the id (HMAC-SHA512 with a salt of its own, checked in constant time).
Nothing in it is unpickled. ``secret_fallbacks`` are tried after ``secret``
when reading, so secrets can be rotated without logging everyone out.

A value that is not one of ours may be a cookie of the packages this one
replaces; given a :class:`~pyramid_redis_sessions.legacy.LegacyCookies`
(the ``legacy_cookies`` option), the codec asks it before calling the
cookie invalid.

A request may carry several cookies of the session's name: a sibling
subdomain can set one for the parent domain ("cookie tossing"), and the
browser sends both. WebOb's ``request.cookies`` keeps one value per name
(the last), so the codec finds every value of its name in the ``Cookie``
header itself (:func:`cookie_values`) and uses the first that verifies, in
either format. A cookie that does not verify is not ours: it never makes a
response delete the session cookie, which would log the user out.

Invalid cookies are logged at WARNING at most once a minute per process,
with the count since the last such warning, and at DEBUG otherwise
(:class:`RateLimitedLog`): a client sending garbage cannot flood the log.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from pyramid.request import Request
from pyramid.response import Response
from webob.cookies import SignedSerializer, make_cookie

from .limits import MAX_COOKIE_SIZE

if TYPE_CHECKING:
    from .legacy import LegacyCookie, LegacyCookies

__all__ = [
    "MAX_COOKIE_SIZE",
    "CookieCodec",
    "CookieSettings",
    "CookieState",
    "RateLimitedLog",
    "cookie_values",
]

log = logging.getLogger(__name__)

_SALT = "pyramid_redis_sessions.cookie."
#: Stands for the value in the header template (base64url, as values are).
_PLACEHOLDER = "PRSvalue0placeholder"


#: One ``name=value`` pair of a ``Cookie`` header: the name runs to the
#: ``=`` (spaces around it allowed), the value is quoted or runs to the next
#: separator. Pairs are separated by ``;`` (RFC 6265), ``,`` (RFC 2109) or
#: whitespace, and junk between pairs is skipped, as WebOb skips it. An
#: unquoted value ends at a backslash: WebOb would decode an escape there,
#: which no browser sends and no value we wrote needs.
#: Linear in the header's length: a name starts right after a separator,
#: so no start position re-scans the spaces or junk before it.
_PAIR = re.compile(r'(?:^|[;,\s])([^=;,\s]+)\s*=\s*("[^"]*"|[^;,\s"\\]*)')


def cookie_values(header: str, name: str) -> list[str]:
    """Every value of the cookie ``name`` in a ``Cookie`` header, in the
    order the browser sent them (RFC 6265: the one with the longest path,
    then the oldest, first), quotes taken off. For a header with one cookie
    of that name, the value is the one WebOb's ``request.cookies`` gives
    (the tests hold it to that); with several, WebOb keeps only the last.
    Never raises: the header is client input."""
    values = []
    for match in _PAIR.finditer(header):
        if match[1] == name:
            value = match[2]
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            values.append(value)
    return values


class RateLimitedLog:
    """Logs one kind of event at WARNING at most once per ``interval``
    seconds, with the count of those logged at DEBUG since the last
    WARNING; the others at DEBUG. Thread-safe; one per process and kind.

    ``clock`` is :func:`time.monotonic` unless a test gives its own.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._next = -float("inf")  # when a WARNING may be logged again
        self._quiet = 0  # events logged at DEBUG since the last WARNING

    def reset(self) -> None:
        """Forget the last WARNING and the count (for tests)."""
        with self._lock:
            self._next, self._quiet = -float("inf"), 0

    def __call__(self, message: str) -> None:
        """Log ``message`` (fixed text: no client data in it)."""
        now = self.clock()
        with self._lock:
            loud = now >= self._next
            if loud:
                self._next = now + self.interval
                quiet, self._quiet = self._quiet, 0
            else:
                self._quiet += 1
        if not loud:
            self.logger.debug("%s", message)
        elif quiet:
            self.logger.warning(
                "%s (and %d more since the last warning, logged at DEBUG; at "
                "most one warning a minute)",
                message,
                quiet,
            )
        else:
            self.logger.warning("%s", message)


#: Invalid session cookies: a client can send one with every request.
log_invalid_cookie = RateLimitedLog(log)


class _IdSerializer:
    """The payload of the signed cookie is the id's UTF-8 bytes."""

    def dumps(self, appstruct: str) -> bytes:
        return appstruct.encode("utf-8")

    def loads(self, bstruct: bytes) -> str:
        return bstruct.decode("utf-8")


class _KeyedSigner(SignedSerializer):  # type: ignore[misc]  # WebOb is untyped
    """WebOb's :class:`~webob.cookies.SignedSerializer`, same output, with
    its HMAC keyed once: WebOb keys a new HMAC-SHA512 for every cookie,
    which costs about three times the signature itself (a few µs on every
    request). ``dumps`` and ``loads`` are WebOb's steps with the keyed
    HMAC's copy; the tests hold them to WebOb's own on the same inputs."""

    def __init__(self, secret: str, salt: str, serializer: _IdSerializer) -> None:
        super().__init__(secret, salt, serializer=serializer)
        self._keyed = hmac.new(self.salted_secret, digestmod=self.hashalg)

    def _signature(self, cstruct: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(cstruct)
        return mac.digest()

    def dumps(self, appstruct: str) -> bytes:
        cstruct = self.serializer.dumps(appstruct)
        return base64.urlsafe_b64encode(self._signature(cstruct) + cstruct).rstrip(b"=")

    def loads(self, bstruct: str | bytes) -> str:
        try:
            if isinstance(bstruct, str):
                bstruct = bstruct.encode("latin-1")
            fstruct = base64.urlsafe_b64decode(bstruct + b"=" * (-len(bstruct) % 4))
        except (binascii.Error, UnicodeEncodeError) as e:
            raise ValueError(f"Badly formed base64 data: {e}") from None
        size = self.digest_size
        cstruct = fstruct[size:]
        if not hmac.compare_digest(self._signature(cstruct), fstruct[:size]):
            raise ValueError("Invalid signature")
        session_id: str = self.serializer.loads(cstruct)
        return session_id


class CookieState(NamedTuple):
    """What a request's session cookie holds (a tuple: made on every
    request, at a quarter of a frozen dataclass's cost)."""

    #: The session id, if a cookie of ours verifies.
    session_id: str | None
    #: A session cookie verified (ours or a legacy one), so that it can be
    #: cleared once its session is gone. A cookie that does not verify is
    #: not ours to delete: it may be a sibling domain's, or planted.
    present: bool
    #: Signed with ``secret`` (false when only a fallback verified it, so
    #: that the cookie is signed anew).
    current: bool
    #: A verified cookie of 1.0.1 or pyramid_session_redis, when the value
    #: is not one of ours (``session_id`` is then ``None``).
    legacy: LegacyCookie | None = None


#: No session cookie in the request.
_ABSENT = CookieState(None, present=False, current=False)


@dataclass(frozen=True)
class CookieSettings:
    """Attributes of the session cookie."""

    name: str = "session"
    max_age: int | None = None
    path: str = "/"
    domain: str | None = None
    secure: bool = False
    httponly: bool = True
    samesite: str | None = "Lax"


class CookieCodec:
    """Reads, sets and deletes the session cookie."""

    def __init__(
        self,
        secret: str,
        fallbacks: Iterable[str],
        settings: CookieSettings,
        legacy: LegacyCookies | None = None,
    ) -> None:
        serializer = _IdSerializer()
        self._signers = [
            _KeyedSigner(s, _SALT, serializer) for s in (secret, *fallbacks)
        ]
        self.settings = settings
        #: A header that is only our cookie, its value in the alphabet of
        #: signed ids: WebOb would parse it to that value, at ~8 µs a request
        #: (any other header still goes through WebOb).
        self._alone = re.compile(re.escape(settings.name) + "=([A-Za-z0-9_-]+)")
        #: Reads the old packages' cookies; ``None`` when they are refused.
        self.legacy = legacy
        #: WebOb's ``Set-Cookie`` header for these settings, made once: the
        #: parts around the value, and the whole header that deletes it.
        #: Only the value changes between requests (WebOb builds the same
        #: header each time at ~8 µs), except with ``max_age``, whose
        #: ``expires`` date moves: then WebOb builds every header.
        self._around: tuple[str, str] | None = None
        if settings.max_age is None:
            before, placeholder, after = self._webob_header(_PLACEHOLDER).partition(
                _PLACEHOLDER
            )
            if placeholder and _PLACEHOLDER not in after:
                self._around = (before, after)
        scratch = Response()
        scratch.delete_cookie(settings.name, path=settings.path, domain=settings.domain)
        self._deletion: str = scratch.headers["Set-Cookie"]

    def _webob_header(self, value: str) -> str:
        s = self.settings
        header: str = make_cookie(
            s.name,
            value,
            max_age=s.max_age,
            path=s.path,
            domain=s.domain,
            secure=s.secure,
            httponly=s.httponly,
            samesite=s.samesite,
        )
        return header

    def sign(self, session_id: str) -> str:
        value: bytes = self._signers[0].dumps(session_id)
        return value.decode("ascii")

    def unsign(self, value: str) -> tuple[str | None, bool]:
        """Return the id in a cookie value (``None`` if the cookie is not
        ours) and whether ``secret``, not a fallback, signed it."""
        if len(value) > MAX_COOKIE_SIZE or not value.isascii():
            return None, False
        for signer in self._signers:
            try:
                session_id: str = signer.loads(value)
            except ValueError:
                continue
            return session_id, signer is self._signers[0]
        return None, False

    def read(self, request: Request) -> CookieState:
        """What the request's session cookie holds: the first cookie of the
        session's name that verifies, ours or a legacy one; never raises."""
        header = request.environ.get("HTTP_COOKIE")
        if not header:
            # No cookies at all (a bot, a first visit): parsing nothing
            # costs more than this whole check.
            return _ABSENT
        alone = self._alone.fullmatch(header)
        values = [alone[1]] if alone else cookie_values(header, self.settings.name)
        for value in values:
            session_id, current = self.unsign(value)
            if session_id is not None:
                return CookieState(session_id, present=True, current=current)
            legacy = self.legacy.read(value) if self.legacy is not None else None
            if legacy is not None:
                return CookieState(None, present=True, current=False, legacy=legacy)
        if values:
            log_invalid_cookie("session cookie is not valid (bad signature or format)")
        return _ABSENT

    def set(self, response: Response, session_id: str) -> None:
        # A signed value is base64url: WebOb puts it in the header as it is.
        value = self.sign(session_id)
        if self._around is None:
            header = self._webob_header(value)
        else:
            header = self._around[0] + value + self._around[1]
        response.headerlist.append(("Set-Cookie", header))

    def delete(self, response: Response) -> None:
        response.headerlist.append(("Set-Cookie", self._deletion))
