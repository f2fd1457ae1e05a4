"""Reading and forging stored sessions as an attacker or operator would:
straight through a Redis client, with or without the secret."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

from pyramid_redis_sessions.values import CREATED, FieldCodec
from tests.app import SECRET
from tests.servers import BaseServer


def fields(server: BaseServer, key: str) -> dict[bytes, bytes]:
    """The raw hash of a session key."""
    raw: dict[bytes, bytes] = server.client().hgetall(key)
    return raw


def seal(session_id: str, field: bytes, payload: bytes, secret: str = SECRET) -> bytes:
    """A field value as the app with ``secret`` would store it."""
    return FieldCodec(secret).for_session(session_id).seal(field, payload)


def open_field(session_id: str, field: bytes, value: bytes) -> bytes:
    """The payload of a stored field (checked with the test secret)."""
    return FieldCodec(SECRET).for_session(session_id).open(field, value)[0]


def write_session(
    server: BaseServer,
    prefix: str,
    session_id: str,
    values: dict[bytes, bytes],
    *,
    created: float | None = None,
    ttl: int | None = 1200,
) -> None:
    """Store a session of signed fields (payloads given) directly."""
    key = prefix + session_id
    stamp = repr(time.time() if created is None else created).encode()
    mapping = {CREATED: seal(session_id, CREATED, stamp)}
    mapping.update({f: seal(session_id, f, p) for f, p in values.items()})
    client = server.client()
    client.delete(key)
    client.hset(key, mapping=mapping)
    if ttl is not None:
        client.expire(key, ttl)


def backdate(server: BaseServer, prefix: str, session_id: str, seconds: float) -> None:
    """Move a stored session's creation time ``seconds`` into the past."""
    key = prefix + session_id
    stored = open_field(session_id, CREATED, fields(server, key)[CREATED])
    earlier = repr(float(stored) - seconds).encode()
    server.client().hset(key, CREATED, seal(session_id, CREATED, earlier))


class CreatesFile:
    """Pickles to a call of ``open(path, 'w')``: unpickling it creates the
    file, a stand-in for running an attacker's code."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def evil_pickle(path: Path | str, protocol: int = pickle.DEFAULT_PROTOCOL) -> bytes:
    """A pickle that creates ``path`` when it is loaded."""
    return pickle.dumps(CreatesFile(path), protocol)
