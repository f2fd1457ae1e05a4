"""The Python in the docs runs: every example is included from a file in
docs/examples, and these tests run those files against a real server."""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis
import webtest
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError
from pyramid.request import Request

from tests.servers import BaseServer

DOCS = Path(__file__).parent.parent / "docs"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"doc_example_{name}", DOCS / "examples" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Pyramid looks its caller up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, server: BaseServer) -> None:
    monkeypatch.setenv("SESSION_SECRET", "doc-example-secret")
    monkeypatch.setenv("REDIS_URL", server.url)


def test_python_in_the_docs_comes_only_from_the_examples() -> None:
    for page in DOCS.glob("*.rst"):
        text = page.read_text()
        assert ".. code-block:: python" not in text, page.name
        for included in re.findall(r"\.\. literalinclude:: (\S+)", text):
            assert (DOCS / included).is_file(), (page.name, included)


def test_app_logs_in_with_a_new_id_and_out(server: BaseServer, prefix: str) -> None:
    app = example("app")
    settings = {"redis.sessions.url": server.url, "redis.sessions.prefix": prefix}
    browser = webtest.TestApp(app.main({}, **settings))
    page = browser.get("/")
    form = page.forms[0]
    form["name"], form["password"] = "ann", "wrong"
    page = form.submit().follow()
    assert page.html.p.text == "Wrong name or password."
    before = browser.cookies["session"]
    form = page.forms[0]
    form["name"], form["password"] = "ann", "correct horse battery staple"
    form["remember"] = True
    page = form.submit().follow()
    assert page.html.p.text == "Logged in as ann."
    assert browser.cookies["session"] != before
    (key,) = server.client().keys(prefix + "*")
    assert server.client().ttl(key) > 29 * 24 * 3600  # "remember me"
    page = page.forms[0].submit().follow()
    assert page.html.p.text == "You are logged out."
    assert key not in server.client().keys(prefix + "*")


def test_app_refuses_a_post_without_the_csrf_token(
    server: BaseServer, prefix: str
) -> None:
    app = example("app")
    settings = {"redis.sessions.url": server.url, "redis.sessions.prefix": prefix}
    browser = webtest.TestApp(app.main({}, **settings))
    browser.get("/")
    password = app.USERS["ann"]
    browser.post("/login", {"name": "ann", "password": password}, status=400)
    assert "Logged in" not in browser.get("/").text


def test_app_without_its_secret_says_which_variable_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SESSION_SECRET")
    with pytest.raises(ConfigurationError, match=r"^SESSION_SECRET is not set: "):
        example("app").main({})


def readme_python() -> str:
    """The README's Python block (PyPI shows the README: no includes there)."""
    text = (DOCS.parent / "README.rst").read_text()
    (block,) = re.findall(r"\.\. code-block:: python\n\n((?:   .*\n|\n)+)", text)
    return textwrap.dedent(block)


def test_readme_s_python_defines_every_name_it_uses_and_runs(
    server: BaseServer, prefix: str
) -> None:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    sys.modules["readme_example"] = ModuleType("readme_example")
    exec(compile(readme_python(), "README.rst", "exec"), namespace)
    settings = {"redis.sessions.url": server.url, "redis.sessions.prefix": prefix}
    browser = webtest.TestApp(namespace["main"]({}, **settings))
    assert browser.get("/").text == "Visit number 1"
    assert browser.get("/").text == "Visit number 2"
    browser.post("/", status=400)  # no CSRF token: refused
    assert len(server.client().keys(prefix + "*")) == 1


def test_factories(server: BaseServer) -> None:
    factories = example("factories")
    settings = {"redis.sessions.secret": "s", "redis.sessions.url": server.url}
    assert factories.main({}, **settings) is not None
    factory = factories.make_factory()
    kwargs = factory.store.client.connection_pool.connection_kwargs
    assert kwargs["port"] == server.port and factory.timeout == 1800


def test_client_callable(server: BaseServer) -> None:
    sessions = example("sessions")
    with Configurator() as config:
        config.registry.redis_client = client = redis.Redis.from_url(server.url)
    request = Request.blank("/")
    request.registry = config.registry
    assert sessions.session_client(request, url="ignored") is client


def test_users_recipe_lists_ends_and_logs_out_everywhere(
    server: BaseServer, prefix: str
) -> None:
    users = example("users")
    settings = {"redis.sessions.url": server.url, "redis.sessions.prefix": prefix}
    app = users.main({}, **settings)
    phone, laptop, tablet = (webtest.TestApp(app) for _ in range(3))
    for browser, agent in ((phone, "phone"), (laptop, "laptop"), (tablet, "tablet")):
        browser.post(
            "/login",
            {"user_id": "42", "password": "old password"},
            headers={"User-Agent": agent},
        ).follow()
    listed = laptop.get("/sessions").text.splitlines()
    assert sorted(line.split(" ", 1)[1] for line in listed) == [
        "laptop (this browser)",
        "phone",
        "tablet",
    ]
    (phone_handle,) = [line.split()[0] for line in listed if "phone" in line]
    laptop.post("/end", {"handle": phone_handle}).follow()
    assert len(laptop.get("/sessions").text.splitlines()) == 2
    assert phone.get("/sessions").status_int == 303  # logged out
    laptop.post("/password", {"new_password": "new one"}).follow()
    assert laptop.get("/sessions").text.endswith("laptop (this browser)")
    assert (
        users.log_out_everywhere(
            {"redis.sessions.secret": "doc-example-secret", **settings}, "42"
        )
        == 1
    )
    assert server.client().keys(prefix + "*") == []


def test_counting_round_trips(server: BaseServer, prefix: str) -> None:
    testing = example("testing")
    settings = {
        "redis.sessions.secret": "doc-example-secret",
        "redis.sessions.url": server.url,
        "redis.sessions.prefix": prefix,
    }
    testing.test_the_cart_costs_what_we_expect(settings)
    assert len(server.client().keys(prefix + "*")) == 2  # warm-up and browser


def test_operations_count_events_and_answer_for_a_dead_redis(
    server: BaseServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    operations = example("operations")
    settings = {
        "redis.sessions.secret": "s",
        "redis.sessions.url": server.url,
        "redis.sessions.prefix": prefix,
    }
    app = webtest.TestApp(operations.main({}, **settings))
    app.get("/")
    assert operations.counts["SessionCreated"] == 1
    (key,) = server.client().keys(prefix + "*")
    server.client().hset(key, "forged", b"x")
    with caplog.at_level("WARNING", logger="myapp.sessions"):
        app.get("/")
    assert operations.counts["SessionValueRejected"] == 1
    assert "rejected" in caplog.text
    server.kill()
    res = app.get("/", status=503)
    assert (res.text, res.headers["Retry-After"]) == ("Down for maintenance", "30")
    assert operations.counts["StoreUnavailable"] == 1
