"""The benchmark's smoke run, as part of the suite.

``python -m benchmarks --smoke`` drives every scenario of every library
through the benchmark's app (and a one-second load round through waitress)
and writes what it recorded. Here it must finish cleanly and, for this
project, make exactly the round trips of SPEC's table. Timings are never
asserted: they belong to the benchmark's output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.app import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent

#: SPEC's "One request, in Redis round trips", by benchmark scenario:
#: (round trips, whether SPEC says "at most" rather than "exactly").
#: csrf is an existing session that is only read.
# The benchmark repeats each request with one session: a read is then served
# from the process's local cache (0), a write follows its own write (a miss:
# HGETALL, then the save), and a stale cookie's read is HGETALL and then the
# load script (see "Round trips" in docs/storage.rst).
SPEC_ROUND_TRIPS = {
    "noop": (0, False),
    "read": (0, False),
    "write": (2, False),
    "create": (1, False),
    "login": (2, True),
    "regenerate": (2, True),
    "stale": (2, False),
    "bot": (0, False),
    "csrf": (0, False),
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    cpu = str(min(os.sched_getaffinity(0)))  # pinned, to run that code too
    pins = ["--app-cpus", cpu, "--client-cpus", cpu, "--server-cpus", cpu]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out), *pins],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.benchmark
def test_benchmark_budgets_are_specs() -> None:
    assert {name: s.budget for name, s in SCENARIOS.items()} == {
        name: trips for name, (trips, _) in SPEC_ROUND_TRIPS.items()
    }


@pytest.mark.benchmark
def test_smoke_run_makes_specs_round_trips(smoke: Path) -> None:
    full = json.loads((smoke / "results.json").read_text())
    [run] = full["runs"]
    assert run["libraries"] == ["ours", "fork", "cookie"], run["meta"]["skipped"]
    [result] = run["results"]
    trips = {
        key.split("/", 1)[1]: record["round_trips"]
        for key, record in result["records"].items()
        if key.startswith("ours/")
    }
    assert set(trips) == set(SPEC_ROUND_TRIPS)
    for name, (budget, at_most) in SPEC_ROUND_TRIPS.items():
        if at_most:
            assert 1 <= trips[name] <= budget, (name, trips[name])
        else:
            assert trips[name] == budget, (name, trips[name])
    assert all(result["samples"].values())


@pytest.mark.benchmark
def test_smoke_run_runs_the_load_and_draws_no_plot(smoke: Path) -> None:
    # The test extra has no matplotlib: the plot is --plot's alone.
    assert not list(smoke.glob("micro-*.png"))
    load = json.loads((smoke / "load.json").read_text())
    assert not load["problems"]
    cpu = min(os.sched_getaffinity(0))
    assert load["meta"]["pinning"] == (
        f"apps on CPU {cpu}, generator on CPU {cpu}, Redis on CPU {cpu}"
    )


@pytest.mark.benchmark
def test_staleness_benchmark_runs_and_reports_both_kinds() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.staleness", "--trials", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("staleness: ")
    assert [line.split(":")[0].strip() for line in lines[1:3]] == ["logout", "write"]
    assert all("/5 trials served the old session" in line for line in lines[1:3])
