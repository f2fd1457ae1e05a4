"""The load test: the app under waitress, driven over loopback HTTP.

Each library's app runs in its own subprocess (``python -m benchmarks.load
LIBRARY URL THREADS``), served by waitress with 8 threads, so that the load
generator (threads in this process) does not share a GIL with it; with
``--workers N``, by gunicorn with N forked sync workers instead
(``benchmarks.load:wsgi()``, configured from the environment). After an
untimed warm-up round of each (a gunicorn worker boots after the port is
open), rounds alternate between the libraries; each round is bounded in
time and in requests.

Every simulated user logs in (``/setup``: a 1 KB session), then increments
its own counter (``/inc``) one request at a time, checking each answer; at
the end of the round its counter is read back (``/count``) and must equal
the number of increments that succeeded. A user never has two requests in
flight, so any difference is a lost or doubled write.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis import ConnectionPool

from tests.servers import free_port, stop_process, wait_listening

from .app import LIBRARIES, SIZES, make_app
from .micro import db_url
from .report import machine_note
from .server import pinned

WAITRESS_THREADS = 8
SERVER_START_TIMEOUT = 30.0
#: Per-request socket timeout of the load generator.
REQUEST_TIMEOUT = 10.0


# -- the server side (runs in the subprocess) ----------------------------------


def serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load")
    parser.add_argument("library", choices=["ours", "fork"])
    parser.add_argument("url")
    parser.add_argument("--threads", type=int, default=WAITRESS_THREADS)
    args = parser.parse_args(argv)

    import logging

    import waitress

    # A saturated server logs "Task queue depth is N" per request: that is
    # the point of the test, not news.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    lib = LIBRARIES[args.library]
    # Enough connections for every waitress thread.
    pool = ConnectionPool.from_url(db_url(args.url, lib.db), max_connections=64)
    app = make_app(lib.factory(pool), SIZES["1KB"].payload())
    server = waitress.create_server(
        app, host="127.0.0.1", port=0, threads=args.threads, ident=None
    )

    def exit_when_parent_goes() -> None:
        # The parent keeps our stdin open; EOF means it is done (or died).
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    print(f"PORT {server.effective_port}", flush=True)
    server.run()


def wsgi() -> Any:
    """The app gunicorn serves: ``BENCH_LIBRARY``'s, on ``BENCH_URL``."""
    lib = LIBRARIES[os.environ["BENCH_LIBRARY"]]
    pool = ConnectionPool.from_url(db_url(os.environ["BENCH_URL"], lib.db))
    return make_app(lib.factory(pool), SIZES["1KB"].payload())


class AppServer:
    """One library's app, served by waitress (or, with ``workers``,
    gunicorn) in a subprocess."""

    def __init__(
        self, library: str, url: str, workers: int = 0, cpus: set[int] | None = None
    ) -> None:
        self.library = library
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if workers:
            self.port = free_port()
            self.process = subprocess.Popen(
                pinned([
                    sys.executable, "-m", "gunicorn",
                    "--workers", str(workers),
                    "--bind", f"127.0.0.1:{self.port}",
                    "--log-level", "warning",
                    "benchmarks.load:wsgi()",
                ], cpus),
                env={**os.environ, "BENCH_LIBRARY": library, "BENCH_URL": url},
                stdin=subprocess.DEVNULL,
                cwd=root,
            )  # fmt: skip
            wait_listening(self.port, self.process)
            return
        self.process = subprocess.Popen(
            pinned([sys.executable, "-m", "benchmarks.load", library, url], cpus),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            text=True,
        )
        self.port = self._read_port()

    def _read_port(self) -> int:
        assert self.process.stdout is not None
        found: list[int] = []

        def read() -> None:
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            if line.startswith("PORT "):
                found.append(int(line.split()[1]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(SERVER_START_TIMEOUT)
        if not found:
            self.close()
            raise RuntimeError(f"{self.library} app server did not start")
        return found[0]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        stop_process(self.process)  # for gunicorn, SIGTERM is a graceful stop


# -- the load generator --------------------------------------------------------


class User:
    def __init__(self) -> None:
        self.cookie: str | None = None
        self.count = 0  # increments the server confirmed
        self.step = 0  # requests made since /setup


class Client:
    """One keep-alive HTTP connection, used by one thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str, cookie: str | None) -> tuple[int, str, str | None]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT
            )
        headers = {"Cookie": cookie} if cookie else {}
        try:
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
            body = response.read().decode()
        except Exception:
            self.conn.close()
            self.conn = None
            raise
        set_cookie = None
        for value in response.headers.get_all("Set-Cookie") or []:
            if value.startswith("session=") and not value.startswith("session=;"):
                set_cookie = value.split(";", 1)[0]
        return response.status, body, set_cookie

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def load_round(
    port: int,
    users: int,
    clients: int,
    seconds: float,
    max_requests: int,
    reads: int = 0,
) -> dict[str, Any]:
    """One bounded round against one server; returns counts and latencies."""
    people = [User() for _ in range(users)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[list[str]] = [[] for _ in range(clients)]
    per_client = max(1, max_requests // clients)
    start = time.perf_counter()
    deadline = start + seconds

    def work(index: int) -> None:
        client = Client(port)
        mine = people[index::clients]
        done = 0
        try:
            while mine and done < per_client and time.perf_counter() < deadline:
                for user in mine:
                    if done >= per_client or time.perf_counter() >= deadline:
                        break
                    path = "/inc" if user.cookie else "/setup"
                    if user.cookie and user.step % (reads + 1) != reads:
                        path = "/count"  # a read of what the last /inc left
                    user.step += 1
                    t0 = time.perf_counter()
                    try:
                        status, body, cookie = client.get(path, user.cookie)
                    except Exception as exc:  # counted, reported
                        errors[index].append(f"{path}: {type(exc).__name__}: {exc}")
                        continue
                    finally:
                        done += 1
                    latencies[index].append(time.perf_counter() - t0)
                    if status != 200:
                        errors[index].append(f"{path}: HTTP {status}")
                    elif path == "/setup":
                        if cookie is None:
                            errors[index].append("/setup set no cookie")
                        user.cookie = cookie
                    elif path == "/count":
                        if body != str(user.count):
                            errors[index].append(f"/count: {body}, not {user.count}")
                    elif body != str(user.count + 1):
                        errors[index].append(f"/inc: {body} after {user.count}")
                        user.count = int(body) if body.isdigit() else user.count
                    else:
                        user.count += 1
                        if cookie is not None and cookie != user.cookie:
                            errors[index].append("/inc changed the session cookie")
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 2 * REQUEST_TIMEOUT + 5)
    elapsed = time.perf_counter() - start
    all_latencies = sorted(x for chunk in latencies for x in chunk)
    all_errors = [e for chunk in errors for e in chunk]

    # Every user's counter, read back, must be exactly what it was told.
    checker = Client(port)
    wrong = 0
    try:
        for user in people:
            if user.cookie is None:
                continue
            status, body, _cookie = checker.get("/count", user.cookie)
            if status != 200 or body != str(user.count):
                wrong += 1
                all_errors.append(f"user counter {body!r}, expected {user.count}")
    finally:
        checker.close()
    return {
        "requests": len(all_latencies),
        "seconds": elapsed,
        "rps": len(all_latencies) / elapsed,
        "latencies": all_latencies,
        "errors": all_errors,
        "users": sum(1 for u in people if u.cookie),
        "increments": sum(u.count for u in people),
        "counters_wrong": wrong,
    }


def cache_stats(port: int, processes: int) -> dict[str, Any] | None:
    """The local cache counts summed over the app's ``processes`` (asked
    until each has answered, or 20 tries per process: a request goes to
    whichever worker accepts it)."""
    by_pid: dict[int, dict[str, Any]] = {}
    checker = Client(port)
    try:
        for _ in range(20 * processes):
            stats = json.loads(checker.get("/cache-stats", None)[1])
            if stats is None:
                return None
            by_pid[stats.pop("pid")] = stats
            if len(by_pid) == processes:
                break
    finally:
        checker.close()
    counts = ("hits", "misses")
    total = {k: sum(s[k] for s in by_pid.values()) for k in counts}
    total["processes"] = len(by_pid)
    return total


def pinning(args: argparse.Namespace) -> str:
    """Which CPUs the app servers, the generator and Redis were pinned to."""
    pins = [
        f"{who} on CPU {','.join(map(str, sorted(cpus)))}"
        for who, cpus in [
            ("apps", getattr(args, "app_cpus", None)),
            ("generator", getattr(args, "client_cpus", None)),
            ("Redis", getattr(args, "server_cpus", None)),
        ]
        if cpus
    ]
    return ", ".join(pins) if pins else "unpinned"


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def run_load(
    args: argparse.Namespace, url: str, log: Callable[[str], None]
) -> dict[str, Any]:
    libraries = [
        name
        for name in ("ours", "fork")
        if name in args.libraries.split(",") and not LIBRARIES[name].available()
    ]
    for name in libraries:
        redis.Redis.from_url(db_url(url, LIBRARIES[name].db)).flushdb()
    servers: dict[str, AppServer] = {}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in libraries}
    workers = getattr(args, "workers", 0)
    app_cpus = getattr(args, "app_cpus", None)
    client_cpus = getattr(args, "client_cpus", None)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    reads = getattr(args, "reads", 0)

    def one_round(name: str, seconds: float) -> dict[str, Any]:
        return load_round(
            servers[name].port, args.users, args.clients, seconds,
            args.max_requests, reads,
        )  # fmt: skip

    try:
        for name in libraries:
            servers[name] = AppServer(name, url, workers, app_cpus)
        for name in libraries:
            # Untimed: gunicorn's workers boot after the port is open, and
            # the first library's first round would time that.
            log(f"load warm-up: {name}")
            one_round(name, min(1.0, args.seconds))
        for index in range(args.rounds):
            order = libraries if index % 2 == 0 else libraries[::-1]
            for name in order:
                log(f"load round {index + 1}/{args.rounds}: {name}")
                rounds[name].append(one_round(name, args.seconds))
        cache: dict[str, Any] = {}
        for name, server in servers.items():
            cache[name] = cache_stats(server.port, max(1, workers))
    finally:
        for server in servers.values():
            server.close()

    summary: dict[str, Any] = {}
    problems: list[str] = []
    served = (
        f"gunicorn {workers} sync workers per app"
        if workers
        else f"waitress {WAITRESS_THREADS} threads per app (subprocess)"
    )
    lines = [
        f"load: {served}, "
        f"{args.users} users, {args.clients} client threads, {args.rounds} "
        f"rounds x {args.seconds:g} s per library, alternating; 1 KB sessions; "
        f"{getattr(args, 'reads', 0)} reads per write; {pinning(args)}",
        f"{'library':<8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'requests':>9} {'errors':>7} {'counters':>12}",
    ]
    for name in libraries:
        latencies = sorted(x for r in rounds[name] for x in r["latencies"])
        errors = [e for r in rounds[name] for e in r["errors"]]
        wrong = sum(r["counters_wrong"] for r in rounds[name])
        users = sum(r["users"] for r in rounds[name])
        p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        summary[name] = {
            "rps_median": statistics.median(r["rps"] for r in rounds[name]),
            "rps_rounds": [r["rps"] for r in rounds[name]],
            "p50_ms": p50 and p50 * 1000,
            "p99_ms": p99 and p99 * 1000,
            "requests": len(latencies),
            "errors": len(errors),
            "error_samples": errors[:10],
            "users_checked": users,
            "counters_wrong": wrong,
        }
        s = summary[name]
        lines.append(
            f"{name:<8} {s['rps_median']:>8.0f} {s['p50_ms'] or 0:>8.2f} "
            f"{s['p99_ms'] or 0:>8.2f} {s['requests']:>9} {s['errors']:>7} "
            f"{users - wrong:>5}/{users:<5} exact"
        )
        problems += [f"load {name}: {e}" for e in errors[:10]]
        if not latencies:
            problems.append(f"load {name}: no request completed")
    stats = cache.get("ours")
    if stats and stats["hits"] + stats["misses"]:
        rate = stats["hits"] / (stats["hits"] + stats["misses"])
        summary["ours"]["cache"] = stats
        lines.append(f"ours: local cache hit rate {rate:.0%} ({stats})")
    if "ours" in summary and "fork" in summary:
        lines.append(
            "ours/fork req/s: "
            f"{summary['ours']['rps_median'] / summary['fork']['rps_median']:.2f}"
        )
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_note(),
        "users": args.users,
        "clients": args.clients,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "waitress_threads": WAITRESS_THREADS,
        "gunicorn_workers": workers,
        "pinning": pinning(args),
    }
    lines.insert(0, f"load test, {meta['date']}, {meta['machine']}")
    return {
        "meta": meta,
        "summary": summary,
        "text": "\n".join(lines),
        "problems": problems,
    }


if __name__ == "__main__":
    serve(sys.argv[1:])
