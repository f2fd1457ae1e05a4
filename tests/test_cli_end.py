"""``psessions show`` and ``end`` by handle, ``end`` itself, the warning
about the default server, the commands' classes, and ``psessions stats``
against the running demo: against real servers the suite started."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import prs_demo
import pytest
import webtest
from redis.cluster import RedisCluster

from pyramid_redis_sessions import cli
from pyramid_redis_sessions.cli.common import context_from_settings
from pyramid_redis_sessions.cli.show import ShowCommand
from pyramid_redis_sessions.cli.stats import StatsCommand
from pyramid_redis_sessions.cookies import CookieCodec, CookieSettings
from pyramid_redis_sessions.users import index_key
from tests import test_cli
from tests.app import SECRET, factory, make_app, results
from tests.servers import BaseServer
from tests.test_cli import (
    HANDLES,
    Wire,
    assert_one_line_error,
    fill,
    log_in,
    run,
    sealed_session,
    store,
    write_ini,
)
from tests.test_legacy import one_x_cookie
from tests.topologies import ClusterTopology

# The fixtures of test_cli, for these tests too.
cluster, ini, wire = test_cli.cluster, test_cli.ini, test_cli.wire

NO_SUCH_HANDLE = "0" * 32
#: What redis-py sends by itself on a new connection.
HANDSHAKE = {b"HELLO", b"CLIENT", b"SELECT", b"AUTH"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def logged_in(app: webtest.TestApp) -> bool:
    return results(app.get("/do?op=bound"))[0] is not None


def index_members(client: Any, prefix: str, user: str) -> list[bytes]:
    return sorted(client.zrange(index_key(prefix, user), 0, -1))


# -- show by handle ------------------------------------------------------------


def test_show_by_handle_finds_the_session_with_scan_alone(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
    wire: Wire,
) -> None:
    ids = fill(server.client(), prefix, 30)
    wire.sent.clear()
    result = run(capsys, ini(), "show", HANDLES(ids[7]), "--batch-size", "10")
    assert result.code == 0, result.err
    assert result.out.startswith(f"session {HANDLES(ids[7])} (handle), from a handle\n")
    assert "'n': 7\n" in result.out
    assert not any(session_id in result.out for session_id in ids)
    # A batch at a time, stopping where the session is found (which batch
    # that is depends on the server's hash table: at least the first).
    scans = wire.commands(b"SCAN")
    assert scans and all(c[c.index(b"COUNT") + 1] == b"10" for c in scans)
    assert [c[1] for c in wire.commands(b"HGETALL")] == [
        (prefix + HANDLES(ids[7])).encode(),  # first as an id: no such key
        (prefix + ids[7]).encode(),
    ]


def test_show_an_unknown_handle_is_one_line_naming_server_and_prefix(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
    wire: Wire,
) -> None:
    fill(server.client(), prefix, 30)
    wire.sent.clear()
    result = run(capsys, ini(), "show", NO_SUCH_HANDLE, "--batch-size", "10")
    assert_one_line_error(result, 1, f"no session with the handle {NO_SUCH_HANDLE}")
    # Every key looked at, a batch at a time, to the end of the walk.
    scans = wire.commands(b"SCAN")
    assert all(c[c.index(b"COUNT") + 1] == b"10" for c in scans)
    wire.assert_whole_walk(server.client(), scans)
    assert f"under {prefix!r} on {server.host}:{server.port}" in result.err
    assert "default server" not in result.err  # the ini sets a url


def test_an_id_that_looks_like_a_handle_is_taken_as_an_id_first(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    sid = "ab" * 16  # uuid4().hex would be one, with a custom id_generator
    store(server, prefix, sid, sealed_session(sid, {"k": "v"}))
    result = run(capsys, ini(), "show", sid)
    assert result.code == 0, result.err
    assert "from a session id\n" in result.out


# -- end -------------------------------------------------------------------------


def test_end_by_handle_ends_that_session_and_leaves_the_users_other(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    f = factory(server.url, prefix)
    phone, laptop = make_app(f), make_app(f)
    stolen = log_in(phone, "ann", "phone")
    kept = log_in(laptop, "ann", "laptop")
    client = server.client()
    assert len(index_members(client, prefix, "ann")) == 2
    path = ini()

    result = run(capsys, path, "end", stolen, "--yes")

    assert result.code == 0, result.err
    assert result.out == (
        f"ended session {stolen} of user 'ann' under {prefix!r} on "
        f"{server.host}:{server.port}\n"
    )
    assert not logged_in(phone)
    assert logged_in(laptop)
    assert len(index_members(client, prefix, "ann")) == 1  # its entry went too
    listed = json.loads(run(capsys, path, "user", "ann", "--json").out)
    assert [s["handle"] for s in listed["sessions"]] == [kept]
    again = run(capsys, path, "end", stolen, "--yes")
    assert_one_line_error(again, 1, f"no session with the handle {stolen}")


def test_end_by_id_or_cookie_of_an_unbound_session(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
    wire: Wire,
) -> None:
    ids = fill(server.client(), prefix, 3)
    path = ini()
    wire.sent.clear()
    result = run(capsys, path, "end", ids[0], "--yes", "--json")
    assert result.code == 0, result.err
    trips = [
        [command[0].upper() for command in sent.commands]
        for sent in wire.sent
        if sent.commands[0][0].upper() not in HANDSHAKE
    ]
    assert trips == [[b"TYPE", b"TTL", b"HGETALL"], [b"DEL"]]  # read, then end
    assert json.loads(result.out) == {
        "ended": {"handle": HANDLES(ids[0]), "kind": "session", "user": None}
    }
    cookie = CookieCodec(SECRET, [], CookieSettings()).sign(ids[1])
    result = run(capsys, path, "end", f"session={cookie}", "-y")
    assert result.code == 0, result.err
    assert sorted(server.client().scan_iter(match=prefix + "*")) == [
        (prefix + ids[2]).encode()
    ]


def test_end_by_a_legacy_cookie_deletes_the_string_1x_stored(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
) -> None:
    client = server.client()
    envelope = {"managed_dict": {"user": "ann"}, "created": 1.7e9, "timeout": 1200}
    client.set("session:old1", pickle.dumps(envelope), ex=500)
    cookie = one_x_cookie(pickle.dumps("session:old1"), SECRET)
    path = ini()
    result = run(capsys, path, "end", cookie, "--yes")
    assert result.code == 0, result.err
    assert result.out.startswith(
        "ended legacy session (pyramid_redis_sessions 1.0.1) "
        f"{HANDLES('session:old1')} under"
    )
    assert not client.exists("session:old1")
    again = run(capsys, path, "end", cookie, "--yes")
    assert_one_line_error(again, 1, "cookie verifies, but its session is gone")


@pytest.mark.parametrize("answer", ["n\n", "\n", "", "no\n"])
def test_end_without_yes_does_nothing_unless_the_answer_is_yes(
    answer: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    f = factory(server.url, prefix)
    browser = make_app(f)
    handle = log_in(browser, "ann", "phone")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    monkeypatch.setattr(sys, "stderr", terminal)
    code = cli.main([ini(), "end", handle])
    assert code == 1
    assert capsys.readouterr().out == ""
    assert f"End session {handle} of user 'ann' under {prefix!r}" in terminal.getvalue()
    assert terminal.getvalue().endswith("psessions: end cancelled: nothing was ended\n")
    assert logged_in(browser)
    assert len(index_members(server.client(), prefix, "ann")) == 1


def test_end_asks_and_goes_on_after_y(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    f = factory(server.url, prefix)
    browser = make_app(f)
    handle = log_in(browser, "ann", "phone")
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert cli.main([ini(), "end", handle]) == 0
    assert capsys.readouterr().out.startswith(f"ended session {handle}")
    assert not logged_in(browser)
    assert index_members(server.client(), prefix, "ann") == []


def test_end_without_a_terminal_needs_yes(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    ids = fill(server.client(), prefix, 1)
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # piped, not typed
    result = run(capsys, ini(), "end", HANDLES(ids[0]))
    assert_one_line_error(result, 2, "refusing to end without --yes")
    assert server.client().exists(prefix + ids[0])


def test_end_a_wrong_handle_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    ids = fill(server.client(), prefix, 2)
    result = run(capsys, ini(), "end", NO_SUCH_HANDLE, "--yes")
    assert_one_line_error(result, 1, f"no session with the handle {NO_SUCH_HANDLE}")
    assert all(server.client().exists(prefix + i) for i in ids)


def test_the_console_script_ends_by_handle_and_declines_n_on_stdin(
    server: BaseServer, prefix: str, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("psessions")
    ids = fill(server.client(), prefix, 2)
    path = write_ini(tmp_path, secret=SECRET, url=server.url, prefix=prefix)
    root = Path(__file__).resolve().parent.parent
    env = {"PYTHONPATH": str(root), "PATH": ""}

    def psessions(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), str(path), *argv],
            input="n\n", capture_output=True, text=True, env=env, timeout=60,
            check=False,
        )  # fmt: skip

    declined = psessions("end", HANDLES(ids[0]))
    assert declined.returncode == 2 and "without --yes" in declined.stderr
    assert server.client().exists(prefix + ids[0])
    ended = psessions("end", HANDLES(ids[0]), "--yes")
    assert ended.returncode == 0, ended.stderr
    assert not server.client().exists(prefix + ids[0])
    assert server.client().exists(prefix + ids[1])
    wrong = psessions("end", NO_SUCH_HANDLE, "--yes")
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("psessions: no session with the handle")
    assert "Traceback" not in wrong.stderr


# -- the default server ------------------------------------------------------------


def test_without_a_server_setting_the_context_knows_it_is_the_default() -> None:
    # Nothing is sent: the client connects on first use.
    ctx = context_from_settings({"redis.sessions.secret": SECRET})
    assert ctx.default_server is True
    assert ctx.server == "localhost:6379"
    note = ctx.default_server_note()
    assert note == (
        "localhost:6379 is the default server: no redis.sessions.url in the "
        "settings (is the application's Redis elsewhere?)"
    )
    for setting in ("url", "host", "port", "sentinels", "unix_socket_path"):
        value = {"url": "redis://127.0.0.1:1/0", "port": "1"}.get(setting, "x:1")
        given = {"redis.sessions.secret": SECRET, f"redis.sessions.{setting}": value}
        if setting == "sentinels":
            given["redis.sessions.sentinel_service"] = "mymaster"
        assert context_from_settings(given).default_server is False, setting


def default_server_bootstrap(server: BaseServer, prefix: str) -> Callable[..., Any]:
    """A ``bootstrap`` that reaches the test's server but counts as the
    default one (the shared localhost:6379 is never touched)."""

    def bootstrap(config_uri: str, app_name: str | None, batch_size: int) -> Any:
        settings = {
            "redis.sessions.secret": SECRET,
            "redis.sessions.url": server.url,
            "redis.sessions.prefix": prefix,
        }
        ctx = context_from_settings(settings, batch_size, config_uri)
        ctx.default_server = True
        return ctx

    return bootstrap


def test_finding_nothing_on_the_default_server_warns(
    capsys: pytest.CaptureFixture[str], server: BaseServer, prefix: str
) -> None:
    stats = StatsCommand(["psessions", "app.ini", "--json"])
    stats.bootstrap = default_server_bootstrap(server, prefix)
    assert stats.run() == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["sessions"] == 0
    assert captured.err == (
        f"psessions: warning: nothing found: {server.host}:{server.port} is the "
        "default server: no redis.sessions.url in app.ini (is the "
        "application's Redis elsewhere?)\n"
    )

    show = ShowCommand(["psessions", "app.ini", NO_SUCH_HANDLE])
    show.bootstrap = default_server_bootstrap(server, prefix)
    assert show.run() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"no session with the handle {NO_SUCH_HANDLE} under {prefix!r}" in err
    assert "is the default server: no redis.sessions.url in app.ini" in err

    fill(server.client(), prefix, 1)
    stats = StatsCommand(["psessions", "app.ini"], quiet=True)
    stats.bootstrap = default_server_bootstrap(server, prefix)
    assert stats.run() == 0
    assert capsys.readouterr() == ("", "")  # quiet, and sessions were found


def test_each_command_has_a_main_of_its_own(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    ids = fill(server.client(), prefix, 2)
    assert cli.stats.main(["psessions-stats", ini(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sessions"] == 2
    assert cli.end.main(["psessions-end", ini(), ids[0], "--yes"], quiet=True) == 0
    assert capsys.readouterr().out == ""
    assert not server.client().exists(prefix + ids[0])
    assert cli.show.main(["psessions-show", ini()]) == 2  # no session given
    assert "(see psessions-show --help)" in capsys.readouterr().err


# -- Cluster -----------------------------------------------------------------------


@pytest.mark.topology
def test_show_and_end_by_handle_on_cluster(
    capsys: pytest.CaptureFixture[str],
    cluster: ClusterTopology,
    prefix: str,
    tmp_path: Path,
) -> None:
    settings = {"url": cluster.url, "cluster": "true"}
    f = factory(cluster.url, prefix, cluster=True)
    browsers = [make_app(f) for _ in range(4)]
    handles = [log_in(b, "ann", f"ua{n}") for n, b in enumerate(browsers)]
    client = RedisCluster.from_url(cluster.url)
    holders = {client.keyslot(k) for k in client.scan_iter(match=prefix + "*")}
    assert len(holders) >= 3  # the sessions and the index, over several slots
    path = str(write_ini(tmp_path, secret=SECRET, prefix=prefix, **settings))

    shown = run(capsys, path, "show", handles[2], "--json")
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["source"] == "a handle"

    result = run(capsys, path, "end", handles[2], "--yes")
    assert result.code == 0, result.err
    assert [logged_in(b) for b in browsers] == [True, True, False, True]
    assert len(index_members(client, prefix, "ann")) == 3
    wrong = run(capsys, path, "end", NO_SUCH_HANDLE, "--yes")
    assert_one_line_error(wrong, 1, "no session with the handle")


# -- the demo ----------------------------------------------------------------------

DEMO = Path(prs_demo.__file__).resolve().parents[1]
ROOT = Path(__file__).resolve().parents[1]

SERVE = textwrap.dedent(
    """
    import sys, waitress
    from pyramid.paster import get_app, setup_logging

    setup_logging(sys.argv[1])
    server = waitress.create_server(get_app(sys.argv[1]), host="127.0.0.1", port=0)
    print(server.effective_port, flush=True)
    server.run()
    """
)


@pytest.fixture
def demo_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What ``pip install -e examples/demo`` gives (the ini's ``use =
    egg:pyramid_redis_sessions_demo`` needs it), unless it is installed."""
    site = tmp_path / "site"
    info = site / "pyramid_redis_sessions_demo-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pyramid_redis_sessions_demo\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[paste.app_factory]\nmain = prs_demo:main\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


@pytest.fixture
def demo(demo_distribution: Path) -> Iterator[str]:
    """The demo served from examples/demo/development.ini, as pserve would,
    on a free port: its base URL."""
    path = [str(demo_distribution), str(DEMO), str(ROOT)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    with subprocess.Popen(
        [sys.executable, "-c", SERVE, str(DEMO / "development.ini")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as process:  # fmt: skip
        try:
            assert process.stdout is not None
            yield f"http://127.0.0.1:{int(process.stdout.readline())}/"
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_psessions_stats_on_the_demos_ini_while_the_demo_runs(
    capsys: pytest.CaptureFixture[str], demo: str
) -> None:
    cookies = []
    for _ in range(3):  # three browsers: each first visit stores a session
        with urllib.request.urlopen(demo, timeout=30) as page:
            assert page.status == 200
            cookies.append(page.headers["Set-Cookie"].split(";")[0])
    ini = str(DEMO / "development.ini")
    result = run(capsys, ini, "stats", "--json")
    assert result.code == 0, result.err
    stats = json.loads(result.out)
    # At least: a demo started elsewhere may share its server.
    assert stats["server"] == "127.0.0.1:16379" and stats["sessions"] >= 3
    assert result.err == ""
    for cookie in cookies:  # these very sessions, through the same ini
        shown = json.loads(run(capsys, ini, "show", cookie, "--json").out)
        assert shown["valid"] is True and "_csrft_" in shown["keys"]
