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

    def record(self, packed: Any) -> None:
        data = packed_bytes(packed)
        self.trips.append(Trip(self.phase, len(data), command_names(data)))


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


def command_names(data: bytes) -> list[str]:
    """The name of each RESP command array in ``data``."""
    names: list[str] = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 1] != b"*":
            raise ValueError(
                f"not a RESP array at byte {pos}: {data[pos : pos + 20]!r}"
            )
        end = data.index(b"\r\n", pos)
        count = int(data[pos + 1 : end])
        pos = end + 2
        for i in range(count):
            end = data.index(b"\r\n", pos)
            length = int(data[pos + 1 : end])
            pos = end + 2
            if i == 0:
                names.append(data[pos : pos + length].decode().upper())
            pos += length + 2
    return names


class CountingConnection(Connection):
    """A redis-py TCP connection that reports what it sends."""

    _internal_depth = 0

    def _internally(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._internal_depth += 1
        try:
            return getattr(super(), method)(*args, **kwargs)
        finally:
            self._internal_depth -= 1

    # redis-py 5 handshakes in connect(); later versions also reach
    # connect_check_health() straight from send_packed_command().
    def connect(self, *args: Any, **kwargs: Any) -> Any:
        return self._internally("connect", *args, **kwargs)

    def connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
        return self._internally("connect_check_health", *args, **kwargs)

    def check_health(self, *args: Any, **kwargs: Any) -> Any:
        return self._internally("check_health", *args, **kwargs)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
        if _recorder is not None and not self._internal_depth:
            _recorder.record(command)


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
