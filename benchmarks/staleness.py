"""How long another process's local cache serves a session after it changed.

Two processes and a server of the benchmark's own::

    python -m benchmarks.staleness [--trials 1000] [--server valkey]
        [--reader-cpu 0 --writer-cpu 1 --server-cpu 1]

The *reader* (a subprocess, ``python -m benchmarks.staleness --reader``)
reads one session until its local cache holds it, then reads it again and
again, as fast as it can, each read a full request's session built by the
factory. The *writer* (this process) then changes that session through its
own factory: a logout (``invalidate()``, which deletes the key) or a write
of a new value (the delta save). The window of a trial is how long after
the writer's change returned the reader still *started* a read that gave
the old session; 0 when no read begun after that moment saw it. Both
processes take their times from ``time.perf_counter()``, the machine's
monotonic clock, which is the same in every process.

Each trial uses a new session, so that every trial starts from a cache
miss and a hit; the writer waits a random 0-300 µs after the reader
reports it is reading before it changes the session, so that the change
falls anywhere in a read. Prints the p50, p99 and maximum window by kind
of change, and how many reads of each trial the reader made.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pyramid.request import Request  # noqa: E402

import pyramid_redis_sessions  # noqa: E402
from benchmarks import app as bench  # noqa: E402
from tests.app import finish  # noqa: E402

PREFIX = "stale:"
#: A reader gives up on a trial after this long without seeing the change.
GIVE_UP = 2.0


def make_factory(url: str) -> Any:
    return pyramid_redis_sessions.RedisSessionFactory(
        bench.SECRET, timeout=bench.TIMEOUT, url=url, prefix=PREFIX
    )


def read(factory: Any, cookie: str) -> tuple[Any, str | None]:
    session = factory(Request.blank("/", headers={"Cookie": cookie}))
    return session.get("v"), session.loaded_from


# -- the reader (a subprocess) -------------------------------------------------


def reader(url: str) -> None:
    factory = make_factory(url)
    print("READY", flush=True)
    for line in sys.stdin:
        trial = json.loads(line)
        cookie, old = trial["cookie"], trial["old"]
        seen = [read(factory, cookie) for _ in range(2)]
        warm = seen[-1] == (old, "local cache")
        print(json.dumps({"warm": warm, "seen": seen}), flush=True)
        if not warm:
            continue
        last_stale = None
        reads = 0
        give_up = time.perf_counter() + GIVE_UP
        while True:
            started = time.perf_counter()
            value, _source = read(factory, cookie)
            reads += 1
            if value != old:
                break
            last_stale = started
            if started > give_up:
                break
        ended = time.perf_counter()
        reply = {"last_stale": last_stale, "fresh_at": started, "reads": reads}
        reply["gave_up"] = ended > give_up and value == old
        print(json.dumps(reply), flush=True)


# -- the writer (this process) -------------------------------------------------


def new_session(factory: Any, value: str) -> str:
    """A stored session whose ``v`` is ``value``: its ``Cookie`` header."""
    session = factory(Request.blank("/"))
    session["v"] = value
    cookie: str = finish(session).headers["Set-Cookie"].split(";", 1)[0]
    return cookie


def change(factory: Any, cookie: str, kind: str) -> float:
    """Make the change; the clock when it returned."""
    session = factory(Request.blank("/", headers={"Cookie": cookie}))
    if kind == "logout":
        session.invalidate()
    else:
        session["v"] = "new"
    finish(session)
    return time.perf_counter()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000, help="per kind")
    parser.add_argument("--server", choices=["redis", "valkey"])
    parser.add_argument("--reader-cpu", type=int)
    parser.add_argument("--writer-cpu", type=int)
    parser.add_argument("--server-cpu", type=int)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reader", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reader:
        reader(args.reader)
        return

    from benchmarks.server import pinned, redis_server

    def cpus(cpu: int | None) -> set[int] | None:
        return None if cpu is None else {cpu}

    rng = random.Random(args.seed)
    if args.writer_cpu is not None:
        os.sched_setaffinity(0, {args.writer_cpu})
    with redis_server(args.server, cpus(args.server_cpu)) as (backend, url):
        factory = make_factory(url)
        command = pinned(
            [sys.executable, "-m", "benchmarks.staleness", "--reader", url],
            cpus(args.reader_cpu),
        )
        child = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            if child.stdout.readline().strip() != "READY":
                raise SystemExit("the reader did not start")
            windows: dict[str, list[float]] = {"logout": [], "write": []}
            reads: dict[str, list[int]] = {"logout": [], "write": []}
            problems: list[str] = []
            kinds = [k for k in windows for _ in range(args.trials)]
            rng.shuffle(kinds)
            for index, kind in enumerate(kinds):
                cookie = new_session(factory, f"old-{index}")
                child.stdin.write(json.dumps({"cookie": cookie, "old": f"old-{index}"}))
                child.stdin.write("\n")
                child.stdin.flush()
                warm = json.loads(child.stdout.readline())
                if not warm["warm"]:
                    problems.append(f"trial {index}: not cached: {warm['seen']}")
                    continue
                pause = time.perf_counter() + rng.uniform(0, 300e-6)
                while time.perf_counter() < pause:
                    pass
                done = change(factory, cookie, kind)
                seen = json.loads(child.stdout.readline())
                if seen["gave_up"]:
                    problems.append(f"trial {index}: {kind} never seen")
                    continue
                last = seen["last_stale"]
                windows[kind].append(max(0.0, last - done) if last else 0.0)
                reads[kind].append(seen["reads"])
        finally:
            child.stdin.close()
            child.wait(timeout=10)

    placement = (
        "unpinned"
        if None in (args.reader_cpu, args.server_cpu)
        else ("reader and server on one CPU" if args.reader_cpu == args.server_cpu
              else "reader and server on different CPUs")
    )  # fmt: skip
    print(
        f"staleness: {backend}, {args.trials} trials per kind, {placement} "
        f"(writer on CPU {args.writer_cpu})"
    )
    for kind, values in windows.items():
        if not values:
            continue
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        stale = sum(1 for v in values if v > 0)
        print(
            f"  {kind:6}: window p50 {statistics.median(values) * 1e6:6.1f} µs, "
            f"p99 {p99 * 1e6:6.1f} µs, max {ordered[-1] * 1e6:6.1f} µs; "
            f"{stale}/{len(values)} trials served the old session after the "
            f"change returned; reads per trial p50 "
            f"{statistics.median(reads[kind]):.0f}"
        )
    for problem in problems[:10]:
        print(f"  problem: {problem}")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
