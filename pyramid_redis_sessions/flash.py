"""Flash messages: one field per message, so concurrent requests' messages
are all kept.

A message's field is :data:`~pyramid_redis_sessions.values.FLASH`, an
order (nanoseconds, made unique per process, then random hex so that two
servers never pick the same field) and the queue's name. A session's
:class:`FlashQueues` is made only when the request uses flash, or when the
session it loads holds messages; it decodes the loaded messages on first
use and contributes its share of the save: the fields it added and those
it popped.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .serializers import Serializer
from .values import FLASH, SessionSeal, field_name, flash_queue

__all__ = ["FlashQueues", "new_field"]

_order_lock = threading.Lock()
_last_order = 0


def new_field(queue: str) -> bytes:
    """A new message's field in ``queue``: ordered by time, unique across
    servers (an order of ``values.FLASH_ORDER_SIZE`` characters)."""
    global _last_order
    with _order_lock:
        _last_order = max(time.time_ns(), _last_order + 1)
        order = _last_order
    return b"%s%020d%s:%s" % (
        FLASH,
        order,
        secrets.token_hex(4).encode(),
        field_name(queue),
    )


class FlashQueues:
    """A session's flash queues: the messages loaded (``payloads``, decoded
    on first use by :meth:`decode`) and this request's changes to them."""

    def __init__(
        self, serializer: Serializer, payloads: Mapping[bytes, bytes] | None = None
    ) -> None:
        self._serializer = serializer
        #: The loaded messages' fields and payloads, as stored.
        self.payloads: Mapping[bytes, bytes] = payloads or {}
        #: Messages this request flashed, by field.
        self.added: dict[bytes, Any] = {}
        #: Loaded fields this request popped.
        self.removed: set[bytes] = set()
        self._queues: dict[str, dict[bytes, Any]] | None = None

    @classmethod
    def of_messages(
        cls, serializer: Serializer, queues: Mapping[str, Sequence[Any]]
    ) -> FlashQueues:
        """Queues holding ``queues``' messages as flashed by this request
        (a legacy session's, which the save stores anew)."""
        self = cls(serializer)
        self._queues = {}
        for queue, messages in queues.items():
            for message in messages:
                field = new_field(queue)
                self._queues.setdefault(queue, {})[field] = message
                self.added[field] = message
        return self

    def decode(self) -> None:
        """Deserialize the loaded messages, once; the serializer's error (any
        exception) if one does not deserialize."""
        if self._queues is not None:
            return
        queues: dict[str, dict[bytes, Any]] = {}
        for field in sorted(self.payloads):
            message = self._serializer.loads(self.payloads[field])
            queues.setdefault(flash_queue(field), {})[field] = message
        self._queues = queues

    def _queue(self, queue: str) -> dict[bytes, Any]:
        assert self._queues is not None, "decode() first"
        return self._queues.setdefault(queue, {})

    def add(self, message: Any, queue: str, allow_duplicate: bool) -> bool:
        """Add ``message`` to ``queue``; false when it is there already and
        duplicates are not allowed (nothing changes then)."""
        messages = self._queue(queue)
        if not allow_duplicate and message in messages.values():
            return False
        field = new_field(queue)
        messages[field] = self.added[field] = message
        return True

    def pop(self, queue: str) -> list[Any]:
        """Remove and return the messages of ``queue``."""
        messages = self._queue(queue)
        popped = list(messages.values())
        for field in messages:
            if field in self.added:
                del self.added[field]
            else:
                self.removed.add(field)
        messages.clear()
        return popped

    def peek(self, queue: str) -> list[Any]:
        """The messages of ``queue``, left there."""
        return list(self._queue(queue).values())

    def add_delta(self, changes: dict[bytes, bytes], deleted: list[bytes]) -> None:
        """Add this request's changes to a stored session's delta."""
        dumps = self._serializer.dumps
        for field, message in self.added.items():
            changes[field] = dumps(message)
        deleted.extend(self.removed)

    def fields(self, seal: SessionSeal) -> list[bytes]:
        """Every message's field and sealed value (flat), for a new key."""
        fields: list[bytes] = []
        for field, payload in self.payloads.items():
            if field not in self.removed:
                fields += [field, seal.seal(field, payload)]
        dumps = self._serializer.dumps
        for field, message in self.added.items():
            fields += [field, seal.seal(field, dumps(message))]
        return fields
