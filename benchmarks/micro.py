"""The in-process benchmark: every library, one process, batches interleaved.

For each session size, every (library, scenario) pair and the two parts of the
floor (Pyramid's untouched request; one bare ``GETEX``) are *units*. A batch
runs each unit once, in a shuffled order, ``n`` requests each, timing the
whole unit; a run is many batches. A unit's figure is the median over batches
of its mean µs/request, and a ratio is the median of the per-batch ratios
(paired: both sides ran within the same batch, moments apart), which is what
keeps a shared, noisy machine usable.

Before timing, each unit runs a few requests of a second copy of its app,
whose pool counts, under a :class:`wire.Recorder`: round trips, commands and
bytes; those figures are exact. The timed copy uses plain redis-py
connections, so counting costs it nothing.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import redis
from webob.cookies import JSONSerializer, SignedSerializer

from . import wire
from .app import (
    COOKIE_NAME,
    FLOOR_DB,
    SCENARIOS,
    SECRET,
    TIMEOUT,
    Library,
    Scenario,
    Size,
    call,
    call_fast,
    environ,
    make_app,
)

#: Requests recorded per unit before timing; the last one is reported (the
#: first may differ, e.g. a write that creates the counter).
RECORDED_REQUESTS = 3


def db_url(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


class Target:
    """One library's app at one session size, with its Redis database."""

    def __init__(
        self, lib: Library, size: Size, url: str, parser: str, admin: redis.Redis
    ) -> None:
        self.lib = lib
        self.size = size
        # Two pools and two apps on the same database: plain redis-py
        # connections for timing, counting ones for recording.
        location = db_url(url, max(lib.db, 0))
        self.pool = wire.make_pool(location, parser, counting=False)
        self.counting_pool = wire.make_pool(location, parser)
        self.app = make_app(lib.factory(self.pool), size.payload())
        self.counted_app = make_app(lib.factory(self.counting_pool), size.payload())
        self.db = admin if lib.db < 0 else redis.Redis.from_url(db_url(url, lib.db))
        self.keep: set[bytes] = set()
        self.shared_cookie = ""
        self.csrf_token = ""
        self.stale_cookie = ""
        self.stored: dict[str, Any] = {}
        if lib.server_side:
            self.db.flushdb()

    def keys(self) -> set[bytes]:
        return set(self.db.scan_iter(count=1000))

    def new_session(self) -> tuple[str, str, set[bytes]]:
        """Log in through the library: ``(cookie, csrf token, new keys)``."""
        before = self.keys() if self.lib.server_side else set()
        reply = call(self.app, environ("GET", "/setup"))
        cookie = reply.set_cookie()
        if not reply.status.startswith("200") or cookie is None:
            raise RuntimeError(f"{self.lib.name}: /setup answered {reply.status}")
        new = (self.keys() - before) if self.lib.server_side else set()
        return cookie, reply.body.decode(), new

    def set_up(self) -> None:
        self.shared_cookie, self.csrf_token, new = self.new_session()
        self.keep |= new
        if self.lib.server_side:
            if len(new) != 1:
                raise RuntimeError(f"{self.lib.name}: a login made keys {new}")
            self.stored = stored_size(self.db, next(iter(new)))
            cookie, _token, gone = self.new_session()
            self.db.delete(*gone)
            self.stale_cookie = cookie
        else:
            value = self.shared_cookie.split("=", 1)[1]
            self.stored = {"cookie_bytes": len(value)}
            if self.lib.name == "cookie":
                self.stale_cookie = expired_cookie(self.size.payload())

    def cleanup(self) -> None:
        """Drop the sessions a unit created, keeping the shared ones."""
        if not self.lib.server_side or self.db.dbsize() <= len(self.keep):
            return
        extra = list(self.keys() - self.keep)
        for start in range(0, len(extra), 500):
            self.db.delete(*extra[start : start + 500])

    def close(self) -> None:
        if self.lib.server_side:
            self.db.flushdb()
        self.pool.disconnect()
        self.counting_pool.disconnect()


def stored_size(db: redis.Redis, key: bytes) -> dict[str, Any]:
    """What one session costs the server: its value and its memory."""
    kind = db.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "string":
        value_bytes = db.strlen(key)
    elif kind == "hash":
        value_bytes = sum(len(f) + len(v) for f, v in db.hgetall(key).items())
    else:
        value_bytes = None
    return {
        "type": kind,
        "key_bytes": len(key),
        "value_bytes": value_bytes,
        "memory_usage": db.memory_usage(key, samples=0),
    }


def expired_cookie(payload: dict[str, str]) -> str:
    """A cookie SignedCookieSessionFactory wrote long ago (past its timeout).

    Made with the serializer Pyramid documents for it (WebOb's
    ``SignedSerializer`` with Pyramid's default salt and hash over JSON).
    """
    serializer = SignedSerializer(
        SECRET, "pyramid.session.", "sha512", serializer=JSONSerializer()
    )
    old = time.time() - 10 * TIMEOUT
    return f"{COOKIE_NAME}={serializer.dumps((old, old, payload)).decode()}"


@dataclasses.dataclass
class Unit:
    """Something timed once per batch: ``prepare(n)`` then ``run(items)``."""

    key: str
    prepare: Callable[[int], list[Any]]
    run: Callable[[list[Any]], None]
    cleanup: Callable[[], None]
    samples: list[float] = dataclasses.field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.samples)


def session_unit(target: Target, scenario: Scenario, counted: bool = False) -> Unit:
    headers = {}
    if scenario.name == "csrf":
        headers["X-CSRF-Token"] = target.csrf_token

    def prepare(n: int) -> list[Any]:
        if scenario.cookie == "none":
            cookies: list[str | None] = [None] * n
        elif scenario.cookie == "shared":
            cookies = [target.shared_cookie] * n
        elif scenario.cookie == "stale":
            cookies = [target.stale_cookie] * n
        elif scenario.cookie == "fresh":
            cookies = [target.new_session()[0] for _ in range(n)]
        else:
            raise ValueError(scenario.cookie)
        return [
            environ(scenario.method, scenario.path, cookie, headers)
            for cookie in cookies
        ]

    app = target.counted_app if counted else target.app

    def run(envs: list[Any]) -> None:
        for env in envs:
            call_fast(app, env)

    return Unit(f"{target.lib.name}/{scenario.name}", prepare, run, target.cleanup)


def record(target: Target, scenario: Scenario) -> dict[str, Any]:
    """Round trips, commands and bytes of one request (the last of a few)."""
    unit = session_unit(target, scenario, counted=True)
    envs = unit.prepare(RECORDED_REQUESTS)
    recorder = wire.Recorder()
    for env in envs:
        with recorder:
            reply = call(target.counted_app, env)
    unit.cleanup()
    trips = recorder.trips
    return {
        "status": reply.status,
        "body": reply.body[:40].decode(errors="replace"),
        "cookie": reply.cookie_action(),
        "round_trips": len(trips),
        "commands": [trip.commands for trip in trips],
        "bytes_sent": sum(trip.nbytes for trip in trips),
        "bytes_saved": sum(trip.nbytes for trip in trips if trip.phase == "save"),
    }


def floor_units(
    url: str, parser: str, size: Size, bare_cookie: str
) -> tuple[list[Unit], Callable[[], None]]:
    """Pyramid's untouched request, and one bare ``GETEX`` of the session's size."""
    app = make_app(None, {})

    def prepare_bare(n: int) -> list[Any]:
        return [environ("GET", "/noop", bare_cookie) for _ in range(n)]

    def run_bare(envs: list[Any]) -> None:
        for env in envs:
            call_fast(app, env)

    pool = wire.make_pool(db_url(url, FLOOR_DB), parser, counting=False)
    client = redis.Redis(connection_pool=pool)
    key = f"floor:{size.name}"
    client.set(key, random.Random(size.name).randbytes(size.total), ex=TIMEOUT)

    def prepare_getex(n: int) -> list[Any]:
        return [key] * n

    def run_getex(keys: list[Any]) -> None:
        getex = client.getex
        for k in keys:
            getex(k, ex=TIMEOUT)

    def close() -> None:
        client.delete(key)
        pool.disconnect()

    units = [
        Unit("floor/bare", prepare_bare, run_bare, lambda: None),
        Unit("floor/getex", prepare_getex, run_getex, lambda: None),
    ]
    return units, close


def requests_per_batch(n: int, size: Size) -> int:
    """Fewer requests per batch for big sessions, so batches stay short."""
    return max(5, n // 4) if size.total >= 50_000 else n


def run_size(
    url: str,
    parser: str,
    libs: list[Library],
    scenarios: list[Scenario],
    size: Size,
    batches: int,
    n: int,
    deadline: float,
    seed: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Record then time every unit of one session size."""
    admin = redis.Redis.from_url(url)
    targets = {
        lib.name: Target(lib, size, url, parser, admin)
        for lib in libs
        if lib.fits(size)
    }
    units: list[Unit] = []
    records: dict[str, dict[str, Any]] = {}
    try:
        for target in targets.values():
            target.set_up()
        if "cookie" in targets:
            # Pyramid reissues a cookie session on access once it is a
            # second old (reissue_time=0, whole seconds): record what the
            # timed requests, made later, will do.
            time.sleep(1.1)
        for target in targets.values():
            for scenario in scenarios:
                if not target.lib.supports(scenario, size):
                    continue
                if scenario.cookie == "stale" and not target.stale_cookie:
                    continue
                records[f"{target.lib.name}/{scenario.name}"] = record(target, scenario)
                units.append(session_unit(target, scenario))
        bare_cookie = targets["ours"].shared_cookie
        floor, close_floor = floor_units(url, parser, size, bare_cookie)
        units += floor
        per_batch = requests_per_batch(n, size)
        rng = random.Random(seed)
        done = 0
        for done in range(1, batches + 1):
            order = units[:]
            rng.shuffle(order)
            for unit in order:
                items = unit.prepare(per_batch)
                gc.collect()
                start = time.perf_counter_ns()
                unit.run(items)
                elapsed = time.perf_counter_ns() - start
                unit.samples.append(elapsed / per_batch / 1000)
                unit.cleanup()
            if time.monotonic() > deadline:
                log(f"  {size.name}: time limit reached after {done} batches")
                break
        close_floor()
    finally:
        for target in targets.values():
            target.close()
        admin.close()
    return {
        "size": dataclasses.asdict(size) | {"total": size.total},
        "batches": done,
        "requests_per_batch": per_batch,
        "stored": {name: t.stored for name, t in targets.items()},
        "records": records,
        "samples": {unit.key: unit.samples for unit in units},
    }


# -- summaries -----------------------------------------------------------------


def floor_samples(result: dict[str, Any], scenario: Scenario) -> list[float]:
    bare = result["samples"]["floor/bare"]
    getex = result["samples"]["floor/getex"]
    return [b + scenario.budget * g for b, g in zip(bare, getex, strict=True)]


def paired_ratio(a: list[float] | None, b: list[float] | None) -> float | None:
    if not a or not b:
        return None
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def summarise(result: dict[str, Any], libs: list[str]) -> list[dict[str, Any]]:
    """One row per scenario: medians, floor and paired ratios."""
    rows = []
    samples = result["samples"]
    for name, scenario in SCENARIOS.items():
        if not any(f"{lib}/{name}" in samples for lib in libs):
            continue
        floor = floor_samples(result, scenario)
        row: dict[str, Any] = {
            "scenario": name,
            "budget": scenario.budget,
            "floor_us": statistics.median(floor),
            "us": {},
            "round_trips": {},
            "ratios": {},
        }
        for lib in libs:
            key = f"{lib}/{name}"
            if key in samples:
                row["us"][lib] = statistics.median(samples[key])
                row["round_trips"][lib] = result["records"][key]["round_trips"]
                row["ratios"][f"{lib}/floor"] = paired_ratio(samples[key], floor)
        ours = samples.get(f"ours/{name}")
        for peer in libs:
            if peer != "ours":
                row["ratios"][f"ours/{peer}"] = paired_ratio(
                    ours, samples.get(f"{peer}/{name}")
                )
        rows.append(row)
    return rows
