"""A tiny Pyramid app whose ``request.session`` lives in Redis.

Everything session-related is in :mod:`prs_demo.views`; this module only
wires the app together. ``pserve development.ini`` calls :func:`main`.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from pyramid.config import Configurator
from pyramid.events import NewResponse
from pyramid.router import Router

from pyramid_redis_sessions.store import SCRIPTS

from . import inspector, views
from .embedded import EMBEDDED_PORT, embedded_port, start_valkey

log = logging.getLogger(__name__)


def main(global_config: dict[str, Any], **settings: Any) -> Router:
    """Return the demo's WSGI application.

    ``settings`` are the ``[app:main]`` lines of the ini file. When
    ``redis.sessions.url`` names port 16379 of this machine (as
    development.ini does) and nothing listens there, an embedded Valkey
    server is started on that port for the life of the process, so that
    ``psessions`` finds the demo's sessions through the same ini file.
    Without a ``redis.sessions.url``, the embedded server takes a free port.
    """
    valkey = None
    url = settings.get("redis.sessions.url")
    port = embedded_port(
        url, int(settings.get("prs_demo.embedded_port", EMBEDDED_PORT))
    )
    if not url or port is not None:
        valkey = start_valkey(port)
        settings["redis.sessions.url"] = url or f"{valkey.connection_url}/0"
        log.info(
            "Started an embedded Valkey at %s (its sessions are lost when the "
            "demo stops)",
            settings["redis.sessions.url"],
        )

    # A server that does not know the store's scripts yet costs one more
    # round trip the first time each runs (redis-py loads it on NOSCRIPT):
    # loaded now, so that the panels show what every later request costs.
    client = redis.Redis.from_url(settings["redis.sessions.url"], socket_timeout=2)
    try:
        for script in SCRIPTS:
            client.script_load(script.script)
    except redis.RedisError as e:
        log.warning("Could not load the session scripts: %s", e)
    finally:
        client.close()

    with Configurator(settings=settings) as config:
        # Kept so that whoever built the app (a test, say) can stop it early.
        config.registry.embedded_valkey = valkey
        config.registry.inspector = inspector.Inspector()
        config.add_tween("prs_demo.inspector.tween_factory")
        config.add_subscriber(inspector.on_new_response, NewResponse)

        # Reads the redis.sessions.* settings and sets the session factory.
        config.include("pyramid_redis_sessions")
        # Records what each request's session did: the page's panel below,
        # and the debug toolbar's "Redis session" tab when development.ini
        # includes pyramid_debugtoolbar.
        config.include("pyramid_redis_sessions.debugtoolbar")
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
