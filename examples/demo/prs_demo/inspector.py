"""What the session costs and does, shown on every page of the demo.

The session factory's Redis connections count their round trips with
:class:`pyramid_redis_sessions.testing.RoundTripCounter`, attributed to the
request that made them. After each response (``NewResponse``, which Pyramid
sends once the session has saved), the request's record is kept under the
session's key digest, so the next page can show what the previous request
sent: its round trips, its commands, and the fields its save set or deleted.
The panel's own look-ups (TTL, memory) use another client and are not
counted.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import redis
from pyramid.events import NewResponse
from pyramid.request import Request

from pyramid_redis_sessions.store import LOAD, MOVE, SCRIPTS, WRITE
from pyramid_redis_sessions.testing import RoundTripCounter, split_packed

#: The commands of the request being served by this thread, if any.
_current: ContextVar[list[list[tuple[bytes, ...]]] | None] = ContextVar(
    "prs_demo_round_trips", default=None
)
_SCRIPTS = {
    LOAD.sha.encode(): "load",
    WRITE.sha.encode(): "write",
    MOVE.sha.encode(): "move",
}
_KEEP = 1000  # records of recent sessions kept in memory


class RequestCounter(RoundTripCounter):
    """Records each round trip for the request that made it."""

    def record(
        self, packed: Any, *, internal: bool, connection: Any = None
    ) -> list[tuple[bytes, ...]]:
        commands = split_packed(packed)
        trips = _current.get()
        if trips is not None and not internal:
            trips.append(commands)
        return commands


@dataclass
class Record:
    """What one request sent to Redis."""

    trips: list[list[tuple[bytes, ...]]] = field(default_factory=list)

    @property
    def commands(self) -> list[str]:
        """One line per round trip: ``EVALSHA load``, ``DEL + EVALSHA write``."""
        return [" + ".join(map(_name, trip)) for trip in self.trips]

    @property
    def saved(self) -> tuple[list[str], list[str]]:
        """Session keys the request's save set, and those it deleted."""
        written: list[str] = []
        deleted: list[str] = []
        for trip in self.trips:
            for command in trip:
                if _name(command) != "EVALSHA write":
                    continue
                # ARGV: mode, ttl, n, n field/value pairs, deleted fields.
                argv = command[4:]
                pairs = int(argv[2])
                written += [_field(f) for f in argv[3 : 3 + 2 * pairs : 2]]
                deleted += [_field(f) for f in argv[3 + 2 * pairs :]]
        return written, deleted


def _name(command: tuple[bytes, ...]) -> str:
    name = command[0].decode().upper()
    if name == "EVALSHA":
        return f"EVALSHA {_SCRIPTS.get(command[1], 'script')}"
    return name


def _field(raw: bytes) -> str:
    """A field's name for people: reserved fields shown by what they are."""
    if raw.startswith(b"\xffflash:"):
        return "(a flash message)"
    if raw.startswith(b"\xff"):
        return f"({raw[1:].decode()})"
    return raw.decode("utf-8", "replace")


def digest(text: str) -> str:
    """A short digest (of a key, or of an id for the page: never the id)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Inspector:
    """Counts each request's round trips and remembers the last of each
    session for its next page."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.counter = RequestCounter()
        self.pool = self.counter.pool(url)
        self._admin = redis.Redis.from_url(url, socket_timeout=2)
        self._lock = threading.Lock()
        # A server that does not know a script yet costs one more round
        # trip, once (redis-py loads it on NOSCRIPT); loaded here, so that
        # the panel shows what every later request costs.
        for script in SCRIPTS:
            self._admin.script_load(script.script)
        self._previous: OrderedDict[str, Record] = OrderedDict()

    def remember(self, key: str, record: Record) -> None:
        with self._lock:
            self._previous[digest(key)] = record
            self._previous.move_to_end(digest(key))
            while len(self._previous) > _KEEP:
                self._previous.popitem(last=False)

    def previous(self, key: str) -> Record | None:
        with self._lock:
            return self._previous.get(digest(key))

    def stored(self, key: str) -> tuple[int, int, int]:
        """TTL in seconds, bytes in memory, fields (uncounted commands)."""
        pipe = self._admin.pipeline(transaction=False)
        pipe.ttl(key)
        pipe.memory_usage(key, samples=0)
        pipe.hlen(key)
        ttl, size, fields = pipe.execute()
        return int(ttl), int(size or 0), int(fields)


def session_key(request: Request) -> str | None:
    """The Redis key of the request's session if the request used it (a new
    session's id is made without Redis, so this never costs a round trip)."""
    session = request.__dict__.get("session")  # set once the view used it
    if session is None:
        return None
    prefix: str = request.registry.inspector.prefix
    return prefix + session.session_id


def tween_factory(handler: Any, registry: Any) -> Any:
    """Count the round trips of each request, save included."""

    def tween(request: Request) -> Any:
        record = request.round_trips = Record()
        # The session saves in a response callback, after the tweens: the
        # counting goes on until NewResponse (see on_new_response).
        request.inspector_token = _current.set(record.trips)
        return handler(request)

    return tween


def on_new_response(event: NewResponse) -> None:
    """The session has saved: keep the request's record for its next page."""
    request = event.request
    record: Record | None = getattr(request, "round_trips", None)
    if record is None:
        return
    _current.reset(request.inspector_token)
    key = session_key(request)
    if key is not None:
        request.registry.inspector.remember(key, record)
    event.response.headers["X-Redis-Round-Trips"] = str(len(record.trips))
