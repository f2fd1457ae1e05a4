"""Read cost of the hash-of-signed-fields format against an older revision.

Runs both in one process, batches interleaved, against a redis-server this
script starts on a free loopback port::

    python benchmarks/storage_format.py [--baseline 25f7144] [--batches 30]

The baseline revision's package is exported with ``git archive`` and
imported under another name, so the two live side by side. Each sample is
one whole request's session work: cookie check, load, the reads, and the
response callback (no WSGI stack, so the ratio shows the session's own
cost). Medians of per-batch means; the ratio is current / baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyramid.request import Request
from pyramid.response import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyramid_redis_sessions as current  # noqa: E402
from benchmarks.baseline import against  # noqa: E402

SECRET = "benchmark-secret-0123456789abcdef0123456789abcdef"


def session_data(keys: int, size: int) -> dict[str, Any]:
    return {f"key{i:02d}": "v" * (size // keys) for i in range(keys)}


def make_cookie(factory: Any, data: dict[str, Any]) -> str:
    request = Request.blank("/")
    session = factory(request)
    session.update(data)
    response = Response()
    request._process_response_callbacks(response)
    cookie: str = response.headers["Set-Cookie"].split(";")[0]
    return cookie


def request_work(
    factory: Any, cookie: str, work: Callable[[Any], Any]
) -> Callable[[], None]:
    def one() -> None:
        request = Request.blank("/", headers={"Cookie": cookie})
        session = factory(request)
        work(session)
        request._process_response_callbacks(Response())

    return one


def per_call_us(fn: Callable[[], None], calls: int) -> tuple[float, float]:
    """Wall-clock and this process's CPU µs per call."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    wall = (time.perf_counter() - started) / calls * 1e6
    return wall, (time.process_time() - cpu) / calls * 1e6


def server_us(client: Any, fn: Callable[[], None], calls: int) -> float:
    """Server CPU µs per call, from INFO commandstats."""
    client.config_resetstat()
    for _ in range(calls):
        fn()
    stats = client.info("commandstats")
    total = sum(v["usec"] for k, v in stats.items() if k != "cmdstat_config|resetstat")
    return float(total) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="25f7144")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    with against(args.baseline) as (baseline, server):
        libs = {
            "current": current.RedisSessionFactory(SECRET, url=server.url),
            args.baseline: baseline.RedisSessionFactory(SECRET, url=server.url),
        }
        scenarios: dict[str, tuple[dict[str, Any], Callable[[Any], Any]]] = {
            "1 KB, 5 keys, read whole": (
                session_data(5, 1000),
                lambda s: s.items(),
            ),
            "50 keys, read one": (session_data(50, 5000), lambda s: s["key07"]),
            "50 keys, read whole": (session_data(50, 5000), lambda s: s.items()),
        }
        runs = f"{args.batches} batches x {args.calls} calls"
        print(f"{server.name} at {server.url}; {runs}")
        print("µs per request: wall (median of batches), client CPU, server CPU")
        print(
            f"{'scenario':28} {'lib':8} {'wall':>7} {'cpu':>7} {'server':>7}"
            f" {'wall ratio':>10} {'cpu+srv ratio':>13}"
        )
        for name, (data, work) in scenarios.items():
            fns = {
                lib: request_work(f, make_cookie(f, data), work)
                for lib, f in libs.items()
            }
            for fn in fns.values():
                per_call_us(fn, 50)  # warm up: connections, scripts
            walls: dict[str, list[float]] = {lib: [] for lib in fns}
            cpus: dict[str, list[float]] = {lib: [] for lib in fns}
            for _ in range(args.batches):
                for lib, fn in fns.items():
                    wall, cpu = per_call_us(fn, args.calls)
                    walls[lib].append(wall)
                    cpus[lib].append(cpu)
            admin = server.admin()
            rows = {
                lib: (
                    statistics.median(walls[lib]),
                    statistics.median(cpus[lib]),
                    server_us(admin, fn, args.calls),
                )
                for lib, fn in fns.items()
            }
            (w0, c0, s0), (w1, c1, s1) = rows.values()
            for lib, (w, c, sv) in rows.items():
                ratios = (
                    f" {w0 / w1:10.2f} {(c0 + s0) / (c1 + s1):13.2f}"
                    if lib == "current"
                    else ""
                )
                print(f"{name:28} {lib:8} {w:7.1f} {c:7.1f} {sv:7.1f}{ratios}")


if __name__ == "__main__":
    main()
