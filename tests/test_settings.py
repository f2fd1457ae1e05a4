"""Settings and factory arguments: coerced through one table, checked at
start-up, bad ones named in a ConfigurationError."""

from __future__ import annotations

import fractions
import pickle
import re
import warnings
from typing import Any

import pytest
import redis
from pyramid.config import Configurator
from pyramid.exceptions import ConfigurationError as PyramidConfigurationError
from pyramid.interfaces import ISessionFactory

from pyramid_redis_sessions import (
    RedisSessionFactory,
    SessionFactory,
    session_factory_from_settings,
)
from pyramid_redis_sessions.exceptions import ConfigurationError, RedisSessionsError
from pyramid_redis_sessions.serializers import JSONSerializer, PickleSerializer
from pyramid_redis_sessions.settings import (
    FORK_SETTINGS,
    OPTIONS,
    Ignored,
    Refused,
    coerce_option,
    resolve_alias,
)

BASE = {"redis.sessions.secret": "s3cret"}


def from_settings(**settings: Any) -> SessionFactory:
    return session_factory_from_settings(
        {**BASE, **{f"redis.sessions.{k}": v for k, v in settings.items()}}
    )


def make_client(request: Any, **options: Any) -> redis.Redis:
    """A ``client_callable`` for the dotted-name test."""
    return redis.Redis()


def test_includeme_sets_the_session_factory() -> None:
    config = Configurator(settings={**BASE, "redis.sessions.timeout": "60"})
    config.include("pyramid_redis_sessions")
    config.commit()
    factory = config.registry.queryUtility(ISessionFactory)
    assert isinstance(factory, SessionFactory) and factory.timeout == 60


def test_strings_from_an_ini_file_are_coerced() -> None:
    f = from_settings(
        timeout="300",
        absolute_timeout="3600",
        cookie_name="sid",
        cookie_max_age="86400",
        cookie_path="/app",
        cookie_domain="example.com",
        cookie_secure="true",
        cookie_httponly="false",
        cookie_samesite="strict",
        cookie_on_exception="no",
        detect_changes="off",
        secret_fallbacks="old1\n old2",
        prefix="app:",
        host="127.0.0.1",
        port="6380",
        db="2",
        username="u",
        password="p",
        socket_timeout="1.5",
        socket_connect_timeout="0.5",
        serializer="json",
    )
    assert (f.timeout, f.absolute_timeout, f.prefix) == (300, 3600, "app:")
    assert not f.cookie_on_exception and not f.detect_changes
    c = f.cookie.settings
    assert (c.name, c.max_age, c.path) == ("sid", 86400, "/app")
    assert c.domain == "example.com"
    assert (c.secure, c.httponly, c.samesite) == (True, False, "Strict")
    assert isinstance(f.serializer, JSONSerializer)
    assert f.store is not None
    kwargs = f.store.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6380, 2)
    assert (kwargs["username"], kwargs["password"]) == ("u", "p")
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1.5, 0.5)


def test_defaults_match_one_x_and_are_bounded() -> None:
    f = RedisSessionFactory("s3cret")
    assert f.timeout == 1200 and f.prefix == "session:" and f.cookie_on_exception
    c = f.cookie.settings
    assert (c.name, c.max_age, c.path, c.domain) == ("session", None, "/", None)
    assert (c.secure, c.httponly, c.samesite) == (False, True, "Lax")
    assert isinstance(f.serializer, PickleSerializer)
    assert f.store is not None
    client = f.store.client
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("localhost", 6379, 0)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1.5, 0.5)
    # Our bounded retries replace redis-py's own, which would multiply waits.
    assert client.get_retry()._retries == 2


def test_url_wins_over_host_and_port() -> None:
    f = from_settings(url="redis://127.0.0.1:6390/4", host="elsewhere", port="1")
    assert f.store is not None
    kwargs = f.store.client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 4)
    assert kwargs["socket_timeout"] == 1.5


@pytest.mark.parametrize("value", ["0", "none", "None", "", 0, None])
def test_timeout_none_words(value: Any) -> None:
    assert from_settings(timeout=value).timeout is None


def test_dotted_names_are_resolved() -> None:
    f = from_settings(
        serializer="pyramid_redis_sessions.serializers.JSONSerializer",
        id_generator="uuid.uuid4",
        client_callable="tests.test_settings.make_client",
    )
    assert isinstance(f.serializer, JSONSerializer)
    assert f.client_callable is make_client and f.store is None
    assert f.id_generator.__name__ == "uuid4"


def test_serialize_and_deserialize_pair() -> None:
    f = from_settings(serialize="pickle.dumps", deserialize="pickle.loads")
    assert f.serializer.loads(f.serializer.dumps({"a": 1})) == {"a": 1}
    with pytest.raises(ConfigurationError, match="give both"):
        from_settings(serialize="pickle.dumps")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("timeout", "twenty", "seconds"),
        ("timeout", "-5", "seconds"),
        ("timeout", "10000000001", "seconds up to 10000000000"),
        ("absolute_timeout", "1e20", "seconds up to 10000000000"),
        ("legacy_pickle_allow", "no.such.Thing", "dotted names of classes"),
        ("legacy_pickle_allow", "os.getcwd", "'os.getcwd' is not a class"),
        ("max_session_size", "-1", "whole number of bytes"),
        ("max_session_size", "1MB", "whole number of bytes"),
        ("cookie_max_age", "soon", "seconds"),
        ("cookie_secure", "maybe", "true or false"),
        ("cookie_samesite", "sometimes", "Lax, Strict, None"),
        ("port", "70000", "integer from 1 to 65535"),
        ("db", "-1", "integer from 0"),
        ("socket_timeout", "-1", "positive number"),
        ("socket_timeout", "abc", "positive number"),
        ("serializer", "yaml", "dotted name"),
        ("serializer", "pyramid_redis_sessions.settings.OPTIONS", "dumps()"),
        ("id_generator", "pyramid_redis_sessions.settings.PREFIX", "callable"),
        ("client_callable", "no.such.module", "dotted name"),
        ("cookie_name", "", "non-empty"),
        ("url", "http://example.com", "redis://, rediss:// or unix:// URL"),
        ("url", "redis://host:port", "redis://, rediss:// or unix:// URL"),
    ],
)
def test_bad_value_names_the_setting_and_what_is_allowed(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        from_settings(**{name: value})
    message = str(info.value)
    assert f"'redis.sessions.{name}'" in message
    assert repr(value) in message and expected in message


def test_unknown_setting_suggests_the_near_name() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'timeout'"):
        from_settings(timout="10")
    with pytest.raises(ConfigurationError) as info:
        from_settings(flux_capacitor="1")
    assert "'redis.sessions.flux_capacitor'" in str(info.value)
    assert "did you mean" not in str(info.value)


def test_secret_is_required() -> None:
    with pytest.raises(ConfigurationError, match=r"redis\.sessions\.secret"):
        session_factory_from_settings({"redis.sessions.timeout": "5"})


def test_other_settings_are_left_alone() -> None:
    f = session_factory_from_settings({**BASE, "redis.other": "x", "sessions.x": "y"})
    assert isinstance(f, SessionFactory)


def test_configuration_error_is_pyramids_and_ours() -> None:
    with pytest.raises(ConfigurationError) as info:
        from_settings(port="x")
    assert isinstance(info.value, PyramidConfigurationError)
    assert isinstance(info.value, RedisSessionsError)


def test_factory_arguments_are_checked_too() -> None:
    with pytest.raises(ConfigurationError, match="argument 'timeout'"):
        RedisSessionFactory("s3cret", timeout="soon")
    with pytest.raises(ConfigurationError, match="argument 'secret'"):
        RedisSessionFactory("")
    with pytest.raises(ConfigurationError, match="argument 'cookie_max_age'"):
        RedisSessionFactory("s3cret", cookie_max_age=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="argument 'serializer'"):
        RedisSessionFactory("s3cret", serializer=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="argument 'secret_fallbacks'"):
        RedisSessionFactory("s3cret", secret_fallbacks=[""])


@pytest.mark.parametrize("name", ["charset", "errors", "encoding", "encoding_errors"])
def test_encoding_options_are_deprecated_no_ops(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=name):
        f = from_settings(**{name: "utf-8"})
    assert isinstance(f, SessionFactory)


@pytest.mark.parametrize("way", ["setting", "argument"])
def test_a_deprecated_option_warns_once_at_the_callers_line(way: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if way == "setting":
            from_settings(charset="utf-8")
        else:
            RedisSessionFactory("s3cret", charset="utf-8")
    (warning,) = [w for w in caught if w.category is DeprecationWarning]
    assert str(warning.message).startswith(f"{way} '")
    assert warning.filename == __file__


def test_samesite_none_without_secure_is_refused_at_start_up() -> None:
    # WebOb would refuse to write the cookie at the first login.
    with pytest.raises(ConfigurationError, match=r"cookie_samesite.*cookie_secure"):
        RedisSessionFactory("s3cret", cookie_samesite="None")
    with pytest.raises(
        ConfigurationError, match=re.escape("redis.sessions.cookie_samesite")
    ):
        session_factory_from_settings(
            {
                "redis.sessions.secret": "s3cret",
                "redis.sessions.cookie_samesite": "None",
            }
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = RedisSessionFactory("s3cret", cookie_samesite="none", cookie_secure=True)
    assert f.cookie.settings.samesite == "None"


def test_connection_pool_is_used_as_given() -> None:
    pool = redis.ConnectionPool(host="127.0.0.1", port=6391)
    f = RedisSessionFactory("s3cret", connection_pool=pool)
    assert f.store is not None and f.store.client.connection_pool is pool


def test_unix_socket_path() -> None:
    f = from_settings(unix_socket_path="/tmp/redis.sock")
    assert f.store is not None
    kwargs = f.store.client.connection_pool.connection_kwargs
    assert kwargs["path"] == "/tmp/redis.sock"


#: Every parameter of pyramid_session_redis 1.8.1's RedisSessionFactory, and
#: the setting names its README shows that its factory does not take.
FORK_1_8_1_SETTINGS = [
    "secret",
    "timeout",
    "cookie_name",
    "cookie_max_age",
    "cookie_path",
    "cookie_domain",
    "cookie_secure",
    "cookie_httponly",
    "cookie_expires",
    "cookie_comment",
    "cookie_samesite",
    "cookie_on_exception",
    "redis_url",
    "redis_host",
    "redis_port",
    "redis_db",
    "redis_password",
    "redis_client_callable",
    "serialize",
    "deserialize",
    "id_generator",
    "set_redis_ttl",
    "set_redis_ttl_readheavy",
    "detect_changes",
    "deserialized_fails_new",
    "func_check_response_allow_cookies",
    "func_invalid_logger",
    "timeout_trigger",
    "python_expires",
    "cookie_signer",
    "redis_socket_timeout",
    "redis_connection_pool",
    "redis_encoding",
    "redis_encoding_errors",
    "redis_unix_socket_path",
    "invalidate_empty_session",
    # README only
    "prefix",
    "client_callable",
    "redis_errors",
    "assume_redis_ttl",
]


class TestForkSettingNames:
    LABEL = "setting 'redis.sessions.x'"

    def test_every_fork_setting_is_ours_or_in_the_table(self) -> None:
        missing = set(FORK_1_8_1_SETTINGS) - set(OPTIONS) - set(FORK_SETTINGS)
        assert not missing

    def test_the_table_holds_only_fork_names_that_are_not_ours(self) -> None:
        assert set(FORK_SETTINGS) <= set(FORK_1_8_1_SETTINGS)
        assert not set(FORK_SETTINGS) & set(OPTIONS)

    def test_every_alias_names_one_of_our_options(self) -> None:
        for fork_name, entry in FORK_SETTINGS.items():
            if isinstance(entry, str):
                assert entry in OPTIONS, fork_name
            else:
                assert isinstance(entry, (Refused, Ignored)), fork_name
                text = entry[0]
                assert text and not text.endswith("."), fork_name

    @pytest.mark.parametrize("name", ["host", "secret", "no_such_option"])
    def test_names_that_are_not_the_forks_pass_through(self, name: str) -> None:
        assert resolve_alias(name, self.LABEL) == (name, None)

    def test_renamed_setting_is_deprecated_and_names_ours(self) -> None:
        option, warning = resolve_alias("redis_host", self.LABEL)
        assert option == "host"
        assert isinstance(warning, DeprecationWarning)
        assert "'redis.sessions.host'" in str(warning)
        assert self.LABEL in str(warning)

    def test_harmless_setting_is_ignored_with_a_warning(self) -> None:
        option, warning = resolve_alias("set_redis_ttl", self.LABEL)
        assert option is None
        assert type(warning) is UserWarning
        assert "ignores" in str(warning) and self.LABEL in str(warning)

    @pytest.mark.parametrize(
        ("name", "advice"),
        [
            ("cookie_signer", "'secret'"),
            ("cookie_expires", "'cookie_max_age'"),
            ("func_check_response_allow_cookies", "Vary: Cookie"),
        ],
    )
    def test_setting_without_equivalent_says_what_to_do(
        self, name: str, advice: str
    ) -> None:
        with pytest.raises(ConfigurationError) as info:
            resolve_alias(name, self.LABEL)
        assert "no equivalent" in str(info.value)
        assert advice in str(info.value) and self.LABEL in str(info.value)

    def test_every_renamed_setting_coerces_like_ours(self) -> None:
        examples = {
            "redis_url": "redis://h:1/2",
            "redis_host": "h",
            "redis_port": "6380",
            "redis_db": "2",
            "redis_password": "p",
            "redis_socket_timeout": "1.5",
            "redis_connection_pool": None,
            "redis_unix_socket_path": "/tmp/s",
            "redis_client_callable": "tests.test_settings.make_client",
        }
        renamed = {k for k, v in FORK_SETTINGS.items() if isinstance(v, str)}
        assert set(examples) == renamed
        for fork_name, value in examples.items():
            option, _ = resolve_alias(fork_name, self.LABEL)
            # Each is ours without the fork's prefix, and takes its values.
            assert option == fork_name.removeprefix("redis_")
            coerce_option(option, value, self.LABEL)  # raises if refused


class TestForkSettingsInAnIniFile:
    """pyramid_session_redis's names, read by ``includeme`` and
    ``session_factory_from_settings``."""

    def test_renamed_setting_works_and_warns_once_at_the_callers_line(
        self,
    ) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f = from_settings(redis_url="redis://127.0.0.1:6390/4")
        (warning,) = caught
        assert warning.category is DeprecationWarning
        assert warning.filename == __file__
        message = str(warning.message)
        assert "'redis.sessions.redis_url'" in message
        assert "'redis.sessions.url'" in message
        assert f.store is not None
        kwargs = f.store.client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 4)

    def test_every_renamed_setting_reaches_our_option(self) -> None:
        with pytest.warns(DeprecationWarning):
            f = from_settings(
                redis_host="h",
                redis_port="6380",
                redis_db="2",
                redis_password="p",
                redis_socket_timeout="2.5",
                redis_unix_socket_path="",
            )
        assert f.store is not None
        kwargs = f.store.client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("h", 6380, 2)
        assert (kwargs["password"], kwargs["socket_timeout"]) == ("p", 2.5)
        with pytest.warns(
            DeprecationWarning, match=re.escape("'redis.sessions.client_callable'")
        ):
            f = from_settings(redis_client_callable="tests.test_settings.make_client")
        assert f.client_callable is make_client

    def test_ignored_setting_warns_and_changes_nothing(self) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            f = from_settings(set_redis_ttl="false", redis_encoding="utf-8")
        assert [w.category for w in caught] == [UserWarning, UserWarning]
        assert all(w.filename == __file__ for w in caught)
        assert "'redis.sessions.set_redis_ttl'" in str(caught[0].message)
        assert f.timeout == 1200

    def test_refused_setting_stops_the_start_up(self) -> None:
        with pytest.raises(
            ConfigurationError, match=re.escape("'redis.sessions.cookie_signer'")
        ):
            from_settings(cookie_signer="x")

    def test_same_option_under_both_names_is_refused_naming_both(self) -> None:
        with pytest.raises(ConfigurationError) as info:
            from_settings(redis_url="redis://a:1/0", url="redis://b:2/0")
        message = str(info.value)
        assert "'redis.sessions.redis_url'" in message
        assert "'redis.sessions.url'" in message

    def test_bad_value_under_the_old_name_names_that_setting(self) -> None:
        with (
            pytest.warns(DeprecationWarning),
            pytest.raises(
                ConfigurationError, match=re.escape("'redis.sessions.redis_port'")
            ),
        ):
            from_settings(redis_port="x")

    def test_includeme_reads_the_old_names(self) -> None:
        config = Configurator(settings={**BASE, "redis.sessions.redis_db": "3"})
        with pytest.warns(DeprecationWarning, match=re.escape("'redis.sessions.db'")):
            config.include("pyramid_redis_sessions")
        config.commit()
        factory = config.registry.queryUtility(ISessionFactory)
        assert factory.store.client.connection_pool.connection_kwargs["db"] == 3


def test_max_session_size_defaults_to_one_mebibyte_and_zero_is_no_limit() -> None:
    assert from_settings().max_session_size == 1 << 20
    assert from_settings(max_session_size="0").max_session_size is None
    assert from_settings(max_session_size="2048").max_session_size == 2048
    assert RedisSessionFactory("s", max_session_size=None).max_session_size is None


def test_legacy_pickle_allow_takes_classes_or_their_dotted_names() -> None:
    third = pickle.dumps(fractions.Fraction(1, 3))
    assert RedisSessionFactory("s").legacy_loads is not pickle.loads
    with pytest.raises(pickle.UnpicklingError, match=r"fractions\.Fraction"):
        RedisSessionFactory("s").legacy_loads(third)
    for allow in ("fractions.Fraction", "fractions:Fraction\n  decimal.Decimal"):
        f = from_settings(legacy_pickle_allow=allow)
        assert f.legacy_loads(third) == fractions.Fraction(1, 3)
    f = RedisSessionFactory("s", legacy_pickle_allow=[fractions.Fraction])
    assert f.legacy_loads(third) == fractions.Fraction(1, 3)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("local_cache", "-1", "0 or more"),
        ("local_cache", "lots", "0 or more"),
        ("local_cache_max_lag", "0", "positive number of seconds"),
        ("slide_interval", "-5", "slide on every read"),
    ],
)
def test_bad_local_cache_settings_name_themselves(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        from_settings(**{name: value})
    assert f"'redis.sessions.{name}'" in str(info.value)
    assert expected in str(info.value)


def test_a_slide_interval_not_under_the_timeout_is_refused() -> None:
    with pytest.raises(ConfigurationError) as info:
        from_settings(timeout="600", slide_interval="600")
    message = str(info.value)
    assert "'redis.sessions.slide_interval'=600" in message
    assert "'redis.sessions.timeout'=600" in message
    assert from_settings(timeout="600", slide_interval="599").slide_interval == 599


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [("1200", 60), ("300", 30), ("5", 0), ("none", 60)],
)
def test_the_default_slide_interval_follows_the_timeout(
    timeout: str, expected: int
) -> None:
    assert from_settings(timeout=timeout).slide_interval == expected


def test_the_local_cache_is_off_when_told_or_when_every_read_slides() -> None:
    assert from_settings().store.cache is not None  # nothing connects yet
    assert from_settings(local_cache="0").store.cache is None
    assert from_settings(slide_interval="0").store.cache is None
    assert from_settings(timeout="5").store.cache is None  # its default is 0
