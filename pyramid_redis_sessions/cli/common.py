"""What every ``psessions`` command shares: exit codes and errors, loading
the application's settings, the base class of the commands, formatting."""

from __future__ import annotations

import argparse
import contextlib
import os
import pprint
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, NoReturn, TextIO

import redis
import redis.exceptions
from pyramid.paster import get_appsettings, setup_logging
from pyramid.request import Request
from redis.exceptions import RedisClusterException

from .. import admin
from ..exceptions import ConfigurationError
from ..factory import SessionFactory, session_factory_from_settings
from ..legacy import LegacyCookies
from ..settings import PREFIX, coerce_option, settings_options
from ..store import RedisStore

PROG = "psessions"
#: Exit codes.
OK, FAILED, USAGE = 0, 1, 2

#: The settings that choose a server: with none of them, the client is
#: redis-py's default, localhost:6379.
SERVER_OPTIONS = frozenset(
    {
        "url",
        "host",
        "port",
        "unix_socket_path",
        "sentinels",
        "connection_pool",
        "client_callable",
    }
)

#: What the strings under the prefix are, for the stats and purge.
LEGACY_WORDS = (
    "strings under the prefix: sessions of 1.x or pyramid_session_redis not "
    "moved yet, which legacy_cookies still accepts"
)


class Fail(Exception):
    """A failure to report on one line, with the exit code to return."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise Fail(f"{message} (see {self.prog} --help)", USAGE)


def whole_number(minimum: int) -> Callable[[str], int]:
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


positive, natural = whole_number(1), whole_number(0)


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-size",
        type=positive,
        default=admin.DEFAULT_BATCH_SIZE,
        metavar="N",
        help="keys per SCAN call and per pipeline; no step holds more keys "
        f"than this (default: {admin.DEFAULT_BATCH_SIZE})",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object, for programs"
    )


def add_yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-y", "--yes", action="store_true", help="do not ask for confirmation"
    )


def add_config_uri(parser: argparse.ArgumentParser) -> None:
    """The arguments every command line starts with."""
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


# -- loading the application's settings ------------------------------------


@dataclass
class Context:
    """What a command works with: the application's factory and store."""

    factory: SessionFactory
    store: RedisStore
    keyspace: admin.Keyspace
    #: Reads the old packages' cookies: the factory's, or one of its own
    #: when legacy_cookies is off (so that show can say so).
    legacy: LegacyCookies
    #: Where the settings came from, for messages.
    config_uri: str = "the settings"
    #: No setting chose the server: it is redis-py's default, localhost:6379.
    default_server: bool = False

    @property
    def server(self) -> str:
        return self.keyspace.describe()

    @property
    def legacy_cookies_on(self) -> bool:
        """``legacy_cookies``: the factory reads legacy cookies only when on."""
        return self.factory.cookie.legacy is not None

    def where(self) -> str:
        """Where the sessions were looked for."""
        return f"under {self.factory.prefix!r} on {self.server}"

    def default_server_note(self) -> str:
        """Why an empty store may be the wrong one; empty if a setting chose
        the server."""
        if not self.default_server:
            return ""
        return (
            f"{self.server} is the default server: no {PREFIX}url in "
            f"{self.config_uri} (is the application's Redis elsewhere?)"
        )

    def warn_if_default_server(self) -> None:
        """On stderr, when nothing was found on the default server."""
        note = self.default_server_note()
        if note:
            sys.stderr.write(f"{PROG}: warning: nothing found: {note}\n")


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def context_from_settings(
    settings: dict[str, Any],
    batch_size: int = admin.DEFAULT_BATCH_SIZE,
    config_uri: str = "the settings",
) -> Context:
    """The factory and store the application builds from ``settings``;
    :class:`ConfigurationError` for a bad setting."""
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
    given = settings_options(settings).options
    default_server = not any(given.get(name) for name in SERVER_OPTIONS)
    # With client_callable, the app's callable makes the client; it is given
    # a blank request, as psessions serves none.
    store = factory.store_for(Request.blank("/"))
    keyspace = admin.Keyspace(store.client, factory.prefix, batch_size)
    return Context(factory, store, keyspace, legacy, config_uri, default_server)


def bootstrap(
    config_uri: str,
    app_name: str | None = None,
    batch_size: int = admin.DEFAULT_BATCH_SIZE,
) -> Context:
    """Read the ``redis.sessions.*`` settings of ``config_uri`` with
    Pyramid's loader (and set up its logging), and build what the
    application would build from them."""
    try:
        setup_logging(config_uri)
        settings = dict(get_appsettings(config_uri, name=app_name))
    except Exception as e:  # the ini file and the app it names can fail anyhow
        raise Fail(
            f"cannot read the settings of {config_uri!r}: {type(e).__name__}: "
            f"{one_line(e)}",
            USAGE,
        ) from None
    try:
        return context_from_settings(settings, batch_size, config_uri)
    except ConfigurationError as e:
        raise Fail(f"{config_uri}: {one_line(e)}", USAGE) from None


# -- the commands ------------------------------------------------------------


class Command:
    """One ``psessions`` command, as Pyramid's p-scripts are: built from a
    command line (``argv[0]`` the program) or from arguments already
    parsed, run by :meth:`run`, which returns the exit code.

    ``bootstrap`` loads the application's settings; replace it (on the
    class or the object) to run a command on settings of your own."""

    #: The command's name, its line in ``psessions --help``, its description.
    name: ClassVar[str]
    summary: ClassVar[str]
    description: ClassVar[str]

    bootstrap = staticmethod(bootstrap)

    def __init__(
        self, argv: Sequence[str] | argparse.Namespace, quiet: bool = False
    ) -> None:
        self.quiet = quiet
        if isinstance(argv, argparse.Namespace):
            self.args = argv
        else:
            prog = os.path.basename(argv[0]) if argv else f"{PROG}-{self.name}"
            parser = Parser(
                prog=prog,
                description=self.description,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            add_config_uri(parser)
            self.add_arguments(parser)
            self.args = parser.parse_args(list(argv[1:]))
        self._stdout: TextIO | None = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the command's own arguments to ``parser``."""

    @property
    def stdout(self) -> TextIO:
        return sys.stdout if self._stdout is None else self._stdout

    @stdout.setter
    def stdout(self, stream: TextIO) -> None:
        self._stdout = stream

    def out(self, text: str) -> None:
        """Write ``text`` to stdout, unless quiet."""
        if not self.quiet:
            self.stdout.write(text)

    def execute(self, ctx: Context) -> int:
        """Do the command; its exit code. Raises :class:`Fail` to fail."""
        raise NotImplementedError

    def run(self) -> int:
        """Load the settings, do the command; the exit code. Failures are one
        line on stderr."""
        args = self.args
        context: Context | None = None
        try:
            batch_size = getattr(args, "batch_size", admin.DEFAULT_BATCH_SIZE)
            context = self.bootstrap(args.config_uri, args.app_name, batch_size)
            return self.execute(context)
        except Fail as e:
            return report(str(e), e.code)
        except (redis.RedisError, RedisClusterException) as e:
            if context is None:  # a Cluster client asks for the layout when made
                return report(
                    f"cannot connect to the Redis that {args.config_uri} "
                    f"configures: {one_line(e)}",
                    FAILED,
                )
            if isinstance(
                e, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
            ):
                what = "is unavailable"
            else:
                what = "failed"
            return report(f"Redis at {context.server} {what}: {one_line(e)}", FAILED)
        except KeyboardInterrupt:
            return report("interrupted", 130)
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, and keep Python
            # from failing again when it flushes stdout at exit.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            return FAILED
        except Exception as e:
            if args.traceback:
                raise
            return report(
                f"unexpected error: {type(e).__name__}: {one_line(e)} (run with "
                "--traceback for details)",
                FAILED,
            )

    @classmethod
    def main(cls, argv: Sequence[str], quiet: bool = False) -> int:
        """Parse ``argv`` and run; bad arguments are one line and exit code 2."""
        try:
            command = cls(argv, quiet)
        except Fail as e:
            return report(str(e), e.code)
        except SystemExit as e:  # --help
            return e.code if isinstance(e.code, int) else USAGE
        return command.run()


def report(message: str, code: int) -> int:
    sys.stderr.write(f"{PROG}: {message}\n")
    return code


def confirm(question: str, refusal: str, answers: Sequence[str]) -> bool:
    """Ask ``question`` on the terminal; whether the answer is one of
    ``answers``. Without a terminal, :class:`Fail` with ``refusal``."""
    if not sys.stdin or not sys.stdin.isatty():
        raise Fail(refusal, USAGE)
    sys.stderr.write(question)
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in answers


# -- formatting ------------------------------------------------------------


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])


def size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError  # pragma: no cover


def when(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value: Any, indent: int) -> str:
    text = pprint.pformat(value, width=max(40, 88 - indent), compact=True)
    return text.replace("\n", "\n" + " " * indent)


class Unreadable:
    """Stands for a value that is not shown: its ``repr`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<{self.reason}>"
