"""``psessions CONFIG_URI purge``: delete every session (everybody is logged
out)."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence

from .common import (
    LEGACY_WORDS,
    OK,
    USAGE,
    Command,
    Context,
    Fail,
    add_batch_size,
    add_yes,
    confirm,
)

__all__ = ["PurgeCommand", "main"]


def main(argv: Sequence[str] = sys.argv, quiet: bool = False) -> int:
    return PurgeCommand.main(argv, quiet)


class PurgeCommand(Command):
    name = "purge"
    summary = "delete every session (everybody is logged out)"
    description = textwrap.dedent(
        """\
        Delete every session under the prefix: SCAN and UNLINK, a batch
        at a time (never KEYS), so that the server keeps serving. Asks for
        confirmation on the terminal unless --yes is given; without a
        terminal to ask on, refuses to run without --yes. Refuses an empty
        prefix. Shows a running count on a terminal, and the number of
        sessions deleted at the end. Keys under the prefix that are not
        sessions (not hashes, or the user-sessions index) are kept.

        Strings under the prefix are sessions that 1.x or
        pyramid_session_redis stored and that were not moved to this
        format yet: while legacy_cookies is on, their users are still
        logged in. --legacy deletes them too; without it, they are kept
        and, while legacy_cookies is on, counted (a second SCAN)."""
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_batch_size(parser)
        add_yes(parser)
        parser.add_argument(
            "--legacy",
            action="store_true",
            help="also delete the strings under the prefix (sessions of 1.x or "
            "pyramid_session_redis not moved yet)",
        )

    def execute(self, ctx: Context) -> int:
        args = self.args
        if not ctx.factory.prefix:
            raise Fail(
                "refusing to purge with an empty prefix: every hash in the "
                "database would be deleted",
                USAGE,
            )
        where = ctx.where()
        if not args.yes:
            self._confirm(ctx, where)
        progress: Callable[[int], None] | None = None
        if sys.stderr.isatty():

            def progress(total: int) -> None:
                sys.stderr.write(f"\rdeleted {total:,} sessions")
                sys.stderr.flush()

        deleted = ctx.keyspace.purge(progress)
        if progress is not None:
            sys.stderr.write("\n")
        self.out(f"deleted {deleted:,} sessions {where}\n")
        strings = kept = 0
        if args.legacy:
            strings = ctx.keyspace.purge_legacy()
            self.out(f"deleted {strings:,} legacy strings {where}\n")
        elif ctx.legacy_cookies_on:
            kept = ctx.keyspace.count_legacy()
            if kept:
                self.out(
                    f"kept {kept:,} {LEGACY_WORDS}; purge --legacy deletes them too\n"
                )
        if not (deleted or strings or kept):
            ctx.warn_if_default_server()
        return OK

    def _confirm(self, ctx: Context, where: str) -> None:
        legacy = self.args.legacy
        also = (
            ", and the strings 1.x or pyramid_session_redis stored there"
            if legacy
            else ""
        )
        who = (
            "Every user will be logged out"
            if legacy or not ctx.legacy_cookies_on
            else "Every user will be logged out, except those whose session "
            "1.x or pyramid_session_redis stored (see --legacy)"
        )
        question = f"Delete every session {where}{also}? {who}.\nType 'yes' to go on: "
        refusal = "refusing to purge without --yes: there is no terminal to confirm on"
        if not confirm(question, refusal, ("yes",)):
            raise Fail("purge cancelled: nothing was deleted")
