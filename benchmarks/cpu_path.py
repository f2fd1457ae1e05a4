"""The Python cost of the session's request path, against another revision.

On a VM whose loopback round trip is hundreds of µs and noisy, a few µs of
Python saved per request vanish in wall-clock timings. This script times
only the Python: each factory's store replays the reply its first load got
from Redis, so a request does everything but wait for the server. The
working tree and the revision run the same Pyramid app in one process,
batches interleaved in a shuffled order::

    python -m benchmarks.cpu_path [--baseline REV] [--sizes 1KB,50keys]

``REV`` is anything ``git archive`` takes (default ``main``): a change is
measured against where it started. Prints, per scenario, the median µs per
request of each side and the median (interquartile range) of the per-batch
ratios current / baseline; ``read - noop`` is what the session adds to
Pyramid's own request. The replay wraps the factory's ``store`` attribute
and its ``load`` method, whatever they take and return, so it works for
any revision that has them.
"""

from __future__ import annotations

import argparse
import copy
import functools
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

SCENARIOS = {
    "noop": lambda cookie: bench.environ("GET", "/noop", cookie),
    "bot": lambda cookie: bench.environ("GET", "/read"),
    "read": lambda cookie: bench.environ("GET", "/read", cookie),
}


class ReplayStore:
    """The factory's store, except that ``load`` answers what its first
    call got from Redis, without asking again."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._reply: Any = None

    def load(self, *args: Any, **kwargs: Any) -> Any:
        if self._reply is None:
            self._reply = self._store.load(*args, **kwargs)
        return copy.copy(self._reply)  # the caller may change what it got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def make_unit(module: Any, pool: Any, size: bench.Size) -> dict[str, Any]:
    factory = module.RedisSessionFactory(
        bench.SECRET, timeout=bench.TIMEOUT, connection_pool=pool
    )
    app = bench.make_app(factory, size.payload())
    cookie = bench.call(app, bench.environ("GET", "/setup")).set_cookie()
    object.__setattr__(factory, "store", ReplayStore(factory.store))
    bench.call(app, bench.environ("GET", "/read", cookie))  # records the reply
    return {"app": app, "cookie": cookie}


def timed(app: Any, make_env: Callable[[], Any], n: int) -> float:
    envs = [make_env() for _ in range(n)]
    started = time.perf_counter()
    for env in envs:
        bench.call_fast(app, env)
    return (time.perf_counter() - started) / n * 1e6


def spread(ratios: list[float]) -> str:
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"{statistics.median(ratios):.2f} ({q1:.2f}-{q3:.2f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--baseline",
        metavar="REV",
        default="main",
        help="the git revision to compare the working tree with (default: main)",
    )
    parser.add_argument(
        "--sizes",
        default="1KB,50keys",
        help=f"session sizes, comma-separated, of {', '.join(bench.SIZES)}",
    )
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument(
        "-n", "--requests", type=int, default=200, help="requests per batch"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.sizes.split(",") if name not in bench.SIZES]
    if unknown:
        parser.error(
            f"unknown size {unknown[0]!r}; choose from {', '.join(bench.SIZES)}"
        )

    with against(args.baseline) as (baseline, server):
        pool = redis.ConnectionPool.from_url(server.url)
        print(f"{args.batches} batches x {args.requests} requests per unit")
        for name in args.sizes.split(","):
            size = bench.SIZES[name]
            units = {
                "current": make_unit(current, pool, size),
                "base": make_unit(baseline, pool, size),
            }
            runs = [(lib, sc) for lib in units for sc in SCENARIOS]
            samples: dict[tuple[str, str], list[float]] = {r: [] for r in runs}
            for _ in range(args.batches):
                random.shuffle(runs)
                for lib, sc in runs:
                    unit = units[lib]
                    make_env = functools.partial(SCENARIOS[sc], unit["cookie"])
                    samples[(lib, sc)].append(
                        timed(unit["app"], make_env, args.requests)
                    )
            for sc in SCENARIOS:
                base, cur = samples[("base", sc)], samples[("current", sc)]
                ratios = [c / b for b, c in zip(base, cur, strict=True)]
                print(
                    f"{name:7} {sc:5}  {args.baseline} "
                    f"{statistics.median(base):6.1f} µs  current "
                    f"{statistics.median(cur):6.1f} µs  current/base "
                    f"{spread(ratios)}"
                )
            added = {
                lib: statistics.median(
                    r - n
                    for r, n in zip(
                        samples[(lib, "read")], samples[(lib, "noop")], strict=True
                    )
                )
                for lib in units
            }
            print(
                f"{name:7} read - noop: {args.baseline} {added['base']:.1f} µs, "
                f"current {added['current']:.1f} µs"
            )


if __name__ == "__main__":
    main()
