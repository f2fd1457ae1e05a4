"""A tiny Pyramid app whose ``request.session`` lives in Redis.

Everything session-related is in :mod:`prs_demo.views`; this module only
wires the app together. ``pserve development.ini`` calls :func:`main`.
"""

from __future__ import annotations

import logging
from typing import Any

from pyramid.config import Configurator
from pyramid.events import NewResponse
from pyramid.router import Router

from . import inspector, views
from .embedded import EMBEDDED_PORT, EMBEDDED_URL, start_valkey

log = logging.getLogger(__name__)


def main(global_config: dict[str, Any], **settings: Any) -> Router:
    """Return the demo's WSGI application.

    ``settings`` are the ``[app:main]`` lines of the ini file. With the
    ``redis.sessions.url`` of development.ini (``EMBEDDED_URL``), or none,
    an embedded Valkey server is started there (or on a free port) for the
    life of the process and used.
    """
    valkey = None
    url = settings.get("redis.sessions.url")
    if not url or url == EMBEDDED_URL:
        valkey = start_valkey(EMBEDDED_PORT if url else None)
        settings["redis.sessions.url"] = f"{valkey.connection_url}/0"
        log.info(
            "Started an embedded Valkey at %s "
            "(its sessions are lost when the demo stops)",
            settings["redis.sessions.url"],
        )

    # The sessions' connections count round trips for the page's panel.
    counted = inspector.Inspector(
        settings["redis.sessions.url"],
        settings.get("redis.sessions.prefix", "session:"),
    )
    settings["redis.sessions.connection_pool"] = counted.pool

    with Configurator(settings=settings) as config:
        # Kept so that whoever built the app (a test, say) can stop it early.
        config.registry.embedded_valkey = valkey
        config.registry.inspector = counted
        config.add_tween("prs_demo.inspector.tween_factory")
        config.add_subscriber(inspector.on_new_response, NewResponse)

        # Reads the redis.sessions.* settings and sets the session factory.
        config.include("pyramid_redis_sessions")
        # Every POST must carry the token from request.session.get_csrf_token(),
        # in a form field named csrf_token; otherwise Pyramid answers 400.
        config.set_default_csrf_options(require_csrf=True)

        config.add_route("home", "/")
        config.add_route("count", "/count")
        config.add_route("note", "/note")
        config.add_route("login", "/login")
        config.add_route("logout", "/logout")
        config.add_route("sessions", "/sessions")
        config.add_route("end_session", "/sessions/end")
        config.add_route("end_others", "/sessions/end-others")
        config.add_view(views.home, route_name="home", request_method="GET")
        config.add_view(views.count, route_name="count", request_method="POST")
        config.add_view(views.save_note, route_name="note", request_method="POST")
        config.add_view(views.login, route_name="login", request_method="POST")
        config.add_view(views.logout, route_name="logout", request_method="POST")
        config.add_view(views.sessions, route_name="sessions", request_method="GET")
        config.add_view(
            views.end_session, route_name="end_session", request_method="POST"
        )
        config.add_view(
            views.end_others, route_name="end_others", request_method="POST"
        )
        return config.make_wsgi_app()
