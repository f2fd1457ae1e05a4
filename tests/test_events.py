"""The events sessions send through ``registry.notify``, and their cost when
nobody listens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import webtest
from pyramid.config import Configurator
from pyramid.events import NewRequest
from pyramid.registry import Registry

from pyramid_redis_sessions import events as events_module
from pyramid_redis_sessions.events import (
    SessionCreated,
    SessionEvent,
    SessionIdRegenerated,
    SessionInvalidated,
    SessionValueRejected,
    StoreUnavailable,
    key_digest,
)
from tests.app import make_included_app, results
from tests.servers import BaseServer

Seen = list[SessionEvent]


@pytest.fixture
def events() -> Seen:
    return []


@pytest.fixture
def app(
    server: BaseServer, prefix: str, events: Seen
) -> Callable[..., webtest.TestApp]:
    """``app(**settings)``: the included app, every session event recorded."""

    def make(**settings: Any) -> webtest.TestApp:
        def subscribe(config: Configurator) -> None:
            config.add_subscriber(events.append, SessionEvent)

        given = {"url": server.url, "prefix": prefix, **settings}
        return make_included_app(
            {f"redis.sessions.{k}": v for k, v in given.items()}, subscribe
        )

    return make


def only(events: Seen, kind: type[SessionEvent]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def ids_in(event: SessionEvent) -> str:
    return repr(vars(event))


def test_created_once_when_a_new_session_is_stored(
    app: Callable[..., webtest.TestApp], events: Seen
) -> None:
    testapp = app()
    testapp.get("/do?op=get:a")  # a read creates nothing
    assert events == []
    session_id = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    testapp.get("/do?op=set:b:2")  # an existing session is not created again
    (created,) = events
    assert isinstance(created, SessionCreated)
    assert created.key_digest == key_digest(session_id)
    assert created.request.path == "/do"
    assert session_id not in ids_in(created)


def existing_session(
    app: Callable[..., webtest.TestApp], events: Seen
) -> tuple[webtest.TestApp, str]:
    """A browser with a stored session, and its id; no event seen yet."""
    testapp = app()
    session_id: str = results(testapp.get("/do?op=set:a:1&op=id"))[1]
    events.clear()
    return testapp, session_id


def test_regenerated_names_both_digests_and_is_not_a_creation(
    app: Callable[..., webtest.TestApp], events: Seen
) -> None:
    testapp, old = existing_session(app, events)
    new = results(testapp.get("/do?op=regenerate&op=id"))[1]
    (event,) = events
    assert isinstance(event, SessionIdRegenerated)
    assert (event.key_digest, event.old_key_digest) == (
        key_digest(new),
        key_digest(old),
    )
    assert old not in ids_in(event) and new not in ids_in(event)


def test_invalidated_when_the_key_is_deleted(
    app: Callable[..., webtest.TestApp], events: Seen
) -> None:
    testapp, old = existing_session(app, events)
    testapp.get("/do?op=invalidate")
    assert [type(e) for e in events] == [SessionInvalidated]
    assert events[0].key_digest == key_digest(old)  # type: ignore[attr-defined]


def test_invalidate_then_write_is_an_invalidation_and_a_creation(
    app: Callable[..., webtest.TestApp], events: Seen
) -> None:
    testapp, old = existing_session(app, events)
    new = results(testapp.get("/do?op=invalidate&op=set:b:2&op=id"))[2]
    assert sorted(type(e).__name__ for e in events) == [
        "SessionCreated",
        "SessionInvalidated",
    ]
    assert only(events, SessionCreated)[0].key_digest == key_digest(new)
    assert only(events, SessionInvalidated)[0].key_digest == key_digest(old)


def test_nothing_is_announced_when_changes_are_dropped(
    app: Callable[..., webtest.TestApp], events: Seen
) -> None:
    testapp = app(cookie_on_exception="false")
    testapp.get("/boom?op=set:a:1", status=500)
    assert events == []


def test_rejected_value_gives_the_reason_without_id_or_data(
    app: Callable[..., webtest.TestApp],
    events: Seen,
    server: BaseServer,
    prefix: str,
) -> None:
    testapp = app()
    session_id = results(testapp.get("/do?op=set:a:secret-data&op=id"))[1]
    key = prefix + session_id
    server.client().hset(key, "a", b"tampered")
    events.clear()
    assert results(testapp.get("/do?op=get:a&op=new")) == [None, True]
    (event,) = events
    assert isinstance(event, SessionValueRejected)
    assert event.reason and event.key_digest == key_digest(session_id)
    assert session_id not in ids_in(event) and "secret-data" not in ids_in(event)
    assert "tampered" not in ids_in(event)


def test_store_unavailable_names_the_server(
    app: Callable[..., webtest.TestApp], events: Seen, server: BaseServer
) -> None:
    testapp = app()
    testapp.get("/do?op=set:a:1")
    events.clear()
    server.kill()
    testapp.get("/do?op=get:a", status=503)
    (event,) = events
    assert isinstance(event, StoreUnavailable)
    assert event.server == f"{server.host}:{server.port}"


def test_nothing_is_built_or_notified_without_subscribers(
    server: BaseServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    calls: list[object] = []
    for kind in (SessionCreated, SessionIdRegenerated, SessionInvalidated):

        def build(*args: Any, kind: type[SessionEvent] = kind) -> SessionEvent:
            built.append(kind.__name__)
            return kind(*args)

        monkeypatch.setattr(events_module, kind.__name__, build)
    original = Registry.notify

    def notify(self: Registry, *events: object) -> None:
        calls.extend(events)
        original(self, *events)

    monkeypatch.setattr(Registry, "notify", notify)

    def run(*extra: Callable[[Configurator], None]) -> None:
        testapp = make_included_app(
            {"redis.sessions.url": server.url, "redis.sessions.prefix": prefix},
            *extra,
        )
        calls.clear()  # Pyramid's own ApplicationCreated
        testapp.get("/do?op=set:a:1")
        testapp.get("/do?op=regenerate")
        testapp.get("/do?op=invalidate&op=set:b:1")

    run()
    assert calls == [] and built == []

    # Control: with any subscriber at all, the same requests do notify.
    run(lambda config: config.add_subscriber(lambda event: None, NewRequest))
    assert {type(e).__name__ for e in calls} >= {
        "SessionCreated",
        "SessionIdRegenerated",
    }
    assert "SessionInvalidated" in built


def test_regenerate_then_invalidate_is_one_invalidation(
    app: Callable[..., webtest.TestApp],
    events: Seen,
    server: BaseServer,
    prefix: str,
) -> None:
    testapp, old = existing_session(app, events)
    res = testapp.get("/do?op=regenerate&op=invalidate")
    assert [type(e) for e in events] == [SessionInvalidated]
    assert events[0].key_digest == key_digest(old)  # type: ignore[attr-defined]
    assert server.client().keys(prefix + "*") == []
    assert "Max-Age=0" in res.headers["Set-Cookie"]
