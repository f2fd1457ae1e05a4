"""The ``max_session_size`` limit: what a session takes in Redis, and the
message that names its largest keys; and the longest cookie that can be
ours.

A session's size is the sum of its hash's field names and stored values
(what ``MEMORY USAGE`` grows with, without Redis's own overhead).
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Mapping

from .exceptions import SessionTooLarge
from .values import FLASH, HEADER_SIZE, RESERVED, flash_queue, key_name

__all__ = ["MAX_COOKIE_SIZE", "check", "sizes_after"]

#: Browsers keep about 4 KB per cookie; anything longer was not sent by us.
MAX_COOKIE_SIZE = 4096

_name_repr = reprlib.Repr()
_name_repr.maxstring = 60


def sizes_after(
    stored: Mapping[bytes, bytes],
    added: Mapping[bytes, bytes],
    removed: Iterable[bytes],
) -> dict[bytes, int]:
    """Each field's stored size once a delta is applied to the hash
    ``stored``: ``added`` payloads (sealed on save) and ``removed`` fields."""
    sizes = {field: len(value) for field, value in stored.items()}
    for field in removed:
        sizes.pop(field, None)
    for field, payload in added.items():
        sizes[field] = HEADER_SIZE + len(payload)
    return sizes


def check(limit: int, sizes: Mapping[bytes, int]) -> None:
    """:class:`SessionTooLarge` if the fields ``sizes`` gives (field to
    stored value's size) take more than ``limit`` bytes."""
    size = sum(map(len, sizes)) + sum(sizes.values())
    if size > limit:
        raise SessionTooLarge(size, limit, _largest(sizes))


def _largest(sizes: Mapping[bytes, int], count: int = 3) -> list[tuple[str, int]]:
    """The ``count`` largest session keys (a flash queue counts as one) and
    the bytes each takes (its field's name and value)."""
    totals: dict[str, int] = {}
    for field, size in sizes.items():
        if field.startswith(FLASH):
            name = f"flash queue {_name_repr.repr(flash_queue(field))}"
        elif field[:1] == RESERVED:
            name = field[1:].decode("ascii", "replace")
        else:
            name = _name_repr.repr(key_name(field))
        totals[name] = totals.get(name, 0) + len(field) + size
    return sorted(totals.items(), key=lambda item: -item[1])[:count]
