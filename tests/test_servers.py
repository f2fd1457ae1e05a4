"""The test harness itself: servers, their faults and the round-trip counter."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry

from tests.servers import (
    FORBIDDEN_PORTS,
    BaseServer,
    ExternalServer,
    RoundTripCounter,
    ServerProcess,
    split_packed,
)

NO_RETRY = Retry(NoBackoff(), 0)


def test_server_answers_on_its_url(server: BaseServer, prefix: str) -> None:
    client = server.client()
    client.set(f"{prefix}k", b"v")
    assert client.get(f"{prefix}k") == b"v"
    assert server.url.startswith(f"redis://{server.host}:{server.port}")
    if server.owned:
        assert server.host == "127.0.0.1"
        assert server.port not in FORBIDDEN_PORTS
        # Nothing is written to disk.
        assert server.admin().config_get("save") == {"save": ""}
        assert server.admin().config_get("appendonly") == {"appendonly": "no"}


def test_server_fixture_starts_each_test_empty(server: BaseServer) -> None:
    if not server.owned:
        pytest.skip("an external server is shared: the suite never empties it")
    assert server.client().dbsize() == 0
    server.client().set("left-behind", b"x")
    server.flushall()
    assert server.client().dbsize() == 0


def test_counter_counts_one_round_trip_per_command(
    server: BaseServer, prefix: str
) -> None:
    counter = RoundTripCounter()
    client = redis.Redis(connection_pool=counter.pool(server.url))
    assert client.get(f"{prefix}k") is None
    assert counter.count == 1
    assert counter.commands == [["GET"]]
    assert counter.requests == [[(b"GET", f"{prefix}k".encode())]]
    client.set(f"{prefix}k", b"v")
    assert counter.count == 2
    assert counter.commands == [["GET"], ["SET"]]


def test_counter_does_not_count_the_connection_handshake(server: BaseServer) -> None:
    counter = RoundTripCounter()
    # RESP3 and a client name make redis-py send HELLO and CLIENT SETNAME.
    pool = counter.pool(server.url, protocol=3, client_name="harness-probe")
    connection = pool.make_connection()
    try:
        connection.connect()
        assert counter.count == 0
        sent = [name for request in counter.internal_commands for name in request]
        assert "HELLO" in sent
        assert "CLIENT" in sent
        assert counter.requests == []
    finally:
        connection.disconnect()


def test_counter_counts_the_first_command_of_a_new_connection_once(
    server: BaseServer, prefix: str
) -> None:
    counter = RoundTripCounter()
    client = counter.client(server.url, protocol=3, client_name="harness-probe")
    client.exists(f"{prefix}k")
    assert counter.commands == [["EXISTS"]]
    assert counter.internal != []


@pytest.mark.parametrize(
    ("transaction", "expected"),
    [
        (True, [["MULTI", "SET", "INCRBY", "DEL", "EXEC"]]),
        (False, [["SET", "INCRBY", "DEL"]]),
    ],
    ids=["multi", "plain"],
)
def test_counter_counts_a_pipeline_as_one_round_trip(
    server: BaseServer, prefix: str, transaction: bool, expected: list[list[str]]
) -> None:
    counter = RoundTripCounter()
    client = counter.client(server.url)
    with client.pipeline(transaction=transaction) as pipe:
        pipe.set(f"{prefix}n", 1)
        pipe.incr(f"{prefix}n")
        pipe.delete(f"{prefix}n")
        assert pipe.execute() == [True, 2, 1]
    assert counter.count == 1
    assert counter.commands == expected


def test_counter_reset_forgets_what_was_counted(
    server: BaseServer, prefix: str
) -> None:
    counter = RoundTripCounter()
    client = counter.client(server.url)
    client.get(f"{prefix}k")
    counter.reset()
    assert counter.count == 0
    assert counter.commands == []
    client.get(f"{prefix}k")
    assert counter.count == 1


def test_split_packed_reads_large_values_sent_in_pieces() -> None:
    value = b"x" * 100_000
    packed = Connection().pack_command("SET", "key", value, "EX", 10)
    # redis-py's Python packer sends big values as separate chunks (hiredis's
    # packs one); split_packed reads both, and the chunks are made here.
    pieces = [b"".join(packed)[:30], b"".join(packed)[30:]]
    assert split_packed(pieces) == [(b"SET", b"key", value, b"EX", b"10")]
    assert split_packed(packed) == [(b"SET", b"key", value, b"EX", b"10")]


def test_command_stats_see_a_set(server: BaseServer, prefix: str) -> None:
    before = server.command_stats()
    server.client().set(f"{prefix}k", b"v")
    after = server.command_stats()
    assert after.get("set", 0) - before.get("set", 0) == 1


def test_command_stats_show_only_what_the_test_sent(
    server: BaseServer, prefix: str
) -> None:
    if not server.owned:
        pytest.skip("exact statistics need a server only this suite uses")
    assert server.command_stats() == {}
    client = server.client(protocol=3)
    client.set(f"{prefix}k", b"v")
    client.getex(f"{prefix}k", ex=60)
    assert server.command_stats() == {"set": 1, "getex": 1}
    assert server.command_stats(handshake=True)["hello"] == 1
    server.reset_stats()
    assert server.command_stats() == {}


def test_kill_and_restart(server: BaseServer, prefix: str) -> None:
    client = server.client(socket_timeout=2, retry=NO_RETRY)
    client.set(f"{prefix}k", b"v")
    port = server.port
    server.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    with pytest.raises(redis.ConnectionError):
        server.client(socket_connect_timeout=1, retry=NO_RETRY).ping()
    server.restart()
    assert server.port == port
    assert client.ping() is True
    # Nothing is kept on disk, so a restart starts empty.
    assert client.get(f"{prefix}k") is None
    assert server.command_stats() == {"ping": 1, "get": 1}


def test_stop_makes_commands_hang_until_cont(server: BaseServer, prefix: str) -> None:
    client = server.client(socket_timeout=0.5, retry=NO_RETRY)
    client.set(f"{prefix}k", b"v")
    server.stop()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.get(f"{prefix}k")
    assert time.monotonic() - started >= 0.4
    server.cont()
    assert client.get(f"{prefix}k") == b"v"


def test_revive_continues_a_stopped_server_and_restarts_a_dead_one(
    server: BaseServer,
) -> None:
    probe = server.client(socket_timeout=2, retry=NO_RETRY)
    server.stop()
    server.revive()
    assert probe.ping() is True
    server.kill()
    server.revive()
    assert probe.ping() is True


def test_fault_methods_skip_on_an_external_server() -> None:
    external = ExternalServer("redis://127.0.0.1:1/0")
    for fault in (external.kill, external.stop, external.cont, external.restart):
        with pytest.raises(pytest.skip.Exception, match="REDIS_URL"):
            fault()
    with pytest.raises(RuntimeError, match="FLUSHALL"):
        external.flushall()


def test_a_server_is_never_started_on_the_shared_port(tmp_path: Path) -> None:
    process = ServerProcess("redis", Path("/bin/false"), tmp_path)
    process.port = 6379
    with pytest.raises(RuntimeError, match="refusing"):
        process.restart()
    assert not process.is_running()
