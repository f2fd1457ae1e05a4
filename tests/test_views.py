"""The 503 that ``includeme`` answers an unreachable session store with."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from pyramid_redis_sessions.exceptions import SessionStoreUnavailable
from pyramid_redis_sessions.views import RETRY_AFTER

SERVER = "127.0.0.1:1"
COOKIE_ID = "the-session-id-that-must-never-be-logged"


def _failing(request: Request) -> Response:
    raise SessionStoreUnavailable(
        f"session store Redis at {SERVER} is unavailable: Timeout", server=SERVER
    )


def _fine(request: Request) -> Response:
    return Response("fine")


def make_app(*extra: Callable[[Configurator], None]) -> webtest.TestApp:
    config = Configurator(
        settings={
            "redis.sessions.secret": "s3cret",
            "redis.sessions.url": f"redis://{SERVER}/0",
        }
    )
    config.include("pyramid_redis_sessions")
    config.add_route("fail", "/fail")
    config.add_view(_failing, route_name="fail")
    config.add_route("fine", "/fine")
    config.add_view(_fine, route_name="fine")
    for step in extra:
        step(config)
    return webtest.TestApp(config.make_wsgi_app())


def test_unavailable_store_is_a_503_with_retry_after() -> None:
    res = make_app().get("/fail", status=503)
    assert res.headers["Retry-After"] == str(RETRY_AFTER)
    # The client learns nothing about the servers behind the app.
    assert SERVER not in res.text


def test_other_requests_are_unaffected() -> None:
    assert make_app().get("/fine").text == "fine"


def test_failure_is_logged_once_with_the_server_and_never_the_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    testapp = make_app()
    testapp.set_cookie("session", COOKIE_ID)
    with caplog.at_level(logging.DEBUG):
        testapp.get("/fail", status=503)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert SERVER in message and "/fail" in message
    assert all(COOKIE_ID not in r.getMessage() for r in caplog.records)


def test_the_app_can_answer_with_its_own_view() -> None:
    def own(exc: SessionStoreUnavailable, request: Request) -> Response:
        return Response("maintenance", status=500)

    def register(config: Configurator) -> None:
        config.add_exception_view(own, context=SessionStoreUnavailable)

    res = make_app(register).get("/fail", status=500)
    assert res.text == "maintenance"
    assert "Retry-After" not in res.headers
