"""The demo in examples/demo, driven through WebTest against a real server."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import prs_demo
import pytest
import redis
import webtest
from prs_demo.embedded import stop_valkey

import pyramid_redis_sessions
from pyramid_redis_sessions.cookies import CookieCodec, CookieSettings
from pyramid_redis_sessions.events import key_digest

SECRET = "demo-test-secret"


def session_id(cookie: str) -> str:
    """The id a session cookie of the demo carries (a bearer secret)."""
    found = CookieCodec(SECRET, (), CookieSettings()).unsign(cookie)[0]
    assert found is not None
    return found


COOKIE = "session"


@pytest.fixture
def app(server: Any) -> webtest.TestApp:
    """The demo on an emptied server: users' indexes start empty."""
    settings = {
        "redis.sessions.secret": SECRET,
        "redis.sessions.url": server.url,
        "redis.sessions.user_key": "user",  # as in development.ini
    }
    return webtest.TestApp(prs_demo.main({}, **settings))


def count(page: webtest.TestResponse) -> int:
    return int(page.html.find(id="count").strong.text)


def flashes(page: webtest.TestResponse) -> list[str]:
    return [item.text for item in page.html.select("#flash li")]


def user(page: webtest.TestResponse) -> str:
    return str(page.html.find(id="user").text)


def note(page: webtest.TestResponse) -> str:
    return str(page.forms["note"]["note"].value)


def post_form(page: webtest.TestResponse, form: str, **fields: str) -> Any:
    """Submit one of the page's forms (it carries the CSRF token) and follow."""
    submitted = page.forms[form]
    for name, value in fields.items():
        submitted[name] = value
    return submitted.submit(status=303).follow()


def with_cookie(app: webtest.TestApp, value: str) -> webtest.TestApp:
    """A second browser that presents the given session cookie."""
    other = webtest.TestApp(app.app)
    other.set_cookie(COOKIE, value)
    return other


def add_one(page: webtest.TestResponse) -> webtest.TestResponse:
    return post_form(page, "count-form")


def test_counter_increments_across_requests(app: webtest.TestApp) -> None:
    page = app.get("/")
    counts = [count(page)]
    for _ in range(3):
        page = add_one(page)
        counts.append(count(page))
    assert counts == [0, 1, 2, 3]
    assert count(app.get("/")) == 3  # showing the page counts nothing


def test_new_browser_starts_its_own_count(app: webtest.TestApp) -> None:
    add_one(add_one(app.get("/")))
    assert count(webtest.TestApp(app.app).get("/")) == 0


def text(page: webtest.TestResponse, id_: str) -> str:
    return " ".join(page.html.find(id=id_).text.split())


def test_panel_shows_a_read_costs_one_round_trip_and_saves_nothing(
    app: webtest.TestApp,
) -> None:
    first = app.get("/")  # a new session: its CSRF token is created
    assert text(first, "stored") == "nothing yet: this session is not in Redis"
    assert first.headers["X-Redis-Round-Trips"] == "1"  # the create
    # The first reload shows that creation as the previous request.
    page = app.get("/")
    assert text(page, "so-far") == "1 round trip: HGETALL"
    assert text(page, "previous") == "1 round trip: EVALSHA write"
    assert text(page, "saved") == "(created), _csrft_"
    assert text(page, "cookie") == "set: a new session was stored"
    # From the second reload on, the previous request is a read, and this
    # one is served from the process's local cache: no round trip.
    again = app.get("/")
    assert again.headers["X-Redis-Round-Trips"] == "0"
    assert text(again, "so-far") == "0 round trips: served from this process's cache"
    assert text(again, "previous") == "1 round trip: HGETALL"
    assert text(again, "saved") == "none"
    assert text(again, "deleted") == "fields: none"
    assert text(again, "cookie") == (
        "not sent: unchanged: the browser's cookie already names the session"
    )
    assert text(again, "key").startswith("session:<sha256:")
    assert session_id(app.cookies[COOKIE]) not in again.text  # never shown
    assert re.fullmatch(r"\d+ bytes, expires in 1\d{3} s", text(again, "stored"))


def test_panel_shows_the_field_a_write_saved(app: webtest.TestApp) -> None:
    page = post_form(app.get("/"), "note", note="hello")
    page = add_one(page)
    assert text(page, "previous") == ("2 round trips: HGETALL, EVALSHA write")
    assert text(page, "saved") == "count, (slid)"
    after_flash = post_form(page, "note", note="again")
    # The note request's save: the note and its flash message.
    assert text(after_flash, "saved") == "note, (a flash message), (slid)"
    # The page that showed the flash message removed it: a save too, so
    # the first reload shows two round trips, the second a read.
    first_reload = app.get("/")
    assert text(first_reload, "previous") == ("2 round trips: HGETALL, EVALSHA write")
    assert text(first_reload, "deleted") == "fields: (a flash message)"
    assert text(app.get("/"), "previous") == "1 round trip: HGETALL"


def test_after_add_one_the_first_reload_shows_a_read(app: webtest.TestApp) -> None:
    page = add_one(app.get("/"))
    assert text(page, "previous") == "2 round trips: HGETALL, EVALSHA write"
    assert text(app.get("/"), "previous") == "1 round trip: HGETALL"


def test_panel_says_a_logout_deleted_the_whole_session(app: webtest.TestApp) -> None:
    app.get("/")
    before = app.cookies[COOKIE]
    page = post_form(app.get("/"), "login", username="alice")
    old = f"session:<sha256:{key_digest(session_id(before))}>"
    assert text(page, "deleted") == f"the old key {old} (regenerate_id(): a login)"
    logged_in = app.cookies[COOKIE]
    page = post_form(page, "logout")

    old = f"session:<sha256:{key_digest(session_id(logged_in))}>"
    assert text(page, "deleted") == f"the whole session {old} (invalidate(): a logout)"
    assert text(page, "cookie") == (
        "set: the session moved to a new id (login, invalidate, regenerate_id)"
    )
    assert session_id(logged_in) not in page.text


def test_flash_message_is_shown_once(app: webtest.TestApp) -> None:
    page = post_form(app.get("/"), "note", note="hello")
    assert flashes(page) == ["Note saved."]
    assert flashes(app.get("/")) == []


def test_note_post_without_csrf_token_is_rejected(app: webtest.TestApp) -> None:
    app.get("/")
    app.post("/note", {"note": "forged"}, status=400)
    app.post("/note", {"note": "forged", "csrf_token": "wrong"}, status=400)
    assert note(app.get("/")) == ""


def test_note_post_with_csrf_token_is_saved(app: webtest.TestApp) -> None:
    page = post_form(app.get("/"), "note", note="buy <milk>")
    assert note(page) == "buy <milk>"
    assert "buy &lt;milk&gt;" in page.text
    assert note(app.get("/")) == "buy <milk>"


def test_login_without_csrf_token_is_rejected(app: webtest.TestApp) -> None:
    app.get("/")
    app.post("/login", {"username": "mallory"}, status=400)
    assert user(app.get("/")) == "Not logged in."


def test_login_changes_session_cookie_and_keeps_data(app: webtest.TestApp) -> None:
    page = add_one(post_form(app.get("/"), "note", note="kept"))
    before = app.cookies[COOKIE]

    page = post_form(page, "login", username="alice")

    assert app.cookies[COOKIE] != before
    assert user(page) == "Logged in as alice."
    assert flashes(page) == ["Logged in as alice."]
    assert note(page) == "kept"
    assert count(page) == 1


def test_cookie_from_before_login_no_longer_works(app: webtest.TestApp) -> None:
    page = add_one(app.get("/"))
    before = app.cookies[COOKIE]
    post_form(page, "login", username="alice")

    stale = with_cookie(app, before).get("/")

    assert count(stale) == 0
    assert user(stale) == "Not logged in."


def test_login_needs_a_user_name(app: webtest.TestApp) -> None:
    page = post_form(app.get("/"), "login", username="  ")
    assert flashes(page) == ["Please enter a user name."]
    assert user(page) == "Not logged in."


def test_logout_clears_the_session(app: webtest.TestApp) -> None:
    page = add_one(post_form(app.get("/"), "note", note="private"))
    page = post_form(page, "login", username="alice")
    logged_in = app.cookies[COOKIE]

    page = post_form(page, "logout")

    assert flashes(page) == ["Logged out."]
    assert user(page) == "Not logged in."
    assert note(page) == ""
    assert count(page) == 0
    assert app.cookies[COOKIE] != logged_in
    # The logged-in session is gone from Redis, not merely forgotten by
    # this browser: its cookie, presented again, finds nothing.
    stale = with_cookie(app, logged_in).get("/")
    assert user(stale) == "Not logged in."
    assert count(stale) == 0


def test_logout_without_csrf_token_is_rejected(app: webtest.TestApp) -> None:
    post_form(app.get("/"), "login", username="alice")
    app.post("/logout", status=400)
    assert user(app.get("/")) == "Logged in as alice."


def browser(app: webtest.TestApp, name: str) -> webtest.TestApp:
    """Another browser (its own cookie jar) with its own User-Agent."""
    return webtest.TestApp(app.app, extra_environ={"HTTP_USER_AGENT": name})


def session_rows(page: webtest.TestResponse) -> list[Any]:
    return list(page.html.select("#sessions tr.session"))


def test_the_ini_file_configures_the_user_key() -> None:
    ini = Path(prs_demo.__file__).parents[1] / "development.ini"
    assert "\nredis.sessions.user_key = user\n" in ini.read_text()


def test_sessions_page_shows_both_browsers_and_ends_the_other(
    app: webtest.TestApp,
) -> None:
    first, second = browser(app, "Browser One"), browser(app, "Browser Two")
    post_form(first.get("/"), "login", username="alice")
    post_form(second.get("/"), "login", username="alice")
    post_form(browser(app, "Bob's").get("/"), "login", username="bob")

    page = first.get("/").click(linkid="sessions-link")
    rows = session_rows(page)
    assert len(rows) == 2  # not bob's
    current = page.html.select("tr.current")
    assert len(current) == 1 and "Browser One" in current[0].text
    (end,) = page.html.select("form.end")
    assert "Browser Two" in end.find_parent("tr").text
    assert end["id"] != session_id(second.cookies[COOKIE])
    assert session_id(second.cookies[COOKIE]) not in page.text

    page = page.forms[end["id"]].submit(status=303).follow()

    assert flashes(page) == ["That session has ended."]
    assert len(session_rows(page)) == 1
    assert user(second.get("/")) == "Not logged in."
    assert user(first.get("/")) == "Logged in as alice."


FIREFOX = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:131.0) "
    "Gecko/20100101 Firefox/131.0"
)


def test_sessions_page_names_browsers_with_the_raw_string_on_hover(
    app: webtest.TestApp,
) -> None:
    firefox, other = browser(app, FIREFOX), browser(app, "curl/8.5.0")
    post_form(firefox.get("/"), "login", username="alice")
    post_form(other.get("/"), "login", username="alice")

    page = firefox.get("/sessions")

    names = {
        span.text: span["title"] for span in page.html.select("#sessions .browser")
    }
    assert names == {"Firefox 131 on macOS": FIREFOX, "curl 8": "curl/8.5.0"}
    current = page.html.select_one("tr.current .browser")
    assert current is not None and current.text == "Firefox 131 on macOS"
    # The page has the session panel, as the home page does.
    assert text(page, "key").startswith("session:<sha256:")
    assert text(page, "previous").startswith("2 round trips: HGETALL")


def test_either_side_can_end_the_other(app: webtest.TestApp) -> None:
    first, second = browser(app, "One"), browser(app, "Two")
    post_form(first.get("/"), "login", username="alice")
    post_form(second.get("/"), "login", username="alice")
    page = second.get("/sessions")
    (end,) = page.html.select("form.end")
    page.forms[end["id"]].submit(status=303).follow()
    assert user(first.get("/")) == "Not logged in."
    assert user(second.get("/")) == "Logged in as alice."


def test_log_out_everywhere_else(app: webtest.TestApp) -> None:
    browsers = [browser(app, f"Browser {i}") for i in range(3)]
    for each in browsers:
        post_form(each.get("/"), "login", username="alice")
    bob = browser(app, "Bob's")
    post_form(bob.get("/"), "login", username="bob")

    page = post_form(browsers[1].get("/sessions"), "end-others")

    assert flashes(page) == ["Logged out 2 other session(s)."]
    assert len(session_rows(page)) == 1
    assert [user(b.get("/")) for b in browsers] == [
        "Not logged in.",
        "Logged in as alice.",
        "Not logged in.",
    ]
    assert user(bob.get("/")) == "Logged in as bob."


def test_sessions_forms_need_the_csrf_token(app: webtest.TestApp) -> None:
    first, second = browser(app, "One"), browser(app, "Two")
    post_form(first.get("/"), "login", username="alice")
    post_form(second.get("/"), "login", username="alice")
    (end,) = first.get("/sessions").html.select("form.end")
    handle = end.find("input", attrs={"name": "handle"})["value"]
    first.post("/sessions/end", {"handle": handle}, status=400)
    first.post("/sessions/end-others", status=400)
    assert user(second.get("/")) == "Logged in as alice."


def test_sessions_page_needs_a_login(app: webtest.TestApp) -> None:
    page = app.get("/sessions", status=303).follow()
    assert flashes(page) == ["Log in to see your sessions."]


def test_configured_url_starts_no_embedded_server(
    redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="prs_demo")
    settings = {
        "redis.sessions.secret": SECRET,
        "redis.sessions.url": redis_server.url,
    }

    router = prs_demo.main({}, **settings)

    assert router.registry.embedded_valkey is None
    assert router.registry.settings["redis.sessions.url"] == redis_server.url
    assert "embedded Valkey" not in caplog.text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.usefixtures("restore_sigterm")
def test_the_ini_file_s_url_starts_the_embedded_valkey_on_its_port() -> None:
    """development.ini names the embedded server's fixed port (so that
    psessions finds it): the demo starts Valkey there when nothing listens,
    and uses what listens there otherwise."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    settings = {
        "redis.sessions.secret": SECRET,
        "redis.sessions.url": url,
        "prs_demo.embedded_port": str(port),
    }
    router = prs_demo.main({}, **settings)
    server = router.registry.embedded_valkey
    try:
        assert server is not None and server.port == port
        assert router.registry.settings["redis.sessions.url"] == url
        assert count(add_one(webtest.TestApp(router).get("/"))) == 1
        # A second process of the demo (pserve --reload) finds it running.
        again = prs_demo.main({}, **settings)
        assert again.registry.embedded_valkey is None
        assert redis.Redis.from_url(url).dbsize() == 1
    finally:
        stop_valkey(server)


def test_the_ini_file_names_the_embedded_server_s_url() -> None:
    ini = Path(prs_demo.__file__).parents[1] / "development.ini"
    assert "\nredis.sessions.url = redis://127.0.0.1:16379/0\n" in ini.read_text()
    assert "\npyramid.includes = pyramid_debugtoolbar\n" in ini.read_text()


@pytest.fixture
def restore_sigterm() -> Any:
    """main() may install a SIGTERM handler for the embedded server."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


@pytest.mark.usefixtures("restore_sigterm")
def test_without_url_an_embedded_valkey_is_started_and_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="prs_demo")

    router = prs_demo.main({}, **{"redis.sessions.secret": SECRET})
    server = router.registry.embedded_valkey
    assert server is not None
    try:
        assert server.is_running()
        url = router.registry.settings["redis.sessions.url"]
        assert url == f"redis://127.0.0.1:{server.port}/0"
        started = [r for r in caplog.records if "embedded Valkey" in r.getMessage()]
        assert [r.levelno for r in started] == [logging.INFO]
        assert url in started[0].getMessage()

        browser = webtest.TestApp(router)
        assert count(add_one(browser.get("/"))) == 1
        client = redis.Redis.from_url(url)
        try:
            keys = list(client.scan_iter())
        finally:
            client.close()
        assert len(keys) == 1
        assert keys[0].startswith(b"session:")
    finally:
        stop_valkey(server)
    assert not server.is_running()
    stop_valkey(server)  # a second stop, as at exit, does nothing


DEMO_PROCESS = textwrap.dedent(
    """
    import sys, time
    import prs_demo

    app = prs_demo.main({}, **{"redis.sessions.secret": "s"})
    print(app.registry.embedded_valkey.port, flush=True)
    if sys.argv[1] == "wait":
        time.sleep(60)
    else:
        sys.stdin.readline()  # exit once the test has seen the server up
    """
)


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


@pytest.mark.parametrize("ending", ["exit", "sigterm"])
def test_embedded_valkey_stops_when_the_demo_process_ends(ending: str) -> None:
    path = [
        str(Path(prs_demo.__file__).parents[1]),
        str(Path(pyramid_redis_sessions.__file__).parents[1]),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    argv = [sys.executable, "-c", DEMO_PROCESS, "wait" if ending == "sigterm" else ""]
    with subprocess.Popen(
        argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as demo:
        try:
            assert demo.stdin is not None and demo.stdout is not None
            port = int(demo.stdout.readline())
            assert accepts_connections(port)
            if ending == "sigterm":
                demo.send_signal(signal.SIGTERM)
            else:
                demo.stdin.write("\n")
                demo.stdin.flush()
            demo.wait(timeout=30)
        finally:
            demo.kill()

    left_running = accepts_connections(port)
    if left_running:  # do not leave it behind for the rest of the run
        redis.Redis(port=port).shutdown(nosave=True)
    assert not left_running
