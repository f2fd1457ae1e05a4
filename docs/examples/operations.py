"""Operating sessions: counting what happens with events, and answering
for an unreachable Redis in your own way (docs: advanced)."""

import logging
from collections import Counter

from pyramid.config import Configurator
from pyramid.response import Response

from pyramid_redis_sessions.events import (
    SessionCreated,
    SessionIdRegenerated,
    SessionInvalidated,
    SessionValueRejected,
    StoreUnavailable,
)
from pyramid_redis_sessions.exceptions import SessionStoreUnavailable

log = logging.getLogger("myapp.sessions")
counts = Counter()  # stands for a statsd client: stats.incr(name)


def count(event):
    counts[type(event).__name__] += 1


def warn_rejected(event):
    log.warning("session %s rejected: %s", event.key_digest, event.reason)


def maintenance(exc, request):
    return Response("Down for maintenance", status=503, headers={"Retry-After": "30"})


def includeme(config):
    for kind in (
        SessionCreated,
        SessionIdRegenerated,
        SessionInvalidated,
        SessionValueRejected,
        StoreUnavailable,
    ):
        config.add_subscriber(count, kind)
    config.add_subscriber(warn_rejected, SessionValueRejected)


def main(global_config, **settings):
    with Configurator(settings=settings) as config:
        config.include("pyramid_redis_sessions")
        config.include(includeme)
        # Registered here, in the application's own configuration, it wins
        # over the 503 view that pyramid_redis_sessions includes.
        config.add_exception_view(maintenance, context=SessionStoreUnavailable)
        config.add_route("visit", "/")
        config.add_view(visit, route_name="visit")
        return config.make_wsgi_app()


def visit(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return Response(str(request.session["visits"]))
