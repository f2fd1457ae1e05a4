"""``psessions CONFIG_URI stats``: count the sessions, estimate their memory,
show their TTLs."""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from collections.abc import Sequence

from .. import admin
from .common import (
    LEGACY_WORDS,
    OK,
    Command,
    Context,
    add_batch_size,
    add_json,
    natural,
    positive,
    size,
)

__all__ = ["StatsCommand", "main"]

#: The width of the bars of the TTL histogram.
BAR_WIDTH = 40


def main(argv: Sequence[str] = sys.argv, quiet: bool = False) -> int:
    return StatsCommand.main(argv, quiet)


class StatsCommand(Command):
    name = "stats"
    summary = "count the sessions, estimate their memory, show their TTLs"
    description = textwrap.dedent(
        """\
        Count the live sessions under the prefix (SCAN, a batch at a time;
        on Cluster, every master), show how long they have left (a TTL
        histogram) and estimate their memory: MEMORY USAGE of a random
        sample of sessions, times the count (exact when the sample holds
        every session). The largest sessions of the sample are named by
        handle, never by id. Only Redis hashes under the prefix count as
        sessions; the user-sessions index (prefix + 'user:') does not.
        Nothing is changed, and no session's expiry is touched."""
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_batch_size(parser)
        add_json(parser)
        parser.add_argument(
            "--sample",
            type=positive,
            default=admin.DEFAULT_SAMPLE_SIZE,
            metavar="N",
            help=f"sessions to measure (default: {admin.DEFAULT_SAMPLE_SIZE})",
        )
        parser.add_argument(
            "--top",
            type=natural,
            default=10,
            metavar="N",
            help="how many of the largest sessions to list (default: 10)",
        )

    def execute(self, ctx: Context) -> int:
        args = self.args
        found = ctx.keyspace.stats(ctx.factory.handles, args.sample, args.top)
        # Strings log nobody in once legacy_cookies is off: not walked then.
        legacy = ctx.keyspace.count_legacy() if ctx.legacy_cookies_on else None
        if found.sessions == 0 and not legacy:
            ctx.warn_if_default_server()
        if args.json:
            self.out(json.dumps(_as_json(ctx, found, legacy), indent=2) + "\n")
            return OK
        w = self.out
        w(f"Sessions under {ctx.factory.prefix!r} on {ctx.server}\n")
        w(f"  sessions  {found.sessions:,}\n")
        if legacy:
            w(f"  legacy    {legacy:,} {LEGACY_WORDS}\n")
        if found.sessions == 0:
            w("  memory    0 B\n")
            return OK
        if found.exact:
            w(
                f"  memory    {size(found.memory_bytes)} (MEMORY USAGE of every "
                f"session, mean {size(found.mean_bytes)})\n"
            )
        else:
            w(
                f"  memory    ~{size(found.memory_bytes)} (estimated: MEMORY USAGE "
                f"of a random sample of {found.sampled:,} sessions, mean "
                f"{size(found.mean_bytes)}, times {found.sessions:,})\n"
            )
        w("\nTime left (TTL)\n")
        most = max(b.count for b in found.ttl)
        for bucket in found.ttl:
            bar = "#" * math.ceil(BAR_WIDTH * bucket.count / most) if most else ""
            w(f"  {bucket.label:<10} {bucket.count:>10,}  {bar}".rstrip() + "\n")
        if found.largest:
            scope = "" if found.exact else " of the sample"
            w(f"\nLargest sessions{scope}, by handle\n")
            for s in found.largest:
                w(f"  {s.handle}  {size(s.bytes):>10}  {s.fields:,} fields\n")
        return OK


def _as_json(
    ctx: Context, found: admin.StoreStats, legacy: int | None
) -> dict[str, object]:
    return {
        "prefix": ctx.factory.prefix,
        "server": ctx.server,
        "nodes": found.nodes,
        "sessions": found.sessions,
        "legacy_strings": legacy,
        "memory": {
            "bytes": found.memory_bytes,
            "exact": found.exact,
            "sampled": found.sampled,
            "mean_bytes": round(found.mean_bytes, 1),
        },
        "ttl": [
            {"bucket": b.label, "up_to_seconds": b.up_to, "sessions": b.count}
            for b in found.ttl
        ],
        "largest": [
            {"handle": s.handle, "bytes": s.bytes, "fields": s.fields}
            for s in found.largest
        ],
    }
