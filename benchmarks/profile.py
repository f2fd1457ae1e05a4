"""``--profile SCENARIO``: where one scenario of ours spends its time.

Runs the scenario's requests (prepared first, untimed) under cProfile, or
pyinstrument with ``--profiler pyinstrument``, and prints the top functions.
Profiling inflates Python-heavy code against time spent waiting on Redis,
so read it for *where*, and the interleaved run for *how much*.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats

import redis

from .app import LIBRARIES, SCENARIOS, SIZES
from .micro import Target, session_unit

PROFILED_REQUESTS = 2000


def profile(args: argparse.Namespace, url: str) -> None:
    scenario = SCENARIOS[args.profile]
    size = SIZES[args.sizes.split(",")[0]]
    admin = redis.Redis.from_url(url)
    target = Target(LIBRARIES["ours"], size, url, args.parser.replace("both", "auto"),
                    admin)  # fmt: skip
    try:
        target.set_up()
        unit = session_unit(target, scenario)
        unit.run(unit.prepare(50))  # warm up
        unit.cleanup()
        items = unit.prepare(PROFILED_REQUESTS)
        print(f"profile: ours, {scenario.name}, {size.name}, "
              f"{PROFILED_REQUESTS} requests")  # fmt: skip
        if args.profiler == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002)
            profiler.start()
            unit.run(items)
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        else:
            prof = cProfile.Profile()
            prof.runcall(unit.run, items)
            for order in ("tottime", "cumulative"):
                out = io.StringIO()
                stats = pstats.Stats(prof, stream=out).strip_dirs()
                stats.sort_stats(order).print_stats(30)
                print(out.getvalue())
        unit.cleanup()
    finally:
        target.close()
        admin.close()
