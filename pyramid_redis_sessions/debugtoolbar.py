"""A ``pyramid_debugtoolbar`` panel: what the session cost each request.

Install the extra (``pip install 'pyramid_redis_sessions[debugtoolbar]'``)
and include this module after the toolbar::

    config.include("pyramid_debugtoolbar")
    config.include("pyramid_redis_sessions")
    config.include("pyramid_redis_sessions.debugtoolbar")

or name it in the toolbar's own ``debugtoolbar.includes`` setting. Each
request the toolbar records then gets a "Redis session" tab: its round
trips and the commands each carried, the fields it loaded, deserialized,
saved and deleted, whole keys it deleted, the session's key (as a digest:
the id is the user's credential), its size and TTL once the request was
done, and whether the cookie was set or cleared, and why.

The round trips are counted by
:class:`~pyramid_redis_sessions.testing.RoundTripCounter`'s connections on
the session factory's own client, attributed to the request whose thread
sent them; the panel's own look-ups (``TTL``, ``MEMORY USAGE``) are not
counted. Without the toolbar included, requests are still recorded
(:func:`report_for`) but no panel is shown.

For development only, like the toolbar itself.

.. versionadded:: 2.0
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from html import escape
from typing import Any

import redis
from pyramid.config import Configurator
from pyramid.events import NewResponse
from pyramid.interfaces import ISessionFactory
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

try:
    from pyramid_debugtoolbar.panels import DebugPanel
    from pyramid_debugtoolbar.toolbar import IPanelMap, IToolbarWSGIApp
except ImportError as e:  # pragma: no cover - the extra is installed in tests
    raise ImportError(
        "pyramid_redis_sessions.debugtoolbar needs pyramid_debugtoolbar: "
        "pip install 'pyramid_redis_sessions[debugtoolbar]'"
    ) from e

from .events import (
    SessionCreated,
    SessionEvent,
    SessionIdRegenerated,
    SessionInvalidated,
    SessionValueRejected,
    StoreUnavailable,
    key_digest,
)
from .scripts import END, INDEX, LOAD, MOVE, WRITE
from .session import RedisSession
from .testing import CountingConnectionMixin, RoundTripCounter, split_packed

__all__ = ["RedisSessionPanel", "SessionReport", "includeme", "report_for"]

log = logging.getLogger(__name__)

#: The report of the request being served by this thread, if any.
_current: ContextVar[SessionReport | None] = ContextVar(
    "pyramid_redis_sessions_report", default=None
)
#: Set while the panel makes its own look-ups, which no counter sees.
_uncounted: ContextVar[bool] = ContextVar(
    "pyramid_redis_sessions_uncounted", default=False
)
_SCRIPTS = {
    script.sha.encode(): name
    for script, name in (
        (LOAD, "load"),
        (WRITE, "write"),
        (MOVE, "move"),
        (INDEX, "index"),
        (END, "end"),
    )
}
_ATTR = "pyramid_redis_sessions_report"
_RESERVED = b"\xff"


@dataclass
class SessionReport:
    """What one request's session did, as the panel shows it.

    Nothing here is a session id or a stored value: keys are named by
    :func:`~pyramid_redis_sessions.events.key_digest`, fields by name.
    """

    #: Per round trip, its commands (``EVALSHA`` named by its script:
    #: ``EVALSHA load``).
    round_trips: list[list[str]] = field(default_factory=list)
    #: The session's key (``session:<sha256:…>``) once the request was done;
    #: ``None`` if the request had no session.
    key: str | None = None
    #: The fields the load brought, by name (``None``: nothing was loaded).
    loaded: list[str] | None = None
    #: The loaded fields this request deserialized (the others stay bytes).
    decoded: list[str] = field(default_factory=list)
    #: The fields the save wrote, and those it deleted.
    saved: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: Whole keys deleted (an ended or replaced session), as digests.
    deleted_keys: list[str] = field(default_factory=list)
    #: Bytes in Redis (``MEMORY USAGE``) and TTL in seconds (``-1``: none)
    #: after the request; ``None`` when the session is not stored.
    size: int | None = None
    ttl: int | None = None
    #: ``'set'``, ``'cleared'`` or ``None`` (not sent), and why.
    cookie: str | None = None
    cookie_reason: str = ""
    #: What the session's events said, in order (``created``, ``ended``…).
    events: list[str] = field(default_factory=list)
    #: Whether the load was a hit or a miss of the process's local cache
    #: (``None``: no cache, or nothing loaded; then not shown).
    cache: str | None = None
    #: The request never got as far as its response (an exception).
    finished: bool = False

    @property
    def round_trip_count(self) -> int:
        return len(self.round_trips)

    def _record(self, commands: Sequence[tuple[bytes, ...]], prefix: str) -> None:
        for command in commands:
            name = _name(command)
            if name == "EVALSHA write":
                # ARGV after the key: mode, ttl, n, n field/value pairs, then
                # the deleted fields.
                argv = command[4:]
                pairs = int(argv[2])
                self.saved += [_field(f) for f in argv[3 : 3 + 2 * pairs : 2]]
                self.deleted += [_field(f) for f in argv[3 + 2 * pairs :]]
            elif name == "EVALSHA move":
                # The keys: the old session, the new one, then user indexes;
                # ARGV: ttl, n, n field/value pairs, then the index updates.
                count = int(command[2])
                keys, argv = command[3 : 3 + count], command[3 + count :]
                pairs = int(argv[1])
                self.saved += [_field(f) for f in argv[2 : 2 + 2 * pairs : 2]]
                self.deleted_keys.append(_key_name(keys[0].decode(), prefix))
            elif name in ("DEL", "UNLINK", "EVALSHA end"):
                keys = command[1:] if name != "EVALSHA end" else command[3:4]
                self.deleted_keys += [_key_name(k.decode(), prefix) for k in keys]


def _name(command: tuple[bytes, ...]) -> str:
    name = command[0].decode().upper()
    if name == "EVALSHA" and len(command) > 1:
        return f"EVALSHA {_SCRIPTS.get(command[1], 'script')}"
    return name


def _field(raw: bytes) -> str:
    """A field's name for people; reserved fields by what they hold."""
    if raw.startswith(_RESERVED + b"flash:"):
        return "(a flash message)"
    if raw.startswith(_RESERVED):
        return f"({raw[1:].decode('utf-8', 'replace')})"
    return raw.decode("utf-8", "replace")


def _key_name(key: str, prefix: str) -> str:
    """A key as the package's log lines name it: prefix and digest."""
    if key.startswith(prefix):
        return f"{prefix}<sha256:{key_digest(key[len(prefix) :])}>"
    return f"<sha256:{key_digest(key)}>"


def report_for(request: Request) -> SessionReport | None:
    """The report of ``request`` (complete once its response is made), or
    ``None`` if this module was not included."""
    report: SessionReport | None = request.__dict__.get(_ATTR)
    return report


class _Recorder(RoundTripCounter):
    """Adds each round trip to the report of the request that made it.

    Chained: a client that already counted into another counter (a test's
    ``RoundTripCounter``) still does.
    """

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.previous: RoundTripCounter | None = None

    def connection_class(self, base: type[Any]) -> type[Any]:
        if issubclass(base, CountingConnectionMixin):
            if base.counter is not self:
                self.previous = base.counter
            base = base.__mro__[2]
        return super().connection_class(base)

    def record(
        self, packed: Any, *, internal: bool, connection: Any = None
    ) -> list[tuple[bytes, ...]]:
        if _uncounted.get():
            return split_packed(packed)
        if self.previous is not None:
            self.previous.record(packed, internal=internal, connection=connection)
        commands = split_packed(packed)
        report = _current.get()
        if internal or report is None:
            return commands
        with self._lock:
            busy = self._busy()
            if report.round_trips and any(c is not connection for c in busy):
                # Written while another node's replies were awaited (a
                # Cluster pipeline): the same round trip, as RoundTripCounter.
                report.round_trips[-1] += [_name(c) for c in commands]
            else:
                report.round_trips.append([_name(c) for c in commands])
            if connection is not None:
                busy.add(connection)
            report._record(commands, self.prefix)
        return commands

    def answered(self, connection: Any) -> None:
        if self.previous is not None:
            self.previous.answered(connection)
        super().answered(connection)


def _factory(registry: Registry) -> Any:
    return registry.queryUtility(ISessionFactory)


def tween_factory(
    handler: Callable[[Request], Response], registry: Registry
) -> Callable[[Request], Response]:
    """Record each request's session; made once, when the app is built,
    which is when the session factory's client is instrumented."""
    factory = _factory(registry)
    store = getattr(factory, "store", None)
    if store is None:
        log.warning(
            "pyramid_redis_sessions.debugtoolbar: no session factory of this "
            "package with its own client; round trips are not recorded"
        )
        return handler
    recorder = _Recorder(store.prefix)
    recorder.instrument(store.client)

    def tween(request: Request) -> Response:
        report = SessionReport()
        request.__dict__[_ATTR] = report
        # The session saves in a response callback, after every tween:
        # recording goes on until the request is finished.
        _current.set(report)
        request.add_finished_callback(_stop_recording)
        return handler(request)

    return tween


def _stop_recording(request: Request) -> None:
    _current.set(None)


def _on_event(event: SessionEvent) -> None:
    report = report_for(event.request)
    if report is None:
        return
    if isinstance(event, SessionCreated):
        report.events.append("created (a new session stored)")
    elif isinstance(event, SessionIdRegenerated):
        report.events.append("moved to a new id (regenerate_id); old key deleted")
    elif isinstance(event, SessionInvalidated):
        report.events.append("ended (invalidate); its key deleted")
    elif isinstance(event, SessionValueRejected):
        report.events.append(f"stored session rejected: {event.reason}")
    elif isinstance(event, StoreUnavailable):
        report.events.append(f"Redis unavailable: {event.server}")


def _on_new_response(event: NewResponse) -> None:
    """The session has saved (response callbacks run before NewResponse):
    complete the request's report."""
    request, response = event.request, event.response
    report = report_for(request)
    if report is None:
        return
    report.finished = True
    session = request.__dict__.get("session")  # set once the request used it
    factory = _factory(request.registry)
    if session is None or factory is None:
        report.cookie_reason = "the request did not use the session"
        return
    if isinstance(session, RedisSession) and session.loaded_from is not None:
        report.loaded = sorted(session.loaded_keys)
        report.decoded = session.decoded_keys
        if factory.store is not None and factory.store.cache is not None:
            report.cache = (
                "hit: 0 round trips, served from this process's cache"
                if session.loaded_from == "local cache"
                else "miss: read from Redis, kept in this process's cache"
            )
    incoming = factory.cookie.read(request)
    sent = _sent_cookie(response, factory.cookie.settings.name)
    live_id: str | None
    if sent is None:
        live_id = incoming.session_id
    elif sent == "":
        live_id = None
        report.cookie = "cleared"
    else:
        live_id = factory.cookie.unsign(sent)[0]
        report.cookie = "set"
    report.cookie_reason = _cookie_reason(report, incoming, live_id, factory)
    if live_id is not None:
        key = factory.prefix + live_id
        report.key = _key_name(key, factory.prefix)
        report.ttl, report.size = _stored(factory.store.client, key)


def _sent_cookie(response: Response, name: str) -> str | None:
    """The value the response sets the cookie ``name`` to: ``''`` when it
    deletes it, ``None`` when it does not send it."""
    value = None
    for header, content in response.headerlist:
        if header.lower() != "set-cookie":
            continue
        cookie, _, _ = content.partition(";")
        cookie_name, _, cookie_value = cookie.partition("=")
        if cookie_name.strip() == name:
            value = cookie_value.strip().strip('"')
    return value


def _cookie_reason(
    report: SessionReport, incoming: Any, live_id: str | None, factory: Any
) -> str:
    if report.cookie == "cleared":
        if report.deleted_keys:
            return "the session ended and no new one was stored"
        return "the browser's cookie names no stored session"
    if report.cookie == "set":
        if incoming.session_id is None:
            return "a new session was stored"
        if live_id != incoming.session_id:
            return "the session moved to a new id (login, invalidate, regenerate_id)"
        if not incoming.current:
            return "re-signed with the current secret (a fallback signed it)"
        if factory.cookie.settings.max_age is not None:
            return "cookie_max_age is set: the cookie is re-sent to slide its expiry"
        return "sent again"
    if live_id is None:
        return "no session is stored yet (nothing was written)"
    return "unchanged: the browser's cookie already names the session"


def _stored(client: Any, key: str) -> tuple[int | None, int | None]:
    """TTL and size of ``key``, not counted in the report; ``(None, None)``
    when it is gone or Redis would not say."""
    token = _uncounted.set(True)
    try:
        ttl = int(client.ttl(key))
        if ttl == -2:
            return None, None
        try:
            size = client.memory_usage(key, samples=0)
        except redis.ResponseError:  # MEMORY may be disabled (managed Redis)
            size = None
        return ttl, None if size is None else int(size)
    except redis.RedisError:
        return None, None
    finally:
        _uncounted.reset(token)


class RedisSessionPanel(DebugPanel):  # type: ignore[misc]  # the toolbar is untyped
    """The toolbar's "Redis session" tab."""

    name = "redis_sessions"
    title = "Redis session"
    nav_title = title
    has_content = True
    user_activate = False

    def __init__(self, request: Request) -> None:
        self._request = request

    @property
    def report(self) -> SessionReport | None:
        """The request's report; filled in until its response is made, long
        before the toolbar shows it."""
        return report_for(self._request)

    @property
    def nav_subtitle(self) -> str:
        report = self.report
        if report is None:
            return ""
        n = report.round_trip_count
        return f"{n} round trip{'s' if n != 1 else ''}"

    def render_content(self, request: Request) -> str:
        report = self.report
        if report is None:
            return "<p>Not recorded: include pyramid_redis_sessions.debugtoolbar.</p>"
        panels = getattr(request, "toolbar_panels", {})
        return render_report(report, toolbar_session_panel="session" in panels)


def _codes(names: Sequence[str], empty: str = "none") -> str:
    return ", ".join(f"<code>{escape(n)}</code>" for n in names) or empty


def render_report(report: SessionReport, *, toolbar_session_panel: bool = False) -> str:
    """The panel's HTML for ``report``; every name is escaped.
    ``toolbar_session_panel``: the toolbar's Session panel ran too."""
    rows: list[tuple[str, str, str]] = []
    trips = "".join(f"<li>{_codes(trip)}</li>" for trip in report.round_trips)
    n = report.round_trip_count
    rows.append(
        (
            "round-trips",
            "Round trips",
            f"<strong>{n}</strong>" + (f"<ol>{trips}</ol>" if trips else ""),
        )
    )
    if report.cache is not None:
        rows.append(("cache", "Local cache", escape(report.cache)))
    rows.append(("key", "Key", _codes([report.key] if report.key else [], "none")))
    if report.key is None:
        stored = "not stored"
    elif report.size is None and report.ttl is None:
        stored = "not stored (or Redis would not say)"
    else:
        size = "?" if report.size is None else f"{report.size} bytes"
        expiry = (
            "no expiry"
            if report.ttl is None or report.ttl < 0
            else f"expires in {report.ttl} s"
        )
        stored = f"{size}, {expiry}"
    rows.append(("stored", "Stored", stored))
    rows.append(
        (
            "loaded",
            "Fields loaded",
            "nothing loaded" if report.loaded is None else _codes(report.loaded),
        )
    )
    decoded = _codes(report.decoded)
    if toolbar_session_panel and report.loaded:
        decoded += (
            " (the toolbar's own Session panel deserializes every value when "
            "the session is first used; leave it out of "
            "<code>debugtoolbar.panels</code> to see what the application "
            "alone deserializes)"
        )
    rows.append(("decoded", "Fields deserialized", decoded))
    rows.append(("saved", "Fields saved", _codes(report.saved)))
    rows.append(("deleted", "Fields deleted", _codes(report.deleted)))
    rows.append(
        (
            "deleted-keys",
            "Keys deleted (whole sessions)",
            _codes(report.deleted_keys),
        )
    )
    cookie = {"set": "set", "cleared": "cleared", None: "not sent"}[report.cookie]
    rows.append(("cookie", "Cookie", f"{cookie}: {escape(report.cookie_reason)}"))
    if report.events:
        rows.append(("events", "Events", "<br>".join(map(escape, report.events))))
    body = "\n".join(
        f'<tr id="prs-{rid}"><th>{escape(title)}</th><td>{value}</td></tr>'
        for rid, title, value in rows
    )
    note = (
        ""
        if report.finished
        else "<p><strong>The request ended in an exception before its "
        "response: the save may not have run.</strong></p>"
    )
    return (
        f'{note}<table class="table table-striped table-sm" id="prs-report">'
        f"<tbody>\n{body}\n</tbody></table>"
        "<p>The key is shown as a digest of the session id, which is the "
        "user's credential. The panel's own look-ups (TTL, size) are not "
        "counted.</p>"
    )


def _add_panel(registry: Registry) -> None:
    """Add the panel to the toolbar's, if the toolbar is included."""
    toolbar = registry.queryUtility(IToolbarWSGIApp)
    if toolbar is None:
        return
    panels = toolbar.registry.getUtility(IPanelMap)
    panels[(RedisSessionPanel.name, False)] = RedisSessionPanel
    # Named too, in case the application lists its panels (debugtoolbar.panels).
    settings = registry.settings
    extra = list(settings.get("debugtoolbar.extra_panels") or ())
    if RedisSessionPanel not in extra:
        settings["debugtoolbar.extra_panels"] = [*extra, RedisSessionPanel]


def _include_in_app(config: Configurator) -> None:
    config.add_tween(f"{__name__}.tween_factory")
    config.add_subscriber(_on_event, SessionEvent)
    config.add_subscriber(_on_new_response, NewResponse)
    # Once every include has run (the toolbar's may come after this one).
    config.action(None, _add_panel, args=(config.registry,), order=1)


def includeme(config: Configurator) -> None:
    """Record every request's session, and show it in the toolbar.

    Works from the application's configuration (``config.include``, or
    ``pyramid.includes``) and from the toolbar's ``debugtoolbar.includes``.
    """
    if config.registry.queryUtility(IPanelMap) is not None:
        # The toolbar's own configuration (debugtoolbar.includes).
        config.add_debugtoolbar_panel(RedisSessionPanel)
        config.inject_parent_action(_include_in_app)
        return
    _include_in_app(config)
