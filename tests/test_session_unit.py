"""The session's own logic without a server: its dict, flash queues and
change detection, on the in-memory store (``tests/memory_store.py``, held
to a real server by ``tests/test_memory_store.py``). The same behaviours
are tested against real servers in ``test_session.py``, ``test_views.py``
and ``test_round_trips.py``; these run in milliseconds and count the
store's calls, each a round trip of the real store."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pyramid.interfaces import ISession
from pyramid.request import Request
from zope.interface.verify import verifyObject

from pyramid_redis_sessions import RedisSession, RedisSessionFactory
from pyramid_redis_sessions.contents import NO_KEYS
from pyramid_redis_sessions.values import CREATED, FLASH
from tests.app import SECRET, finish
from tests.memory_store import MemoryStore

# Nothing listens there: a test that reached Redis would fail at once.
NOWHERE = "redis://127.0.0.1:9/0?socket_connect_timeout=0.1"


class Browser:
    """Requests of one visitor: the cookie kept between them."""

    def __init__(self, **options: Any) -> None:
        self.store = MemoryStore()
        self.factory = dataclasses.replace(
            RedisSessionFactory(
                SECRET, url=NOWHERE, prefix=self.store.prefix, **options
            ),
            store=self.store,
        )
        self.cookie: str | None = None

    def session(self) -> RedisSession:
        request = Request.blank("/")
        if self.cookie is not None:
            request.cookies["session"] = self.cookie
        session = self.factory(request)
        request.session = session
        return session

    def finish(self, session: RedisSession) -> None:
        response = finish(session)
        for header in response.headers.getall("Set-Cookie"):
            name, _, rest = header.partition("=")
            if name == "session":
                value = rest.split(";", 1)[0]
                self.cookie = value or None

    def request(self, work: Any) -> Any:
        session = self.session()
        result = work(session)
        self.finish(session)
        return result

    def stored(self) -> dict[bytes, bytes]:
        (session_id,) = [k[len(self.store.prefix) :] for k in self.store.hashes]
        return self.store.stored(session_id)


@pytest.fixture
def browser() -> Browser:
    return Browser()


def test_no_server_is_reached(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=1))
    assert browser.request(lambda s: s["a"]) == 1
    assert browser.store.calls == ["create", "read"]


def test_the_session_is_an_isession(browser: Browser) -> None:
    assert verifyObject(ISession, browser.session())


def test_dict_behaviour(browser: Browser) -> None:
    def work(s: RedisSession) -> None:
        assert not s and len(s) == 0
        s["a"] = 1
        s.update({"b": 2}, c=3)
        assert s.setdefault("d", 4) == 4 and s.setdefault("d", 5) == 4
        assert dict(s.items()) == {"a": 1, "b": 2, "c": 3, "d": 4}
        assert list(s) == list(s.keys()) == ["a", "b", "c", "d"]
        assert list(s.values()) == [1, 2, 3, 4]
        assert "a" in s and "z" not in s
        assert s == {"a": 1, "b": 2, "c": 3, "d": 4} and s.copy() == dict(s)
        assert s.pop("a") == 1 and s.pop("a", "gone") == "gone"
        with pytest.raises(KeyError):
            s.pop("a")
        with pytest.raises(KeyError):
            s["a"]
        del s["b"]
        assert s.get("b") is None and s.get("b", 0) == 0
        assert s.popitem() == ("d", 4)

    browser.request(work)
    assert browser.request(dict) == {"c": 3}


def test_clear_then_set_keeps_only_what_was_set(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=1, b=2))

    def work(s: RedisSession) -> None:
        s.clear()
        s["c"] = 3

    browser.request(work)
    assert browser.request(dict) == {"c": 3}
    assert not any(f in browser.stored() for f in (b"a", b"b"))


def test_a_read_only_request_writes_nothing(browser: Browser) -> None:
    browser.request(lambda s: s.update(a={"n": [1, 2]}))
    browser.store.calls.clear()
    assert browser.request(lambda s: s["a"]) == {"n": [1, 2]}
    assert browser.store.calls == ["read"]


def test_an_untouched_request_does_not_load(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=1))
    browser.store.calls.clear()
    browser.request(lambda s: None)
    assert browser.store.calls == []


def test_a_mutated_value_is_saved_without_changed(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=[]))
    browser.request(lambda s: s["a"].append(1))
    assert browser.request(lambda s: s["a"]) == [1]


def test_only_the_changed_field_is_written(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=[1], b=[2]))
    before = browser.stored()
    browser.request(lambda s: s["a"].append(3))
    after = browser.stored()
    assert after[b"b"] == before[b"b"] and after[CREATED] == before[CREATED]
    assert after[b"a"] != before[b"a"]


def test_without_change_detection_a_mutation_needs_changed() -> None:
    browser = Browser(detect_changes=False)
    browser.request(lambda s: s.update(a=[]))
    browser.request(lambda s: s["a"].append(1))
    assert browser.request(lambda s: s["a"]) == []

    def work(s: RedisSession) -> None:
        s["a"].append(2)
        s.changed()

    browser.request(work)
    assert browser.request(lambda s: s["a"]) == [2]


def test_an_unchanged_reassignment_writes_nothing(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=[1]))
    browser.store.calls.clear()
    browser.request(lambda s: s.update(a=[1]))
    assert browser.store.calls == ["read"]


def test_flash_queues(browser: Browser) -> None:
    def first(s: RedisSession) -> None:
        s.flash("one")
        s.flash("one", allow_duplicate=False)
        s.flash("two")
        s.flash("err", "errors")

    browser.request(first)
    assert sum(f.startswith(FLASH) for f in browser.stored()) == 3  # one field each
    assert browser.request(lambda s: s.peek_flash()) == ["one", "two"]
    assert browser.request(lambda s: s.pop_flash()) == ["one", "two"]
    assert browser.request(lambda s: s.pop_flash()) == []
    assert browser.request(lambda s: s.pop_flash("errors")) == ["err"]
    assert not any(f.startswith(FLASH) for f in browser.stored())


def test_flash_is_not_a_session_key(browser: Browser) -> None:
    browser.request(lambda s: s.flash("hello"))
    assert browser.request(dict) == {}


def test_invalidate_ends_the_session_and_starts_anew(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=1))
    old = browser.cookie

    def work(s: RedisSession) -> None:
        s.invalidate()
        s["b"] = 2

    browser.request(work)
    assert browser.cookie != old
    assert browser.request(dict) == {"b": 2}
    assert len(browser.store.hashes) == 1


def test_regenerate_id_keeps_the_contents(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=1))
    old = browser.request(lambda s: s.session_id)
    browser.request(lambda s: s.regenerate_id())
    assert browser.request(lambda s: s.session_id) != old
    assert browser.request(dict) == {"a": 1}
    assert "move" in browser.store.calls


def test_an_ended_session_is_not_written_again(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=1))
    session = browser.session()
    session["b"] = 2
    browser.store.hashes.clear()  # ended elsewhere meanwhile
    browser.finish(session)
    assert browser.store.hashes == {}


# -- a new session's parts, made when first used --------------------------------


def test_a_read_without_a_cookie_makes_none_of_the_sessions_parts(
    browser: Browser,
) -> None:
    # A bot's request: its session reads NO_KEYS, and its response
    # callback adds Vary, saves nothing and has no event to send
    # (white-box: the parts are instance attributes once made).
    session = browser.session()
    assert session.get("a") is None
    assert "a" not in session
    with pytest.raises(KeyError):
        session["a"]
    assert len(session) == 0
    response = finish(session)
    assert response.headers["Vary"] == "Cookie"
    assert "Set-Cookie" not in response.headers
    assert browser.store.calls == []
    assert {"_c", "_users", "_events"} & set(vars(session)) == set()
    assert NO_KEYS.data == {} and not NO_KEYS.touched


def test_a_request_with_no_event_to_send_makes_no_notifier(browser: Browser) -> None:
    browser.request(lambda s: s.update(a=1))
    session = browser.session()
    session["a"] = 2  # a read and a write of a stored session: no event
    browser.finish(session)
    assert "_events" not in vars(session)
    session = browser.session()
    session.invalidate()  # one: SessionInvalidated
    browser.finish(session)
    assert "_events" in vars(session)


WRITES = {
    "set": lambda s: s.__setitem__("x", 1),
    "update": lambda s: s.update(x=1),
    "setdefault": lambda s: s.setdefault("x", 1),
    "changed": lambda s: (s.changed(), s.__setitem__("x", 1)),
    "flash": lambda s: (s.flash("m"), s.__setitem__("x", 1)),
    "csrf": lambda s: (s.get_csrf_token(), s.__setitem__("x", 1)),
    "timeout": lambda s: (s.adjust_timeout_for_session(60), s.__setitem__("x", 1)),
    "bind_user": lambda s: (s.bind_user("u"), s.__setitem__("x", 1)),
    "clear_then_set": lambda s: (s.clear(), s.__setitem__("x", 1)),
    "invalidate_then_set": lambda s: (s.invalidate(), s.__setitem__("x", 1)),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_new_sessions_never_share_their_keys(write: str) -> None:
    # Every way to change a new session gives it keys of its own first:
    # another new session, read before and after, stays empty, and so does
    # the shared NO_KEYS.
    one, other = Browser(), Browser()
    first, second = one.session(), other.session()
    assert first.get("x") is None and second.get("x") is None
    WRITES[write](first)
    assert first["x"] == 1
    assert second.get("x") is None and dict(second) == {}
    assert NO_KEYS.data == {} and not NO_KEYS.touched and not NO_KEYS.changed_all
    one.finish(first)
    other.finish(second)
    assert other.store.hashes == {}
    assert one.request(lambda s: s["x"]) == 1


def test_no_keys_cannot_change() -> None:
    with pytest.raises(TypeError):
        NO_KEYS.data["x"] = 1
    with pytest.raises(AttributeError):
        NO_KEYS.touched.add("x")  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        NO_KEYS.changed_all = True
    with pytest.raises(TypeError):
        NO_KEYS.adopt({"x": b"1"})
    assert NO_KEYS.data == {}


def test_a_view_taken_before_the_first_write_sees_it(browser: Browser) -> None:
    session = browser.session()
    keys, values, items = session.keys(), session.values(), session.items()
    session["a"] = 1
    assert (list(keys), list(values), list(items)) == (["a"], [1], [("a", 1)])


def test_a_new_sessions_creation_time_is_the_one_stored(browser: Browser) -> None:
    session = browser.session()
    created = session.created
    session["a"] = 1
    browser.finish(session)
    assert browser.request(lambda s: s.created) == created


class _Picky:
    """JSON that will not load what it wrote for the value ``"bad"``."""

    def dumps(self, appstruct: Any) -> bytes:
        return b"bad" if appstruct == "bad" else json.dumps(appstruct).encode()

    def loads(self, bstruct: bytes) -> Any:
        if bstruct == b"bad":
            raise ValueError("will not load")
        return json.loads(bstruct)


@pytest.mark.parametrize("view", ["values", "items"])
def test_a_view_of_a_session_that_starts_anew_on_a_bad_value_stays_live(
    view: str,
) -> None:
    # Reading every value finds one that will not deserialize: the session
    # starts anew, and the view handed out is of its new keys.
    browser = Browser(serializer=_Picky())
    browser.request(lambda s: s.update(a="bad"))
    session = browser.session()
    seen = getattr(session, view)()
    assert list(seen) == []
    session["b"] = 1
    assert list(seen) == ([1] if view == "values" else [("b", 1)])
