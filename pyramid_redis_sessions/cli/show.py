"""``psessions CONFIG_URI show SESSION``: show one session, decoded.

:func:`locate` finds the session that an id, a cookie or a handle names;
``end`` uses it too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..admin import StoredSession
from ..handles import HANDLE_LENGTH
from ..legacy import LegacyCookie, decode_value
from ..values import CREATED, FLASH, RESERVED, flash_queue, key_name, parse
from .common import (
    OK,
    USAGE,
    Command,
    Context,
    Fail,
    Unreadable,
    add_batch_size,
    add_json,
    duration,
    pretty,
    when,
)

__all__ = [
    "SESSION_HELP",
    "SESSION_METAVAR",
    "Located",
    "ShowCommand",
    "Shown",
    "locate",
    "main",
]

SESSION_METAVAR = "ID_OR_COOKIE_OR_HANDLE"
SESSION_HELP = (
    "a session id, a handle (as stats and user show them), or the value of a "
    "session cookie ('name=value' also accepted); cookies of "
    "pyramid_redis_sessions 1.x and pyramid_session_redis too, unless "
    "legacy_cookies is false"
)

#: Shortest value that could be a signed cookie: 64 bytes of HMAC-SHA512 and
#: at least one byte of id, in unpadded base64 (a 1.x cookie is longer too).
MIN_COOKIE_LENGTH = 87
_HANDLE = re.compile(f"[0-9a-f]{{{HANDLE_LENGTH}}}")


def main(argv: Sequence[str] = sys.argv, quiet: bool = False) -> int:
    return ShowCommand.main(argv, quiet)


# -- finding the session -----------------------------------------------------


@dataclass
class Located:
    """The session an argument names: one of this format (``session_id`` and
    what is ``stored``) or, from a legacy cookie, one that 1.x or
    pyramid_session_redis stored (``legacy``)."""

    #: What the argument was, for the output: "a session id", ...
    source: str
    handle: str
    session_id: str | None = None
    stored: StoredSession | None = None
    legacy: LegacyCookie | None = None


def unquote(ctx: Context, value: str) -> str:
    value = value.strip()
    name = ctx.factory.cookie.settings.name + "="
    if value.startswith(name):
        value = value[len(name) :]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def _read(ctx: Context, session_id: str) -> StoredSession | None:
    stored = ctx.keyspace.read(ctx.factory.prefix + session_id)
    if stored.type == "none":
        return None
    if stored.type != "hash":
        raise Fail(
            f"the key of that session (handle {ctx.factory.handles(session_id)}) "
            f"holds a Redis {stored.type}, not a session of this format"
        )
    return stored


def _with_note(ctx: Context, message: str) -> str:
    note = ctx.default_server_note()
    return f"{message}; {note}" if note else message


def locate(ctx: Context, argument: str) -> Located:
    """The session ``argument`` names: a signed cookie (of this package, or a
    legacy one while ``legacy_cookies`` is on), an id, or a handle (looked
    for among every session: a ``SCAN`` of the store). :class:`Fail` if
    there is none."""
    value = unquote(ctx, argument)
    handles = ctx.factory.handles
    session_id, current = ctx.factory.cookie.unsign(value)
    if session_id is not None:
        signer = "secret" if current else "a secret_fallbacks entry"
        stored = _read(ctx, session_id)
        if stored is None:
            raise Fail(
                "the cookie verifies, but its session is gone (expired or "
                f"ended); handle {handles(session_id)}"
            )
        source = f"a cookie signed with {signer}"
        return Located(source, handles(session_id), session_id, stored)
    legacy = ctx.legacy.read(value)
    if legacy is not None and ctx.legacy_cookies_on:
        signer = "a secret_fallbacks entry" if legacy.fallback else "secret"
        source = f"a {legacy.kind.value} cookie signed with {signer}"
        return Located(source, handles(legacy.redis_key), legacy=legacy)
    stored = _read(ctx, value)
    if stored is not None:
        return Located("a session id", handles(value), value, stored)
    if legacy is not None:
        raise Fail(
            "a legacy cookie, but legacy_cookies is off: the application "
            "does not read it",
            USAGE,
        )
    if _HANDLE.fullmatch(value):
        ids = ctx.keyspace.find(handles, value)
        if len(ids) > 1:  # 128 bits: not seen in practice
            raise Fail(f"{len(ids)} sessions have the handle {value}: give an id")
        stored = _read(ctx, ids[0]) if ids else None
        if stored is not None:
            return Located("a handle", value, ids[0], stored)
        raise Fail(
            _with_note(
                ctx,
                f"no session with the handle {value} {ctx.where()}: expired, "
                "ended, or never existed",
            )
        )
    if len(value) >= MIN_COOKIE_LENGTH:
        raise Fail(
            "not a session id, nor a cookie that verifies with the secret or "
            "secret_fallbacks"
        )
    raise Fail(
        _with_note(
            ctx,
            f"no session with that id {ctx.where()} (handle {handles(value)}): "
            "expired, ended, or never existed",
        )
    )


# -- decoding it ---------------------------------------------------------------


@dataclass
class Shown:
    """A session decoded for display."""

    kind: str
    handle: str
    source: str
    ttl: int | None
    created: float | None = None
    #: Seconds of inactivity allowed (``None``: no expiry), and whether the
    #: session has a timeout of its own rather than the ``timeout`` setting.
    timeout: int | None = None
    own_timeout: bool = False
    #: Values by session key; :class:`Unreadable` for those not shown.
    keys: dict[str, Any] = field(default_factory=dict)
    flash: list[tuple[str, Any]] = field(default_factory=list)
    #: Why the application would refuse the session; empty if it would not.
    problems: list[str] = field(default_factory=list)
    #: Fields that only a ``secret_fallbacks`` entry verifies.
    fallback_fields: int = 0


def decode_session(ctx: Context, found: Located) -> Shown:
    """Every field verified (through :func:`~pyramid_redis_sessions.values.parse`)
    before the verified ones are deserialized; what is wrong, field by field."""
    assert found.session_id is not None and found.stored is not None
    fields = found.stored.fields
    record = parse(
        fields, ctx.factory.codec.for_session(found.session_id), strict=False
    )
    loads = ctx.factory.serializer.loads
    shown = Shown("session", found.handle, found.source, found.stored.ttl)
    for name in sorted(fields):
        text = name.decode("utf-8", "backslashreplace")
        problem = record.problems.get(name)
        if name in record.unverified:
            shown.problems.append(f"field {text!r} {problem}: not deserialized")
            if name[:1] != RESERVED:
                shown.keys[text] = Unreadable("does not verify: not deserialized")
            continue
        if problem is not None:
            shown.problems.append(f"field {text!r} {problem}")
        if name in record.flash:
            try:
                queue = flash_queue(name)
            except ValueError:
                queue = name[len(FLASH) :].decode("utf-8", "backslashreplace")
            message = _decoded(loads, record.flash[name], shown.problems, text)
            shown.flash.append((queue, message))
        elif name[:1] != RESERVED:
            key = key_name(name)
            shown.keys[key] = _decoded(loads, record.keys[key], shown.problems, text)
    if CREATED not in fields:
        shown.problems.append("no creation time")
    shown.created = record.created
    own = record.timeout
    shown.timeout = ctx.factory.timeout if own is None else (own or None)
    shown.own_timeout = own is not None
    shown.fallback_fields = len(record.reseal)
    return shown


def _decoded(
    loads: Callable[[bytes], Any], payload: bytes, problems: list[str], name: str
) -> Any:
    try:
        return loads(payload)
    except Exception as e:  # a serializer may raise anything on bad bytes
        problems.append(f"field {name!r} does not deserialize ({type(e).__name__})")
        return Unreadable(f"does not deserialize: {type(e).__name__}")


def decode_legacy(ctx: Context, found: Located) -> Shown:
    cookie = found.legacy
    assert cookie is not None
    raw, ttl = ctx.keyspace.read_string(cookie.redis_key)
    if raw is None:
        raise Fail(
            f"the {cookie.kind.value} cookie verifies, but its session is gone "
            "(expired, ended or already moved to the new format); handle "
            f"{found.handle}"
        )
    legacy = decode_value(cookie.kind, raw, ctx.factory.legacy_loads)
    keys = dict(sorted(legacy.data.items()))
    if legacy.csrf_token is not None:
        keys["_csrft_"] = legacy.csrf_token
    return Shown(
        f"legacy session ({cookie.kind.value})",
        found.handle,
        found.source,
        ttl,
        created=legacy.created,
        timeout=legacy.timeout,
        own_timeout=True,
        keys=keys,
        flash=[
            (queue, message)
            for queue, messages in legacy.flash.items()
            for message in messages
        ],
        problems=[f"key {k} is not a str: dropped" for k in legacy.dropped_keys],
    )


# -- the command -----------------------------------------------------------------


class ShowCommand(Command):
    name = "show"
    summary = "show one session, decoded"
    description = textwrap.dedent(
        """\
        Show one session: when it was created, its timeout, the time it
        has left, and its keys and flash messages. Every stored value is
        verified with the secret (or a fallback) before it is
        deserialized with the configured serializer, as the application
        does; a value that does not verify is reported and never
        deserialized. Reading does not extend the session.

        The session is named by its id, its cookie, or its handle (what
        stats and user show); a handle is looked for among every session
        under the prefix (a SCAN, a batch at a time)."""
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        add_json(parser)
        add_batch_size(parser)
        parser.add_argument("session", metavar=SESSION_METAVAR, help=SESSION_HELP)

    def execute(self, ctx: Context) -> int:
        found = locate(ctx, self.args.session)
        if found.legacy is not None:
            shown = decode_legacy(ctx, found)
        else:
            shown = decode_session(ctx, found)
        self.print(shown)
        return OK

    def print(self, shown: Shown) -> None:
        keys, flash, problems = shown.keys, shown.flash, shown.problems
        if self.args.json:
            data = {
                "kind": shown.kind,
                "handle": shown.handle,
                "source": shown.source,
                "created": shown.created,
                "timeout": shown.timeout,
                "own_timeout": shown.own_timeout,
                "ttl": shown.ttl,
                "valid": not problems,
                "problems": problems,
                "fallback_fields": shown.fallback_fields,
                "keys": {name: repr(value) for name, value in keys.items()},
                "flash": [{"queue": q, "message": repr(m)} for q, m in flash],
            }
            self.out(json.dumps(data, indent=2) + "\n")
            return
        w = self.out
        w(f"{shown.kind} {shown.handle} (handle), from {shown.source}\n")
        if shown.created is not None:
            age = duration(max(0.0, time.time() - shown.created))
            w(f"  created   {when(shown.created)} ({age} ago)\n")
        timeout = "none" if shown.timeout is None else f"{shown.timeout} s"
        origin = "its own" if shown.own_timeout else "the timeout setting"
        w(f"  timeout   {timeout} ({origin})\n")
        w(f"  ttl       {'none' if shown.ttl is None else duration(shown.ttl)}\n")
        if problems:
            w("  status    INVALID: the application would refuse this session\n")
            for problem in problems:
                w(f"            - {problem}\n")
        elif shown.fallback_fields:
            w(
                f"  status    valid; {shown.fallback_fields} fields verify with a "
                "secret_fallbacks entry only (re-signed when next used)\n"
            )
        else:
            w("  status    valid: every field verifies\n")
        w(f"\nkeys ({len(keys)})\n")
        for name, value in keys.items():
            head = f"  {name!r}: "
            w(head + pretty(value, len(head)) + "\n")
        if flash:
            w(f"\nflash messages ({len(flash)}), oldest first\n")
            for queue, message in flash:
                head = f"  [{queue!r}] "
                w(head + pretty(message, len(head)) + "\n")
