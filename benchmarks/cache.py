"""Reads with and without the local cache, against the floor and the peers.

One process, one server of its own, every unit's batches interleaved in a
shuffled order, so that ratios compare like with like::

    python -m benchmarks.cache [--baseline REV] [--size 1KB]
        [--client-cpu 0 --server-cpu 1]

``--client-cpu`` and ``--server-cpu`` pin this process and the server (on
this kind of VM the round trip is ~30 µs with both on one vCPU, ~125 µs
on two: pin, and run both placements). Units, each a WSGI request through
Pyramid with a ``size`` session:

* ``floor``: the untouched request plus one bare redis-py ``GETEX`` of a
  value of the session's size: what any server-side session must cost;
* ``cookie``: Pyramid's ``SignedCookieSessionFactory``, reading a key;
* ``hit``: this package, the session in the process's local cache;
* ``miss``: this package with ``local_cache=0`` (a bare ``HGETALL``);
* ``base``: this package at ``REV`` (default ``main``), reading;
* ``fork``: pyramid_session_redis, reading; ``fork-write``: writing;
* ``write-hit``: this package writing a session it had in its cache (the
  read before each timed write is not timed);
* ``noop`` and ``bot``: the untouched request, and a request without a
  cookie that reads the session (this package);
* ``dict``: the least any session adds to ``noop``: a session factory
  returning a new ``dict`` that registers one response callback adding
  ``Vary: Cookie``, reading a key (what ``bot`` must cost at least).

Prints the median µs per request of each unit and the medians (and
interquartile ranges) of the per-batch ratios that the targets name.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

import pyramid_redis_sessions as current  # noqa: E402
from benchmarks import app as bench  # noqa: E402
from benchmarks.baseline import against  # noqa: E402

#: (unit, against, label, target): the ratios the targets name.
RATIOS = [
    ("hit", "floor", "read, cache hit / floor", 0.5),
    ("hit", "cookie", "read, cache hit / cookie session", 0.5),
    ("miss", "base", "read, miss / base's read", 0.85),
    ("write-hit", "fork-write", "write on a hit / fork's write", 0.6),
    ("bot", "noop", "bot / Pyramid's untouched request", 1.3),
    ("dict", "noop", "a dict session / Pyramid's untouched request", None),
    ("bot", "dict", "bot / a dict session", None),
    ("miss", "floor", "read, miss / floor", None),
    ("base", "floor", "base's read / floor", None),
]


def plot(path: str, rows: list[tuple[str, float, float, float, float | None]]) -> None:
    """Each ratio's median with its interquartile range, and its target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.0), dpi=120)
    for y, (_label, q1, med, q3, target) in enumerate(reversed(rows)):
        ax.errorbar(
            med, y, xerr=[[med - q1], [q3 - med]], fmt="o", color="#1f77b4", capsize=4
        )
        if target is not None:
            ax.plot([target], [y], marker="|", markersize=16, color="#d62728")
        ax.annotate(
            f"{med:.2f}",
            (q3, y),
            xytext=(6, -4),
            textcoords="offset points",
            fontsize=9,
        )
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=9)
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel(
        "ratio (median of per-batch ratios; bars: interquartile range; red: target)",
        fontsize=9,
    )
    ax.set_xlim(left=0)
    fig.tight_layout()
    fig.savefig(path)


def _setup(app: Any) -> str:
    cookie = bench.call(app, bench.environ("GET", "/setup")).set_cookie()
    assert cookie is not None
    return cookie


def _vary(request: Any, response: Any) -> None:
    response.headerlist.append(("Vary", "Cookie"))


def dict_session(request: Any) -> dict[str, Any]:
    """A session factory: a new ``dict`` whose response callback adds
    ``Vary: Cookie``, as any session's must."""
    request.add_response_callback(_vary)
    return {}


def _timed(run: Callable[[], None], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        run()
    return (time.perf_counter() - started) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", metavar="REV", default="main")
    parser.add_argument("--size", default="1KB", choices=sorted(bench.SIZES))
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("-n", "--requests", type=int, default=200)
    parser.add_argument("--client-cpu", type=int)
    parser.add_argument("--server-cpu", type=int)
    parser.add_argument("--plot", metavar="PNG", help="draw the ratios there")
    args = parser.parse_args(argv)
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})
    size = bench.SIZES[args.size]
    payload = size.payload()

    with against(args.baseline) as (baseline, server):
        if args.server_cpu is not None:
            os.sched_setaffinity(server._pid(), {args.server_cpu})
        pool = redis.ConnectionPool.from_url(server.url)
        url = server.url
        from pyramid.session import SignedCookieSessionFactory
        from pyramid_session_redis import RedisSessionFactory as Fork

        ours = current.RedisSessionFactory(
            bench.SECRET, timeout=bench.TIMEOUT, url=url, prefix="hit:"
        )
        nocache = current.RedisSessionFactory(
            bench.SECRET, timeout=bench.TIMEOUT, url=url, prefix="miss:", local_cache=0
        )
        base = baseline.RedisSessionFactory(
            bench.SECRET, timeout=bench.TIMEOUT, url=url, prefix="base:"
        )
        fork = Fork(bench.SECRET, timeout=bench.TIMEOUT, redis_connection_pool=pool)
        cookie = SignedCookieSessionFactory(bench.SECRET, timeout=bench.TIMEOUT)
        apps = {
            name: bench.make_app(factory, payload)
            for name, factory in [
                ("ours", ours),
                ("nocache", nocache),
                ("base", base),
                ("fork", fork),
                ("cookie", cookie),
                ("dict", dict_session),
            ]
        }
        cookies = {name: _setup(app) for name, app in apps.items() if name != "dict"}
        client = redis.Redis(connection_pool=pool)
        client.set("floor-value", "v" * size.total)

        def request(
            name: str, path: str, with_cookie: bool = True
        ) -> Callable[[], None]:
            app = apps[name]
            value = cookies[name] if with_cookie else None

            def run() -> None:
                bench.call_fast(app, bench.environ("GET", path, value))

            return run

        noop = request("ours", "/noop")

        def floor() -> None:
            noop()
            client.getex("floor-value")

        read_ours = request("ours", "/read")
        write_ours = request("ours", "/write")

        def write_hit_batch(n: int) -> float:
            total = 0.0
            for _ in range(n):
                read_ours()  # a miss after the last write: cached again
                started = time.perf_counter()
                write_ours()
                total += time.perf_counter() - started
            return total / n * 1e6

        units: dict[str, Callable[[int], float]] = {
            "floor": lambda n: _timed(floor, n),
            "noop": lambda n: _timed(noop, n),
            "cookie": lambda n: _timed(request("cookie", "/read"), n),
            "hit": lambda n: _timed(read_ours, n),
            "miss": lambda n: _timed(request("nocache", "/read"), n),
            "base": lambda n: _timed(request("base", "/read"), n),
            "fork": lambda n: _timed(request("fork", "/read"), n),
            "fork-write": lambda n: _timed(request("fork", "/write"), n),
            "write-hit": write_hit_batch,
            "bot": lambda n: _timed(request("ours", "/read", with_cookie=False), n),
            "dict": lambda n: _timed(request("dict", "/read", with_cookie=False), n),
        }
        for unit in units.values():  # warm up: scripts loaded, caches filled
            unit(20)
        samples: dict[str, list[float]] = {name: [] for name in units}
        order = list(units)
        for _ in range(args.batches):
            random.shuffle(order)
            for name in order:
                samples[name].append(units[name](args.requests))
        stats = ours.store.cache.stats() if ours.store and ours.store.cache else {}

    placement = (
        "unpinned"
        if args.client_cpu is None or args.server_cpu is None
        else ("same CPU" if args.client_cpu == args.server_cpu else "split CPUs")
    )
    print(f"{args.size}, {args.batches} batches x {args.requests}, {placement}")
    for name, values in samples.items():
        print(f"  {name:10} {statistics.median(values):8.1f} µs")
    rows = []
    for mine, theirs, label, target in RATIOS:
        ratios = [a / b for a, b in zip(samples[mine], samples[theirs], strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        med = statistics.median(ratios)
        aim = "" if target is None else f"  (target <= {target})"
        print(f"  {label}: {med:.2f} ({q1:.2f}-{q3:.2f}){aim}")
        rows.append((label, q1, med, q3, target))
    if args.plot:
        plot(args.plot, rows)
    print(f"  local cache of 'hit': {stats}")


if __name__ == "__main__":
    main()
