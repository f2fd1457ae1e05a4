"""``psessions CONFIG_URI user USER``: list a user's sessions, or end them
all."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Sequence

from ..users import UserSessions
from .common import OK, Command, Context, add_json, duration, when

__all__ = ["UserCommand", "main"]


def main(argv: Sequence[str] = sys.argv, quiet: bool = False) -> int:
    return UserCommand.main(argv, quiet)


class UserCommand(Command):
    """A user's sessions from the user-sessions index (``user_key`` or
    ``bind_user()``), and ending them all."""

    name = "user"
    summary = "list a user's sessions, or end them all"
    description = textwrap.dedent(
        """\
        List the sessions of one user from the user-sessions index, by
        handle, with when each expires; with --end-all, end them all
        (the user is logged out everywhere). The index is kept for
        sessions bound to a user (the user_key setting, or
        bind_user() in the application)."""
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_json(parser)
        parser.add_argument(
            "user", metavar="USER", help="the user, as the index names them"
        )
        parser.add_argument(
            "--end-all", action="store_true", help="end every session of the user"
        )

    def execute(self, ctx: Context) -> int:
        args = self.args
        index = UserSessions.from_store(ctx.factory, ctx.store)
        if args.end_all:
            ended = index.end_all(args.user)
            if not ended:
                ctx.warn_if_default_server()
            if args.json:
                self.out(json.dumps({"user": args.user, "ended": ended}) + "\n")
            else:
                self.out(f"ended {ended:,} sessions of user {args.user!r}\n")
            return OK
        sessions = sorted(
            index.list(args.user), key=lambda s: (s.expires is None, s.expires or 0)
        )
        if not sessions:
            ctx.warn_if_default_server()
        if args.json:
            listed = [
                {
                    "handle": s.handle,
                    "created": s.created,
                    "last_active": s.last_active,
                    "expires": s.expires,
                    "details": s.details,
                }
                for s in sessions
            ]
            self.out(json.dumps({"user": args.user, "sessions": listed}, indent=2))
            self.out("\n")
            return OK
        self.out(f"{len(sessions):,} sessions of user {args.user!r}\n")
        now = time.time()
        for s in sessions:
            left = "no expiry" if s.expires is None else when(s.expires)
            if s.expires is not None:
                left += f" (in {duration(max(0.0, s.expires - now))})"
            active = (
                ""
                if s.last_active is None
                else f", active {duration(max(0.0, now - s.last_active))} ago"
            )
            details = "".join(f"  {k}={v!r}" for k, v in sorted(s.details.items()))
            self.out(f"  {s.handle}  expires {left}{active}{details}\n")
        return OK
