"""Requests of one session running at once (XHRs, tabs, double clicks):
what each of them changed is kept, and ended sessions stay ended.

Threads drive the real Pyramid app through WebTest against a real server;
the interleavings of the last tests are made by hand with two requests'
sessions, so they happen every time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import webtest
from pyramid.request import Request

from tests.app import factory, finish, make_app, results
from tests.servers import BaseServer

App = Callable[..., webtest.TestApp]


def cookie_of(testapp: webtest.TestApp) -> str:
    value: str = testapp.cookies["session"]
    return value


def browser_tab(testapp: webtest.TestApp, cookie: str) -> webtest.TestApp:
    """Another client of the same app holding the same session cookie."""
    tab = webtest.TestApp(testapp.app)
    tab.set_cookie("session", cookie)
    return tab


def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            target(k)
        except BaseException as e:  # reported below, failing the test
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in threads)


def test_concurrent_increments_of_different_keys_are_all_kept(app: App) -> None:
    threads, requests = 8, 200
    testapp = app()
    testapp.get("/do?op=set:start:1")
    cookie = cookie_of(testapp)

    def tab(k: int) -> None:
        client = browser_tab(testapp, cookie)
        for _ in range(requests):
            client.get(f"/do?op=incr:n{k}")

    run_threads(threads, tab)
    got = results(testapp.get("/do?op=items"))[0]
    assert dict(got) == {"start": "1", **{f"n{k}": requests for k in range(threads)}}


def test_concurrent_flashes_are_each_popped_exactly_once(app: App) -> None:
    flashers, flashes = 4, 100
    testapp = app()
    testapp.get("/do?op=set:start:1")
    cookie = cookie_of(testapp)
    popped: list[str] = []
    pops = 0
    shower_errors: list[BaseException] = []
    flashing_done = threading.Event()

    def show_messages() -> None:  # the page that pops messages meanwhile
        nonlocal pops
        client = browser_tab(testapp, cookie)
        try:
            while not flashing_done.is_set():
                popped.extend(results(client.get("/do?op=pop_flash"))[0])
                pops += 1
        except BaseException as e:  # reported below, not lost in the thread
            shower_errors.append(e)

    def flash(k: int) -> None:
        client = browser_tab(testapp, cookie)
        for i in range(flashes):
            client.get(f"/do?op=flash:{k}-{i:03d}")

    shower = threading.Thread(target=show_messages)
    shower.start()
    try:
        run_threads(flashers, flash)
    finally:
        flashing_done.set()
        shower.join(timeout=60)
    assert not shower_errors
    assert pops > 0  # messages were popped while others were flashed
    popped.extend(results(testapp.get("/do?op=pop_flash"))[0])
    expected = {f"{k}-{i:03d}" for k in range(flashers) for i in range(flashes)}
    counts = Counter(popped)
    assert set(counts) == expected, "a message was lost"
    assert max(counts.values()) == 1, "a message was popped twice"
    for k in range(flashers):
        mine = [m for m in popped if m.startswith(f"{k}-")]
        assert mine == sorted(mine), "one tab's messages came out of order"


def test_the_later_save_wins_for_one_key(server: BaseServer, prefix: str) -> None:
    f = factory(server.url, prefix)
    cookie = start(f, a=0)
    first, second = session_of(f, cookie), session_of(f, cookie)
    first["a"], second["a"] = 1, 2
    finish(first)
    finish(second)
    assert session_of(f, cookie)["a"] == 2


def start(f: Any, **data: Any) -> str:
    session = f(Request.blank("/"))
    session.update(data)
    value: str = finish(session).headers["Set-Cookie"]
    return value.split(";")[0]


def session_of(f: Any, cookie: str) -> Any:
    return f(Request.blank("/", headers={"Cookie": cookie}))


def test_a_save_after_a_concurrent_invalidate_leaves_it_gone(
    server: BaseServer, prefix: str
) -> None:
    f = factory(server.url, prefix)
    cookie = start(f, user="ann")
    slow = session_of(f, cookie)
    assert slow["user"] == "ann"  # A loads
    logout = session_of(f, cookie)
    logout.invalidate()  # B logs out
    assert "Max-Age=0" in finish(logout).headers["Set-Cookie"]
    slow["cart"] = ["book"]  # A saves
    res = finish(slow)
    assert server.client().keys(prefix + "*") == []
    assert "Set-Cookie" not in res.headers


def test_a_save_after_a_concurrent_regenerate_keeps_the_new_session(
    server: BaseServer, prefix: str
) -> None:
    f = factory(server.url, prefix)
    cookie = start(f, visits=1)
    slow = session_of(f, cookie)
    assert slow["visits"] == 1  # A loads
    login = session_of(f, cookie)
    login["user"] = "ann"
    login.regenerate_id()  # B logs in
    new_cookie = finish(login).headers["Set-Cookie"].split(";")[0]
    slow["visits"] = 2  # A saves, late
    res = finish(slow)
    assert "Set-Cookie" not in res.headers, "A's response must not undo B's cookie"
    (key,) = server.client().keys(prefix + "*")
    assert key.decode() == prefix + login.session_id
    after = session_of(f, new_cookie)
    assert (after["user"], after["visits"]) == ("ann", 1)


def test_two_apps_sharing_one_session_see_each_others_keys(
    server: BaseServer, prefix: str
) -> None:
    """Workers of one deployment: each writes its key, both are kept."""
    one = make_app(factory(server.url, prefix))
    one.get("/do?op=set:a:1")
    two = browser_tab(make_app(factory(server.url, prefix)), cookie_of(one))
    tabs = [browser_tab(one, cookie_of(one)), two]
    loaded = [results(t.get("/do?op=get:a"))[0] for t in tabs]
    assert loaded == ["1", "1"]
    tabs[0].get("/do?op=set:b:2")
    tabs[1].get("/do?op=set:c:3")
    assert results(one.get("/do?op=items"))[0] == [["a", "1"], ["b", "2"], ["c", "3"]]
