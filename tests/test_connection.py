"""1.x's ``get_default_connection`` still imports and works, deprecated.

No server: building a redis-py client does not connect.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
from pyramid.registry import Registry
from pyramid.request import Request

from pyramid_redis_sessions import RedisSessionFactory
from pyramid_redis_sessions.connection import get_default_connection
from pyramid_redis_sessions.exceptions import ConfigurationError
from pyramid_redis_sessions.settings import coerce_option

#: What the factory passes a ``client_callable``.
OPTIONS: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 6391,
    "db": 2,
    "username": None,
    "password": "p",
    "socket_timeout": 1.5,
    "socket_connect_timeout": 0.5,
    "connection_pool": None,
    "unix_socket_path": None,
}


def request() -> Request:
    r = Request.blank("/")
    r.registry = Registry("test")
    return r


def connect(req: Request, **options: Any) -> redis.Redis:
    with pytest.warns(DeprecationWarning, match="get_default_connection"):
        return get_default_connection(req, **options)


def test_builds_a_client_from_the_options_a_client_callable_gets() -> None:
    client = connect(request(), url=None, charset="utf-8", errors="strict", **OPTIONS)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6391, 2)
    assert (kwargs["password"], kwargs["socket_timeout"]) == ("p", 1.5)
    assert "charset" not in kwargs and "errors" not in kwargs


def test_does_not_retry_so_timeouts_bound_the_wait() -> None:
    client = connect(request(), **OPTIONS)
    assert client.get_retry() is not None
    assert client.get_retry().get_retries() == 0  # type: ignore[union-attr]


def test_url_wins_over_host_port_db_and_password() -> None:
    client = connect(request(), url="redis://h.example:6400/5", **OPTIONS)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("h.example", 6400, 5)
    assert kwargs.get("password") is None and kwargs["socket_timeout"] == 1.5


def test_one_client_per_registry_as_in_one_x() -> None:
    req = request()
    first = connect(req, **OPTIONS)
    assert connect(req, **OPTIONS) is first
    assert req.registry._redis_sessions is first
    assert connect(request(), **OPTIONS) is not first


def test_client_class_can_be_chosen() -> None:
    class Client(redis.Redis):
        pass

    assert type(connect(request(), redis_client=Client, **OPTIONS)) is Client


def test_dotted_name_from_a_one_x_ini_file_still_resolves() -> None:
    name = "pyramid_redis_sessions.connection.get_default_connection"
    resolved = coerce_option("client_callable", name, "setting 'x'")
    assert resolved is get_default_connection


def test_takes_every_option_the_factory_gives_a_client_callable() -> None:
    # As an ini file of 1.x names it: the factory passes all its client
    # options (retries, Sentinel, Cluster, TLS included), not only 1.x's.
    given: dict[str, Any] = {}

    def client_callable(request: Request, **options: Any) -> redis.Redis:
        given.update(options)
        return get_default_connection(request, **options)

    factory = RedisSessionFactory(
        "s3cret", client_callable=client_callable, host="127.0.0.1", port=6391
    )
    with pytest.warns(DeprecationWarning, match="get_default_connection"):
        client = factory.store_for(request()).client
    assert {"retries", "sentinels", "cluster", "ssl_ca_certs"} <= set(given)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"]) == ("127.0.0.1", 6391)
    assert client.get_retry().get_retries() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "topology", [{"cluster": True}, {"sentinels": ["127.0.0.1:26379"]}]
)
def test_sentinel_or_cluster_is_a_configuration_error(topology: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="plain client"):
        connect(request(), **OPTIONS, **topology)
