"""Session semantics through a real Pyramid app and a real server."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import webtest
from pyramid.interfaces import ISession
from pyramid.request import Request
from pyramid.response import Response
from pyramid.testing import DummyRequest
from zope.interface.verify import verifyObject

from pyramid_redis_sessions import RedisSession, RedisSessionFactory
from pyramid_redis_sessions.values import CREATED, FLASH, SLID, TIMEOUT
from tests.app import SECRET, factory, finish, make_app, results
from tests.servers import BaseServer
from tests.stored import backdate, fields, open_field

App = Callable[..., webtest.TestApp]


@pytest.fixture
def session(server: BaseServer, prefix: str) -> RedisSession:
    """A session of a request outside any app (its callbacks run by hand)."""
    request = Request.blank("/")
    return factory(server.url, prefix)(request)


def ttl(server: BaseServer, prefix: str) -> int:
    """The TTL of the test's one session key (-1: none)."""
    (key,) = server.client().keys(prefix + "*")
    seconds: int = server.client().ttl(key)
    return seconds


def test_session_provides_isession(session: RedisSession) -> None:
    assert verifyObject(ISession, session)


def test_session_behaves_as_a_dict(session: RedisSession) -> None:
    assert not session and len(session) == 0
    session["a"] = 1
    session.update({"b": 2}, c=3)
    assert session.setdefault("d", 4) == 4
    assert session.setdefault("d", 5) == 4
    assert dict(session.items()) == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert list(session.keys()) == ["a", "b", "c", "d"]
    assert list(session.values()) == [1, 2, 3, 4]
    assert list(session) == ["a", "b", "c", "d"]
    assert "a" in session and "z" not in session
    assert session == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert session.copy() == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert session.pop("a") == 1
    assert session.pop("a", "gone") == "gone"
    with pytest.raises(KeyError):
        session.pop("a")
    with pytest.raises(KeyError):
        session["a"]
    assert session.get("a") is None and session.get("a", 0) == 0
    assert session.popitem() == ("d", 4)
    del session["b"]
    assert session["c"] == 3
    assert repr(session) == "<RedisSession keys=['c']>"
    session.clear()
    assert session == {} and bool(session) is False
    with pytest.raises(TypeError):
        hash(session)


def test_repr_does_not_load_and_never_shows_values(
    server: BaseServer, prefix: str
) -> None:
    request = Request.blank("/")
    session = factory(server.url, prefix)(request)
    assert repr(session) == "<RedisSession (not loaded)>"
    session["password"] = "hunter2"
    assert "hunter2" not in repr(session)


def test_sessions_compare_by_data(server: BaseServer, prefix: str) -> None:
    f = factory(server.url, prefix)
    one, two = f(Request.blank("/")), f(Request.blank("/"))
    one["a"] = two["a"] = 1
    assert one == two


def test_new_session_id_is_generated_without_redis_and_kept_on_save(
    session: RedisSession, server: BaseServer, prefix: str
) -> None:
    session_id = session.session_id
    assert len(session_id) >= 43 and session.session_id == session_id
    session["a"] = 1
    finish(session)
    assert server.client().exists(prefix + session_id)


def test_values_survive_the_round_trip(app: App) -> None:
    testapp = app()
    testapp.get("/do?op=setint:n:41&op=set:name:Zo%C3%AB")
    assert results(testapp.get("/do?op=get:n&op=get:name")) == [41, "Zoë"]


def test_created_and_new(session: RedisSession) -> None:
    before = time.time()
    assert session.new is True
    assert before - 1 <= session.created <= time.time()


def test_flash_queues(app: App) -> None:
    testapp = app()
    testapp.get("/do?op=flash:one&op=flash:two")
    assert results(testapp.get("/do?op=pop_flash")) == [["one", "two"]]
    assert results(testapp.get("/do?op=pop_flash")) == [[]]


def test_flash_api(session: RedisSession) -> None:
    session.flash("a")
    session.flash("a", allow_duplicate=False)
    session.flash("b", "q")
    assert session.peek_flash() == ["a"]
    session.flash("a", allow_duplicate=True)
    session.flash("a")
    assert session.peek_flash() == ["a", "a", "a"]
    assert session.peek_flash("q") == ["b"]
    assert session.pop_flash("q") == ["b"]
    assert session.peek_flash("q") == []


def test_csrf_token_is_kept_and_renewed(session: RedisSession) -> None:
    token = session.get_csrf_token()
    assert len(token) == 40 and session.get_csrf_token() == token
    assert session.new_csrf_token() != token
    assert session["_csrft_"] == session.get_csrf_token()


def test_pyramids_default_csrf_policy_uses_the_session(app: App) -> None:
    testapp = app()
    token = results(testapp.get("/do?op=csrf"))[0]
    assert testapp.post("/post", {"csrf_token": token}).text == "posted"
    testapp.post("/post", {"csrf_token": "forged"}, status=400)
    testapp.post("/post", {}, status=400)


def test_cookie_attributes_default_to_lax_httponly(app: App) -> None:
    res = app().get("/do?op=set:a:1")
    cookie = res.headers["Set-Cookie"]
    assert "Path=/" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "secure" not in cookie.lower() and "Max-Age" not in cookie
    assert res.headers["Vary"] == "Cookie"


@pytest.mark.parametrize(
    ("view_vary", "vary"),
    [
        (None, "Cookie"),
        ("Accept-Encoding", "Accept-Encoding, Cookie"),
        ("Cookie", "Cookie"),
        ("Accept-Encoding, Cookie", "Accept-Encoding, Cookie"),
    ],
)
def test_vary_cookie_joins_the_views_vary(view_vary: str | None, vary: str) -> None:
    # A read of no session: no Redis is needed (the URL is never used).
    request = Request.blank("/")
    session = RedisSessionFactory(SECRET, url="redis://127.0.0.1:9/0")(request)
    assert session.get("a") is None
    response = Response()
    if view_vary is not None:
        response.headers["Vary"] = view_vary
    request._process_response_callbacks(response)
    assert response.headers.getall("Vary") == [vary]


def test_cookie_attributes_follow_options(app: App) -> None:
    testapp = app(
        cookie_name="sid",
        cookie_path="/app",
        cookie_domain="example.com",
        cookie_secure=True,
        cookie_httponly=False,
        cookie_samesite="Strict",
        cookie_max_age=3600,
    )
    cookie = testapp.get("/do?op=set:a:1").headers["Set-Cookie"]
    assert cookie.startswith("sid=")
    for part in ("Path=/app", "Domain=example.com", "secure", "SameSite=Strict"):
        assert part in cookie
    assert "Max-Age=3600" in cookie and "HttpOnly" not in cookie


def test_samesite_can_be_left_out(app: App) -> None:
    cookie = app(cookie_samesite="").get("/do?op=set:a:1").headers["Set-Cookie"]
    assert "SameSite" not in cookie


def test_cookie_is_sent_once_without_max_age(app: App) -> None:
    testapp = app()
    assert "Set-Cookie" in testapp.get("/do?op=set:a:1").headers
    assert "Set-Cookie" not in testapp.get("/do?op=set:a:2").headers
    assert "Set-Cookie" not in testapp.get("/do?op=get:a").headers


def test_cookie_with_max_age_is_resent_on_every_use(app: App) -> None:
    testapp = app(cookie_max_age=600)
    first = testapp.get("/do?op=set:a:1").headers["Set-Cookie"]
    again = testapp.get("/do?op=get:a").headers["Set-Cookie"]
    assert "Max-Age=600" in again and again.split(";")[0] == first.split(";")[0]
    assert "Set-Cookie" not in testapp.get("/untouched").headers


def test_session_expires_with_its_key(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app(timeout=7)
    testapp.get("/do?op=set:a:1")
    assert ttl(server, prefix) == 7
    (key,) = server.client().keys(prefix + "*")
    server.client().delete(key)  # what Redis does when the 7 s are up
    assert results(testapp.get("/do?op=get:a&op=new")) == [None, True]


@pytest.mark.parametrize("timeout", [0, None, "none", ""])
def test_timeout_none_means_no_expiry(
    app: App, server: BaseServer, prefix: str, timeout: Any
) -> None:
    testapp = app(timeout=timeout)
    testapp.get("/do?op=set:a:1")
    assert ttl(server, prefix) == -1
    assert results(testapp.get("/do?op=get:a&op=timeout")) == ["1", None]
    assert ttl(server, prefix) == -1


def test_adjust_timeout_for_session(app: App, server: BaseServer, prefix: str) -> None:
    testapp = app()
    testapp.get("/do?op=set:a:1&op=adjust:90")
    assert 80 < ttl(server, prefix) <= 90
    testapp.get("/do?op=set:a:2")
    assert 80 < ttl(server, prefix) <= 90


def test_adjust_timeout_rejects_nonsense(session: RedisSession) -> None:
    with pytest.raises(ValueError, match="timeout_seconds"):
        session.adjust_timeout_for_session(-1)
    with pytest.raises(ValueError, match="timeout_seconds"):
        session.adjust_timeout_for_session(10**10 + 1)  # the load script's bound
    session.adjust_timeout_for_session(0)
    assert session.timeout is None


def test_absolute_timeout_caps_the_ttl_of_an_active_session(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app(absolute_timeout=100)
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    assert 95 < ttl(server, prefix) <= 100
    backdate(server, prefix, session_id, 60)
    assert results(testapp.get("/do?op=get:a")) == ["1"]
    assert 35 < ttl(server, prefix) <= 40  # never beyond the deadline
    testapp.get("/do?op=set:a:2")
    assert 35 < ttl(server, prefix) <= 40


def test_absolute_timeout_deadline_reached_while_key_lives(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app(absolute_timeout=1000)
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    backdate(server, prefix, session_id, 2000)
    res = testapp.get("/do?op=get:a&op=new")
    assert results(res) == [None, True]
    assert "Max-Age=0" in res.headers["Set-Cookie"]
    assert server.client().keys(prefix + "*") == []


def test_invalidated_session_is_empty_and_new(app: App) -> None:
    testapp = app()
    testapp.get("/do?op=set:a:1")
    res = testapp.get("/do?op=invalidate&op=new&op=items")
    assert results(res) == [None, True, []]
    assert "Max-Age=0" in res.headers["Set-Cookie"]
    assert results(testapp.get("/do?op=get:a")) == [None]


def test_detect_changes_off_needs_changed(app: App) -> None:
    testapp = app(detect_changes=False)
    testapp.get("/do?op=list:cart&op=append:cart:one")
    testapp.get("/do?op=append:cart:lost")
    assert results(testapp.get("/do?op=get:cart")) == [["one"]]
    testapp.get("/do?op=append:cart:kept&op=changed")
    assert results(testapp.get("/do?op=get:cart")) == [["one", "kept"]]


def test_detect_changes_saves_nested_changes(app: App) -> None:
    testapp = app()
    testapp.get("/do?op=list:cart&op=append:cart:one")
    testapp.get("/do?op=append:cart:two")
    assert results(testapp.get("/do?op=get:cart")) == [["one", "two"]]


def test_cookie_on_exception_true_saves_view_and_exception_view_changes(
    app: App,
) -> None:
    testapp = app()
    res = testapp.get("/boom?op=set:a:1&after=set:b:2", status=500)
    assert res.text == "handled" and "Set-Cookie" in res.headers
    assert results(testapp.get("/do?op=items")) == [[["a", "1"], ["b", "2"]]]


def test_cookie_on_exception_false_applies_nothing(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app(cookie_on_exception=False)
    testapp.get("/do?op=set:a:1")
    res = testapp.get("/boom?op=set:a:2&op=regenerate&after=set:b:2", status=500)
    assert "Set-Cookie" not in res.headers
    res = testapp.get("/boom?op=invalidate", status=500)
    assert "Set-Cookie" not in res.headers
    assert results(testapp.get("/do?op=items")) == [[["a", "1"]]]
    assert len(server.client().keys(prefix + "*")) == 1


def test_secret_rotation_keeps_sessions(server: BaseServer, prefix: str) -> None:
    old = make_app(RedisSessionFactory("old-secret", url=server.url, prefix=prefix))
    old.get("/do?op=set:a:1")
    new = make_app(
        RedisSessionFactory(
            "new-secret",
            secret_fallbacks=["old-secret"],
            url=server.url,
            prefix=prefix,
        )
    )
    new.cookiejar = old.cookiejar
    assert results(new.get("/do?op=get:a")) == ["1"]
    # That read resealed the value and re-signed the cookie with the new
    # secret, so the old one can now be dropped.
    newest = make_app(RedisSessionFactory("new-secret", url=server.url, prefix=prefix))
    newest.cookiejar = new.cookiejar
    assert results(newest.get("/do?op=get:a")) == ["1"]
    assert "Set-Cookie" not in newest.get("/do?op=get:a").headers


def test_json_serializer(app: App, server: BaseServer, prefix: str) -> None:
    testapp = app(serializer="json")
    session_id = results(testapp.get("/do?op=set:a:1&op=setint:n:2&op=id"))[2]
    stored = fields(server, prefix + session_id)
    assert open_field(session_id, b"a", stored[b"a"]) == b'"1"'
    assert open_field(session_id, b"n", stored[b"n"]) == b"2"
    assert results(testapp.get("/do?op=get:a&op=get:n")) == ["1", 2]


def test_one_x_serialize_and_deserialize_functions(app: App) -> None:
    import pickle

    calls: list[str] = []

    def dumps(obj: Any) -> bytes:
        calls.append("dumps")
        return pickle.dumps(obj)

    def loads(data: bytes) -> Any:
        calls.append("loads")
        return pickle.loads(data)

    testapp = app(serialize=dumps, deserialize=loads)
    testapp.get("/do?op=set:a:1")
    assert results(testapp.get("/do?op=get:a")) == ["1"]
    assert "dumps" in calls and "loads" in calls


def test_custom_id_generator_and_collision_retry(
    server: BaseServer, prefix: str
) -> None:
    ids = iter(["taken", "taken", "free"])
    server.client().set(prefix + "taken", b"someone else's")
    testapp = make_app(factory(server.url, prefix, id_generator=lambda: next(ids)))
    assert results(testapp.get("/do?op=set:a:1&op=id")) == [None, "taken"]
    assert server.client().get(prefix + "taken") == b"someone else's"
    assert server.client().exists(prefix + "free")
    assert results(testapp.get("/do?op=get:a&op=id")) == ["1", "free"]


def test_id_generator_that_always_collides_is_an_error(
    server: BaseServer, prefix: str
) -> None:
    from pyramid_redis_sessions.exceptions import SessionStoreError

    server.client().set(prefix + "same", b"x")
    testapp = make_app(factory(server.url, prefix, id_generator=lambda: "same"))
    with pytest.raises(SessionStoreError, match="id_generator"):
        testapp.get("/do?op=set:a:1")


def test_client_callable_is_called_once_when_needed(
    server: BaseServer, prefix: str
) -> None:
    client = server.client()
    seen: list[dict[str, Any]] = []

    def client_callable(request: Any, **options: Any) -> redis.Redis:
        seen.append(options)
        return client

    testapp = make_app(
        RedisSessionFactory(
            SECRET, url=server.url, prefix=prefix, client_callable=client_callable
        )
    )
    testapp.get("/untouched")
    assert seen == []
    testapp.get("/do?op=set:a:1&op=get:a")
    assert len(seen) == 1 and seen[0]["url"] == server.url
    assert results(testapp.get("/do?op=get:a")) == ["1"]


def test_session_works_with_pyramids_dummy_request(
    server: BaseServer, prefix: str
) -> None:
    """Applications' unit tests use ``pyramid.testing.DummyRequest``."""
    request = DummyRequest()
    session = factory(server.url, prefix)(request)
    session["a"] = 1
    response = Response()
    for callback in request.response_callbacks:
        callback(request, response)
    assert server.client().exists(prefix + session.session_id)
    assert "session=" in response.headers["Set-Cookie"]


def test_keys_must_be_strings(session: RedisSession) -> None:
    for key in (1, b"a", ("t",), None):
        with pytest.raises(TypeError, match="session keys must be str, not"):
            session[key] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        session.update({2: "x"})
    session["\udcff odd but str"] = 1
    assert "\udcff odd but str" in session


def test_unusual_string_keys_round_trip(app: App) -> None:
    testapp = app()
    testapp.get("/do?op=set:%00created:1&op=set:%C3%A9t%C3%A9:2")
    assert results(testapp.get("/do?op=keys")) == [["\x00created", "été"]]


def test_session_with_its_own_no_expiry_is_persisted_on_read(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app(slide_interval=0)  # every read slides: the load script
    session_id = results(testapp.get("/do?op=set:a:1&op=adjust:0&op=id"))[2]
    assert ttl(server, prefix) == -1
    stored = fields(server, prefix + session_id)
    assert open_field(session_id, TIMEOUT, stored[TIMEOUT]) == b"0"
    server.client().expire(prefix + session_id, 50)
    assert results(testapp.get("/do?op=timeout")) == [None]
    assert ttl(server, prefix) == -1  # the load script PERSISTed it


def test_clear_and_popitem_delete_the_fields_this_request_saw(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app()
    session_id = results(testapp.get("/do?op=set:a:1&op=set:b:2&op=id"))[2]
    testapp.get("/do?op=popitem")
    # A save sets the expiry, and so writes when it did (SLID).
    assert sorted(fields(server, prefix + session_id)) == [b"a", CREATED, SLID]
    testapp.get("/do?op=clear")
    assert sorted(fields(server, prefix + session_id)) == [CREATED, SLID]
    assert results(testapp.get("/do?op=keys&op=new")) == [[], False]


def test_reading_one_key_deserializes_only_that_key(
    app: App, server: BaseServer, prefix: str
) -> None:
    """A field is deserialized when first read: a value that would not load
    costs nothing until a request reads it."""
    testapp = app(serializer="json")
    session_id = results(testapp.get("/do?op=set:a:1&op=set:b:2&op=id"))[2]
    from tests.stored import seal

    server.client().hset(prefix + session_id, b"b", seal(session_id, b"b", b"{"))
    assert results(testapp.get("/do?op=get:a&op=keys")) == ["1", ["a", "b"]]
    assert results(testapp.get("/do?op=get:b&op=new")) == [None, True]
    assert not server.client().exists(prefix + session_id)


def test_values_sealed_with_a_fallback_secret_are_resealed(
    server: BaseServer, prefix: str
) -> None:
    old = make_app(RedisSessionFactory("old-secret", url=server.url, prefix=prefix))
    session_id = results(old.get("/do?op=set:a:1&op=flash:hi&op=id"))[2]
    rotated = make_app(
        RedisSessionFactory(
            "new", secret_fallbacks=["old-secret"], url=server.url, prefix=prefix
        )
    )
    rotated.cookiejar = old.cookiejar
    assert results(rotated.get("/do?op=keys")) == [["a"]]
    from pyramid_redis_sessions.values import FieldCodec

    new_only = FieldCodec("new").for_session(session_id)
    stored = fields(server, prefix + session_id)
    assert {CREATED, b"a"} <= set(stored)
    assert any(field.startswith(FLASH) for field in stored)
    for field, value in stored.items():
        new_only.open(field, value)  # raises if any field kept the old MAC


def test_resealing_writes_the_bytes_loaded_not_a_change_in_place(
    server: BaseServer, prefix: str
) -> None:
    # detect_changes off: a list appended to without changed() is not saved,
    # even when its field is written again under the new secret.
    old = make_app(RedisSessionFactory("old-secret", url=server.url, prefix=prefix))
    old.get("/do?op=list:l&op=append:l:x")
    rotated = make_app(
        RedisSessionFactory(
            "new",
            secret_fallbacks=["old-secret"],
            detect_changes=False,
            url=server.url,
            prefix=prefix,
        )
    )
    rotated.cookiejar = old.cookiejar
    assert results(rotated.get("/do?op=append:l:y&op=len:l")) == [None, 2]
    assert results(rotated.get("/do?op=len:l")) == [1]


def test_regenerate_id_keeps_flash_timeout_and_csrf(
    app: App, server: BaseServer, prefix: str
) -> None:
    testapp = app()
    first = results(testapp.get("/do?op=flash:hi&op=adjust:90&op=csrf&op=id"))
    token, old_id = first[2], first[3]
    new_id = results(testapp.get("/do?op=regenerate&op=id"))[1]
    assert new_id != old_id
    assert server.client().keys(prefix + "*") == [(prefix + new_id).encode()]
    assert 80 < ttl(server, prefix) <= 90
    assert results(testapp.get("/do?op=csrf&op=timeout&op=pop_flash")) == [
        token,
        90,
        ["hi"],
    ]


def test_popped_flash_is_not_carried_to_a_new_id(app: App) -> None:
    testapp = app()
    testapp.get("/do?op=flash:one&op=flash:two")
    assert results(testapp.get("/do?op=pop_flash&op=regenerate")) == [
        ["one", "two"],
        None,
    ]
    assert results(testapp.get("/do?op=pop_flash")) == [[]]


def test_reserved_fields_of_a_later_format_are_kept_and_resealed(
    server: BaseServer, prefix: str
) -> None:
    from tests.stored import seal

    old = make_app(RedisSessionFactory("old-secret", url=server.url, prefix=prefix))
    session_id = results(old.get("/do?op=set:a:1&op=id"))[1]
    later = b"\xffa-later-format"
    value = seal(session_id, later, b"kept", secret="old-secret")
    server.client().hset(prefix + session_id, later, value)
    rotated = make_app(
        RedisSessionFactory(
            "new", secret_fallbacks=["old-secret"], url=server.url, prefix=prefix
        )
    )
    rotated.cookiejar = old.cookiejar
    assert results(rotated.get("/do?op=get:a")) == ["1"]  # resealed: a write
    new_id = results(rotated.get("/do?op=regenerate&op=id"))[1]
    stored = fields(server, prefix + new_id)
    from pyramid_redis_sessions.values import FieldCodec

    assert FieldCodec("new").for_session(new_id).open(later, stored[later]) == (
        b"kept",
        True,
    )


def test_loaded_and_decoded_keys_say_what_the_load_found_and_what_was_read(
    server: BaseServer, prefix: str
) -> None:
    make = factory(server.url, prefix)
    first = make(Request.blank("/"))
    first.update(a=1, b=[2])
    response = finish(first)
    request = Request.blank(
        "/",
        cookies={
            "session": response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        },
    )
    session = make(request)
    assert session.loaded_keys == [] and session.decoded_keys == []  # not loaded
    assert session["b"] == [2]
    assert sorted(session.loaded_keys) == ["a", "b"]
    assert session.decoded_keys == ["b"]
    session.invalidate()
    assert session.loaded_keys == [] and session.decoded_keys == []
