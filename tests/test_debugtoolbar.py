"""The debug-toolbar panel, through real toolbar requests on a real server.

Each test serves an app with ``pyramid_debugtoolbar`` and the panel
included, its session's connections also counted by a ``RoundTripCounter``
(the figures the panel shows must be the counter's), then opens the
toolbar's page for that request as a developer would.
"""

from __future__ import annotations

from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from pyramid_redis_sessions.cookies import CookieCodec, CookieSettings
from pyramid_redis_sessions.events import key_digest
from pyramid_redis_sessions.store import SCRIPTS
from tests.servers import RoundTripCounter

pytest.importorskip("pyramid_debugtoolbar", reason="the debugtoolbar extra")

SECRET = "toolbar-test-secret"
LOCAL = {"REMOTE_ADDR": "127.0.0.1"}  # the toolbar serves loopback only


def read(request: Request) -> Response:
    return Response(f"<html><body>{request.session.get('n', 0)}</body></html>")


def write(request: Request) -> Response:
    request.session["n"] = request.session.get("n", 0) + 1
    request.session["other"] = "x"
    return Response("<html><body>written</body></html>")


def drop(request: Request) -> Response:
    del request.session["other"]
    return Response("<html><body>dropped</body></html>")


def logout(request: Request) -> Response:
    request.session.invalidate()
    return Response("<html><body>bye</body></html>")


# The toolbar's Session panel deserializes every value as soon as the
# session is used: left out, so that the panel shows the app's own reads.
PANELS = (
    "pyramid_debugtoolbar.panels.headers.HeaderDebugPanel\n"
    "pyramid_debugtoolbar.panels.performance.PerformanceDebugPanel"
)


def make_app(
    url: str,
    counter: RoundTripCounter,
    *,
    via_toolbar_includes: bool = False,
    panels: str | None = PANELS,
    local_cache: int | None = None,
) -> webtest.TestApp:
    settings: dict[str, Any] = {
        "redis.sessions.secret": SECRET,
        "redis.sessions.connection_pool": counter.pool(url),
    }
    if local_cache is not None:
        settings["redis.sessions.local_cache"] = str(local_cache)
    if panels is not None:
        settings["debugtoolbar.panels"] = panels
    if via_toolbar_includes:
        settings["debugtoolbar.includes"] = "pyramid_redis_sessions.debugtoolbar"
    with Configurator(settings=settings) as config:
        config.include("pyramid_debugtoolbar")
        config.include("pyramid_redis_sessions")
        if not via_toolbar_includes:
            config.include("pyramid_redis_sessions.debugtoolbar")
        for name, view in [
            ("read", read),
            ("write", write),
            ("drop", drop),
            ("logout", logout),
        ]:
            config.add_route(name, f"/{name}")
            config.add_view(view, route_name=name)
        return webtest.TestApp(config.make_wsgi_app(), extra_environ=LOCAL)


@pytest.fixture
def counter(server: Any) -> RoundTripCounter:
    for script in SCRIPTS:  # so that no request counts redis-py loading one
        server.admin().script_load(script.script)
    return RoundTripCounter()


@pytest.fixture
def app(server: Any, counter: RoundTripCounter) -> webtest.TestApp:
    return make_app(server.url, counter)


def panel_page(app: webtest.TestApp) -> Any:
    """The toolbar's page for the app's last request, as a browser gets it."""
    history = app.app.registry.pdtb_history
    request_id = history.last(1)[0][0]
    page = app.get(f"/_debug_toolbar/{request_id}")
    assert page.html.find(id="pDebugPanel-redis_sessions") is not None
    return page


def row(page: Any, name: str) -> str:
    text = page.html.find(id=f"prs-{name}").td.get_text(" ")
    return " ".join(text.split()).replace(" ,", ",")


def session_id(app: webtest.TestApp) -> str:
    found = CookieCodec(SECRET, (), CookieSettings()).unsign(app.cookies["session"])
    assert found[0] is not None
    return found[0]


def test_a_read_shows_one_round_trip_as_the_counter_does(
    app: webtest.TestApp, counter: RoundTripCounter
) -> None:
    app.get("/write")
    counter.reset()
    app.get("/read")
    page = panel_page(app)

    assert counter.commands == [["HGETALL"]]
    assert row(page, "round-trips") == "1 HGETALL"
    assert "1 round trip" in page.text  # the tab's subtitle
    assert row(page, "loaded") == "n, other"
    assert row(page, "decoded") == "n"  # "other" stays bytes
    assert row(page, "saved") == "none"
    assert row(page, "cookie") == (
        "not sent: unchanged: the browser's cookie already names the session"
    )
    digest = key_digest(session_id(app))
    assert row(page, "key") == f"session:<sha256:{digest}>"
    assert session_id(app) not in page.text
    assert "bytes, expires in 1" in row(page, "stored")
    # The toolbar's own page cost the session nothing.
    assert counter.count == 1
    assert row(page, "cache") == "miss: read from Redis, kept in this process's cache"


def test_a_second_read_is_served_from_the_local_cache(
    app: webtest.TestApp, counter: RoundTripCounter
) -> None:
    app.get("/write")
    app.get("/read")
    counter.reset()
    app.get("/read")
    page = panel_page(app)

    assert counter.commands == []
    assert row(page, "round-trips") == "0"
    assert row(page, "cache") == "hit: 0 round trips, served from this process's cache"
    assert row(page, "loaded") == "n, other"


def test_without_a_local_cache_the_panel_shows_none(
    server: Any, counter: RoundTripCounter
) -> None:
    app = make_app(server.url, counter, local_cache=0)
    app.get("/write")
    app.get("/read")
    page = panel_page(app)
    assert row(page, "round-trips") == "1 HGETALL"
    assert page.html.find(id="prs-cache") is None


def test_a_first_write_shows_the_create_and_the_new_cookie(
    app: webtest.TestApp, counter: RoundTripCounter
) -> None:
    app.get("/write")
    page = panel_page(app)

    assert counter.commands == [["EVALSHA"]]
    assert row(page, "round-trips") == "1 EVALSHA write"
    assert row(page, "loaded") == "nothing loaded"
    assert row(page, "saved") == "(created), n, other"
    assert row(page, "cookie") == "set: a new session was stored"
    assert "created" in row(page, "events")


def test_a_delta_shows_the_fields_saved_and_deleted(
    app: webtest.TestApp, counter: RoundTripCounter
) -> None:
    app.get("/write")
    app.get("/write")
    # A save of a stored session writes when its expiry slid.
    assert row(panel_page(app), "saved") == "n, (slid)"
    counter.reset()
    app.get("/drop")
    page = panel_page(app)

    # The write before it dropped the session from the local cache: a miss.
    assert counter.commands == [["HGETALL"], ["EVALSHA"]]
    assert row(page, "round-trips") == "2 HGETALL EVALSHA write"
    assert row(page, "deleted") == "other"
    assert row(page, "saved") == "(slid)"  # the save sets the expiry: it says when


def test_a_logout_shows_the_whole_key_deleted_and_the_cookie_cleared(
    app: webtest.TestApp, counter: RoundTripCounter
) -> None:
    app.get("/write")
    old = key_digest(session_id(app))
    counter.reset()
    app.get("/logout")
    page = panel_page(app)

    assert len(counter.commands) == row(page, "round-trips").count("EVALSHA") + row(
        page, "round-trips"
    ).count("DEL")
    assert row(page, "deleted-keys") == f"session:<sha256:{old}>"
    assert row(page, "cookie").startswith("cleared: the session ended")
    assert row(page, "stored") == "not stored"


@pytest.mark.parametrize("via_toolbar_includes", [False, True])
def test_with_every_toolbar_panel_the_session_panel_s_reads_are_named(
    server: Any, counter: RoundTripCounter, via_toolbar_includes: bool
) -> None:
    """With the toolbar's default panels, and included through the toolbar's
    own ``debugtoolbar.includes`` setting too."""
    app = make_app(
        server.url, counter, via_toolbar_includes=via_toolbar_includes, panels=None
    )
    app.get("/write")
    counter.reset()
    app.get("/read")
    page = panel_page(app)
    assert row(page, "round-trips") == "1 HGETALL"
    assert counter.count == 1
    assert row(page, "decoded").startswith(
        "n, other (the toolbar's own Session panel deserializes every value"
    )


@pytest.mark.topology
def test_on_every_topology_a_read_is_one_round_trip_as_counted(
    topology: Any, prefix: str, round_trips: RoundTripCounter
) -> None:
    """Standalone, Sentinel and Cluster: the panel instruments whatever
    client the factory made, and a counter already on it keeps counting."""
    from pyramid_redis_sessions import RedisSessionFactory

    made = RedisSessionFactory(SECRET, prefix=prefix, **topology.options)
    assert made.store is not None
    round_trips.instrument(made.store.client)
    with Configurator(settings={"debugtoolbar.panels": PANELS}) as config:
        config.include("pyramid_debugtoolbar")
        config.set_session_factory(made)
        config.include("pyramid_redis_sessions.debugtoolbar")
        for name, view in [("read", read), ("write", write)]:
            config.add_route(name, f"/{name}")
            config.add_view(view, route_name=name)
        app = webtest.TestApp(config.make_wsgi_app(), extra_environ=LOCAL)
    app.get("/write")
    round_trips.reset()
    app.get("/read")
    page = panel_page(app)
    assert round_trips.commands == [["HGETALL"]]
    assert row(page, "round-trips") == "1 HGETALL"
    assert row(page, "key").startswith(f"{prefix}<sha256:")
    assert "bytes, expires in 1" in row(page, "stored")
