"""``psessions CONFIG_URI end SESSION``: end one session, named by its id,
its cookie or its handle."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence

from ..users import UserSessions
from ..values import USER, parse
from .common import (
    OK,
    Command,
    Context,
    Fail,
    add_batch_size,
    add_json,
    add_yes,
    confirm,
)
from .show import SESSION_HELP, SESSION_METAVAR, Located, locate

__all__ = ["EndCommand", "main"]


def main(argv: Sequence[str] = sys.argv, quiet: bool = False) -> int:
    return EndCommand.main(argv, quiet)


class EndCommand(Command):
    name = "end"
    summary = "end one session (its browser is logged out)"
    description = textwrap.dedent(
        """\
        End one session, named by its id, its cookie or its handle (what
        stats and user show; a handle is looked for among every session
        under the prefix, a SCAN a batch at a time): its key is deleted, so
        its browser's next request starts a new session. A session bound to
        a user leaves that user's index in the same round trip. Asks for
        confirmation on the terminal unless --yes is given; without a
        terminal to ask on, refuses to run without --yes."""
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_yes(parser)
        add_json(parser)
        add_batch_size(parser)
        parser.add_argument("session", metavar=SESSION_METAVAR, help=SESSION_HELP)

    def execute(self, ctx: Context) -> int:
        found = locate(ctx, self.args.session)
        user = None
        if found.legacy is not None:
            key = found.legacy.redis_key
            if ctx.keyspace.read_string(key)[0] is None:
                raise Fail(
                    f"the {found.legacy.kind.value} cookie verifies, but its "
                    "session is gone (expired, ended or already moved to the "
                    f"new format); handle {found.handle}"
                )
            kind = f"legacy session ({found.legacy.kind.value})"
        else:
            user = _user(ctx, found)
            kind = "session"
        if not self.args.yes:
            self._confirm(ctx, found, kind, user)
        if found.legacy is not None:
            ctx.store.delete(found.legacy.redis_key)
            return self._ended(ctx, found, kind, user)
        assert found.session_id is not None
        if user is not None:
            sessions = UserSessions.from_store(ctx.factory, ctx.store)
            if not sessions.end_session(user, found.session_id):
                raise Fail(
                    f"the session (handle {found.handle}) ended, or left user "
                    f"{user!r}, before it could be ended"
                )
        else:
            ctx.store.delete(ctx.store.key(found.session_id))
        return self._ended(ctx, found, kind, user)

    def _ended(self, ctx: Context, found: Located, kind: str, user: str | None) -> int:
        if self.args.json:
            ended = {"handle": found.handle, "kind": kind, "user": user}
            self.out(json.dumps({"ended": ended}) + "\n")
        else:
            bound = "" if user is None else f" of user {user!r}"
            self.out(f"ended {kind} {found.handle}{bound} {ctx.where()}\n")
        return OK

    def _confirm(
        self, ctx: Context, found: Located, kind: str, user: str | None
    ) -> None:
        bound = "" if user is None else f" of user {user!r}"
        question = (
            f"End {kind} {found.handle}{bound} {ctx.where()}? Its browser "
            "will be logged out. [y/N] "
        )
        refusal = "refusing to end without --yes: there is no terminal to confirm on"
        if not confirm(question, refusal, ("y", "yes")):
            raise Fail("end cancelled: nothing was ended")


def _user(ctx: Context, found: Located) -> str | None:
    """The user the session is bound to, if its signed field says so."""
    assert found.session_id is not None and found.stored is not None
    seal = ctx.factory.codec.for_session(found.session_id)
    fields = found.stored.fields
    if USER not in fields:
        return None
    return parse({USER: fields[USER]}, seal, strict=False).user
