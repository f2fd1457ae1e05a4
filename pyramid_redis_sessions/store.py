"""The Redis command layer: the only module that talks to Redis.

Each public method of :class:`RedisStore` is exactly one round trip (one
command, or one pipeline), so the cost of a request can be read off the
calls the session makes:

========================================  ==================================
``load(id, ttl)``                         ``GETEX key EX ttl`` (``GET``
                                          when sessions do not expire)
``create(id, value, ttl, replacing=…)``   ``SET key value NX EX ttl``, with
                                          ``DEL`` of replaced keys in the
                                          same pipeline
``save(id, value, ttl)``                  ``SET key value XX EX ttl``
``touch(id, ttl)``                        ``EXPIRE`` (``PERSIST`` for none)
``delete(*ids)``                          ``DEL``
========================================  ==================================

``save`` uses ``XX`` so that a request cannot bring back a session that
another request invalidated, or that expired, while it ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.exceptions

from .exceptions import SessionStoreError, SessionStoreUnavailable
from .values import BadValue

__all__ = ["RedisStore", "describe_server"]


def describe_server(client: Any) -> str:
    """``host:port`` (or the socket path) of the server ``client`` uses."""
    pool = getattr(client, "connection_pool", None)
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {})
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


class RedisStore:
    """Session values in Redis under ``prefix + session_id``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def key(self, session_id: str) -> str:
        return self.prefix + session_id

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            raise SessionStoreUnavailable(
                f"session store Redis at {describe_server(self.client)} "
                f"is unavailable: {e}"
            ) from e
        except redis.exceptions.ResponseError as e:
            if str(e).startswith("WRONGTYPE"):
                raise BadValue("the session key holds another Redis type") from e
            raise SessionStoreError(
                f"session store Redis at {describe_server(self.client)} "
                f"answered with an error: {e}"
            ) from e

    def load(self, session_id: str, ttl: int | None) -> bytes | None:
        """Return the stored value (sliding its expiry to ``ttl``) or ``None``."""
        key = self.key(session_id)
        with self._errors():
            if ttl is None:
                value = self.client.get(key)
            else:
                value = self.client.getex(key, ex=ttl)
        return value  # type: ignore[return-value]

    def create(
        self,
        session_id: str,
        value: bytes,
        ttl: int | None,
        replacing: tuple[str, ...] = (),
    ) -> bool:
        """Store a new session; false if ``session_id`` is taken.

        The keys of ``replacing`` (an invalidated or regenerated session) are
        deleted in the same round trip.
        """
        key = self.key(session_id)
        with self._errors():
            if not replacing:
                return bool(self.client.set(key, value, nx=True, ex=ttl))
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(*(self.key(i) for i in replacing))
            pipe.set(key, value, nx=True, ex=ttl)
            _, created = pipe.execute()
            return bool(created)

    def save(self, session_id: str, value: bytes, ttl: int | None) -> bool:
        """Overwrite an existing session; false if it is gone."""
        with self._errors():
            return bool(self.client.set(self.key(session_id), value, xx=True, ex=ttl))

    def touch(self, session_id: str, ttl: int | None) -> None:
        """Set the expiry of a session without rewriting it."""
        key = self.key(session_id)
        with self._errors():
            if ttl is None:
                self.client.persist(key)
            else:
                self.client.expire(key, ttl)

    def delete(self, *session_ids: str) -> None:
        with self._errors():
            self.client.delete(*(self.key(i) for i in session_ids))
