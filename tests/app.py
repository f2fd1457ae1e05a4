"""A small Pyramid app that runs session operations named in the query.

``GET /do?op=set:a:1&op=get:a`` runs ``session['a'] = '1'`` then
``session.get('a')`` and answers with the JSON list of results, so a test
states a request's session work in one line.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import webtest
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from pyramid_redis_sessions import RedisSessionFactory, SessionFactory


def _run(session: Any, op: str) -> Any:
    name, _, rest = op.partition(":")
    args = rest.split(":") if rest else []
    if name == "get":
        return session.get(args[0])
    if name == "set":
        session[args[0]] = args[1]
        return None
    if name == "setint":
        session[args[0]] = int(args[1])
        return None
    if name == "del":
        del session[args[0]]
        return None
    if name == "list":
        session[args[0]] = []
        return None
    if name == "append":
        session[args[0]].append(args[1])
        return None
    if name == "incr":
        session[args[0]] = session.get(args[0], 0) + 1
        return session[args[0]]
    if name == "popitem":
        return list(session.popitem())
    if name == "clear":
        return session.clear()
    if name == "len":
        return len(session[args[0]])
    if name == "keys":
        return sorted(session)
    if name == "items":
        return sorted(session.items())
    if name == "id":
        return session.session_id
    if name == "new":
        return session.new
    if name == "invalidate":
        return session.invalidate()
    if name == "regenerate":
        return session.regenerate_id()
    if name == "changed":
        return session.changed()
    if name == "flash":
        return session.flash(args[0])
    if name == "pop_flash":
        return session.pop_flash()
    if name == "csrf":
        return session.get_csrf_token()
    if name == "adjust":
        return session.adjust_timeout_for_session(int(args[0]))
    if name == "timeout":
        return session.timeout
    return _run_users(session, name, args)


def _run_users(session: Any, name: str, args: list[str]) -> Any:
    """The user-sessions ops: ``bind:<user>[:<ua>]``, ``unbind``, ``bound``,
    ``sessions:<user>``, ``handle``, ``end:<user>:<handle>``,
    ``endall:<user>``, ``endothers:<user>``."""
    if name == "bind":
        details = {"ua": args[1]} if len(args) > 1 else None
        return session.bind_user(args[0], details=details)
    if name == "unbind":
        return session.bind_user(None)
    if name == "bound":
        return session.bound_user
    users = session.user_sessions()
    if name == "sessions":
        return [dataclasses.asdict(info) for info in users.list(args[0])]
    if name == "handle":
        return users.current_handle
    if name == "end":
        return users.end(args[0], args[1])
    if name == "endall":
        return users.end_all(args[0])
    if name == "endothers":
        return users.end_all(args[0], keep=users.current_handle)
    raise ValueError(name)


def do_view(request: Request) -> Response:
    results = [_run(request.session, op) for op in request.GET.getall("op")]
    return Response(json=results)


def untouched_view(request: Request) -> Response:
    return Response("untouched")


def boom_view(request: Request) -> Response:
    for op in request.GET.getall("op"):
        _run(request.session, op)
    raise RuntimeError("boom")


def error_view(exc: Exception, request: Request) -> Response:
    for op in request.GET.getall("after"):
        _run(request.session, op)
    return Response("handled", status=500)


def post_view(request: Request) -> Response:
    return Response("posted")


def make_app(factory: SessionFactory) -> webtest.TestApp:
    with Configurator() as config:
        config.set_session_factory(factory)
        _add_views(config)
    return webtest.TestApp(config.make_wsgi_app())


def make_included_app(
    settings: dict[str, Any], *extra: Callable[[Configurator], None]
) -> webtest.TestApp:
    """The same app, configured as users do: ``redis.sessions.*`` settings
    and ``config.include('pyramid_redis_sessions')`` (so the 503 view too);
    each of ``extra`` then gets the configurator (to add subscribers)."""
    settings = {"redis.sessions.secret": SECRET, **settings}
    with Configurator(settings=settings) as config:
        config.include("pyramid_redis_sessions")
        _add_views(config)
        for step in extra:
            step(config)
    return webtest.TestApp(config.make_wsgi_app())


def _add_views(config: Configurator) -> None:
    config.set_default_csrf_options(require_csrf=True)
    config.add_route("do", "/do")
    config.add_view(do_view, route_name="do")
    config.add_route("untouched", "/untouched")
    config.add_view(untouched_view, route_name="untouched")
    config.add_route("boom", "/boom")
    config.add_view(boom_view, route_name="boom")
    config.add_view(error_view, context=RuntimeError)
    config.add_route("post", "/post")
    config.add_view(post_view, route_name="post", request_method="POST")


def results(response: webtest.TestResponse) -> list[Any]:
    data: list[Any] = json.loads(response.text)
    return data


SECRET = "test-secret-0123456789abcdef0123456789abcdef0123456789abcdef"


def factory(url_or_pool: Any, prefix: str, **options: Any) -> SessionFactory:
    """A factory on the test's server, keys under the test's prefix."""
    if isinstance(url_or_pool, str):
        options["url"] = url_or_pool
    else:
        options["connection_pool"] = url_or_pool
    return RedisSessionFactory(SECRET, prefix=prefix, **options)


def finish(session: Any) -> Response:
    """Run the response callbacks of the session's request, as Pyramid does
    at the end of a request; the response they worked on."""
    response = Response()
    session._request._process_response_callbacks(response)
    return response
