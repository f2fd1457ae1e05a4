"""``psessions``: operate the session store of a Pyramid application.

``psessions CONFIG_URI COMMAND`` reads the application's ``redis.sessions.*``
settings from its ini file with Pyramid's own loader
(:func:`pyramid.paster.get_appsettings`, ``config.ini#name`` included), builds
the factory the application would build
(:func:`~pyramid_redis_sessions.session_factory_from_settings`) and uses its
client: standalone, Sentinel or Cluster, with the same timeouts and retries.
See ``docs/cli.rst``.

The package, one way down (no module imports one above it):

* this module: the ``psessions`` parser and :func:`main`, which hands the
  parsed arguments to the command;
* one module per command (:mod:`.stats`, :mod:`.show`, :mod:`.end`,
  :mod:`.user`, :mod:`.sweep`, :mod:`.purge`), each a
  :class:`~.common.Command` with its arguments and a ``main(argv, quiet)``
  of its own, as Pyramid's p-scripts are; ``end`` finds its session as
  ``show`` does (:func:`.show.locate`);
* :mod:`.common`: exit codes and errors, loading the settings (the
  commands' ``bootstrap``), formatting.

The Redis side of each command is in :mod:`pyramid_redis_sessions.admin`
and :mod:`pyramid_redis_sessions.users`; a stored session is decoded by
:func:`pyramid_redis_sessions.values.parse`.

Exit codes: ``0`` done; ``1`` the command failed (Redis unreachable or in
error, no such session, a cookie that does not verify, a purge or an end
declined); ``2`` bad usage or configuration (arguments, the ini file, the
settings, a feature that is not configured). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .common import PROG, USAGE, Command, Fail, Parser, add_config_uri, report
from .end import EndCommand
from .purge import PurgeCommand
from .show import ShowCommand
from .stats import StatsCommand
from .sweep import SweepCommand
from .user import UserCommand

__all__ = ["COMMANDS", "build_parser", "main"]

#: The commands, in the order ``psessions --help`` lists them.
COMMANDS: dict[str, type[Command]] = {
    command.name: command
    for command in (
        StatsCommand,
        ShowCommand,
        EndCommand,
        UserCommand,
        SweepCommand,
        PurgeCommand,
    )
}

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
     a cookie that does not verify, a purge or an end not confirmed
  2  bad usage or configuration: arguments, the ini file, the settings,
     a feature that is not configured

Run 'psessions CONFIG_URI COMMAND --help' for a command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=raw
    )
    add_config_uri(parser)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", required=True
    )
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name,
            formatter_class=raw,
            help=command.summary,
            description=command.description,
        )
        command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None, quiet: bool = False) -> int:
    """Run ``psessions`` with ``argv`` (default: ``sys.argv[1:]``) and return
    its exit code; what it prints goes to :data:`sys.stdout` (nothing if
    ``quiet``) and :data:`sys.stderr`."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else USAGE
    except Fail as e:
        return report(str(e), e.code)
    return COMMANDS[args.command](args, quiet).run()
