"""``psessions``: operate the session store of a Pyramid application.

``psessions CONFIG_URI COMMAND`` reads the application's ``redis.sessions.*``
settings from its ini file with Pyramid's own loader
(:func:`pyramid.paster.get_appsettings`, ``config.ini#name`` included), builds
the factory the application would build
(:func:`~pyramid_redis_sessions.session_factory_from_settings`) and uses its
client: standalone, Sentinel or Cluster, with the same timeouts and retries.
The Redis side of each command is in :mod:`pyramid_redis_sessions.admin`;
this module parses arguments and prints. See ``docs/cli.rst``.

Exit codes: ``0`` done; ``1`` the command failed (Redis unreachable or in
error, no such session, a cookie that does not verify, a purge declined);
``2`` bad usage or configuration (arguments, the ini file, the settings, a
feature that is not configured). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pprint
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn, TextIO

import redis
import redis.exceptions
from pyramid.paster import get_appsettings, setup_logging
from pyramid.request import Request
from redis.exceptions import RedisClusterException

from . import admin
from .exceptions import ConfigurationError
from .factory import SessionFactory, session_factory_from_settings
from .handles import Handles
from .legacy import LegacyCookie, LegacyCookies, decode_value
from .settings import PREFIX, coerce_option
from .store import RedisStore
from .users import UserSessions
from .values import (
    CREATED,
    FLASH,
    RESERVED,
    TIMEOUT,
    BadValue,
    flash_queue,
    key_name,
)

__all__ = ["main"]

PROG = "psessions"
#: Exit codes.
OK, FAILED, USAGE = 0, 1, 2
#: The width of the bars of the TTL histogram.
BAR_WIDTH = 40


class _Fail(Exception):
    """A failure to report on one line, with the exit code to return."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise _Fail(f"{message} (see {self.prog} --help)", USAGE)


DESCRIPTION = """\
Operate the session store of a Pyramid application that uses
pyramid_redis_sessions.

CONFIG_URI is the application's ini file, as for pserve or proutes:
'development.ini', or 'production.ini#myapp' for the [app:myapp] section
(default: main). Its redis.sessions.* settings are used as the application
uses them, so psessions reaches the same Redis (standalone, Sentinel or
Cluster), under the same prefix, with the same secret.
"""

EPILOG = """\
exit codes:
  0  done
  1  the command failed: Redis unreachable or in error, no such session,
     a cookie that does not verify, a purge not confirmed
  2  bad usage or configuration: arguments, the ini file, the settings,
     a feature that is not configured

Run 'psessions CONFIG_URI COMMAND --help' for a command's options.
"""


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {minimum}, got {text!r}"
            )
        return value

    return parse


_positive, _natural = _whole_number(1), _whole_number(0)


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    parser.add_argument(
        "config_uri",
        metavar="CONFIG_URI",
        help="the application's ini file, optionally with '#name' for its "
        "[app:name] section",
    )
    parser.add_argument(
        "-n",
        "--app-name",
        metavar="NAME",
        help="the [app:NAME] section to read (default: the '#name' of "
        "CONFIG_URI, else main)",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on an unexpected error, show the traceback (for bug reports)",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", required=True
    )
    batch = _Parser(add_help=False)
    batch.add_argument(
        "--batch-size",
        type=_positive,
        default=admin.DEFAULT_BATCH_SIZE,
        metavar="N",
        help="keys per SCAN call and per pipeline; no step holds more keys "
        f"than this (default: {admin.DEFAULT_BATCH_SIZE})",
    )
    as_json = _Parser(add_help=False)
    as_json.add_argument(
        "--json", action="store_true", help="print one JSON object, for programs"
    )

    stats = commands.add_parser(
        "stats",
        parents=[batch, as_json],
        formatter_class=raw,
        help="count the sessions, estimate their memory, show their TTLs",
        description=textwrap.dedent(
            """\
            Count the live sessions under the prefix (SCAN, a batch at a time;
            on Cluster, every master), show how long they have left (a TTL
            histogram) and estimate their memory: MEMORY USAGE of a random
            sample of sessions, times the count (exact when the sample holds
            every session). The largest sessions of the sample are named by
            handle, never by id. Only Redis hashes under the prefix count as
            sessions; the user-sessions index (prefix + 'user:') does not.
            Nothing is changed, and no session's expiry is touched."""
        ),
    )
    stats.add_argument(
        "--sample",
        type=_positive,
        default=admin.DEFAULT_SAMPLE_SIZE,
        metavar="N",
        help=f"sessions to measure (default: {admin.DEFAULT_SAMPLE_SIZE})",
    )
    stats.add_argument(
        "--top",
        type=_natural,
        default=10,
        metavar="N",
        help="how many of the largest sessions to list (default: 10)",
    )

    show = commands.add_parser(
        "show",
        parents=[as_json],
        formatter_class=raw,
        help="show one session, decoded",
        description=textwrap.dedent(
            """\
            Show one session: when it was created, its timeout, the time it
            has left, and its keys and flash messages. Every stored value is
            verified with the secret (or a fallback) before it is
            deserialized with the configured serializer, as the application
            does; a value that does not verify is reported and never
            deserialized. Reading does not extend the session."""
        ),
    )
    show.add_argument(
        "session",
        metavar="ID_OR_COOKIE",
        help="a session id, or the value of a session cookie ('name=value' "
        "also accepted); cookies of pyramid_redis_sessions 1.x and "
        "pyramid_session_redis too, unless legacy_cookies is false",
    )

    user = commands.add_parser(
        "user",
        parents=[as_json],
        formatter_class=raw,
        help="list a user's sessions, or end them all",
        description=textwrap.dedent(
            """\
            List the sessions of one user from the user-sessions index, by
            handle, with when each expires; with --end-all, end them all
            (the user is logged out everywhere). The index is kept for
            sessions bound to a user (the user_key setting, or
            bind_user() in the application)."""
        ),
    )
    user.add_argument("user", metavar="USER", help="the user, as the index names them")
    user.add_argument(
        "--end-all", action="store_true", help="end every session of the user"
    )

    purge = commands.add_parser(
        "purge",
        parents=[batch],
        formatter_class=raw,
        help="delete every session (everybody is logged out)",
        description=textwrap.dedent(
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
        ),
    )
    purge.add_argument(
        "-y", "--yes", action="store_true", help="do not ask for confirmation"
    )
    purge.add_argument(
        "--legacy",
        action="store_true",
        help="also delete the strings under the prefix (sessions of 1.x or "
        "pyramid_session_redis not moved yet)",
    )
    return parser


# -- loading the application's settings ------------------------------------


@dataclass
class _Context:
    factory: SessionFactory
    store: RedisStore
    keyspace: admin.Keyspace
    #: Reads the old packages' cookies: the factory's, or one of its own
    #: when legacy_cookies is off (so that show can say so).
    legacy: LegacyCookies

    @property
    def server(self) -> str:
        return self.keyspace.describe()


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _load(args: argparse.Namespace) -> _Context:
    uri = args.config_uri
    try:
        setup_logging(uri)
        settings = dict(get_appsettings(uri, name=args.app_name))
    except Exception as e:  # the ini file and the app it names can fail anyhow
        raise _Fail(
            f"cannot read the settings of {uri!r}: {type(e).__name__}: {_one_line(e)}",
            USAGE,
        ) from None
    try:
        factory = session_factory_from_settings(settings)
        legacy = factory.cookie.legacy
        if legacy is None:
            secret = coerce_option("secret", settings[PREFIX + "secret"], "secret")
            fallbacks = coerce_option(
                "secret_fallbacks",
                settings.get(PREFIX + "secret_fallbacks", []),
                f"setting {PREFIX + 'secret_fallbacks'!r}",
            )
            legacy = LegacyCookies(secret, fallbacks)
    except ConfigurationError as e:
        raise _Fail(f"{uri}: {_one_line(e)}", USAGE) from None
    # With client_callable, the app's callable makes the client; it is given
    # a blank request, as psessions serves none.
    store = factory.store_for(Request.blank("/"))
    batch_size = getattr(args, "batch_size", admin.DEFAULT_BATCH_SIZE)
    keyspace = admin.Keyspace(store.client, factory.prefix, batch_size)
    return _Context(factory, store, keyspace, legacy)


def _legacy_cookies_on(ctx: _Context) -> bool:
    """``legacy_cookies``: the factory reads legacy cookies only when on."""
    return ctx.factory.cookie.legacy is not None


# -- formatting ------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError  # pragma: no cover


def _when(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any, indent: int) -> str:
    text = pprint.pformat(value, width=max(40, 88 - indent), compact=True)
    return text.replace("\n", "\n" + " " * indent)


class _Unreadable:
    """Stands for a value that is not shown: its ``repr`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<{self.reason}>"


# -- stats -------------------------------------------------------------------


def _stats(ctx: _Context, args: argparse.Namespace, out: TextIO) -> int:
    found = ctx.keyspace.stats(ctx.factory.handles, args.sample, args.top)
    # Strings log nobody in once legacy_cookies is off: not walked then.
    legacy = ctx.keyspace.count_legacy() if _legacy_cookies_on(ctx) else None
    if args.json:
        json.dump(
            {
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
            },
            out,
            indent=2,
        )
        out.write("\n")
        return OK
    w = out.write
    w(f"Sessions under {ctx.factory.prefix!r} on {ctx.server}\n")
    w(f"  sessions  {found.sessions:,}\n")
    if legacy:
        w(f"  legacy    {legacy:,} {_LEGACY_WORDS}\n")
    if found.sessions == 0:
        w("  memory    0 B\n")
        return OK
    if found.exact:
        w(
            f"  memory    {_size(found.memory_bytes)} (MEMORY USAGE of every "
            f"session, mean {_size(found.mean_bytes)})\n"
        )
    else:
        w(
            f"  memory    ~{_size(found.memory_bytes)} (estimated: MEMORY USAGE "
            f"of a random sample of {found.sampled:,} sessions, mean "
            f"{_size(found.mean_bytes)}, times {found.sessions:,})\n"
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
            w(f"  {s.handle}  {_size(s.bytes):>10}  {s.fields:,} fields\n")
    return OK


#: What the strings under the prefix are, for the stats and purge.
_LEGACY_WORDS = (
    "strings under the prefix: sessions of 1.x or pyramid_session_redis not "
    "moved yet, which legacy_cookies still accepts"
)


# -- show --------------------------------------------------------------------


@dataclass
class _Shown:
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
    #: Values by session key; :class:`_Unreadable` for those not shown.
    keys: dict[str, Any] | None = None
    flash: list[tuple[str, Any]] | None = None
    #: Why the application would refuse the session; empty if it would not.
    problems: list[str] | None = None
    #: Fields that only a ``secret_fallbacks`` entry verifies.
    fallback_fields: int = 0


def _unquote(ctx: _Context, value: str) -> str:
    value = value.strip()
    name = ctx.factory.cookie.settings.name + "="
    if value.startswith(name):
        value = value[len(name) :]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


#: Shortest value that could be a signed cookie: 64 bytes of HMAC-SHA512 and
#: at least one byte of id, in unpadded base64 (a 1.x cookie is longer too).
_MIN_COOKIE_LENGTH = 87


def _show(ctx: _Context, args: argparse.Namespace, out: TextIO) -> int:
    value = _unquote(ctx, args.session)
    handles = ctx.factory.handles
    session_id, current = ctx.factory.cookie.unsign(value)
    if session_id is not None:
        signer = "secret" if current else "a secret_fallbacks entry"
        shown = _show_session(ctx, session_id, f"a cookie signed with {signer}")
        if shown is None:
            raise _Fail(
                "the cookie verifies, but its session is gone (expired or "
                f"ended); handle {handles(session_id)}"
            )
    else:
        legacy = ctx.legacy.read(value)
        if legacy is not None and _legacy_cookies_on(ctx):
            shown = _show_legacy(ctx, legacy, handles)
        else:
            shown = _show_session(ctx, value, "a session id")
            if shown is None:
                if legacy is not None:
                    raise _Fail(
                        "a legacy cookie, but legacy_cookies is off: the "
                        "application does not read it",
                        USAGE,
                    )
                if len(value) >= _MIN_COOKIE_LENGTH:
                    raise _Fail(
                        "not a session id, nor a cookie that verifies with "
                        "the secret or secret_fallbacks"
                    )
                raise _Fail(
                    f"no session with that id under {ctx.factory.prefix!r} "
                    f"(handle {handles(value)}): expired, ended, or never existed"
                )
    _print_shown(shown, args.json, out)
    return OK


def _show_session(ctx: _Context, session_id: str, source: str) -> _Shown | None:
    key = ctx.factory.prefix + session_id
    stored = ctx.keyspace.read(key)
    if stored.type == "none":
        return None
    handle = ctx.factory.handles(session_id)
    if stored.type != "hash":
        raise _Fail(
            f"the key of that session (handle {handle}) holds a Redis "
            f"{stored.type}, not a session of this format"
        )
    keys: dict[str, Any] = {}
    flash: list[tuple[str, Any]] = []
    problems: list[str] = []
    created = timeout = None
    fallback_fields = 0
    seal = ctx.factory.codec.for_session(session_id)
    loads = ctx.factory.serializer.loads
    for field, raw in sorted(stored.fields.items()):
        name = field.decode("utf-8", "backslashreplace")
        try:
            payload, current = seal.open(field, raw)
        except BadValue:
            problems.append(f"field {name!r} does not verify: not deserialized")
            if field[:1] != RESERVED:
                keys[name] = _Unreadable("does not verify: not deserialized")
            continue
        if not current:
            fallback_fields += 1
        if field == CREATED:
            created = _float(payload, problems, name)
        elif field == TIMEOUT:
            timeout = _float(payload, problems, name)
        elif field.startswith(FLASH):
            flash.append(
                (
                    _flash_queue(field, problems, name),
                    _decoded(loads, payload, problems, name),
                )
            )
        elif field[:1] != RESERVED:  # other reserved names: a later format's
            keys[key_name(field)] = _decoded(loads, payload, problems, name)
    if CREATED not in stored.fields:
        problems.append("no creation time")
    return _Shown(
        "session",
        handle,
        source,
        stored.ttl,
        created=created,
        timeout=ctx.factory.timeout if timeout is None else (int(timeout) or None),
        own_timeout=timeout is not None,
        keys=keys,
        flash=flash,
        problems=problems,
        fallback_fields=fallback_fields,
    )


def _flash_queue(field: bytes, problems: list[str], name: str) -> str:
    try:
        return flash_queue(field)
    except ValueError:  # BadValue, or a name that is not UTF-8
        problems.append(f"field {name!r} is not a well-formed flash field")
        return field[len(FLASH) :].decode("utf-8", "backslashreplace")


def _float(payload: bytes, problems: list[str], name: str) -> float | None:
    try:
        return float(payload)
    except ValueError:
        problems.append(f"field {name!r} is not a number")
        return None


def _decoded(
    loads: Callable[[bytes], Any], payload: bytes, problems: list[str], name: str
) -> Any:
    try:
        return loads(payload)
    except Exception as e:  # a serializer may raise anything on bad bytes
        problems.append(f"field {name!r} does not deserialize ({type(e).__name__})")
        return _Unreadable(f"does not deserialize: {type(e).__name__}")


def _show_legacy(ctx: _Context, cookie: LegacyCookie, handles: Handles) -> _Shown:
    raw, ttl = ctx.keyspace.read_string(cookie.redis_key)
    handle = handles(cookie.redis_key)
    if raw is None:
        raise _Fail(
            f"the {cookie.kind.value} cookie verifies, but its session is gone "
            f"(expired, ended or already moved to the new format); handle {handle}"
        )
    legacy = decode_value(cookie.kind, raw, ctx.factory.legacy_loads)
    keys = dict(sorted(legacy.data.items()))
    if legacy.csrf_token is not None:
        keys["_csrft_"] = legacy.csrf_token
    signer = "a secret_fallbacks entry" if cookie.fallback else "secret"
    return _Shown(
        f"legacy session ({cookie.kind.value})",
        handle,
        f"a {cookie.kind.value} cookie signed with {signer}",
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


def _print_shown(shown: _Shown, as_json: bool, out: TextIO) -> None:
    keys, flash, problems = shown.keys or {}, shown.flash or [], shown.problems or []
    if as_json:
        json.dump(
            {
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
            },
            out,
            indent=2,
        )
        out.write("\n")
        return
    w = out.write
    w(f"{shown.kind} {shown.handle} (handle), from {shown.source}\n")
    if shown.created is not None:
        age = _duration(max(0.0, time.time() - shown.created))
        w(f"  created   {_when(shown.created)} ({age} ago)\n")
    timeout = "none" if shown.timeout is None else f"{shown.timeout} s"
    origin = "its own" if shown.own_timeout else "the timeout setting"
    w(f"  timeout   {timeout} ({origin})\n")
    w(f"  ttl       {'none' if shown.ttl is None else _duration(shown.ttl)}\n")
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
        w(head + _pretty(value, len(head)) + "\n")
    if flash:
        w(f"\nflash messages ({len(flash)}), oldest first\n")
        for queue, message in flash:
            head = f"  [{queue!r}] "
            w(head + _pretty(message, len(head)) + "\n")


# -- user ----------------------------------------------------------------------


def _user(ctx: _Context, args: argparse.Namespace, out: TextIO) -> int:
    """A user's sessions from the user-sessions index (``user_key`` or
    ``bind_user()``), and ending them all."""
    index = UserSessions._with(ctx.factory, ctx.store, None)
    if args.end_all:
        ended = index.end_all(args.user)
        if args.json:
            out.write(json.dumps({"user": args.user, "ended": ended}) + "\n")
        else:
            out.write(f"ended {ended:,} sessions of user {args.user!r}\n")
        return OK
    sessions = sorted(
        index.list(args.user), key=lambda s: (s.expires is None, s.expires or 0)
    )
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
        out.write(json.dumps({"user": args.user, "sessions": listed}, indent=2))
        out.write("\n")
        return OK
    out.write(f"{len(sessions):,} sessions of user {args.user!r}\n")
    now = time.time()
    for s in sessions:
        left = "no expiry" if s.expires is None else _when(s.expires)
        if s.expires is not None:
            left += f" (in {_duration(max(0.0, s.expires - now))})"
        active = (
            ""
            if s.last_active is None
            else f", active {_duration(max(0.0, now - s.last_active))} ago"
        )
        details = "".join(f"  {k}={v!r}" for k, v in sorted(s.details.items()))
        out.write(f"  {s.handle}  expires {left}{active}{details}\n")
    return OK


# -- purge -------------------------------------------------------------------


def _purge(ctx: _Context, args: argparse.Namespace, out: TextIO) -> int:
    prefix = ctx.factory.prefix
    if not prefix:
        raise _Fail(
            "refusing to purge with an empty prefix: every hash in the "
            "database would be deleted",
            USAGE,
        )
    where = f"under {prefix!r} on {ctx.server}"
    if not args.yes:
        if not sys.stdin or not sys.stdin.isatty():
            raise _Fail(
                "refusing to purge without --yes: there is no terminal to confirm on",
                USAGE,
            )
        also = (
            ", and the strings 1.x or pyramid_session_redis stored there"
            if args.legacy
            else ""
        )
        who = (
            "Every user will be logged out"
            if args.legacy or not _legacy_cookies_on(ctx)
            else "Every user will be logged out, except those whose session "
            "1.x or pyramid_session_redis stored (see --legacy)"
        )
        sys.stderr.write(
            f"Delete every session {where}{also}? {who}.\nType 'yes' to go on: "
        )
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() != "yes":
            raise _Fail("purge cancelled: nothing was deleted")
    progress = None
    if sys.stderr.isatty():

        def progress(total: int) -> None:
            sys.stderr.write(f"\rdeleted {total:,} sessions")
            sys.stderr.flush()

    deleted = ctx.keyspace.purge(progress)
    if progress is not None:
        sys.stderr.write("\n")
    out.write(f"deleted {deleted:,} sessions {where}\n")
    if args.legacy:
        strings = ctx.keyspace.purge_legacy()
        out.write(f"deleted {strings:,} legacy strings {where}\n")
    elif _legacy_cookies_on(ctx):
        kept = ctx.keyspace.count_legacy()
        if kept:
            out.write(
                f"kept {kept:,} {_LEGACY_WORDS}; purge --legacy deletes them too\n"
            )
    return OK


_COMMANDS: dict[str, Callable[[_Context, argparse.Namespace, TextIO], int]] = {
    "stats": _stats,
    "show": _show,
    "user": _user,
    "purge": _purge,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``psessions`` with ``argv`` (default: ``sys.argv[1:]``) and return
    its exit code; what it prints goes to :data:`sys.stdout` and
    :data:`sys.stderr`."""
    parser = build_parser()
    args: argparse.Namespace | None = None
    context: _Context | None = None
    try:
        args = parser.parse_args(argv)
        context = _load(args)
        return _COMMANDS[args.command](context, args, sys.stdout)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else USAGE
    except _Fail as e:
        return _report(str(e), e.code)
    except (redis.RedisError, RedisClusterException) as e:
        if context is None:  # a Cluster client asks for the layout when made
            assert args is not None
            return _report(
                f"cannot connect to the Redis that {args.config_uri} configures: "
                f"{_one_line(e)}",
                FAILED,
            )
        if isinstance(
            e, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        ):
            what = "is unavailable"
        else:
            what = "failed"
        return _report(f"Redis at {context.server} {what}: {_one_line(e)}", FAILED)
    except KeyboardInterrupt:
        return _report("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep Python
        # from failing again when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return FAILED
    except Exception as e:
        if args is not None and args.traceback:
            raise
        return _report(
            f"unexpected error: {type(e).__name__}: {_one_line(e)} (run with "
            "--traceback for details)",
            FAILED,
        )


def _report(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: {message}\n")
    return code
