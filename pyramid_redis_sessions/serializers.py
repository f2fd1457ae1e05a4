"""Serializers turn session values into bytes and back, one value at a time.

A serializer is any object with two methods, the protocol WebOb uses for
cookies: ``dumps(appstruct) -> bytes`` and ``loads(bytes) -> appstruct``.
Stored values are authenticated before ``loads`` sees them (every field of
a session carries a MAC keyed from ``secret``; see :doc:`storage`), so
``loads`` only ever reads bytes that this application wrote.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "FunctionSerializer",
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    "builtin_serializers",
]


@runtime_checkable
class Serializer(Protocol):
    """What a ``serializer`` option must provide."""

    def dumps(self, appstruct: Any) -> bytes:
        """The bytes of one session value."""

    def loads(self, bstruct: bytes) -> Any:
        """The value of bytes that :meth:`dumps` made; raise on bad input
        (any exception: the session is then refused)."""


class PickleSerializer:
    """Pickle, the default: any picklable value can go in the session."""

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def dumps(self, appstruct: Any) -> bytes:
        return pickle.dumps(appstruct, protocol=self.protocol)

    def loads(self, bstruct: bytes) -> Any:
        return pickle.loads(bstruct)

    def __repr__(self) -> str:
        return "PickleSerializer()"


class JSONSerializer:
    """JSON: values are limited to JSON types, but readable by any language."""

    def dumps(self, appstruct: Any) -> bytes:
        return json.dumps(appstruct, separators=(",", ":")).encode("utf-8")

    def loads(self, bstruct: bytes) -> Any:
        return json.loads(bstruct)

    def __repr__(self) -> str:
        return "JSONSerializer()"


class FunctionSerializer:
    """Adapts 1.x's ``serialize``/``deserialize`` pair of functions."""

    def __init__(
        self, dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]
    ) -> None:
        self._dumps = dumps
        self._loads = loads

    def dumps(self, appstruct: Any) -> bytes:
        return self._dumps(appstruct)

    def loads(self, bstruct: bytes) -> Any:
        return self._loads(bstruct)

    def __repr__(self) -> str:
        return f"FunctionSerializer({self._dumps!r}, {self._loads!r})"


def builtin_serializers() -> dict[str, Serializer]:
    """The serializers that the ``serializer`` option accepts by name."""
    return {"pickle": PickleSerializer(), "json": JSONSerializer()}
