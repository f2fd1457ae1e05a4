"""``max_session_size``: a save that would make a session too large writes
nothing and raises :class:`SessionTooLarge`; what was stored stays.

Through a real app on each backend, sizes read back from Redis itself."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from pyramid_redis_sessions.exceptions import (
    RedisSessionsError,
    SessionStoreError,
    SessionTooLarge,
)
from pyramid_redis_sessions.store import SCRIPTS
from tests.app import factory, results
from tests.servers import BaseServer, RoundTripCounter
from tests.stored import fields

MB = 1 << 20


def big_view(request: Request) -> Response:
    """``/big?key=k&kb=n``: ``session[k]`` = n KiB of bytes; ``&flash=n``:
    flash n KiB; ``&regenerate=1``: regenerate_id() first; ``&append=n``:
    append n KiB to the list at ``key`` (a change in place)."""
    session, params = request.session, request.GET
    if params.get("regenerate"):
        session.regenerate_id()
    if "kb" in params:
        session[params["key"]] = b"v" * (int(params["kb"]) * 1024)
    if "flash" in params:
        session.flash("m" * (int(params["flash"]) * 1024))
    if "append" in params:
        session[params["key"]].append(b"a" * (int(params["append"]) * 1024))
    if "list" in params:
        session[params["key"]] = []
    return Response(json=[session.session_id])


App = Callable[..., webtest.TestApp]


@pytest.fixture
def sized(server: BaseServer, prefix: str, round_trips: RoundTripCounter) -> App:
    for script in SCRIPTS:
        server.admin().script_load(script.script)

    def make(**options: Any) -> webtest.TestApp:
        with Configurator() as config:
            config.set_session_factory(
                factory(round_trips.pool(server.url), prefix, **options)
            )
            config.add_route("big", "/big")
            config.add_view(big_view, route_name="big")
        return webtest.TestApp(config.make_wsgi_app())

    return make


def payload(value: Any) -> bytes:
    """The serializer's bytes of a value (the default, pickle)."""
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def stored_size(server: BaseServer, key: str) -> int:
    return sum(len(f) + len(v) for f, v in fields(server, key).items())


def test_session_too_large_is_a_store_error_of_this_package() -> None:
    assert issubclass(SessionTooLarge, SessionStoreError)
    assert issubclass(SessionTooLarge, RedisSessionsError)


def test_a_10_mb_write_raises_and_leaves_the_stored_session_as_it_was(
    sized: App, server: BaseServer, prefix: str, round_trips: RoundTripCounter
) -> None:
    testapp = sized()
    (session_id,) = results(testapp.get("/big?key=small&kb=1"))
    key = prefix + session_id
    before, ttl = fields(server, key), server.client().ttl(key)
    round_trips.reset()
    with pytest.raises(SessionTooLarge) as info:
        testapp.get("/big?key=photo&kb=10240")
    assert round_trips.commands == [["HGETALL"]], "the load only: nothing written"
    assert fields(server, key) == before
    assert 0 < server.client().ttl(key) <= ttl
    message = str(info.value)
    photo = len(b"photo") + 17 + len(payload(b"v" * 10 * MB))
    assert f"'photo' ({photo} bytes)" in message
    assert "'small'" in message and "created" in message
    assert "max_session_size (1048576)" in message
    assert session_id not in message and "vvvv" not in message
    assert info.value.largest[0] == ("'photo'", photo)
    # The session goes on as it was.
    (again,) = results(testapp.get("/big?key=small&kb=2"))
    assert again == session_id


def test_a_new_session_over_the_limit_stores_no_key(
    sized: App, server: BaseServer, prefix: str
) -> None:
    testapp = sized()
    with pytest.raises(SessionTooLarge):
        testapp.get("/big?key=photo&kb=2048")
    assert server.client().keys(prefix + "*") == []


def test_regenerate_over_the_limit_keeps_the_old_session(
    sized: App, server: BaseServer, prefix: str
) -> None:
    testapp = sized()
    (session_id,) = results(testapp.get("/big?key=small&kb=1"))
    before = fields(server, prefix + session_id)
    with pytest.raises(SessionTooLarge):
        testapp.get("/big?regenerate=1&key=photo&kb=2048")
    assert server.client().keys(prefix + "*") == [(prefix + session_id).encode()]
    assert fields(server, prefix + session_id) == before


def test_the_limit_is_the_bytes_of_every_stored_field(
    sized: App, server: BaseServer, prefix: str
) -> None:
    unlimited = sized(max_session_size=0)
    (session_id,) = results(unlimited.get("/big?key=a&kb=4&flash=1"))
    # A save of a stored session writes when it slid (SLID, always as wide).
    unlimited.get("/big?key=a&kb=3")
    unlimited.get("/big?key=a&kb=4")
    key = prefix + session_id
    size = stored_size(server, key)
    at_the_limit = sized(max_session_size=size)
    at_the_limit.cookiejar = unlimited.cookiejar
    at_the_limit.get("/big?key=a&kb=4")  # the same size again: saved
    assert stored_size(server, key) == size
    with pytest.raises(SessionTooLarge):
        at_the_limit.get("/big?key=b&kb=0")  # one key more
    extra = len(b"b") + 17 + len(payload(b""))
    roomier = sized(max_session_size=size + extra)
    roomier.cookiejar = unlimited.cookiejar
    roomier.get("/big?key=b&kb=0")  # exactly at the limit: saved
    assert stored_size(server, key) == size + extra
    with pytest.raises(SessionTooLarge) as info:
        roomier.get("/big?key=a&kb=5")
    assert info.value.size == size + extra + 1024
    assert info.value.limit == size + extra
    assert stored_size(server, key) == size + extra


def test_flash_messages_and_changes_in_place_count(
    sized: App, server: BaseServer, prefix: str
) -> None:
    testapp = sized(max_session_size=64 * 1024)
    (session_id,) = results(testapp.get("/big?key=log&list=1"))
    for _ in range(7):
        testapp.get("/big?key=log&append=8")  # no assignment: detect_changes
    with pytest.raises(SessionTooLarge) as info:
        testapp.get("/big?key=log&append=8")
    assert info.value.largest[0][0] == "'log'"
    with pytest.raises(SessionTooLarge) as info:
        testapp.get("/big?flash=60")
    assert info.value.largest[0][0] == "flash queue ''"
    assert stored_size(server, prefix + session_id) < 64 * 1024


def test_no_limit_stores_anything(sized: App, server: BaseServer, prefix: str) -> None:
    testapp = sized(max_session_size=0)
    (session_id,) = results(testapp.get("/big?key=photo&kb=3072"))
    assert stored_size(server, prefix + session_id) > 3 * MB


def test_reading_a_session_over_a_lowered_limit_still_works(
    sized: App, server: BaseServer, prefix: str, round_trips: RoundTripCounter
) -> None:
    """Only what a save writes is checked: a session stored before the limit
    was lowered reads, and saves what does not make it grow."""
    unlimited = sized(max_session_size=0)
    (session_id,) = results(unlimited.get("/big?key=photo&kb=100"))
    limited = sized(max_session_size=1024)
    limited.cookiejar = unlimited.cookiejar
    round_trips.reset()
    assert results(limited.get("/big")) == [session_id]
    assert round_trips.count == 1
    with pytest.raises(SessionTooLarge):
        limited.get("/big?key=b&kb=0")
