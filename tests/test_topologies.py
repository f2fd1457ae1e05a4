"""Clients from ``make_client`` on real topologies: Sentinel failover,
Cluster sharding, TLS. Each topology runs once per backend."""

from __future__ import annotations

import contextlib
import time
from collections import Counter

import pytest
import redis
import redis.exceptions
from redis.cluster import RedisCluster

from pyramid_redis_sessions.client import describe_server, make_client
from pyramid_redis_sessions.client import worst_case_seconds as bound
from pyramid_redis_sessions.sentinel import FOLLOW_INTERVAL
from tests.topologies import ClusterTopology, SentinelTopology, TLSServerProcess

pytestmark = pytest.mark.topology


# -- Sentinel -------------------------------------------------------------------


def sentinel_client(topology: SentinelTopology) -> redis.Redis:
    client = make_client(
        sentinels=topology.sentinel_addresses, sentinel_service=topology.service
    )
    assert isinstance(client, redis.Redis)
    return client


def test_sentinel_client_reads_and_writes_the_master(
    sentinel_topology: SentinelTopology, prefix: str
) -> None:
    client = sentinel_client(sentinel_topology)
    client.set(f"{prefix}k", "v")
    assert client.get(f"{prefix}k") == b"v"
    master = sentinel_topology.current_master()
    assert master.admin().get(f"{prefix}k") == b"v"
    assert describe_server(client) == (
        f"sentinel service {sentinel_topology.service!r} "
        f"(master {master.host}:{master.port})"
    )


def test_unknown_sentinel_service_is_a_connection_error(
    sentinel_topology: SentinelTopology,
) -> None:
    client = make_client(
        sentinels=sentinel_topology.sentinel_addresses, sentinel_service="nope"
    )
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError, match="nope"):
        client.get("k")
    assert time.monotonic() - started < bound()


def test_sentinel_failover_the_same_client_reaches_the_new_master(
    sentinel_topology: SentinelTopology, prefix: str
) -> None:
    """Last of the Sentinel tests: it leaves the replica as the master."""
    sentinel_topology.heal()  # a replica in sync, whatever ran before
    client = sentinel_client(sentinel_topology)
    key = f"{prefix}k"
    client.set(key, "before")
    sentinel_topology.wait_replicated()  # the replica has it
    old = sentinel_topology.current_master()
    old.kill()
    # A command during the failover answers or fails within the bound.
    started = time.monotonic()
    with contextlib.suppress(redis.exceptions.ConnectionError):
        client.get(key)
    assert time.monotonic() - started < bound()

    new = sentinel_topology.wait_for_new_master(old.port)
    assert new is not old and new.port != old.port
    time.sleep(FOLLOW_INTERVAL)  # the client follows within this
    started = time.monotonic()
    assert client.get(key) == b"before"
    client.set(key, "after")
    assert time.monotonic() - started < bound()
    assert new.admin().get(key) == b"after"
    assert describe_server(client).endswith(f"(master {new.host}:{new.port})")
    old.restart()  # the sentinels will make it a replica of the new master


# -- Cluster --------------------------------------------------------------------


def cluster_client(topology: ClusterTopology) -> RedisCluster:
    client = make_client(url=topology.url, cluster=True)
    assert isinstance(client, RedisCluster)
    return client


def test_cluster_spreads_keys_over_all_three_masters(
    cluster_topology: ClusterTopology, prefix: str
) -> None:
    client = cluster_client(cluster_topology)
    keys = [f"{prefix}{i}" for i in range(1000)]
    for key in keys:
        client.set(key, "v", ex=60)
    counts = {
        node.port: len(node.admin().keys(f"{prefix}*"))
        for node in cluster_topology.nodes
    }
    assert sum(counts.values()) == len(keys)
    assert all(n >= 200 for n in counts.values()), counts
    assert client.get(keys[0]) == b"v"


def test_cluster_names_the_node_of_a_key_and_all_nodes(
    cluster_topology: ClusterTopology, prefix: str
) -> None:
    client = cluster_client(cluster_topology)
    addresses = {f"{n.host}:{n.port}" for n in cluster_topology.nodes}
    everyone = describe_server(client)
    assert all(address in everyone for address in addresses), everyone
    seen: Counter[str] = Counter()
    for i in range(30):
        key = f"{prefix}{i}"
        client.set(key, "v", ex=60)
        name = describe_server(client, key)
        assert name.startswith("cluster node ")
        address = name.removeprefix("cluster node ")
        owner = next(
            n for n in cluster_topology.nodes if f"{n.host}:{n.port}" == address
        )
        assert owner.admin().get(key) == b"v"  # that node really holds it
        seen[address] += 1
    assert len(seen) == 3


def test_cluster_from_host_and_port_of_any_node(
    cluster_topology: ClusterTopology, prefix: str
) -> None:
    last = cluster_topology.nodes[-1]
    client = make_client(host=last.host, port=last.port, cluster=True)
    assert isinstance(client, RedisCluster)
    client.set(f"{prefix}x", "1")
    assert client.get(f"{prefix}x") == b"1"
    assert len(client.get_nodes()) == 3


# -- TLS ------------------------------------------------------------------------


def tls_url(server: TLSServerProcess) -> str:
    return f"rediss://{server.host}:{server.port}/0"


def test_tls_round_trip_with_the_generated_ca(
    tls_server: TLSServerProcess, prefix: str
) -> None:
    client = make_client(
        url=tls_url(tls_server),
        ssl_ca_certs=str(tls_server.certificates.ca),
        ssl_cert_reqs="required",
    )
    client.set(f"{prefix}k", "v")
    assert client.get(f"{prefix}k") == b"v"
    assert describe_server(client) == f"{tls_server.host}:{tls_server.port}"


def test_tls_from_host_and_port_with_ssl_options(
    tls_server: TLSServerProcess,
) -> None:
    client = make_client(
        host=tls_server.host,
        port=tls_server.port,
        ssl_ca_certs=str(tls_server.certificates.ca),
    )
    assert client.ping()


def test_tls_with_the_wrong_ca_fails(tls_server: TLSServerProcess) -> None:
    client = make_client(
        url=tls_url(tls_server), ssl_ca_certs=str(tls_server.certificates.other_ca)
    )
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)certificate"):
        client.ping()
    assert time.monotonic() - started < bound()


def test_plain_text_to_a_tls_port_fails(tls_server: TLSServerProcess) -> None:
    client = make_client(host=tls_server.host, port=tls_server.port, retries=0)
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
