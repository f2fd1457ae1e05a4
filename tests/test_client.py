"""Building clients from options: the options themselves, the combinations
that make no sense, the names given to servers, and the time bound on a
server that does not answer."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions

from pyramid_redis_sessions.client import (
    DEFAULT_RETRIES,
    DEFAULT_SOCKET_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    check_connection_options,
    describe_server,
    make_client,
    worst_case_seconds,
)
from pyramid_redis_sessions.exceptions import ConfigurationError
from pyramid_redis_sessions.settings import OPTIONS, coerce_option
from tests.servers import ServerProcess, find_backends, split_packed

#: SPEC: a request that needs an unreachable store fails in under 10 s.
SPEC_BOUND = 10.0


def coerce(name: str, value: Any) -> Any:
    return coerce_option(name, value, f"setting 'redis.sessions.{name}'")


class TestConnectionSettings:
    def test_sentinels_from_an_ini_file(self) -> None:
        assert coerce("sentinels", "10.0.0.1:26379 s2:26380\n [::1]:26381") == [
            ("10.0.0.1", 26379),
            ("s2", 26380),
            ("::1", 26381),
        ]

    def test_sentinels_from_python(self) -> None:
        assert coerce("sentinels", ["a:1", ("b", 2)]) == [("a", 1), ("b", 2)]
        assert coerce("sentinels", "") is None
        assert coerce("sentinels", None) is None

    @pytest.mark.parametrize("value", ["a:1 b", "a:x", ":1", "a:70000", [3], 5])
    def test_bad_sentinel_entry_names_the_allowed_form(self, value: Any) -> None:
        with pytest.raises(ConfigurationError, match=r"sentinels.*host:port"):
            coerce("sentinels", value)

    def test_retries_and_cluster(self) -> None:
        assert coerce("retries", "0") == 0
        assert coerce("retries", 3) == 3
        assert coerce("cluster", "true") is True
        with pytest.raises(ConfigurationError, match="retries"):
            coerce("retries", "-1")
        with pytest.raises(ConfigurationError, match="cluster"):
            coerce("cluster", "maybe")

    def test_ssl_cert_reqs(self) -> None:
        assert coerce("ssl_cert_reqs", "Required") == "required"
        assert coerce("ssl_cert_reqs", "none") == "none"
        assert coerce("ssl_cert_reqs", ssl.CERT_OPTIONAL) is ssl.CERT_OPTIONAL
        with pytest.raises(ConfigurationError, match="none, optional or required"):
            coerce("ssl_cert_reqs", "always")

    def test_ssl_files_must_exist(self, tmp_path: Path) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_text("x")
        assert coerce("ssl_ca_certs", str(ca)) == str(ca)
        with pytest.raises(ConfigurationError, match=r"ssl_certfile.*existing file"):
            coerce("ssl_certfile", str(tmp_path / "missing.pem"))

    def test_every_make_client_keyword_is_an_option(self) -> None:
        import inspect

        keywords = set(inspect.signature(make_client).parameters)
        assert keywords <= set(OPTIONS)


SENTINELS = [("127.0.0.1", 26379)]


class TestCheckConnectionOptions:
    @pytest.mark.parametrize(
        ("options", "first", "second"),
        [
            ({"cluster": True, "sentinels": SENTINELS}, "cluster", "sentinels"),
            ({"sentinels": SENTINELS}, "sentinels", "sentinel_service"),
            ({"sentinel_service": "m"}, "sentinel_service", "sentinels"),
            ({"sentinel_password": "p"}, "sentinel_password", "sentinels"),
            (
                {"sentinels": SENTINELS, "sentinel_service": "m", "url": "redis://h"},
                "sentinels",
                "url",
            ),
            (
                {"cluster": True, "unix_socket_path": "/s"},
                "cluster",
                "unix_socket_path",
            ),
            ({"cluster": True, "url": "unix:///tmp/r.sock"}, "cluster", "url"),
            ({"cluster": True, "db": 2}, "cluster", "db"),
            (
                {"cluster": True, "connection_pool": object()},
                "cluster",
                "connection_pool",
            ),
            (
                {"ssl_ca_certs": "/ca.pem", "unix_socket_path": "/s"},
                "ssl_ca_certs",
                "unix_socket_path",
            ),
            ({"ssl_cert_reqs": "none", "url": "redis://h:1"}, "ssl_cert_reqs", "url"),
        ],
    )
    def test_bad_combination_names_both_settings(
        self, options: dict[str, Any], first: str, second: str
    ) -> None:
        with pytest.raises(ConfigurationError) as info:
            check_connection_options(options)
        assert repr(first) in str(info.value) and repr(second) in str(info.value)

    @pytest.mark.parametrize(
        "options",
        [
            {},
            {"url": "redis://h:1/2", "db": 0, "retries": 0, "cluster": False},
            {"sentinels": SENTINELS, "sentinel_service": "m", "db": 3},
            {"cluster": True, "url": "rediss://h:1", "ssl_ca_certs": "/ca.pem"},
            {"host": "h", "ssl_cert_reqs": "required"},
            {"sentinels": None, "sentinel_service": None, "ssl_keyfile": None},
        ],
    )
    def test_sensible_combinations_pass(self, options: dict[str, Any]) -> None:
        check_connection_options(options)


class TestDescribeServer:
    def test_host_and_port(self) -> None:
        assert describe_server(make_client(host="127.0.0.1", port=7000)) == (
            "127.0.0.1:7000"
        )
        assert describe_server(make_client(url="redis://127.0.0.2:7001/3")) == (
            "127.0.0.2:7001"
        )

    def test_unix_socket(self) -> None:
        client = make_client(unix_socket_path="/run/redis.sock")
        assert describe_server(client) == "/run/redis.sock"

    def test_sentinel_before_any_master_is_known_names_the_sentinels(self) -> None:
        client = make_client(
            sentinels=[("127.0.0.1", 26379), ("127.0.0.1", 26380)],
            sentinel_service="sessions",
        )
        name = describe_server(client)
        assert "'sessions'" in name
        assert "127.0.0.1:26379" in name and "127.0.0.1:26380" in name
        assert "?" not in name

    def test_something_else_is_named_without_question_marks(self) -> None:
        assert "?" not in describe_server(object())


# -- against a real server ------------------------------------------------------


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server of its own: these tests freeze and kill it."""
    backends = find_backends()
    if not backends:
        pytest.fail("no redis-server or valkey-server to test against")
    name = sorted(backends)[-1]
    process = ServerProcess(name, backends[name], tmp_path_factory.mktemp("client"))
    process.start()
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def fresh(standalone: ServerProcess) -> Iterator[ServerProcess]:
    standalone.revive()
    standalone.flushall()
    yield standalone
    standalone.revive()


def test_the_documented_bound_is_under_the_specs_ten_seconds() -> None:
    for topology in ("standalone", "sentinel", "cluster"):
        assert worst_case_seconds(topology=topology) < SPEC_BOUND, topology
    assert worst_case_seconds() == worst_case_seconds(topology="standalone")
    with pytest.raises(ValueError, match="topology"):
        worst_case_seconds(topology="mesh")
    defaults = (DEFAULT_RETRIES, DEFAULT_SOCKET_TIMEOUT, DEFAULT_SOCKET_CONNECT_TIMEOUT)
    assert defaults == (2, 1.5, 0.5)


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The name of every command a redis-py connection writes, as it goes."""
    sent: list[bytes] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(split_packed(command)[0][0].upper())
        original(self, command, check_health)

    monkeypatch.setattr(
        redis.connection.AbstractConnection, "send_packed_command", send
    )
    return sent


def test_hung_server_fails_within_the_bound_with_default_options(
    fresh: ServerProcess, sends: list[bytes]
) -> None:
    client = make_client(url=fresh.url)
    client.set("k", "v")  # the pool now holds a connection, as in production
    fresh.stop()
    sends.clear()
    started = time.monotonic()
    with pytest.raises(redis.exceptions.RedisError) as info:
        client.get("k")
    assert isinstance(
        info.value, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    )
    elapsed = time.monotonic() - started
    assert elapsed < worst_case_seconds() < SPEC_BOUND
    # All the retries were made: the first GET and one more per retry.
    assert sends.count(b"GET") == DEFAULT_RETRIES + 1
    fresh.cont()
    assert client.get("k") == b"v"


@pytest.mark.parametrize("retries", [0, 3])
def test_retries_option_is_the_number_of_retries(
    fresh: ServerProcess, sends: list[bytes], retries: int
) -> None:
    timeout = 0.2
    client = make_client(url=fresh.url, retries=retries, socket_timeout=timeout)
    client.ping()
    fresh.stop()
    sends.clear()
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        client.ping()
    elapsed = time.monotonic() - started
    assert sends.count(b"PING") == retries + 1
    assert elapsed < worst_case_seconds(retries, timeout)


def test_killed_server_fails_fast_and_the_client_recovers(fresh: ServerProcess) -> None:
    client = make_client(url=fresh.url)
    client.set("k", "v")
    fresh.kill()
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.get("k")
    assert time.monotonic() - started < 1.0
    fresh.restart()
    assert client.get("k") is None  # the restarted server kept nothing
    client.set("k", "w")
    assert client.get("k") == b"w"


def test_host_port_client_reaches_the_server(fresh: ServerProcess) -> None:
    client = make_client(host=fresh.host, port=fresh.port, db=1)
    client.set("k", "v")
    assert client.get("k") == b"v"
    assert redis.Redis(host=fresh.host, port=fresh.port, db=1).get("k") == b"v"
    assert fresh.admin().get("k") is None  # not in database 0
    assert describe_server(client) == f"{fresh.host}:{fresh.port}"


def test_given_pool_is_used(fresh: ServerProcess) -> None:
    pool = redis.ConnectionPool.from_url(fresh.url)
    client = make_client(connection_pool=pool)
    assert client.connection_pool is pool
    assert client.ping()
