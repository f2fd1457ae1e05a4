"""Real servers under load: the app served by waitress (8 threads) and by
gunicorn (2 forked workers, ``--preload``), driven over loopback HTTP by
``benchmarks.load``'s generator. Many users, each with their own session,
each incrementing their own counter one request at a time: zero errors, and
every counter read back exact. Bounded in requests and in time."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.load import load_round
from tests.servers import (
    LOOPBACK,
    BaseServer,
    free_port,
    stop_process,
    wait_listening,
)

pytestmark = pytest.mark.load

ROOT = Path(__file__).resolve().parent.parent
USERS = 200
CLIENTS = 8
MAX_REQUESTS = 4000
SECONDS = 8.0
START_TIMEOUT = 30.0


def _env(server: BaseServer, prefix: str, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "LOAD_URL": server.url,
        "LOAD_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
        **more,
    }


@pytest.fixture
def waitress_port(server: BaseServer, prefix: str) -> Iterator[int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.loadapp"],
        env=_env(server, prefix),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        found: list[int] = []

        def read() -> None:
            assert process.stdout is not None
            line = process.stdout.readline()
            if line.startswith("PORT "):
                found.append(int(line.split()[1]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)
        assert found, "waitress did not start"
        yield found[0]
    finally:
        if process.stdin is not None:
            process.stdin.close()
        stop_process(process)


@pytest.fixture
def gunicorn(server: BaseServer, prefix: str, tmp_path: Path) -> Iterator[Any]:
    """gunicorn with 2 workers of 4 threads, the app built (and its Redis
    client used once) in the master before the fork."""
    port = free_port()
    warm = tmp_path / "master-client-id"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn",
            "--preload", "--workers", "2", "--threads", "4",
            "--bind", f"{LOOPBACK}:{port}",
            "--log-level", "warning",
            "tests.loadapp:make()",
        ],
        env=_env(server, prefix, LOAD_WARM=str(warm)),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port, process)
        yield port, int(warm.read_text())
    finally:
        stop_process(process)


def _check(outcome: dict[str, Any]) -> None:
    summary = {k: v for k, v in outcome.items() if k != "latencies"}
    print(
        f"load: {outcome['requests']} requests in {outcome['seconds']:.1f} s "
        f"({outcome['rps']:.0f}/s), {len(outcome['errors'])} errors, "
        f"{outcome['users']} users, {outcome['increments']} increments"
    )
    assert outcome["errors"] == [], summary
    assert outcome["counters_wrong"] == 0, summary
    # Every user logged in and counted; requests bounded by MAX_REQUESTS.
    assert outcome["users"] == USERS, summary
    assert outcome["requests"] <= MAX_REQUESTS
    assert outcome["increments"] == outcome["requests"] - USERS


def test_waitress_8_threads_many_users_every_counter_exact(
    waitress_port: int,
) -> None:
    started = time.monotonic()
    _check(load_round(waitress_port, USERS, CLIENTS, SECONDS, MAX_REQUESTS))
    assert time.monotonic() - started < SECONDS + 10


def _get_json(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def test_gunicorn_preload_workers_each_have_their_own_connections(
    gunicorn: tuple[int, int], server: BaseServer
) -> None:
    port, master_client_id = gunicorn
    started = time.monotonic()
    _check(load_round(port, USERS, CLIENTS, SECONDS, MAX_REQUESTS))
    assert time.monotonic() - started < SECONDS + 10
    # Fresh connections per request to /pool, so both workers answer.
    seen: dict[int, set[int]] = {}
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        answer = _get_json(port, "/pool")
        # redis-py's pool noticed the fork and started afresh in the worker.
        assert answer["pool_pid"] == answer["pid"]
        seen.setdefault(answer["pid"], set()).add(answer["client_id"])
    assert len(seen) == 2, "both workers should answer"
    first, second = seen.values()
    assert not first & second  # no connection shared between workers
    assert master_client_id not in first | second  # nor with the master
    # The master's connection, opened before the fork, stayed unused.
    (master,) = [
        c for c in server.admin().client_list() if int(c["id"]) == master_client_id
    ]
    assert master["cmd"] == "client|id"
