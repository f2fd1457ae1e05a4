"""What the session costs and does, shown on every page of the demo.

The figures come from :mod:`pyramid_redis_sessions.debugtoolbar`, which
records each request's round trips, the fields its save wrote or deleted
and what happened to its cookie (the debug toolbar's "Redis session" tab
shows the same for every request). This panel adds one thing to it: it is
on the page itself, and beside this request it shows the *previous* one of
the same session, the POST behind the redirect that drew the page.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from pyramid.events import NewResponse
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request

from pyramid_redis_sessions.debugtoolbar import SessionReport, report_for
from pyramid_redis_sessions.events import key_digest

_KEEP = 1000  # reports of recent sessions kept in memory


class Inspector:
    """Remembers the last request of each session, for its next page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._previous: OrderedDict[str, SessionReport] = OrderedDict()

    def remember(self, report: SessionReport) -> None:
        if report.key is None:
            return
        with self._lock:
            self._previous[report.key] = report
            self._previous.move_to_end(report.key)
            while len(self._previous) > _KEEP:
                self._previous.popitem(last=False)

    def previous(self, key: str | None) -> SessionReport | None:
        if key is None:
            return None
        with self._lock:
            return self._previous.get(key)


def session_key(request: Request) -> str | None:
    """The key of the session the request's cookie names, as the package's
    log lines name it (prefix and digest, never the id); reading the cookie
    costs no round trip."""
    factory: Any = request.registry.queryUtility(ISessionFactory)
    session_id = factory.cookie.read(request).session_id
    if session_id is None:
        return None
    return f"{factory.prefix}<sha256:{key_digest(session_id)}>"


def tween_factory(handler: Any, registry: Any) -> Any:
    """Keep each request's report, once complete, for the session's next page."""
    inspector: Inspector = registry.inspector

    def remember(request: Request) -> None:
        report = report_for(request)
        if report is not None:
            inspector.remember(report)

    def tween(request: Request) -> Any:
        # Finished callbacks run after the save and NewResponse.
        request.add_finished_callback(remember)
        return handler(request)

    return tween


def on_new_response(event: NewResponse) -> None:
    """The session has saved: say in a header what the request cost."""
    report = report_for(event.request)
    if report is not None:
        event.response.headers["X-Redis-Round-Trips"] = str(report.round_trip_count)
