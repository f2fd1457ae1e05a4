"""``psessions CONFIG_URI sweep``: remove the entries of ended sessions from
the user-sessions indexes (an index left empty goes with them)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..users import UserSessions
from .common import OK, Command, Context, add_batch_size, add_json

__all__ = ["SweepCommand", "Swept", "main"]


def main(argv: Sequence[str] = sys.argv, quiet: bool = False) -> int:
    return SweepCommand.main(argv, quiet)


@dataclass
class Swept:
    """What a sweep did."""

    #: Index keys looked at (as exact as ``SCAN``: one may come twice).
    indexes: int = 0
    #: Entries of ended sessions removed.
    removed: int = 0
    #: Indexes left empty by the removals, and so deleted by Redis.
    deleted: int = 0
    #: Entries past their score whose session lives: given its real expiry.
    rescored: int = 0


class SweepCommand(Command):
    """The cron job of the user-sessions index: without ``absolute_timeout``
    an index is pruned only when it is read or written, so the index of a
    user who never comes back would stay forever."""

    name = "sweep"
    summary = "remove ended sessions from the user-sessions indexes"
    description = textwrap.dedent(
        """\
        Walk the user-sessions indexes under the prefix (SCAN, a batch at
        a time, never KEYS; on Cluster, every master) and remove the
        entries of sessions that ended; an index left empty is deleted.
        Without absolute_timeout an index is pruned only when its user's
        sessions are listed or bound again, so the index of a user who
        never comes back stays until a sweep: run it periodically (daily
        from cron, say). Only entries past their score are looked at (the
        PTTL of their session): the entry of a live session is never
        removed, only given its session's real expiry, and no session is
        changed. Shows a running count on a terminal, and the counts at the
        end."""
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_batch_size(parser)
        add_json(parser)

    def execute(self, ctx: Context) -> int:
        sessions = UserSessions.from_store(ctx.factory, ctx.store)
        swept = Swept()
        terminal = sys.stderr.isatty()
        for node, keys in ctx.keyspace.index_batches():
            swept.indexes += len(keys)
            now = time.time()
            for suspects in ctx.keyspace.index_suspects(node, keys, now):
                removed, rescored, deleted = sessions.sweep(suspects, now)
                swept.removed += removed
                swept.rescored += rescored
                swept.deleted += deleted
            if terminal:
                sys.stderr.write(
                    f"\rswept {swept.indexes:,} user indexes, removed "
                    f"{swept.removed:,} entries"
                )
                sys.stderr.flush()
        if terminal:
            sys.stderr.write("\n")
        if not swept.indexes:
            ctx.warn_if_default_server()
        if self.args.json:
            found = {"prefix": ctx.factory.prefix, "server": ctx.server}
            self.out(json.dumps({**found, **asdict(swept)}) + "\n")
            return OK
        self.out(
            f"swept {swept.indexes:,} user indexes {ctx.where()}: removed "
            f"{swept.removed:,} entries of ended sessions, {swept.deleted:,} "
            f"indexes left empty and deleted; re-scored {swept.rescored:,} "
            "entries of live sessions\n"
        )
        return OK
