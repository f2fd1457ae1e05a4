"""What each library sends to Redis: round trips, commands and bytes.

Every library under test gets its ``redis.ConnectionPool`` from here, all
with the same reply parser. A counting pool's connection class reports each
request it writes (one command, or a whole pipeline, transaction or script
call: one round trip) to the active :class:`Recorder`, if any. Timed runs use
plain pools, so that counting adds nothing to what is measured.

What redis-py sends by itself while connecting (HELLO, CLIENT SETINFO, ...)
and health-check PINGs are not counted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from redis.connection import Connection, ConnectionPool

from pyramid_redis_sessions.testing import RoundTripCounter, split_packed

#: The recording in progress, or ``None``. One thread drives the
#: micro-benchmark, so a module global is enough.
_recorder: Recorder | None = None


@dataclasses.dataclass
class Trip:
    """One request/response exchange with the server."""

    phase: str  # "view" while the view runs, "save" afterwards
    nbytes: int  # bytes the client sent
    commands: list[str]  # command names, e.g. ["MULTI", "SET", "EXEC"]


class Recorder:
    """Collects the round trips made while it is active (``with recorder:``)."""

    def __init__(self) -> None:
        self.trips: list[Trip] = []
        self.phase = "view"

    def __enter__(self) -> Recorder:
        global _recorder
        self.trips.clear()
        self.phase = "view"
        _recorder = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _recorder
        _recorder = None


def mark_view_done() -> None:
    """Round trips from now on belong to the response (the save)."""
    if _recorder is not None:
        _recorder.phase = "save"


def packed_bytes(packed: Any) -> bytes:
    if isinstance(packed, str):
        return packed.encode()
    if isinstance(packed, (bytes, bytearray)):
        return bytes(packed)
    return b"".join(bytes(chunk) for chunk in packed)


class _ToRecorder(RoundTripCounter):
    """The package's round-trip counter, reporting to the active recorder."""

    def record(
        self, packed: Any, *, internal: bool, connection: Any = None
    ) -> list[tuple[bytes, ...]]:
        commands = split_packed(packed)
        if _recorder is not None and not internal:
            names = [command[0].decode().upper() for command in commands]
            _recorder.trips.append(
                Trip(_recorder.phase, len(packed_bytes(packed)), names)
            )
        return commands


#: A redis-py TCP connection that reports what it sends.
CountingConnection = _ToRecorder().connection_class(Connection)


def parser_class(parser: str) -> Any:
    """redis-py's reply parser by name: ``python``, ``hiredis`` or ``auto``."""
    from redis.connection import DefaultParser

    if parser == "auto":
        return DefaultParser
    if parser == "python":
        from redis._parsers import _RESP2Parser

        return _RESP2Parser
    if parser == "hiredis":
        from redis._parsers import _HiredisParser
        from redis.utils import HIREDIS_AVAILABLE

        if not HIREDIS_AVAILABLE:
            raise SystemExit("--parser hiredis: the hiredis package is not installed")
        return _HiredisParser
    raise ValueError(parser)


def parser_name(parser: str) -> str:
    return "hiredis" if "Hiredis" in parser_class(parser).__name__ else "python"


def make_pool(
    url: str, parser: str = "auto", *, counting: bool = True, **kwargs: Any
) -> ConnectionPool:
    """A pool with the chosen parser; with ``counting``, the active recorder
    sees its round trips."""
    return ConnectionPool.from_url(
        url,
        connection_class=CountingConnection if counting else Connection,
        parser_class=parser_class(parser),
        **kwargs,
    )
