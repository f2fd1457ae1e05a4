"""Text tables and the plot, from the results dictionary the runner builds."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .app import LIBRARIES, SCENARIOS
from .micro import floor_samples, summarise


def machine_note() -> str:
    """Host, CPU model and count, load average and Python: the run's context."""
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = f", load {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{platform.node()}, {cpu}, {os.cpu_count()} CPUs{load}, "
        f"Python {platform.python_version()}"
    )


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _commands(trips: list[list[str]]) -> str:
    return " | ".join("+".join(trip) for trip in trips) or "-"


def timing_table(result: dict[str, Any], libs: list[str]) -> str:
    peers = [lib for lib in libs if lib != "ours"]
    header = ["scenario"]
    for lib in libs:
        header += [f"{lib} rt", f"{lib} µs"]
    header += ["floor µs"]
    header += [f"ours/{peer}" for peer in peers]
    header += [f"{lib}/floor" for lib in libs]
    rows = [header]
    for row in summarise(result, libs):
        budget = row["budget"]
        line = [row["scenario"]]
        for lib in libs:
            rt = row["round_trips"].get(lib)
            mark = "!" if lib == "ours" and rt is not None and rt > budget else ""
            line += [_num(rt) + mark, _num(row["us"].get(lib))]
        line.append(_num(row["floor_us"]))
        line += [_num(row["ratios"].get(f"ours/{p}"), "{:.2f}") for p in peers]
        line += [_num(row["ratios"].get(f"{lib}/floor"), "{:.2f}") for lib in libs]
        rows.append(line)
    return _grid(rows)


def redis_table(result: dict[str, Any], libs: list[str]) -> str:
    rows = [["scenario", "library", "rt", "commands (| between round trips)",
             "sent B", "save B", "cookie"]]  # fmt: skip
    for name in SCENARIOS:
        first = True
        for lib in libs:
            rec = result["records"].get(f"{lib}/{name}")
            if rec is None:
                continue
            status = "" if rec["status"].startswith("200") else f" [{rec['status']}]"
            rows.append([
                name if first else "",
                lib,
                str(rec["round_trips"]),
                _commands(rec["commands"]) + status,
                str(rec["bytes_sent"]),
                str(rec["bytes_saved"]),
                rec["cookie"],
            ])  # fmt: skip
            first = False
    return _grid(rows, left={0, 1, 3, 6})


def stored_table(result: dict[str, Any], libs: list[str]) -> str:
    rows = [["library", "stored as", "value B", "MEMORY USAGE B", "cookie B"]]
    for lib in libs:
        stored = result["stored"].get(lib, {})
        rows.append([
            lib,
            stored.get("type", "cookie"),
            _num(stored.get("value_bytes")),
            _num(stored.get("memory_usage")),
            _num(stored.get("cookie_bytes")),
        ])  # fmt: skip
    return _grid(rows, left={0, 1})


def _grid(rows: list[list[str]], left: Collection[int] = (0,)) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def text_report(report: dict[str, Any]) -> str:
    meta = report["meta"]
    out = [
        f"pyramid_redis_sessions benchmark, {meta['date']}",
        f"machine: {meta['machine']}",
        f"server: {meta['server']}; redis-py parser: {meta['parser']}; "
        f"versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}",
        "µs = median over interleaved batches of µs/request; ratios = median of "
        "per-batch ratios; floor = Pyramid's untouched request + budget x GETEX.",
        "rt = Redis round trips per request ('!' = over its budget).",
    ]
    for lib in report["libraries"]:
        out.append(f"  {lib}: {LIBRARIES[lib].label}")
    if meta.get("skipped"):
        out.append(f"skipped: {meta['skipped']}")
    for result in report["results"]:
        size = result["size"]
        libs = report["libraries"]
        out.append("")
        out.append(
            f"== {size['name']}: {size['keys']} keys x {size['value_bytes']} B "
            f"({result['batches']} batches x {result['requests_per_batch']} "
            f"requests per unit) =="
        )
        out.append(timing_table(result, libs))
        out.append("")
        out.append(redis_table(result, libs))
        out.append("")
        out.append(stored_table(result, libs))
    return "\n".join(out) + "\n"


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range (the 25th and 75th percentiles)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return median, q1, q3


def plot(report: dict[str, Any], path: str) -> None:
    """µs/request by scenario and library, one panel per session size: bars
    at the median over batches, whiskers from the 25th to the 75th
    percentile, and a library with no API for a scenario marked where its
    bar would be. Sized to be read at a documentation page's width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    libs = report["libraries"]
    series = [*libs, "floor"]
    colours = {"ours": "#1f77b4", "fork": "#d62728", "cookie": "#2ca02c",
               "floor": "#9a9a9a"}  # fmt: skip
    plt.rcParams.update({"font.size": 9})
    fig, axes = plt.subplots(
        len(results), 1, figsize=(7.4, 0.6 + 3.0 * len(results)), squeeze=False
    )
    for ax, result in zip(axes[:, 0], results, strict=True):
        scenarios = [SCENARIOS[row["scenario"]] for row in summarise(result, libs)]
        samples = result["samples"]
        width = 0.84 / len(series)
        top = 0.0
        missing: list[tuple[float, str]] = []
        for index, lib in enumerate(series):
            xs, ys, low, high = [], [], [], []
            for x, scenario in enumerate(scenarios):
                where = x + (index - (len(series) - 1) / 2) * width
                if lib == "floor":
                    values = floor_samples(result, scenario)
                else:
                    values = samples.get(f"{lib}/{scenario.name}", [])
                if not values:
                    missing.append((where, "no API"))
                    continue
                median, q1, q3 = _quartiles(values)
                xs.append(where)
                ys.append(median)
                low.append(median - q1)
                high.append(q3 - median)
                top = max(top, q3)
            label = "floor" if lib == "floor" else LIBRARIES[lib].label
            ax.bar(xs, ys, width, label=label, color=colours.get(lib),
                   yerr=[low, high], capsize=1.5,
                   error_kw={"elinewidth": 0.8, "ecolor": "#333"})  # fmt: skip
        for where, text in missing:
            ax.text(where, top * 0.02, text, rotation=90, ha="center",
                    va="bottom", fontsize=7, color="#555")  # fmt: skip
        ax.set_xticks(range(len(scenarios)), [s.name for s in scenarios])
        ax.set_ylabel("µs / request")
        ax.set_ylim(0, top * 1.08)
        ax.set_title(
            f"session of {result['size']['name']}: median of "
            f"{result['batches']} batches, whiskers from the 25th to the "
            "75th percentile",
            fontsize=9,
        )
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2,
               bbox_to_anchor=(0.5, 1.0), fontsize=8, frameon=False)  # fmt: skip
    meta = report["meta"]
    fig.text(0.99, 0.005, f"{meta['date']} · parser {meta['parser']}",
             ha="right", va="bottom", fontsize=7, color="#555")  # fmt: skip
    fig.tight_layout(rect=(0, 0.02, 1, 1 - 0.5 / (0.6 + 3.0 * len(results))))
    fig.savefig(path, dpi=150)
    plt.close(fig)
