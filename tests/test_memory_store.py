"""The in-memory store (``tests/memory_store.py``) against a real server:
the same calls, the same answers, the same hashes left behind. The
server-free unit tests rest on it; this keeps it honest."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from pyramid_redis_sessions.store import GONE, MOVED, TAKEN, IndexUpdate, RedisStore
from pyramid_redis_sessions.values import USER, FieldCodec
from tests.app import SECRET
from tests.memory_store import MemoryStore
from tests.servers import BaseServer

Step = Callable[[Any], Any]


def _sealed(session_id: str, created: float, **extra: bytes) -> list[bytes]:
    from pyramid_redis_sessions.values import CREATED, TIMEOUT

    seal = FieldCodec(SECRET).for_session(session_id)
    flat = [CREATED, seal.seal(CREATED, repr(created).encode())]
    if "timeout" in extra:
        flat += [TIMEOUT, seal.seal(TIMEOUT, extra.pop("timeout"))]
    for name, value in extra.items():
        flat += [name.encode(), value]
    return flat


def _ttl_bucket(seconds: float | None) -> int | None:
    """A TTL in whole seconds, as both stores can agree on it."""
    return None if seconds is None or seconds < 0 else round(seconds)


def _run(store: Any, now: float) -> list[Any]:
    """One sequence of every kind of call, with the answers and the state
    each leaves (a hash and its TTL) recorded."""
    seen: list[Any] = []

    def state(session_id: str) -> tuple[Any, Any]:
        if isinstance(store, MemoryStore):
            return store.stored(session_id), _ttl_bucket(store.ttl_of(session_id))
        client = store.client
        key = store.key(session_id)
        return client.hgetall(key), _ttl_bucket(
            client.ttl(key) if client.exists(key) else None
        )

    a = _sealed("a", now, x=b"1")
    seen.append(store.create("a", a, 100))
    seen.append(store.create("a", a, 100))  # taken
    seen.append(state("a"))
    seen.append(store.save("a", [b"y", b"2"], [b"x"], 200))
    seen.append(state("a"))
    seen.append(store.save("nobody", [b"y", b"2"], [], 200))  # ended: refused
    seen.append(state("nobody"))
    seen.append(store.load("a", 300, None, now))
    seen.append(state("a"))  # slid to the default timeout
    b = _sealed("b", now - 50, timeout=b"40")
    store.create("b", b, 1000)
    seen.append(store.load("b", 300, None, now))
    seen.append(state("b"))  # its own timeout
    seen.append(store.load("b", 300, 60, now))
    seen.append(state("b"))  # past its absolute deadline: deleted
    seen.append(store.load("missing", 300, None, now))
    seen.append([store.read("a"), store.read("missing")])
    seen.append(store.move(store.key("a"), "c", _sealed("c", now, z=b"3"), 100))
    seen.append([state("a"), state("c")])
    seen.append(
        store.move(store.key("a"), "c", _sealed("c", now, z=b"3"), 100)
    )  # retried
    seen.append(store.move(store.key("gone"), "d", _sealed("d", now), 100))
    store.create("e", _sealed("e", now), 100)
    seen.append(store.move(store.key("c"), "e", _sealed("e", now), 100))  # taken
    index = store.prefix + "index:u"
    update = IndexUpdate(index, add=[("c", now + 100), ("e", now - 1)])
    seen.append(store.update_index(update))  # e's score has passed: a suspect
    seen.append(store.index_members(index))
    store.save("c", [USER, b"sealed-user"], [], 100)
    seen.append(store.inspect(["c", "missing"], [USER]))
    seen.append(
        store.end(
            ["c", "e"],
            USER,
            [[b"sealed-user"], [b"x"]],
            IndexUpdate(index, remove=["c"]),
        )
    )
    seen.append([state("c"), state("e"), store.index_members(index)])
    store.delete(store.key("e"), index=[IndexUpdate(index, remove=["e"])])
    seen.append([state("e"), store.index_members(index)])
    return [_plain(x) for x in seen]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(x) for x in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, float):
        return round(value, 3)
    return value


def test_the_memory_store_answers_as_the_real_one(
    server: BaseServer, prefix: str
) -> None:
    now = time.time()
    real = _run(RedisStore(server.client(), prefix), now)
    memory = _run(MemoryStore(prefix), now)
    # The PTTL of inspect is in milliseconds: compare it in seconds.
    for answers in (real, memory):
        answers[-4] = [[round(ttl / 1000), values] for ttl, values in answers[-4]]
    assert memory == real
    assert real[0] is True and real[1] is False and real[5] is False
    assert [real[i] for i in (15, 17, 18, 19)] == [MOVED, MOVED, GONE, TAKEN]
    assert real[20] == ["e"] and real[23] == [True, False]


@pytest.mark.parametrize("ttl", [None, 50])
def test_a_memory_session_expires_by_its_clock(ttl: int | None) -> None:
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    store.create("a", _sealed("a", now[0]), ttl)
    now[0] += 49
    assert store.stored("a")
    now[0] += 1
    assert bool(store.stored("a")) is (ttl is None)
    assert store.calls == ["create"]
