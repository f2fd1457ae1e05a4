"""The app the load tests serve with waitress and gunicorn, in a subprocess.

It speaks ``benchmarks.load``'s protocol (``/setup`` logs a user in,
``/inc`` adds one to their counter and answers the new value, ``/count``
reads it) and adds ``/pool``: which process answered, and which Redis
connection it used, to show that forked workers share no socket. For the
local cache tests, ``/get`` answers ``{"pid", "v", "loaded_from"}`` (which
worker answered, the session's ``v``, and whether the local cache served
it) and ``/set?v=…`` sets ``v``.

Configured from the environment, as a deployment would be: ``LOAD_URL``
and ``LOAD_PREFIX``. With ``LOAD_WARM`` set to a file name, the app talks
to Redis once while it is built (before gunicorn forks, with
``--preload``) and writes that connection's ``CLIENT ID`` there. With
``LOAD_WARM_COOKIE`` (a ``Cookie`` header) as well, it reads that session
twice instead, so that the master's local cache holds it and its tracking
connection is open, and writes what it found there as JSON.

``python -m tests.loadapp`` serves it with waitress (8 threads) on a free
port and prints ``PORT <n>``; it exits when its stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from pyramid.config import Configurator
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request
from pyramid.response import Response

from tests.app import SECRET, finish

WAITRESS_THREADS = 8


def setup(request: Request) -> Response:
    request.session["count"] = 0
    request.session["profile"] = "x" * 500
    return Response("ok")


def inc(request: Request) -> Response:
    count = request.session.get("count", 0) + 1
    request.session["count"] = count
    return Response(str(count))


def count(request: Request) -> Response:
    return Response(str(request.session.get("count", 0)))


def pool(request: Request) -> Response:
    client = request.registry.queryUtility(ISessionFactory).store.client
    client_id = client.client_id()  # the pool checks its pid here
    return Response(
        json={
            "pid": os.getpid(),
            "pool_pid": client.connection_pool.pid,
            "client_id": client_id,
        }
    )


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
        "redis.sessions.url": os.environ["LOAD_URL"],
        "redis.sessions.prefix": os.environ["LOAD_PREFIX"],
    }
    with Configurator(settings=settings) as config:
        config.include("pyramid_redis_sessions")
        views = {"setup": setup, "inc": inc, "count": count, "pool": pool,
                 "get": get, "set": set_}  # fmt: skip
        for name, view in views.items():
            config.add_route(name, f"/{name}")
            config.add_view(view, route_name=name)
    app = config.make_wsgi_app()
    warm = os.environ.get("LOAD_WARM")
    cookie = os.environ.get("LOAD_WARM_COOKIE")
    factory = app.registry.queryUtility(ISessionFactory)
    if warm and cookie:
        Path(warm).write_text(json.dumps(_warm(factory, cookie)))
    elif warm:
        Path(warm).write_text(str(factory.store.client.client_id()))
    return app


def serve() -> None:
    import logging

    import waitress

    # A saturated server logs its queue depth per request: that is the test.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    server = waitress.create_server(
        make(), host="127.0.0.1", port=0, threads=WAITRESS_THREADS, ident=None
    )

    def exit_when_parent_goes() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    print(f"PORT {server.effective_port}", flush=True)  # type: ignore[union-attr]
    server.run()


if __name__ == "__main__":
    serve()
