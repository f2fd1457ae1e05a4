"""The one small Pyramid app every library runs, and the libraries themselves.

Each library is only ever driven through its public session factory and
``request.session``; nothing here knows how a library stores its data.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import string
import sys
from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from . import wire

SECRET = "bench-secret-0123456789abcdef0123456789abcdef0123456789abcdef"
TIMEOUT = 1200
COOKIE_NAME = "session"


# -- session sizes -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    keys: int
    value_bytes: int  # per key

    @property
    def total(self) -> int:
        return self.keys * self.value_bytes

    def payload(self) -> dict[str, str]:
        """The session a login writes: ``keys`` strings of ``value_bytes``."""
        rng = random.Random(self.name)
        letters = string.ascii_letters + string.digits
        return {
            f"k{i}": "".join(rng.choices(letters, k=self.value_bytes))
            for i in range(self.keys)
        }


SIZES = {
    size.name: size
    for size in (
        Size("100B", 1, 100),
        Size("1KB", 5, 200),
        Size("10KB", 5, 2_000),
        Size("100KB", 5, 20_000),
        Size("50keys", 50, 20),
    )
}


# -- scenarios ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    #: What cookie the request carries: ``none``; ``shared`` (one existing
    #: session, reused by every request); ``fresh`` (a new existing session
    #: per request, for views that end it); ``stale`` (a signed cookie whose
    #: session is gone).
    cookie: str
    #: Round trips SPEC's table allows this project: the floor's multiplier.
    #: Reads repeat with one session, so they are local-cache hits (0).
    budget: int
    method: str = "GET"
    what: str = ""


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("noop", "/noop", "shared", 0, what="never touches the session"),
        Scenario("read", "/read", "shared", 0, what="existing session, reads a key"),
        Scenario("write", "/write", "shared", 2, what="existing session, n += 1"),
        Scenario("create", "/login", "none", 1, what="no cookie, writes the payload"),
        Scenario(
            "login", "/relogin", "fresh", 2, what="invalidate(), then write payload"
        ),
        Scenario("regenerate", "/regenerate", "fresh", 2, what="regenerate_id()"),
        Scenario("stale", "/read", "stale", 2, what="cookie whose key is gone, reads"),
        Scenario("bot", "/read", "none", 0, what="no cookie, reads (anonymous)"),
        Scenario(
            "csrf",
            "/csrf",
            "shared",
            0,
            method="POST",
            what="POST checked by Pyramid's CSRF policy",
        ),
    )
}


# -- the app -----------------------------------------------------------------


def _view(func: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Mark the end of the view, so that later round trips count as the save."""

    def wrapper(request: Request) -> Response:
        response = func(request)
        wire.mark_view_done()
        return response

    return wrapper


def make_app(session_factory: Any, payload: dict[str, str]) -> Any:
    """The WSGI app: one view per scenario, plus set-up and load-test views."""

    def setup(request: Request) -> Response:
        # An existing session: the payload and a CSRF token, whose value is
        # the body so that the csrf scenario can send it back.
        request.session.update(payload)
        return Response(request.session.get_csrf_token())

    def noop(request: Request) -> Response:
        return Response("ok")

    def read(request: Request) -> Response:
        return Response("ok" if request.session.get("k0") else "empty")

    def write(request: Request) -> Response:
        session = request.session
        session["n"] = session.get("n", 0) + 1
        return Response("ok")

    def login(request: Request) -> Response:
        request.session.update(payload)
        return Response("ok")

    def relogin(request: Request) -> Response:
        request.session.invalidate()
        request.session.update(payload)
        return Response("ok")

    def regenerate(request: Request) -> Response:
        request.session.regenerate_id()
        return Response("ok")

    def csrf(request: Request) -> Response:
        return Response("ok")

    def inc(request: Request) -> Response:
        session = request.session
        n = session.get("n", 0) + 1
        session["n"] = n
        return Response(str(n))

    def count(request: Request) -> Response:
        return Response(str(request.session.get("n", 0)))

    def cache_stats(request: Request) -> Response:
        """The process's local cache counts (this package only), as JSON."""
        store = getattr(session_factory, "store", None)
        cache = getattr(store, "cache", None)
        if cache is None:
            return Response(json=None)
        return Response(json={**cache.stats(), "pid": os.getpid()})

    views: dict[str, Callable[[Request], Response]] = {
        "/setup": setup,
        "/noop": noop,
        "/read": read,
        "/write": write,
        "/login": login,
        "/relogin": relogin,
        "/regenerate": regenerate,
        "/inc": inc,
        "/count": count,
        "/cache-stats": cache_stats,
    }
    with Configurator() as config:
        if session_factory is not None:
            config.set_session_factory(session_factory)
        for path, view in views.items():
            name = path.strip("/")
            config.add_route(name, path)
            config.add_view(_view(view), route_name=name)
        config.add_route("csrf", "/csrf")
        config.add_view(
            _view(csrf), route_name="csrf", request_method="POST", require_csrf=True
        )
    return config.make_wsgi_app()


# -- libraries ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Library:
    name: str
    label: str
    #: Keeps its sessions in Redis (in its own database ``db``).
    server_side: bool
    db: int
    #: Scenarios it has no API for.
    unsupported: frozenset[str] = frozenset()
    #: Sessions larger than this do not fit (a cookie's 4 KB).
    max_payload: int | None = None

    def factory(self, pool: Any) -> Any:
        if self.name == "ours":
            from pyramid_redis_sessions import RedisSessionFactory

            return RedisSessionFactory(SECRET, timeout=TIMEOUT, connection_pool=pool)
        if self.name == "base":
            from prs_baseline import RedisSessionFactory as BaseFactory

            return BaseFactory(SECRET, timeout=TIMEOUT, connection_pool=pool)
        if self.name == "fork":
            from pyramid_session_redis import RedisSessionFactory as ForkFactory

            return ForkFactory(SECRET, timeout=TIMEOUT, redis_connection_pool=pool)
        if self.name == "cookie":
            from pyramid.session import SignedCookieSessionFactory

            return SignedCookieSessionFactory(SECRET, timeout=TIMEOUT)
        if self.name == "bare":
            return None
        raise ValueError(self.name)

    def available(self) -> str | None:
        """Why this library cannot run here, or ``None``."""
        if self.name == "fork":
            try:
                import pyramid_session_redis  # noqa: F401
            except ImportError as exc:
                return f"pyramid_session_redis is not installed ({exc})"
        return None

    def fits(self, size: Size) -> bool:
        return self.max_payload is None or size.total <= self.max_payload

    def supports(self, scenario: Scenario, size: Size) -> bool:
        return scenario.name not in self.unsupported and self.fits(size)


LIBRARIES = {
    lib.name: lib
    for lib in (
        Library("ours", "pyramid_redis_sessions", True, 0),
        Library(
            "fork",
            "pyramid_session_redis 1.8.1",
            True,
            1,
            unsupported=frozenset({"regenerate"}),
        ),
        Library(
            "cookie",
            "SignedCookieSessionFactory",
            False,
            -1,
            unsupported=frozenset({"regenerate"}),
            # Pyramid refuses cookies over 4064 bytes; base64 and the
            # signature make ~3 KB of data the most that fits.
            max_payload=2_500,
        ),
    )
}
#: This package at another revision (``--baseline``), added to ``LIBRARIES``
#: by :func:`add_baseline`.
BASE_DB = 3


def add_baseline(revision: str) -> None:
    LIBRARIES["base"] = Library(
        "base", f"pyramid_redis_sessions at {revision}", True, BASE_DB
    )


#: Pyramid with no session factory at all, for the floor's untouched request.
BARE = Library("bare", "Pyramid, session untouched", False, -1)
FLOOR_DB = 2


def peers_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in (
        "pyramid_redis_sessions",
        "pyramid_session_redis",
        "pyramid",
        "webob",
        "redis",
        "hiredis",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


# -- WSGI driving ------------------------------------------------------------


def environ(
    method: str,
    path: str,
    cookie: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A minimal WSGI environ, cheap to build and the same for every library."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if method == "POST":
        env["CONTENT_LENGTH"] = "0"
    if cookie is not None:
        env["HTTP_COOKIE"] = cookie
    for name, value in (headers or {}).items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def _start_response_fast(status: str, headers: Any, exc_info: Any = None) -> Any:
    return None


def call_fast(app: Any, env: dict[str, Any]) -> None:
    """Run one request, discarding the response (the timed path)."""
    result = app(env, _start_response_fast)
    for _ in result:
        pass
    close = getattr(result, "close", None)
    if close is not None:
        close()


@dataclasses.dataclass
class Reply:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    def _session_cookies(self) -> list[str]:
        return [
            value.split(";", 1)[0]
            for name, value in self.headers
            if name.lower() == "set-cookie" and value.startswith(COOKIE_NAME + "=")
        ]

    def set_cookie(self) -> str | None:
        """The session cookie the response sets (``name=value``), if any."""
        for cookie in self._session_cookies():
            if cookie != COOKIE_NAME + "=":
                return cookie
        return None

    def cookie_action(self) -> str:
        """``set``, ``deleted`` (an empty value) or ``-`` (left alone)."""
        if self.set_cookie() is not None:
            return "set"
        return "deleted" if self._session_cookies() else "-"


def call(app: Any, env: dict[str, Any]) -> Reply:
    """Run one request and keep the whole response (set-up and checks)."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        seen["status"] = status
        seen["headers"] = list(headers)
        return None

    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return Reply(seen["status"], seen["headers"], body)
