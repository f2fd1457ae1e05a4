"""Sessions of 1.0.1 and pyramid_session_redis 1.8.1 carried over: what the
real packages wrote (``tests/fixtures``), served by an app built from the
recorded settings, then moved to the new format on that response.

Runs on every backend (``server``), through WebTest, counting round trips.
"""

from __future__ import annotations

import logging
import pickle
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import webtest
from pyramid.config import Configurator
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request
from pyramid.response import Response

import pyramid_redis_sessions.factory
from pyramid_redis_sessions import SessionFactory
from pyramid_redis_sessions.exceptions import ConfigurationError
from pyramid_redis_sessions.store import SCRIPTS, RedisStore
from tests.app import SECRET, do_view, results
from tests.servers import BaseServer, RoundTripCounter
from tests.stored import evil_pickle
from tests.test_legacy import (
    CASES,
    FORK,
    IDS,
    expected_data,
    fork_cookie,
    one_x_cookie,
    raw_value,
)

COOKIE = "session"
LEGACY_KEY = "7f0e0fd1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d"
#: 1.0.1's signed cookie naming ``LEGACY_KEY``.
LEGACY_COOKIE = one_x_cookie(pickle.dumps(LEGACY_KEY), SECRET)
#: The url setting under our name and under pyramid_session_redis's.
URLS = ("redis.sessions.url", "redis.sessions.redis_url")


def show_view(request: Request) -> Response:
    """Everything the session holds, kept on the registry for the test (the
    values are not JSON: sets, datetimes)."""
    session = request.session
    queues = request.GET.getall("queue")
    request.registry.seen.append(
        {
            "data": {k: v for k, v in session.items() if k != "_csrft_"},
            "flash": {q: session.peek_flash(q) for q in queues},
            "csrf": session.get_csrf_token(),
            "new": session.new,
            "created": session.created,
            "timeout": session.timeout,
        }
    )
    return Response("shown")


class App:
    """An app built from ``redis.sessions.*`` settings through ``includeme``,
    on the test's server, with its round trips counted."""

    def __init__(
        self,
        server: BaseServer,
        round_trips: RoundTripCounter,
        monkeypatch: pytest.MonkeyPatch,
        settings: dict[str, Any],
    ) -> None:
        settings = dict(settings)
        for name in URLS:
            if name in settings:
                settings[name] = server.url

        def counting_client(**options: Any) -> Any:
            # The client the settings would give, on a counted pool: the url
            # must have reached our option, whatever the setting's name.
            assert options["url"] == server.url
            return redis.Redis(connection_pool=round_trips.pool(options["url"]))

        monkeypatch.setattr(
            pyramid_redis_sessions.factory, "make_client", counting_client
        )
        for script in SCRIPTS:
            server.admin().script_load(script.script)
        with Configurator(settings=settings) as config:
            config.include("pyramid_redis_sessions")
            config.add_route("show", "/show")
            config.add_view(show_view, route_name="show")
            config.add_route("do", "/do")
            config.add_view(do_view, route_name="do")
        config.registry.seen = []
        self.registry = config.registry
        self.factory: SessionFactory = config.registry.queryUtility(ISessionFactory)
        self.testapp = webtest.TestApp(config.make_wsgi_app())
        self.round_trips = round_trips

    def show(self, *queues: str, **kwargs: Any) -> dict[str, Any]:
        self.round_trips.reset()
        self.last = self.testapp.get("/show", {"queue": list(queues)}, **kwargs)
        seen: dict[str, Any] = self.registry.seen.pop()
        return seen

    def do(self, *ops: str, **kwargs: Any) -> list[Any]:
        self.round_trips.reset()
        self.last = self.testapp.get("/do", {"op": list(ops)}, **kwargs)
        return results(self.last)

    def set_cookie_value(self) -> str | None:
        """The value of the session cookie the last response set, or None."""
        for header in self.last.headers.getall("Set-Cookie"):
            name, _, rest = header.partition("=")
            if name == COOKIE:
                return rest.split(";", 1)[0]
        return None

    def cleared_cookie(self) -> bool:
        headers = self.last.headers.getall("Set-Cookie")
        return any(h.startswith(f"{COOKIE}=;") and "Max-Age=0" in h for h in headers)


@pytest.fixture
def make(
    server: BaseServer, round_trips: RoundTripCounter, monkeypatch: pytest.MonkeyPatch
) -> Callable[[dict[str, Any]], App]:
    return lambda settings: App(server, round_trips, monkeypatch, settings)


def legacy_header(value: str) -> dict[str, str]:
    """A request's Cookie header carrying a legacy cookie as the browser
    would send it back (1.0.1's values hold ``=``, ``+`` and ``/``)."""
    return {"Cookie": f"{COOKIE}={value}"}


def store_legacy(server: BaseServer, key: str, raw: bytes, ttl: int | None) -> None:
    client = server.client()
    client.set(key, raw)
    if ttl is not None:
        client.expire(key, ttl)


def keys(server: BaseServer) -> list[str]:
    return sorted(k.decode() for k in server.client().keys("*"))


# -- every recorded case -------------------------------------------------------


@pytest.mark.parametrize(("name", "case"), CASES, ids=IDS)
def test_recorded_session_is_served_then_moved_to_the_new_format(
    make: Callable[[dict[str, Any]], App],
    server: BaseServer,
    name: str,
    case: dict[str, Any],
) -> None:
    old_key, old_ttl = case["redis_key"], case["redis_ttl"]
    store_legacy(server, old_key, raw_value(case), old_ttl)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = make(case["settings"])
    # The fork's setting names are deprecated aliases; 1.0.1's are ours.
    deprecated = [w for w in caught if w.category is DeprecationWarning]
    assert len(deprecated) == (1 if name == FORK else 0)
    queues = sorted(case["flash"])

    seen = app.show(*queues, headers=legacy_header(case["cookie_value"]))

    assert seen["data"] == expected_data(case)
    assert seen["flash"] == case["flash"]
    assert seen["csrf"] == case["csrf_token"]
    assert seen["new"] is False
    assert seen["timeout"] == app.factory.timeout == old_ttl
    assert 1.7e9 < seen["created"] < time.time()
    # Moved on this response: GET+PTTL, then the move script (the new
    # session created, then the old key deleted).
    assert app.round_trips.commands == [["GET", "PTTL"], ["EVALSHA"]]
    value = app.set_cookie_value()
    assert value is not None
    new_id, current = app.factory.cookie.unsign(value)
    assert new_id is not None and current
    prefix = app.factory.prefix
    assert keys(server) == [prefix + new_id]
    assert old_key not in keys(server)
    assert 0 < server.client().ttl(prefix + new_id) <= old_ttl

    # The next request is an ordinary one, with the same session.
    again = app.show(*queues)
    assert app.round_trips.count == 1
    assert app.set_cookie_value() is None
    assert again == seen


# -- a signed 1.x cookie whose pickle names a global ------------------------------


def test_signed_one_x_cookie_naming_a_global_runs_nothing(
    app: Callable[..., webtest.TestApp],
    round_trips: RoundTripCounter,
    server: BaseServer,
    tmp_path: Path,
) -> None:
    target = tmp_path / "pwned"
    testapp = app()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        payload = evil_pickle(target, protocol)
        value = one_x_cookie(payload, SECRET)
        round_trips.reset()
        res = testapp.get(
            "/do?op=keys&op=new", headers=legacy_header(value), status=200
        )
        assert results(res) == [[], True]
        assert not target.exists()
        assert round_trips.count == 0
        assert "Set-Cookie" not in res.headers  # a refused cookie is not ours
    assert keys(server) == []


# -- legacy_cookies = false ------------------------------------------------------


@pytest.mark.parametrize(("name", "case"), CASES[::3], ids=IDS[::3])
def test_legacy_cookies_off_treats_them_as_invalid_cookies(
    make: Callable[[dict[str, Any]], App],
    server: BaseServer,
    name: str,
    case: dict[str, Any],
) -> None:
    store_legacy(server, case["redis_key"], raw_value(case), case["redis_ttl"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app = make({**case["settings"], "redis.sessions.legacy_cookies": "false"})
    assert app.do("keys", "new", headers=legacy_header(case["cookie_value"])) == [
        [],
        True,
    ]
    assert app.round_trips.count == 0
    assert not app.cleared_cookie()  # not ours any more: left alone
    assert keys(server) == [case["redis_key"]]


# -- what can go wrong -----------------------------------------------------------


def one_x_envelope(data: dict[Any, Any], timeout: int | None = 1200) -> bytes:
    return pickle.dumps(
        {"managed_dict": data, "created": time.time() - 60, "timeout": timeout}
    )


def test_legacy_key_gone_gives_a_fresh_session_and_clears_the_cookie(
    app: Callable[..., webtest.TestApp], round_trips: RoundTripCounter
) -> None:
    testapp = app()
    cookie = LEGACY_COOKIE
    res = testapp.get("/do?op=keys&op=new", headers=legacy_header(cookie))
    assert results(res) == [[], True]
    assert round_trips.count == 1
    assert any("Max-Age=0" in h for h in res.headers.getall("Set-Cookie"))


@pytest.mark.parametrize(
    "raw",
    [b"garbage", pickle.dumps(["not", "an", "envelope"]), one_x_envelope({})[:-3]],
    ids=["garbage", "not-an-envelope", "truncated"],
)
def test_corrupt_legacy_value_gives_a_fresh_session_and_is_deleted(
    app: Callable[..., webtest.TestApp],
    round_trips: RoundTripCounter,
    server: BaseServer,
    caplog: pytest.LogCaptureFixture,
    raw: bytes,
) -> None:
    store_legacy(server, LEGACY_KEY, raw, 600)
    testapp = app()
    cookie = LEGACY_COOKIE
    with caplog.at_level(logging.WARNING, "pyramid_redis_sessions"):
        res = testapp.get(
            "/do?op=keys&op=new", headers=legacy_header(cookie), status=200
        )
    assert results(res) == [[], True]
    assert keys(server) == []
    assert round_trips.commands == [["GET", "PTTL"], ["DEL"]]
    assert any("Max-Age=0" in h for h in res.headers.getall("Set-Cookie"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "legacy key <sha256:" in message
    assert LEGACY_KEY not in message and LEGACY_KEY[:12] not in message


def test_legacy_key_of_another_redis_type_is_a_bad_value(
    app: Callable[..., webtest.TestApp],
    server: BaseServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.client().hset(LEGACY_KEY, "a", "b")
    cookie = fork_cookie(LEGACY_KEY, SECRET)
    with caplog.at_level(logging.WARNING, "pyramid_redis_sessions"):
        res = app().get("/do?op=set:a:1", headers=legacy_header(cookie))
    assert results(res) == [None]
    assert "another Redis type" in caplog.text
    (key,) = keys(server)
    assert key != LEGACY_KEY


def test_dropped_keys_are_listed_in_a_warning_without_their_values(
    app: Callable[..., webtest.TestApp],
    server: BaseServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = {"ok": "kept", 7: "secret-seven", b"raw": "secret-raw"}
    store_legacy(server, LEGACY_KEY, one_x_envelope(data), 600)
    cookie = LEGACY_COOKIE
    with caplog.at_level(logging.WARNING, "pyramid_redis_sessions"):
        res = app().get("/do?op=keys&op=get:ok", headers=legacy_header(cookie))
    assert results(res) == [["ok"], "kept"]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "7, b'raw'" in record.getMessage()
    assert "secret" not in record.getMessage()


def test_a_legacy_timeout_of_its_own_is_kept_and_the_old_ttl_bounds_the_new(
    app: Callable[..., webtest.TestApp],
    server: BaseServer,
    prefix: str,
    round_trips: RoundTripCounter,
) -> None:
    raw = pickle.dumps({"m": {"k": "v"}, "c": int(time.time()), "v": 1, "t": 300})
    store_legacy(server, LEGACY_KEY, raw, 250)
    testapp = app(slide_interval=0)  # every read slides (the load script)
    res = testapp.get(
        "/do?op=timeout&op=id", headers=legacy_header(fork_cookie(LEGACY_KEY, SECRET))
    )
    timeout, new_id = results(res)
    assert timeout == 300
    assert 0 < server.client().ttl(prefix + new_id) <= 250
    # From now on an ordinary session with its own timeout: reads slide to it.
    round_trips.reset()
    assert results(testapp.get("/do?op=timeout&op=get:k")) == [300, "v"]
    assert round_trips.count == 1
    assert 250 < server.client().ttl(prefix + new_id) <= 300


def test_legacy_session_without_ttl_is_moved_with_the_factorys_timeout(
    app: Callable[..., webtest.TestApp], server: BaseServer, prefix: str
) -> None:
    store_legacy(server, LEGACY_KEY, one_x_envelope({"k": "v"}, timeout=0), None)
    res = app().get(
        "/do?op=timeout&op=id",
        headers=legacy_header(LEGACY_COOKIE),
    )
    timeout, new_id = results(res)
    assert timeout is None
    assert keys(server) == [prefix + new_id]
    assert server.client().ttl(prefix + new_id) == -1


def test_a_write_on_the_first_request_is_moved_with_the_rest(
    app: Callable[..., webtest.TestApp],
    server: BaseServer,
    round_trips: RoundTripCounter,
) -> None:
    store_legacy(server, LEGACY_KEY, one_x_envelope({"a": "1", "b": "2"}), 600)
    testapp = app()
    cookie = LEGACY_COOKIE
    res = testapp.get(
        "/do?op=set:a:changed&op=del:b&op=flash:hi&op=pop_flash",
        headers=legacy_header(cookie),
    )
    assert round_trips.count == 2
    assert results(res) == [None, None, None, ["hi"]]
    round_trips.reset()
    assert results(testapp.get("/do?op=items&op=pop_flash")) == [
        [["a", "changed"]],
        [],
    ]
    assert round_trips.count == 1


def test_legacy_flash_messages_are_popped_like_any_others(
    app: Callable[..., webtest.TestApp], server: BaseServer
) -> None:
    data = {"_f_": ["one", "two"], "k": "v"}
    store_legacy(server, LEGACY_KEY, one_x_envelope(data), 600)
    testapp = app()
    cookie = LEGACY_COOKIE
    res = testapp.get("/do?op=pop_flash&op=keys", headers=legacy_header(cookie))
    assert results(res) == [["one", "two"], ["k"]]
    assert results(testapp.get("/do?op=pop_flash")) == [[]]


@pytest.mark.parametrize(
    ("ops", "commands"),
    [
        ("op=invalidate", [["DEL"]]),
        ("op=get:user&op=invalidate", [["GET", "PTTL"], ["DEL"]]),
    ],
    ids=["unread", "read"],
)
def test_invalidating_a_legacy_session_deletes_the_old_key(
    app: Callable[..., webtest.TestApp],
    server: BaseServer,
    round_trips: RoundTripCounter,
    ops: str,
    commands: list[list[str]],
) -> None:
    store_legacy(server, LEGACY_KEY, one_x_envelope({"user": "ann"}), 600)
    cookie = LEGACY_COOKIE
    res = app().get(f"/do?{ops}", headers=legacy_header(cookie))
    assert keys(server) == []
    assert round_trips.commands == commands
    assert any("Max-Age=0" in h for h in res.headers.getall("Set-Cookie"))


def test_legacy_session_past_the_absolute_timeout_is_gone(
    app: Callable[..., webtest.TestApp], server: BaseServer
) -> None:
    store_legacy(server, LEGACY_KEY, one_x_envelope({"user": "ann"}), 600)
    cookie = LEGACY_COOKIE
    res = app(absolute_timeout=30).get(
        "/do?op=keys&op=new", headers=legacy_header(cookie)
    )
    assert results(res) == [[], True]
    assert keys(server) == []


def test_a_failed_request_without_cookie_on_exception_keeps_the_old_key(
    app: Callable[..., webtest.TestApp], server: BaseServer
) -> None:
    store_legacy(server, LEGACY_KEY, one_x_envelope({"user": "ann"}), 600)
    cookie = LEGACY_COOKIE
    testapp = app(cookie_on_exception=False)
    res = testapp.get("/boom?op=get:user", headers=legacy_header(cookie), status=500)
    assert "Set-Cookie" not in res.headers
    assert keys(server) == [LEGACY_KEY]
    res = testapp.get("/do?op=get:user", headers=legacy_header(cookie))
    assert results(res) == ["ann"]
    assert len(keys(server)) == 1 and LEGACY_KEY not in keys(server)


def test_legacy_values_are_read_with_the_deserialize_setting(
    app: Callable[..., webtest.TestApp], server: BaseServer
) -> None:
    raw = b"LEGACY" + one_x_envelope({"k": "v"})
    store_legacy(server, LEGACY_KEY, raw, 600)
    cookie = LEGACY_COOKIE
    testapp = app(serialize=prefixed_dumps, deserialize=prefixed_loads)
    res = testapp.get("/do?op=get:k", headers=legacy_header(cookie))
    assert results(res) == ["v"]


def prefixed_dumps(value: Any) -> bytes:
    return b"LEGACY" + pickle.dumps(value)


def prefixed_loads(raw: bytes) -> Any:
    if not raw.startswith(b"LEGACY"):
        raise ValueError("not ours")
    return pickle.loads(raw[len(b"LEGACY") :])


def test_a_value_the_serializer_cannot_store_is_a_bad_value_not_a_500(
    app: Callable[..., webtest.TestApp],
    server: BaseServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store_legacy(server, LEGACY_KEY, one_x_envelope({"s": {1, 2}}), 600)
    cookie = LEGACY_COOKIE
    with caplog.at_level(logging.WARNING, "pyramid_redis_sessions"):
        res = app(serializer="json").get(
            "/do?op=keys", headers=legacy_header(cookie), status=200
        )
    assert results(res) == [[]]
    assert "TypeError while serializing" in caplog.text
    assert keys(server) == []


# -- the store ---------------------------------------------------------------------


@pytest.fixture
def store(server: BaseServer, prefix: str) -> Iterator[RedisStore]:
    client = server.client()
    yield RedisStore(client, prefix)
    client.close()


def test_load_legacy_returns_the_bytes_and_the_whole_seconds_left(
    store: RedisStore, server: BaseServer
) -> None:
    store_legacy(server, LEGACY_KEY, b"raw", None)
    server.client().pexpire(LEGACY_KEY, 99_900)
    raw, ttl = store.load_legacy(LEGACY_KEY)
    assert raw == b"raw" and ttl is not None and 90 <= ttl <= 99  # rounded down
    server.client().persist(LEGACY_KEY)
    assert store.load_legacy(LEGACY_KEY) == (b"raw", None)
    assert store.load_legacy("no-such-key") == (None, None)


def test_a_key_about_to_expire_keeps_at_least_a_second(
    store: RedisStore, server: BaseServer
) -> None:
    server.client().set(LEGACY_KEY, b"raw", px=990)
    assert store.load_legacy(LEGACY_KEY) == (b"raw", 1)


# -- legacy values are unpickled restricted ---------------------------------------


class Cart:
    """An application's own class, as 1.x sessions held them."""

    def __init__(self, items: list[str]) -> None:
        self.items = items


@pytest.mark.parametrize("kind", ["1.0.1", "fork"])
def test_legacy_value_whose_pickle_runs_code_runs_nothing(
    app: Callable[..., webtest.TestApp],
    round_trips: RoundTripCounter,
    server: BaseServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    target = tmp_path / "pwned"
    testapp = app()
    cookie = LEGACY_COOKIE if kind == "1.0.1" else fork_cookie(LEGACY_KEY, SECRET)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        evil = pickle.loads(evil_pickle(target, protocol))  # a control: it runs
        evil.close()
        target.unlink()
        raw = pickle.dumps(
            {
                "managed_dict": {"a": "1", "x": _Evil(target)},
                "created": time.time() - 60,
                "timeout": 1200,
            }
            if kind == "1.0.1"
            else {"m": {"a": "1", "x": _Evil(target)}, "c": 1, "v": 1},
            protocol,
        )
        store_legacy(server, LEGACY_KEY, raw, 600)
        caplog.clear()
        round_trips.reset()
        with caplog.at_level(logging.WARNING, "pyramid_redis_sessions"):
            res = testapp.get(
                "/do?op=keys&op=new", headers=legacy_header(cookie), status=200
            )
        assert results(res) == [[], True], protocol
        assert not target.exists(), protocol
        assert keys(server) == [], "the bad value is deleted"
        assert round_trips.commands == [["GET", "PTTL"], ["DEL"]]
        (record,) = caplog.records
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert "global 'io.open'" in message, message
        assert str(target) not in message and "pwned" not in message
        assert LEGACY_KEY not in message


class _Evil:
    """Pickles to ``open(path, 'w')``, inside an otherwise valid session."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_a_class_of_the_application_is_refused_unless_allowed(
    app: Callable[..., webtest.TestApp],
    server: BaseServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = one_x_envelope({"cart": Cart(["book"]), "n": 1})
    store_legacy(server, LEGACY_KEY, raw, 600)
    with caplog.at_level(logging.WARNING, "pyramid_redis_sessions"):
        res = app().get("/do?op=keys", headers=legacy_header(LEGACY_COOKIE))
    assert results(res) == [[]]
    assert "global 'tests.test_migration.Cart'" in caplog.text
    assert "legacy_pickle_allow" in caplog.text
    assert keys(server) == []


@pytest.mark.parametrize(
    "allow",
    ["tests.test_migration.Cart", "tests.test_migration:Cart", "os:getcwd"],
    ids=["dotted", "colon", "not a class"],
)
def test_a_class_named_in_legacy_pickle_allow_loads(
    make: Callable[[dict[str, Any]], App], server: BaseServer, allow: str
) -> None:
    settings = {
        "redis.sessions.secret": SECRET,
        "redis.sessions.url": "",
        "redis.sessions.legacy_pickle_allow": f"pyramid_redis_sessions.No\n{allow}",
    }
    with pytest.raises(ConfigurationError) as info:
        make(settings)
    message = str(info.value)
    assert "'redis.sessions.legacy_pickle_allow'" in message
    assert "'pyramid_redis_sessions.No'" in message
    settings["redis.sessions.legacy_pickle_allow"] = allow
    if allow.startswith("os"):
        with pytest.raises(ConfigurationError, match="'os:getcwd' is not a class"):
            make(settings)
        return
    store_legacy(server, LEGACY_KEY, one_x_envelope({"cart": Cart(["book"])}), 600)
    seen = make(settings).show(headers=legacy_header(LEGACY_COOKIE))
    cart = seen["data"]["cart"]
    assert type(cart) is Cart and cart.items == ["book"]
    assert seen["new"] is False
