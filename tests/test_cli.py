"""``psessions``: each command against a real server the suite started, run
in-process through ``main(argv)`` (plus one run of the installed script).

What goes on the wire is recorded (``wire``) so that the tests can check
how the store is walked: SCAN with COUNT, never KEYS, and no round trip
carrying more than one batch of keys.
"""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.connection
import webtest
from pyramid.request import Request
from redis.cluster import RedisCluster
from webob.cookies import SignedSerializer

from pyramid_redis_sessions import cli
from pyramid_redis_sessions.admin import Keyspace
from pyramid_redis_sessions.cookies import CookieCodec, CookieSettings
from pyramid_redis_sessions.handles import Handles
from pyramid_redis_sessions.legacy import FORK_HASHALG, FORK_SALT
from pyramid_redis_sessions.values import CREATED, FLASH, TIMEOUT, FieldCodec
from tests.app import SECRET, factory, make_app, results
from tests.servers import BaseServer, free_port, split_packed
from tests.test_legacy import Utf8, one_x_cookie
from tests.topologies import ClusterTopology, SentinelTopology

MANY = 10_000
BATCH = 500
HANDLES = Handles(SECRET)


def main(global_config: dict[str, str], **settings: str) -> Any:
    """The ``[app:main]`` of the test ini files; psessions never calls it."""
    raise AssertionError("psessions must not build the application")


# -- helpers -------------------------------------------------------------------


def write_ini(directory: Path, **settings: str) -> Path:
    lines = ["[app:main]", f"use = call:{__name__}:main"]
    lines += [f"redis.sessions.{name} = {value}" for name, value in settings.items()]
    lines += ["", "[app:other]", f"use = call:{__name__}:main", "x = y"]
    path = directory / "app.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def ini(tmp_path: Path, server: BaseServer, prefix: str) -> Callable[..., str]:
    """``ini(**settings)``: the path of an ini file for this test's server and
    prefix (settings override the defaults; ``None`` leaves one out)."""

    def make(**settings: str | None) -> str:
        given = {"secret": SECRET, "url": server.url, "prefix": prefix, **settings}
        kept = {k: v for k, v in given.items() if v is not None}
        return str(write_ini(tmp_path, **kept))

    return make


@dataclass
class Result:
    code: int
    out: str
    err: str


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_one_line_error(result: Result, code: int, text: str) -> None:
    assert result.code == code
    assert result.out == ""
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith("psessions: ")
    assert text in result.err
    assert "Traceback" not in result.err


def sealed_session(
    session_id: str,
    values: dict[str, Any] | None = None,
    *,
    secret: str = SECRET,
    created: float | None = None,
) -> dict[bytes, bytes]:
    seal = FieldCodec(secret).for_session(session_id)
    stamp = repr(time.time() if created is None else created).encode()
    fields = {CREATED: seal.seal(CREATED, stamp)}
    for key, value in (values or {}).items():
        name = key.encode()
        fields[name] = seal.seal(name, pickle.dumps(value))
    return fields


def fill(client: Any, prefix: str, count: int, ttl: int = 1200) -> list[str]:
    """``count`` valid sessions, written with pipelined HSETs."""
    ids = [f"id{n:06d}x{'a' * 30}" for n in range(count)]
    pipe = client.pipeline(transaction=False)
    for n, session_id in enumerate(ids):
        key = prefix + session_id
        pipe.hset(key, mapping=sealed_session(session_id, {"n": n}))
        pipe.expire(key, ttl)
        if n % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    return ids


@dataclass
class Sent:
    port: int
    commands: list[tuple[bytes, ...]]

    def named(self, name: bytes) -> list[tuple[bytes, ...]]:
        return [c for c in self.commands if c[0].upper() == name]


class Wire:
    """Every request written to any Redis connection, with its port."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def commands(self, name: bytes) -> list[tuple[bytes, ...]]:
        return [c for s in self.sent for c in s.named(name)]

    def trips_with(self, name: bytes) -> list[Sent]:
        return [s for s in self.sent if s.named(name)]

    def keys_per_trip(self, name: bytes) -> list[int]:
        """Keys named by ``name`` commands in each round trip that has any."""
        return [sum(len(c) - 1 for c in s.named(name)) for s in self.trips_with(name)]

    def assert_whole_walk(self, client: Any, scans: list[tuple[bytes, ...]]) -> None:
        """``scans`` walked the keyspace from cursor 0 until the server said 0.

        How many batches that takes is the server's business (``COUNT`` is
        a hint: a Valkey hashtable bucket holds several keys), so the walk
        is checked by asking the same questions again: each reply's cursor
        is the next one sent, and the last reply's is 0.  Only for a walk
        that wrote nothing, so that the table is as the walk found it. The
        replay is not recorded: what was sent stays what the command sent.
        """
        assert scans and scans[0][1] == b"0"
        sent = self.sent[:]
        try:
            replies = [client.execute_command(*scan)[0] for scan in scans]
        finally:
            self.sent = sent
        assert [int(r) for r in replies] == [int(s[1]) for s in scans[1:]] + [0]


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    recorded = Wire()
    original = redis.connection.AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        original(self, command, check_health)
        recorded.sent.append(Sent(int(self.port), split_packed(command)))

    monkeypatch.setattr(
        redis.connection.AbstractConnection, "send_packed_command", send
    )
    return recorded


# -- stats ---------------------------------------------------------------------


def test_stats_counts_10000_sessions_a_batch_at_a_time(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
    wire: Wire,
) -> None:
    fill(server.client(), prefix, MANY)
    result = run(capsys, ini(), "stats", "--batch-size", str(BATCH))
    assert result.code == 0, result.err
    assert f"sessions  {MANY:,}" in result.out
    assert "estimated: MEMORY USAGE of a random sample of 1,000 sessions" in result.out
    assert "5-20 min" in result.out and "Largest sessions of the sample" in result.out

    scans = wire.commands(b"SCAN")
    for scan in scans:  # the sessions, then the legacy strings
        assert scan[2:-1] == (
            b"MATCH",
            prefix.encode() + b"*",
            b"COUNT",
            b"500",
            b"TYPE",
        )
    kinds = [scan[-1] for scan in scans]
    assert set(kinds) == {b"hash", b"string"} and kinds == sorted(kinds)
    client = server.client()
    for kind in (b"hash", b"string"):  # each walked from start to end
        wire.assert_whole_walk(client, [s for s in scans if s[-1] == kind])
    assert kinds.count(b"hash") > 1  # 10,000 sessions take more than a batch
    assert not wire.commands(b"KEYS")
    # One TTL per session, and no round trip asks about more than a batch.
    assert sum(wire.keys_per_trip(b"TTL")) == MANY
    assert max(wire.keys_per_trip(b"TTL")) <= BATCH
    assert len(wire.trips_with(b"TTL")) >= MANY // BATCH
    assert len(wire.commands(b"MEMORY")) == 1000


def test_stats_json_counts_and_histogram(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    client = server.client()
    ttls = {"none": None, "a": 30, "b": 200, "c": 1200, "d": 5000, "e": 700_000}
    for session_id, ttl in ttls.items():
        client.hset(prefix + session_id, mapping=sealed_session(session_id))
        if ttl is not None:
            client.expire(prefix + session_id, ttl)
    result = run(capsys, ini(), "stats", "--json")
    assert result.code == 0, result.err
    stats = json.loads(result.out)
    assert stats["sessions"] == 6
    assert stats["memory"]["exact"] is True and stats["memory"]["sampled"] == 6
    assert stats["memory"]["bytes"] > 0
    buckets = {b["bucket"]: b["sessions"] for b in stats["ttl"]}
    assert buckets == {
        "no expiry": 1, "0-1 min": 1, "1-5 min": 1, "5-20 min": 1,
        "20-60 min": 0, "1-6 h": 1, "6-24 h": 0, "1-7 d": 0, "> 7 d": 1,
    }  # fmt: skip


def test_stats_counts_only_hashes_under_the_prefix_outside_reserved_names(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    client = server.client()
    fill(client, prefix, 3)
    client.set(prefix + "legacy", b"a 1.x pickle")  # not a hash
    client.zadd(prefix + "user:ann", {"h": 1})  # the user index
    client.hset(prefix + "user:bob", "x", "y")  # a hash, but reserved
    client.hset(prefix, "x", "y")  # the bare prefix: no id
    client.hset("other:" + prefix + "x", "x", "y")  # another namespace
    client.hset(prefix.replace(":", "?") + "x", "x", "y")  # glob chars escaped
    result = run(capsys, ini(), "stats", "--json")
    assert json.loads(result.out)["sessions"] == 3
    assert json.loads(result.out)["legacy_strings"] == 1
    text = run(capsys, ini(), "stats").out
    assert "  sessions  3\n" in text
    assert (
        "  legacy    1 strings under the prefix: sessions of 1.x or "
        "pyramid_session_redis not moved yet, which legacy_cookies still accepts\n"
    ) in text


def test_stats_lists_the_largest_sessions_by_handle_never_by_id(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    client = server.client()
    ids = fill(client, prefix, 20)
    big = ids[7]
    client.hset(prefix + big, mapping=sealed_session(big, {"blob": "x" * 5000}))
    result = run(capsys, ini(), "stats", "--top", "3")
    lines = result.out.splitlines()
    start = lines.index("Largest sessions, by handle")
    assert lines[start + 1].split()[0] == HANDLES(big)
    assert len(lines) == start + 4
    assert "MEMORY USAGE of every session" in result.out
    assert not any(session_id in result.out for session_id in ids)


def test_stats_of_an_empty_store(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str]
) -> None:
    result = run(capsys, ini(), "stats")
    assert result.code == 0
    assert "sessions  0\n  memory    0 B\n" in result.out


CALLED_WITH: list[Any] = []


def client_for(request: Any, **options: Any) -> redis.Redis:
    """A ``client_callable``, as an application might write one."""
    CALLED_WITH.append(request)
    return redis.Redis.from_url(options["url"])


def test_stats_through_the_apps_client_callable(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    fill(server.client(), prefix, 4)
    CALLED_WITH.clear()
    result = run(capsys, ini(client_callable=f"{__name__}.client_for"), "stats")
    assert "sessions  4\n" in result.out
    assert len(CALLED_WITH) == 1 and CALLED_WITH[0].path == "/"


# -- purge ---------------------------------------------------------------------


def test_purge_unlinks_10000_sessions_in_batches(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
    wire: Wire,
) -> None:
    client = server.client()
    fill(client, prefix, MANY)
    client.set(prefix + "legacy", b"kept")
    client.zadd(prefix + "user:ann", {"h": 1})
    result = run(capsys, ini(), "purge", "--yes", "--batch-size", str(BATCH))
    assert result.code == 0, result.err
    where = f"under {prefix!r} on {server.host}:{server.port}"
    assert result.out == (
        f"deleted {MANY:,} sessions {where}\n"
        "kept 1 strings under the prefix: sessions of 1.x or "
        "pyramid_session_redis not moved yet, which legacy_cookies still "
        "accepts; purge --legacy deletes them too\n"
    )
    assert result.err == ""  # not a terminal: no progress line
    # A set: SCAN may return a key twice while the server resizes its table.
    assert sorted(set(client.scan_iter(match=prefix + "*"))) == [
        prefix.encode() + b"legacy",
        prefix.encode() + b"user:ann",
    ]
    unlinked = wire.keys_per_trip(b"UNLINK")
    assert sum(unlinked) == MANY
    assert max(unlinked) <= BATCH
    assert len(unlinked) >= MANY // BATCH
    assert not wire.commands(b"KEYS") and not wire.commands(b"FLUSHDB")


def legacy_user(server: BaseServer, prefix: str, cookie: str) -> Any:
    """The ``user`` a request with a legacy cookie sees (nothing is saved)."""
    request = Request.blank("/", headers={"Cookie": f"session={cookie}"})
    return factory(server.url, prefix)(request).get("user")


def test_purge_legacy_logs_out_the_sessions_that_1x_stored(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
    wire: Wire,
) -> None:
    client = server.client()
    fill(client, prefix, 3)
    old_key = prefix + "a" * 40  # 1.x's key: the prefix and its session id
    envelope = {"managed_dict": {"user": "ann"}, "created": time.time() - 60}
    client.set(old_key, pickle.dumps({**envelope, "timeout": 1200}), ex=1200)
    client.set(prefix + "another-string", b"x")  # a string too: deleted
    client.zadd(prefix + "user:ann", {"h": 1})  # the index: kept
    client.set("elsewhere:" + "a" * 40, b"x")  # outside the prefix: kept
    cookie = one_x_cookie(pickle.dumps(old_key), SECRET)
    assert legacy_user(server, prefix, cookie) == "ann"  # still logged in

    result = run(capsys, ini(), "purge", "--yes", "--legacy", "--batch-size", "2")
    assert result.code == 0, result.err
    where = f"under {prefix!r} on {server.host}:{server.port}"
    assert result.out == (
        f"deleted 3 sessions {where}\ndeleted 2 legacy strings {where}\n"
    )
    assert legacy_user(server, prefix, cookie) is None  # logged out
    assert sorted(client.scan_iter()) == [
        b"elsewhere:" + b"a" * 40,
        prefix.encode() + b"user:ann",
    ]
    assert max(wire.keys_per_trip(b"UNLINK")) <= 2
    assert [c[-1] for c in wire.commands(b"SCAN")].count(b"string") >= 1


def test_without_legacy_cookies_strings_are_neither_walked_nor_counted(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
    wire: Wire,
) -> None:
    # They log nobody in then: no second SCAN for them, and none deleted.
    server.client().set(prefix + "a" * 40, b"a 1.x pickle")
    path = ini(legacy_cookies="false")
    assert (
        json.loads(run(capsys, path, "stats", "--json").out)["legacy_strings"] is None
    )
    result = run(capsys, path, "purge", "--yes")
    assert result.code == 0, result.err
    assert result.out.count("\n") == 1 and "kept" not in result.out
    assert server.client().exists(prefix + "a" * 40)
    assert {scan[-1] for scan in wire.commands(b"SCAN")} == {b"hash"}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_purge_asks_and_goes_on_after_yes_with_a_running_count(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    fill(server.client(), prefix, 1200)
    path = ini()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdin", _Terminal("yes\n"))
    monkeypatch.setattr(sys, "stderr", terminal)
    code = cli.main([path, "purge", "--batch-size", "500"])
    assert code == 0
    assert capsys.readouterr().out.startswith("deleted 1,200 sessions")
    shown = terminal.getvalue()
    assert "Delete every session under" in shown and "Type 'yes'" in shown
    assert "\rdeleted 1,200 sessions\n" in shown
    assert shown.count("\rdeleted ") >= 3  # one update per batch
    assert not list(server.client().scan_iter(match=prefix + "*"))


@pytest.mark.parametrize("answer", ["no\n", "\n", ""])
def test_purge_deletes_nothing_unless_the_answer_is_yes(
    answer: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    fill(server.client(), prefix, 5)
    path = ini()
    monkeypatch.setattr(sys, "stdin", _Terminal(answer))
    result = run(capsys, path, "purge")
    assert result.code == 1
    assert result.err.endswith("psessions: purge cancelled: nothing was deleted\n")
    assert len(list(server.client().scan_iter(match=prefix + "*"))) == 5


def test_purge_without_a_terminal_needs_yes(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    fill(server.client(), prefix, 5)
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))  # piped, not typed
    result = run(capsys, ini(), "purge")
    assert_one_line_error(result, 2, "refusing to purge without --yes")
    assert len(list(server.client().scan_iter(match=prefix + "*"))) == 5


def test_purge_refuses_an_empty_prefix(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str], server: BaseServer
) -> None:
    client = server.client()
    client.hset("somebody-elses-hash", "x", "y")
    result = run(capsys, ini(prefix=""), "purge", "--yes")
    assert_one_line_error(result, 2, "refusing to purge with an empty prefix")
    assert client.exists("somebody-elses-hash")


# -- show ----------------------------------------------------------------------


def store(
    server: BaseServer,
    prefix: str,
    session_id: str,
    fields: dict[bytes, bytes],
    ttl: int | None = 600,
) -> None:
    client = server.client()
    client.hset(prefix + session_id, mapping=fields)
    if ttl is not None:
        client.expire(prefix + session_id, ttl)


def test_show_by_id_decodes_every_field_and_leaves_the_expiry_alone(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    sid = "abc123"
    fields = sealed_session(sid, {"user": "ann", "cart": [1, 2]}, created=1.7e9)
    seal = FieldCodec(SECRET).for_session(sid)
    fields[TIMEOUT] = seal.seal(TIMEOUT, b"300")
    flash = FLASH + b"0" * 20 + b"deadbeef:notices"
    fields[flash] = seal.seal(flash, pickle.dumps("Saved."))
    store(server, prefix, sid, fields, ttl=100)
    result = run(capsys, ini(), "show", sid)
    assert result.code == 0, result.err
    out = result.out
    assert out.startswith(f"session {HANDLES(sid)} (handle), from a session id\n")
    assert "created   2023-11-14 22:13:20 UTC" in out
    assert "timeout   300 s (its own)" in out
    assert "status    valid: every field verifies" in out
    assert "'cart': [1, 2]\n" in out and "'user': 'ann'\n" in out
    assert "['notices'] 'Saved.'" in out
    assert 0 < server.client().ttl(prefix + sid) <= 100  # not slid to 300


def test_show_by_cookie_also_name_equals_value_and_fallback_secrets(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    sid = "cookie-session"
    store(server, prefix, sid, sealed_session(sid, {"k": 1}))
    cookie = CookieCodec(SECRET, [], CookieSettings()).sign(sid)
    path = ini()
    for value in (cookie, f"session={cookie}", f'"{cookie}"'):
        result = run(capsys, path, "show", value)
        assert result.code == 0, result.err
        assert "from a cookie signed with secret\n" in result.out
    rotated = ini(secret="new-secret", secret_fallbacks=SECRET)
    result = run(capsys, rotated, "show", cookie, "--json")
    shown = json.loads(result.out)
    assert shown["source"] == "a cookie signed with a secret_fallbacks entry"
    assert shown["keys"] == {"k": "1"}
    assert shown["valid"] is True and shown["problems"] == []
    assert shown["fallback_fields"] == 2
    text = run(capsys, rotated, "show", cookie).out
    assert "valid; 2 fields verify with a secret_fallbacks entry only" in text


_UNPICKLED: list[str] = []


def record_unpickling(text: str) -> str:
    _UNPICKLED.append(text)
    return text


class _Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (record_unpickling, ("ran",))


def test_show_never_deserializes_a_field_that_does_not_verify(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    evil = pickle.dumps(_Evil())
    pickle.loads(evil)  # control: this payload runs code when unpickled
    assert _UNPICKLED == ["ran"]
    _UNPICKLED.clear()
    sid = "forged"
    fields = sealed_session(sid, {"user": "ann"})
    forger = FieldCodec("not-the-secret").for_session(sid)
    fields[b"is_admin"] = forger.seal(b"is_admin", evil)
    store(server, prefix, sid, fields)
    result = run(capsys, ini(), "show", sid, "--json")
    assert result.code == 0
    assert _UNPICKLED == []
    shown = json.loads(result.out)
    assert shown["valid"] is False
    assert shown["keys"]["is_admin"] == "<does not verify: not deserialized>"
    assert shown["problems"] == ["field 'is_admin' does not verify: not deserialized"]
    text = run(capsys, ini(), "show", sid).out
    assert "INVALID: the application would refuse this session" in text


def test_show_reports_a_verified_value_that_does_not_deserialize(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    sid = "other-serializer"
    fields = sealed_session(sid)
    seal = FieldCodec(SECRET).for_session(sid)
    fields[b"k"] = seal.seal(b"k", b'{"json": "not pickle"}')
    store(server, prefix, sid, fields)
    shown = json.loads(run(capsys, ini(), "show", sid, "--json").out)
    assert shown["keys"]["k"] == "<does not deserialize: UnpicklingError>"
    assert shown["problems"] == ["field 'k' does not deserialize (UnpicklingError)"]


def test_show_a_hash_without_a_creation_time_is_invalid(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    sid = "no-created"
    seal = FieldCodec(SECRET).for_session(sid)
    store(server, prefix, sid, {b"k": seal.seal(b"k", pickle.dumps(1))}, ttl=None)
    shown = json.loads(run(capsys, ini(), "show", sid, "--json").out)
    assert shown["problems"] == ["no creation time"]
    assert shown["ttl"] is None
    assert shown["timeout"] == 1200 and shown["own_timeout"] is False


def test_show_unknown_id_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str]
) -> None:
    result = run(capsys, ini(), "show", "no-such-id")
    assert_one_line_error(result, 1, "no session with that id")
    assert "no-such-id" not in result.err  # named by handle
    assert HANDLES("no-such-id") in result.err


def test_show_bad_cookie_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    store(server, prefix, "sid", sealed_session("sid"))
    forged = CookieCodec("wrong-secret", [], CookieSettings()).sign("sid")
    result = run(capsys, ini(), "show", forged)
    assert_one_line_error(result, 1, "nor a cookie that verifies")


def test_show_a_cookie_whose_session_is_gone(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str]
) -> None:
    cookie = CookieCodec(SECRET, [], CookieSettings()).sign("gone")
    result = run(capsys, ini(), "show", cookie)
    assert_one_line_error(result, 1, "the cookie verifies, but its session is gone")


def test_show_a_key_of_another_type(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    server.client().set(prefix + "str", b"x")
    result = run(capsys, ini(), "show", "str")
    assert_one_line_error(result, 1, "holds a Redis string, not a session")


def test_show_legacy_cookies_of_both_old_packages(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
) -> None:
    client = server.client()
    client.set(
        "session:old1",
        pickle.dumps(
            {
                "managed_dict": {"user": "ann", "_f_": ["hi"], "_csrft_": "tok"},
                "created": 1.7e9,
                "timeout": 1200,
            }
        ),
        ex=500,
    )
    client.set("fork:old2", pickle.dumps({"m": {"cart": [3]}, "c": 1700000000, "v": 1}))
    path = ini()
    one_x = one_x_cookie(pickle.dumps("session:old1", 2), SECRET)
    result = run(capsys, path, "show", one_x)
    assert result.code == 0, result.err
    assert result.out.startswith(
        "legacy session (pyramid_redis_sessions 1.0.1) "
        f"{HANDLES('session:old1')} (handle), from a pyramid_redis_sessions "
        "1.0.1 cookie signed with secret\n"
    )
    assert "'user': 'ann'" in result.out and "[''] 'hi'" in result.out
    assert "'_csrft_': 'tok'" in result.out and "timeout   1200 s" in result.out
    fork = SignedSerializer(SECRET, FORK_SALT, FORK_HASHALG, Utf8()).dumps("fork:old2")
    shown = json.loads(run(capsys, path, "show", fork.decode(), "--json").out)
    assert shown["kind"] == "legacy session (pyramid_session_redis 1.8.1)"
    assert shown["keys"] == {"cart": "[3]"} and shown["ttl"] is None
    client.delete("fork:old2")
    result = run(capsys, path, "show", fork.decode())
    assert_one_line_error(result, 1, "cookie verifies, but its session is gone")


def test_show_reads_legacy_values_with_the_apps_deserialize(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str], server: BaseServer
) -> None:
    # 1.x's deserialize setting, with the new format in JSON: the old values
    # are read with json.loads, as the application reads them.
    envelope = {"managed_dict": {"user": "ann"}, "created": 1.7e9, "timeout": 1200}
    server.client().set("session:old1", json.dumps(envelope), ex=500)
    path = ini(serializer="json", deserialize="json.loads", serialize="json.dumps")
    result = run(
        capsys, path, "show", one_x_cookie(pickle.dumps("session:old1"), SECRET)
    )
    assert result.code == 0, result.err
    assert "'user': 'ann'" in result.out


def test_show_legacy_cookie_when_legacy_cookies_is_off(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
    server: BaseServer,
) -> None:
    server.client().set("k", pickle.dumps({"m": {}, "c": 1, "v": 1}))
    fork = SignedSerializer(SECRET, FORK_SALT, FORK_HASHALG, Utf8()).dumps("k")
    result = run(capsys, ini(legacy_cookies="false"), "show", fork.decode())
    assert_one_line_error(result, 2, "legacy_cookies is off")


# -- user ----------------------------------------------------------------------


def log_in(app: webtest.TestApp, user: str, agent: str) -> str:
    """A browser's session bound to ``user``; returns its handle."""
    app.get(f"/do?op=bind:{user}:{agent}")
    handle: str = results(app.get("/do?op=handle"))[0]  # once it is stored
    return handle


def test_user_lists_and_ends_a_users_sessions_from_the_index(
    capsys: pytest.CaptureFixture[str],
    ini: Callable[..., str],
    server: BaseServer,
    prefix: str,
) -> None:
    f = factory(server.url, prefix)
    browsers = [make_app(f) for _ in range(3)]
    agents = ("phone", "pc", "x")
    handles = [log_in(b, "ann", ua) for b, ua in zip(browsers, agents, strict=True)]
    log_in(make_app(f), "bob", "tablet")
    path = ini()
    result = run(capsys, path, "user", "ann")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "3 sessions of user 'ann'"
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(handles)
    assert any("ua='phone'" in line for line in lines[1:])
    listed = json.loads(run(capsys, path, "user", "ann", "--json").out)
    assert sorted(s["handle"] for s in listed["sessions"]) == sorted(handles)
    result = run(capsys, path, "user", "ann", "--end-all")
    assert result.out == "ended 3 sessions of user 'ann'\n"
    assert all(results(b.get("/do?op=new")) == [True] for b in browsers)
    result = run(capsys, path, "user", "ann", "--end-all", "--json")
    assert json.loads(result.out) == {"user": "ann", "ended": 0}
    assert run(capsys, path, "user", "bob").out.startswith("1 sessions of user")


def test_user_without_sessions(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str]
) -> None:
    result = run(capsys, ini(), "user", "nobody")
    assert (result.code, result.out) == (0, "0 sessions of user 'nobody'\n")


# -- errors and help -----------------------------------------------------------


def test_missing_ini_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run(capsys, str(tmp_path / "nope.ini"), "stats")
    assert_one_line_error(result, 2, "cannot read the settings of")


def test_unknown_app_section(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str]
) -> None:
    result = run(capsys, ini() + "#nope", "stats")
    assert_one_line_error(result, 2, "No section 'nope'")


def test_app_name_selects_the_section(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str]
) -> None:
    # [app:other] has no secret.
    for argv in ([ini() + "#other", "stats"], ["-n", "other", ini(), "stats"]):
        result = run(capsys, *argv)
        assert_one_line_error(result, 2, "setting 'redis.sessions.secret' is required")


def test_bad_setting_is_named(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str]
) -> None:
    result = run(capsys, ini(timeuot="5"), "stats")
    assert_one_line_error(result, 2, "did you mean 'timeout'?")


def test_unreachable_redis(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str]
) -> None:
    port = free_port()
    started = time.monotonic()
    result = run(capsys, ini(url=f"redis://127.0.0.1:{port}/0"), "stats")
    assert_one_line_error(result, 1, f"Redis at 127.0.0.1:{port} is unavailable")
    assert time.monotonic() - started < 10


def test_unreachable_cluster(
    capsys: pytest.CaptureFixture[str], ini: Callable[..., str]
) -> None:
    port = free_port()
    result = run(
        capsys, ini(url=f"redis://127.0.0.1:{port}/0", cluster="true"), "stats"
    )
    assert_one_line_error(result, 1, "cannot connect to the Redis that")


def test_redis_error_reply(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
) -> None:
    def refuse(self: Keyspace, *args: Any) -> None:
        raise redis.exceptions.ResponseError("NOPERM this user has no\npermissions")

    monkeypatch.setattr(Keyspace, "stats", refuse)
    result = run(capsys, ini(), "stats")
    assert_one_line_error(result, 1, "failed: NOPERM this user has no permissions")


def test_unexpected_error_is_one_line_unless_traceback_is_asked(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
) -> None:
    def broken(self: Keyspace, *args: Any) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(Keyspace, "stats", broken)
    path = ini()
    result = run(capsys, path, "stats")
    assert_one_line_error(result, 1, "unexpected error: TypeError: a bug")
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["--traceback", path, "stats"])


def test_interrupt(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ini: Callable[..., str],
) -> None:
    def interrupted(self: Keyspace, *args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Keyspace, "purge", interrupted)
    result = run(capsys, ini(), "purge", "--yes")
    assert_one_line_error(result, 130, "interrupted")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["x.ini"],
        ["x.ini", "frobnicate"],
        ["x.ini", "stats", "--sample", "0"],
        ["x.ini", "stats", "--top", "-1"],
        ["x.ini", "purge", "--batch-size", "lots"],
        ["x.ini", "show"],
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, *argv)
    assert_one_line_error(result, 2, "--help)")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], ["CONFIG_URI", "stats", "show", "user", "purge", "exit codes:"]),
        (
            ["x.ini", "stats", "--help"],
            ["--json", "--sample", "--top", "--batch-size", "MEMORY USAGE"],
        ),
        (
            ["x.ini", "show", "--help"],
            ["ID_OR_COOKIE", "--json", "never\ndeserialized"],
        ),
        (["x.ini", "user", "--help"], ["USER", "--end-all", "user_key"]),
        (["x.ini", "purge", "--help"], ["--yes", "--batch-size", "never KEYS"]),
    ],
)
def test_help_texts(
    argv: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, *argv)
    assert result.code == 0
    for text in expected:
        assert text in result.out


# -- the installed script ------------------------------------------------------


def test_the_console_script_runs(
    server: BaseServer, prefix: str, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("psessions")
    fill(server.client(), prefix, 3)
    path = write_ini(tmp_path, secret=SECRET, url=server.url, prefix=prefix)
    root = Path(__file__).resolve().parent.parent
    env = {"PYTHONPATH": str(root), "PATH": ""}
    done = subprocess.run(
        [str(script), str(path), "stats", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sessions"] == 3
    failed = subprocess.run(
        [str(script), str(path), "show", "nope"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.startswith("psessions: no session with that id")
    assert "Traceback" not in failed.stderr


# -- Cluster and Sentinel ------------------------------------------------------


@pytest.fixture
def cluster(cluster_topology: ClusterTopology) -> Iterator[ClusterTopology]:
    cluster_topology.heal()
    cluster_topology.flushall()
    yield cluster_topology


@pytest.mark.topology
def test_stats_and_purge_cover_every_cluster_master(
    capsys: pytest.CaptureFixture[str],
    cluster: ClusterTopology,
    prefix: str,
    tmp_path: Path,
    wire: Wire,
) -> None:
    client = RedisCluster.from_url(cluster.url)
    ids = fill(client, prefix, MANY)
    legacy = [f"{prefix}old{n:02d}" for n in range(30)]  # 1.x's, on every node
    for key in legacy:
        client.set(key, b"a 1.x pickle")
    per_node = {node.port: node.admin().dbsize() for node in cluster.nodes}
    assert all(count > 2000 for count in per_node.values())  # spread out
    path = str(
        write_ini(
            tmp_path, secret=SECRET, url=cluster.url, prefix=prefix, cluster="true"
        )
    )

    result = run(capsys, path, "stats", "--json", "--batch-size", str(BATCH))
    assert result.code == 0, result.err
    stats = json.loads(result.out)
    assert stats["sessions"] == MANY
    assert stats["legacy_strings"] == len(legacy)
    assert sorted(stats["nodes"]) == sorted(f"{n.host}:{n.port}" for n in cluster.nodes)
    scanned = {sent.port for sent in wire.trips_with(b"SCAN")}
    assert scanned == set(per_node)
    assert max(wire.keys_per_trip(b"TTL")) <= BATCH

    shown = run(capsys, path, "show", ids[42], "--json")
    assert json.loads(shown.out)["keys"] == {"n": "42"}

    wire.sent.clear()
    result = run(capsys, path, "purge", "--yes", "--legacy", "--batch-size", str(BATCH))
    assert result.code == 0, result.err
    assert result.out.startswith(f"deleted {MANY:,} sessions")
    assert f"deleted {len(legacy)} legacy strings" in result.out
    assert all(node.admin().dbsize() == 0 for node in cluster.nodes)
    unlinked = wire.keys_per_trip(b"UNLINK")
    assert sum(unlinked) == MANY + len(legacy) and max(unlinked) <= BATCH
    assert all(len(c) == 2 for c in wire.commands(b"UNLINK"))  # one slot each


@pytest.mark.topology
def test_stats_through_sentinel_reads_the_master(
    capsys: pytest.CaptureFixture[str],
    sentinel_topology: SentinelTopology,
    prefix: str,
    tmp_path: Path,
) -> None:
    sentinel_topology.heal()
    master = sentinel_topology.current_master()
    fill(master.admin(), prefix, 50)
    sentinels = " ".join(f"{h}:{p}" for h, p in sentinel_topology.sentinel_addresses)
    path = write_ini(
        tmp_path,
        secret=SECRET,
        prefix=prefix,
        sentinels=sentinels,
        sentinel_service=sentinel_topology.service,
    )
    result = run(capsys, str(path), "stats", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["sessions"] == 50
    master.admin().delete(*(prefix + f"id{n:06d}x{'a' * 30}" for n in range(50)))
