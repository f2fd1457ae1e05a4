"""The app tests/test_local_cache.py serves with ``gunicorn --preload``.

``/get`` answers ``{"pid", "v", "loaded_from"}``: which worker answered,
the session's ``v``, and whether the local cache served it; ``/set?v=…``
sets ``v``.

Configured from the environment: ``CACHE_URL`` and ``CACHE_PREFIX``. With
``CACHE_WARM_COOKIE`` (a ``Cookie`` header) and ``CACHE_WARM`` (a file
name), the app reads that session twice while it is built, in gunicorn's
master before the fork, so that the master's cache holds it and its
tracking connection is open; what it found goes to that file as JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pyramid.config import Configurator
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request
from pyramid.response import Response

from tests.app import SECRET, finish


def get(request: Request) -> Response:
    value = request.session.get("v")
    return Response(
        json={
            "pid": os.getpid(),
            "v": value,
            "loaded_from": request.session.loaded_from,
        }
    )


def set_(request: Request) -> Response:
    request.session["v"] = request.GET["v"]
    return Response(json={"pid": os.getpid()})


def _warm(factory: Any, cookie: str) -> dict[str, Any]:
    seen = []
    for _ in range(2):
        session = factory(Request.blank("/", headers={"Cookie": cookie}))
        seen.append([session.get("v"), session.loaded_from])
        finish(session)
    return {"pid": os.getpid(), "seen": seen, "stats": factory.store.cache.stats()}


def make() -> Any:
    settings = {
        "redis.sessions.secret": SECRET,
        "redis.sessions.url": os.environ["CACHE_URL"],
        "redis.sessions.prefix": os.environ["CACHE_PREFIX"],
    }
    with Configurator(settings=settings) as config:
        config.include("pyramid_redis_sessions")
        config.add_route("get", "/get")
        config.add_view(get, route_name="get")
        config.add_route("set", "/set")
        config.add_view(set_, route_name="set")
    app = config.make_wsgi_app()
    cookie = os.environ.get("CACHE_WARM_COOKIE")
    if cookie:
        factory = app.registry.queryUtility(ISessionFactory)
        Path(os.environ["CACHE_WARM"]).write_text(json.dumps(_warm(factory, cookie)))
    return app
