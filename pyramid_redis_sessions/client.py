"""Redis clients: the one place that builds them from options, and that names
the server(s) a client talks to in error messages.

:func:`make_client` turns the connection options into one redis-py client
(one connection pool) for a factory's whole life:

* standalone: ``url`` (``redis://``, ``rediss://``, ``unix://``), or
  ``host``/``port``/``db``, or ``unix_socket_path``, or a given
  ``connection_pool``;
* Sentinel: ``sentinels`` + ``sentinel_service``; every command goes to the
  master the sentinels name (sessions need read-your-writes), asked again
  every :data:`~pyramid_redis_sessions.sentinel.FOLLOW_INTERVAL` while
  requests come (:mod:`pyramid_redis_sessions.sentinel`), so that a switch
  is followed within a fraction of a second of the sentinels announcing it;
* Cluster: ``cluster`` with the ``url`` or ``host``/``port`` of any node.

TLS is on with a ``rediss://`` url or any ``ssl_*`` option (redis-py's names
and meanings). :func:`check_connection_options` rejects combinations that
make no sense, naming both options.

How long a request waits for a store that does not answer
---------------------------------------------------------

redis-py's own hidden retries are replaced by ``retries`` retries, on
connection errors and timeouts only, with exponential backoff and jitter of
at most ``b`` = :data:`BACKOFF_CAP` seconds each. With ``r`` retries, ``c``
the connect timeout and ``s`` the socket timeout, one command on a store
that refuses, never accepts, or accepts and never answers (every server
hung, the sentinels too) fails within :func:`worst_case_seconds`:

* standalone: redis-py also retries the socket connect inside each
  attempt, with the same policy::

    T = (r + 1) * ((r + 1) * c + r * b + s) + r * b

* Sentinel: each attempt connects once, to the master last found. The
  sentinels are asked in a thread of their own (see
  :class:`FollowingSentinelPool`); a connection waits for an answer under
  way at most ``c`` (``c + s`` while no master was ever found), and so does
  a checkout that starts a lookup::

    T = (r + 1) * (2 * c + s) + c + s + r * b

* Cluster: node connections are not retried (the cluster client retries
  the command), and one topology refresh, asking a node, may come in
  between::

    T = (r + 2) * (c + s) + r * b

With the defaults (``r`` = 2, ``c`` = 0.5, ``s`` = 1.5, ``b`` = 0.05) that is
9.4 s, 9.6 s and 8.1 s: under 10 s in every topology, retries included. In
practice one fault applies at a time: a hung server costs about
``(r + 1) * s``, a dead one milliseconds. While the sentinels promote a
replica, writes are refused at once (see
:data:`~pyramid_redis_sessions.sentinel.HOLD_LIMIT`). A server that answers,
slowly, can take longer.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TimeoutError,
    TryAgainError,
)
from redis.retry import Retry
from redis.sentinel import (
    Sentinel,
    SentinelConnectionPool,
)

from .exceptions import ConfigurationError
from .sentinel import (
    FollowingSentinelPool,
    OneTryConnection,
    OneTrySSLConnection,
)

try:  # redis-py >= 6
    from redis.backoff import ExponentialWithJitterBackoff as _JitterBackoff
except ImportError:  # redis-py 5: the same formula under its older name
    from redis.backoff import FullJitterBackoff as _JitterBackoff  # type: ignore[assignment]

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "DEFAULT_RETRIES",
    "DEFAULT_SOCKET_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "TRANSIENT_CODES",
    "Client",
    "check_connection_options",
    "describe_server",
    "error_code",
    "is_transient",
    "make_client",
    "worst_case_seconds",
]

#: Seconds to wait for an answer from a connected server.
DEFAULT_SOCKET_TIMEOUT = 1.5
#: Seconds to wait for a connection; redis-py retries the connect itself.
DEFAULT_SOCKET_CONNECT_TIMEOUT = 0.5
#: Retries of a command that met a connection error or a timeout.
DEFAULT_RETRIES = 2
#: Backoff before retry ``n`` is random in ``[0, min(cap, base * 2**n)]``.
BACKOFF_BASE = 0.01
BACKOFF_CAP = 0.05

#: What :func:`make_client` returns.
Client = redis.Redis | RedisCluster

_REDIS_PY_MAJOR = int(redis.__version__.split(".")[0])
_SSL_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


#: Error codes (the first word of an error reply) of a server that refuses
#: for a while and then serves again: out of memory under ``noeviction``,
#: too few replicas for ``min-replicas-to-write``, a replica met during a
#: failover (or one that lost its master), a dataset being loaded, a script
#: running too long, a Cluster moving slots or missing a master, and a
#: server that cannot write its snapshot (``stop-writes-on-bgsave-error``).
TRANSIENT_CODES = frozenset(
    {
        "OOM",
        "NOREPLICAS",
        "READONLY",
        "MASTERDOWN",
        "LOADING",
        "BUSY",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MISCONF",
    }
)
# redis-py's own classes for some of them: it strips the code it knows from
# the message. LOADING is a BusyLoadingError, a ConnectionError.
_TRANSIENT_CLASSES = (
    ConnectionError,
    TimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    ClusterDownError,  # MasterDownError too
    TryAgainError,
    RedisClusterException,  # the layout unknown or unreachable
)
_CODE = re.compile(r"[A-Z][A-Z0-9_]*")
# Redis before 7 wraps the error of a script's redis.call in its own ERR:
# "Error running script (call to f_<sha>): @user_script:13: @user_script:
# 13: -OOM command not allowed ...".
_SCRIPT_ERROR = re.compile(
    r"Error running script \(call to [^)]*\): (?:@?\w+: ?\d+: )*-([A-Z][A-Z0-9_]*)\b"
)


def error_code(error: BaseException) -> str | None:
    """The code of the error reply ``error`` stands for (``"OOM"``,
    ``"NOREPLICAS"``), also when a script's ``redis.call`` met it, or
    ``None``. redis-py keeps the code in the message for codes it has no
    class for, and in ``status_code`` (redis-py 8)."""
    message = str(error.args[0]) if error.args else ""
    wrapped = _SCRIPT_ERROR.match(message)
    if wrapped:
        return wrapped.group(1)
    code = getattr(error, "status_code", None)
    if isinstance(code, str) and code:
        return code
    first = message.split(" ", 1)[0]
    return first if _CODE.fullmatch(first) else None


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` from redis-py means the store is unavailable for a
    while (see :data:`TRANSIENT_CODES`; a connection error or a timeout
    too), rather than a command it refused for good."""
    return isinstance(error, _TRANSIENT_CLASSES) or error_code(error) in TRANSIENT_CODES


def worst_case_seconds(
    retries: int = DEFAULT_RETRIES,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    socket_connect_timeout: float = DEFAULT_SOCKET_CONNECT_TIMEOUT,
    topology: str = "standalone",
) -> float:
    """The module docstring's bound ``T`` for one command on a store that
    does not answer; ``topology`` is ``"standalone"``, ``"sentinel"`` or
    ``"cluster"``."""
    r, c, s, b = retries, socket_connect_timeout, socket_timeout, BACKOFF_CAP
    if topology == "sentinel":
        return (r + 1) * (2 * c + s) + c + s + r * b
    if topology == "cluster":
        return (r + 2) * (c + s) + r * b
    if topology != "standalone":
        raise ValueError(f"unknown topology {topology!r}")
    return (r + 1) * ((r + 1) * c + r * b + s) + r * b


def _retry(retries: int) -> Retry:
    return Retry(
        _JitterBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE),
        retries,
        supported_errors=(ConnectionError, TimeoutError),
    )


def _is_set(value: Any) -> bool:
    return value is not None and value is not False and value != "" and value != []


def _tls_options(options: Mapping[str, Any]) -> list[str]:
    return [name for name in _SSL_OPTIONS if _is_set(options.get(name))]


def check_connection_options(options: Mapping[str, Any]) -> None:
    """Raise :class:`~pyramid_redis_sessions.exceptions.ConfigurationError`,
    naming both options, for a combination of connection options that makes
    no sense. ``options`` holds coerced values; absent names count as unset.
    """
    given = {name for name, value in options.items() if _is_set(value)}
    if not options.get("db"):
        given.discard("db")  # database 0, the default, clashes with nothing
    url = options.get("url") or ""
    scheme = url.partition("://")[0].lower() if url else ""

    def clash(a: str, b: str, why: str) -> None:
        if a in given and b in given:
            raise ConfigurationError(f"options {a!r} and {b!r} conflict: {why}")

    def needs(a: str, b: str, why: str) -> None:
        if a in given and b not in given:
            raise ConfigurationError(f"option {a!r} needs option {b!r}: {why}")

    clash("cluster", "sentinels", "use Redis Cluster or Sentinel, not both")
    needs("sentinels", "sentinel_service", "the name of the master to use")
    for name in ("sentinel_service", "sentinel_username", "sentinel_password"):
        needs(name, "sentinels", "the sentinels' host:port addresses")
    for name in ("url", "unix_socket_path", "connection_pool"):
        clash("sentinels", name, "with Sentinel, the sentinels name the master")
    for name in ("unix_socket_path", "connection_pool"):
        clash("cluster", name, "a cluster is reached over TCP, from any node")
    clash("cluster", "db", "Redis Cluster has database 0 only")
    if "cluster" in given and scheme == "unix":
        clash("cluster", "url", "a cluster is reached over TCP, not a unix socket")
    for name in _tls_options(options):
        clash(name, "unix_socket_path", "TLS is for TCP connections")
        clash(name, "connection_pool", "the given pool decides its own TLS")
        if scheme in ("redis", "unix"):
            clash(name, "url", "TLS needs a rediss:// url")


def make_client(
    *,
    url: str | None = None,
    host: str = "localhost",
    port: int = 6379,
    db: int = 0,
    username: str | None = None,
    password: str | None = None,
    socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT,
    socket_connect_timeout: float | None = DEFAULT_SOCKET_CONNECT_TIMEOUT,
    connection_pool: redis.ConnectionPool | None = None,
    unix_socket_path: str | None = None,
    sentinels: list[tuple[str, int]] | None = None,
    sentinel_service: str | None = None,
    sentinel_username: str | None = None,
    sentinel_password: str | None = None,
    cluster: bool = False,
    retries: int = DEFAULT_RETRIES,
    ssl_ca_certs: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_cert_reqs: str | ssl.VerifyMode | None = None,
) -> Client:
    """Build the client for these (already coerced) options.

    Call :func:`check_connection_options` first: this function assumes a
    sensible combination. ``url`` wins over ``host``, ``port``, ``db``,
    ``username``, ``password`` and ``unix_socket_path``. A given
    ``connection_pool`` keeps its own connection settings and retries.

    ``RedisCluster`` asks a node for the cluster's layout here, so a cluster
    that cannot be reached fails now, with redis-py's
    :class:`~redis.exceptions.RedisClusterException`.
    """
    retry = _retry(retries)
    if connection_pool is not None:
        return redis.Redis(connection_pool=connection_pool, retry=retry)
    tls: dict[str, Any] = {
        name: value
        for name, value in (
            ("ssl_ca_certs", ssl_ca_certs),
            ("ssl_certfile", ssl_certfile),
            ("ssl_keyfile", ssl_keyfile),
            ("ssl_cert_reqs", ssl_cert_reqs),
        )
        if value is not None
    }
    if tls and url is None:
        tls["ssl"] = True
    timeouts: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        # RESP2, which redis-py 8 no longer picks by default: its parser
        # reads this package's replies faster than the RESP3 one (about
        # 50 µs a command on a loaded VM; a URL's ?protocol= still wins).
        "protocol": 2,
    }
    if sentinels:
        assert sentinel_service is not None, "check_connection_options() first"
        # Typed from redis-py 6 on, untyped before: Any keeps mypy --strict
        # quiet on both without an ignore that one of them finds unused.
        sentinel: Any = Sentinel
        manager = sentinel(
            sentinels,
            sentinel_kwargs={
                **timeouts,
                "username": sentinel_username,
                "password": sentinel_password,
                # Each sentinel is asked once per lookup; the master's retry
                # policy repeats the lookup.
                "retry": Retry(NoBackoff(), 0),
            },
        )
        return cast(
            redis.Redis,
            manager.master_for(
                sentinel_service,
                connection_pool_class=FollowingSentinelPool,
                connection_class=OneTrySSLConnection if tls else OneTryConnection,
                db=db,
                username=username,
                password=password,
                retry=retry,
                **timeouts,
                **{name: value for name, value in tls.items() if name != "ssl"},
            ),
        )
    if cluster:
        cluster_retry: dict[str, Any] = {"retry": retry}
        if _REDIS_PY_MAJOR < 6:
            # redis-py 5 gives `retry` to every node connection and counts
            # the cluster's own retries apart.
            cluster_retry = {
                "retry": Retry(NoBackoff(), 0),
                "cluster_error_retry_attempts": retries,
            }
        common = {
            "username": username,
            "password": password,
            **timeouts,
            **cluster_retry,
            **tls,
        }
        if url is not None:
            return RedisCluster.from_url(url, **common)
        return RedisCluster(host=host, port=port, **common)
    if url is not None:
        return redis.Redis.from_url(url, retry=retry, **timeouts, **tls)
    return redis.Redis(
        host=host,
        port=port,
        db=db,
        username=username,
        password=password,
        unix_socket_path=unix_socket_path,
        retry=retry,
        **timeouts,
        **tls,
    )


def describe_server(client: Any, key: str | bytes | None = None) -> str:
    """Name the server ``client`` talks to, for messages and logs.

    ``host:port`` for a standalone server, the socket path for a unix
    socket; for Sentinel the service and the master it last used (or the
    sentinels, before it found one); for Cluster the node that serves
    ``key``, or all the nodes it knows. Never the key itself.
    """
    if isinstance(client, RedisCluster):
        return _describe_cluster(client, key)
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        return _describe_sentinel(pool)
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", None) or {}
    if kwargs.get("path"):
        return str(kwargs["path"])
    if kwargs.get("host") is not None and kwargs.get("port") is not None:
        return f"{kwargs['host']}:{kwargs['port']}"
    return repr(pool) if pool is not None else type(client).__name__


def _describe_cluster(client: RedisCluster, key: str | bytes | None) -> str:
    if key is not None:
        try:
            node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        except Exception:  # the layout may be unknown in mid-failure
            node = None
        if node is not None:
            return f"cluster node {node.name}"
    nodes = client.get_nodes()  # type: ignore[no-untyped-call]
    names = sorted(str(node.name) for node in nodes)
    return f"cluster nodes {', '.join(names)}" if names else "cluster (no node known)"


def _describe_sentinel(pool: SentinelConnectionPool) -> str:
    service = f"sentinel service {pool.service_name!r}"
    address = pool.master_address
    if address:
        return f"{service} (master {address[0]}:{address[1]})"
    sentinels = ", ".join(
        "{host}:{port}".format_map(sentinel.connection_pool.connection_kwargs)
        for sentinel in pool.sentinel_manager.sentinels
    )
    return f"{service} (master not found yet; sentinels {sentinels})"
