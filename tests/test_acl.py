"""The least-privilege ACL user that docs/redis.rst recommends can run the
package's core flow, and every command the flow sends is on its list."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import webtest
from pyramid.interfaces import ISessionFactory

from pyramid_redis_sessions import RedisSessionFactory
from tests.app import SECRET, make_app, results
from tests.servers import BaseServer

DOC = Path(__file__).parent.parent / "docs" / "redis.rst"
PASSWORD = "acl-test-password"


def documented_setuser() -> list[str]:
    """The ``ACL SETUSER`` line of the docs, as arguments, for our test user."""
    (rules,) = re.findall(
        r"^\s*ACL SETUSER sessions on >\(a long random password\) (.+)$",
        DOC.read_text(),
        re.MULTILINE,
    )
    return ["ACL", "SETUSER", "acltest", "on", f">{PASSWORD}", *rules.split()]


@pytest.fixture
def acl_app(server: BaseServer) -> Iterator[webtest.TestApp]:
    if not server.owned:
        pytest.skip("creates an ACL user: needs a server this suite started")
    admin = server.admin()
    admin.execute_command(*documented_setuser())
    url = f"redis://acltest:{PASSWORD}@{server.host}:{server.port}/0"
    try:
        yield make_app(RedisSessionFactory(SECRET, url=url, prefix="session:"))
    finally:
        admin.execute_command("ACL", "DELUSER", "acltest")


def test_the_documented_acl_user_runs_the_core_flow(
    acl_app: webtest.TestApp, server: BaseServer
) -> None:
    server.admin().script_flush()  # the user must be able to load them too
    testapp = acl_app
    testapp.get("/do?op=set:a:1&op=flash:hi&op=adjust:600")
    assert results(testapp.get("/do?op=get:a&op=pop_flash")) == ["1", ["hi"]]
    testapp.get("/do?op=regenerate&op=set:b:2&op=del:a")
    testapp.get("/do?op=invalidate&op=set:c:3")
    assert results(testapp.get("/do?op=items")) == [[["c", "3"]]]
    testapp.get("/do?op=invalidate")
    assert results(testapp.get("/do?op=new")) == [True]
    # The local cache set up its tracking connection as that user too.
    factory = testapp.app.registry.queryUtility(ISessionFactory)
    stats = factory.store.cache.stats()
    assert stats["connects"] == 1 and stats["fresh"]
    testapp.get("/do?op=set:d:4")
    hits = factory.store.cache.stats()["hits"]
    assert results(testapp.get("/do?op=get:d")) == ["4"]  # a miss, then kept
    assert results(testapp.get("/do?op=get:d")) == ["4"]
    assert factory.store.cache.stats()["hits"] == hits + 1


def test_the_documented_user_may_not_touch_other_keys(
    acl_app: webtest.TestApp, server: BaseServer
) -> None:
    """Control: the rules bite, so the test above would fail on a missing
    command."""
    user = redis.Redis(
        host=server.host, port=server.port, username="acltest", password=PASSWORD
    )
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.set("other:key", "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.keys("*")
    finally:
        user.close()
