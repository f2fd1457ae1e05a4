"""Text tables and the plot, from the results dictionary the runner builds."""

from __future__ import annotations

import os
import platform
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .app import LIBRARIES, SCENARIOS
from .micro import summarise


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
        "rt = Redis round trips per request ('!' = over SPEC's budget).",
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


def plot(report: dict[str, Any], path: str) -> None:
    """µs/request by scenario and library, log scale, one panel per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["results"]
    libs = report["libraries"]
    series = [*libs, "floor"]
    colours = {"ours": "#1f77b4", "fork": "#d62728", "cookie": "#2ca02c",
               "floor": "#7f7f7f"}  # fmt: skip
    fig, axes = plt.subplots(
        len(results), 1, figsize=(11, 3.6 * len(results)), squeeze=False
    )
    for ax, result in zip(axes[:, 0], results, strict=True):
        rows = summarise(result, libs)
        names = [row["scenario"] for row in rows]
        width = 0.8 / len(series)
        for index, lib in enumerate(series):
            xs, ys = [], []
            for x, row in enumerate(rows):
                value = row["floor_us"] if lib == "floor" else row["us"].get(lib)
                if value is not None:
                    xs.append(x + (index - (len(series) - 1) / 2) * width)
                    ys.append(value)
            label = "floor" if lib == "floor" else LIBRARIES[lib].label
            ax.bar(xs, ys, width, label=label, color=colours.get(lib))
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("µs / request (median)")
        ax.set_title(f"session {result['size']['name']}")
        ax.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=len(series),
        bbox_to_anchor=(0.5, 0.985),
        fontsize="small",
        frameon=False,
    )
    meta = report["meta"]
    fig.suptitle(f"{meta['date']} · {meta['machine']} · parser {meta['parser']}",
                 fontsize="small", y=0.998)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.975 - 0.01 / len(results)))
    fig.savefig(path, dpi=110)
    plt.close(fig)
