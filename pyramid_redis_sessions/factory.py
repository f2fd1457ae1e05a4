"""The session factory: options checked once, one Redis client per factory.

Both ways in, :func:`RedisSessionFactory`'s keyword arguments and the
``redis.sessions.*`` settings (:func:`session_factory_from_settings`), go through
:func:`_build`, which coerces each option once and builds the objects every
request then shares.
"""

from __future__ import annotations

import inspect
import pickle
import secrets
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from pyramid.interfaces import ISessionFactory
from pyramid.request import Request
from zope.interface import implementer

from .client import (
    DEFAULT_RETRIES,
    DEFAULT_SOCKET_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    check_connection_options,
    make_client,
)
from .cookies import CookieCodec, CookieSettings
from .exceptions import ConfigurationError
from .handles import Handles
from .legacy import LegacyCookies, RestrictedLoads
from .localcache import local_cache_for
from .options import SessionOptions
from .serializers import FunctionSerializer, PickleSerializer, Serializer
from .session import RedisSession
from .settings import DEPRECATED, PREFIX, coerce_option, settings_options
from .store import RedisStore
from .values import FieldCodec

__all__ = [
    "RedisSessionFactory",
    "SessionFactory",
    "generate_session_id",
    "session_factory_from_settings",
]


#: ``max_session_size``'s default: 1 MiB.
DEFAULT_MAX_SESSION_SIZE = 1 << 20
#: ``local_cache``'s default: sessions kept per process.
DEFAULT_LOCAL_CACHE = 10_000
#: ``local_cache_max_lag``'s default, in seconds.
DEFAULT_MAX_LAG = 1.0
#: The longest default ``slide_interval``, in seconds.
MAX_DEFAULT_SLIDE = 60


@implementer(ISessionFactory)
@dataclass(frozen=True, kw_only=True, eq=False)
class SessionFactory(SessionOptions):
    """What :func:`~pyramid_redis_sessions.RedisSessionFactory` returns:
    called with a request, it returns that request's
    :class:`~pyramid_redis_sessions.RedisSession`.

    Its attributes are the checked options, built once
    (:class:`~pyramid_redis_sessions.options.SessionOptions`).
    """

    def __call__(self, request: Request) -> RedisSession:
        return RedisSession(request, self)


def generate_session_id() -> str:
    """256 random bits from :mod:`secrets`, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def RedisSessionFactory(
    secret: str,
    timeout: int | None = 1200,
    cookie_name: str = "session",
    cookie_max_age: int | None = None,
    cookie_path: str = "/",
    cookie_domain: str | None = None,
    cookie_secure: bool = False,
    cookie_httponly: bool = True,
    cookie_on_exception: bool = True,
    url: str | None = None,
    host: str = "localhost",
    port: int = 6379,
    db: int = 0,
    password: str | None = None,
    socket_timeout: float | None = DEFAULT_SOCKET_TIMEOUT,
    connection_pool: redis.ConnectionPool | None = None,
    charset: Any = None,
    errors: Any = None,
    unix_socket_path: str | None = None,
    client_callable: Callable[..., redis.Redis] | None = None,
    serialize: Callable[[Any], bytes] | None = None,
    deserialize: Callable[[bytes], Any] | None = None,
    id_generator: Callable[[], str] = generate_session_id,
    prefix: str = "session:",
    *,
    cookie_samesite: str | None = "Lax",
    secret_fallbacks: Sequence[str] = (),
    absolute_timeout: int | None = None,
    detect_changes: bool = True,
    serializer: Serializer | str | None = None,
    username: str | None = None,
    socket_connect_timeout: float | None = DEFAULT_SOCKET_CONNECT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    sentinels: Sequence[str | tuple[str, int]] | None = None,
    sentinel_service: str | None = None,
    sentinel_username: str | None = None,
    sentinel_password: str | None = None,
    cluster: bool = False,
    ssl_ca_certs: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_cert_reqs: str | None = None,
    user_key: str | None = None,
    encoding: Any = None,
    encoding_errors: Any = None,
    legacy_cookies: bool = True,
    legacy_pickle_allow: Sequence[type | str] = (),
    max_session_size: int | None = DEFAULT_MAX_SESSION_SIZE,
    local_cache: int = DEFAULT_LOCAL_CACHE,
    local_cache_max_lag: float = DEFAULT_MAX_LAG,
    slide_interval: int | None = None,
) -> SessionFactory:
    """Return a Pyramid session factory that keeps sessions in Redis.

    The positional order of the arguments is 1.x's, so 1.x calls keep
    working; new options are keyword-only. Every option can also be set in
    an ini file as ``redis.sessions.<name>``.

    ``secret``
      The secret that signs cookies and stored values. Required.

    ``timeout``
      Seconds of inactivity after which a session expires; ``0`` or
      ``None`` for never. Default: ``1200``.

    ``cookie_name``
      Name of the session cookie. Default: ``'session'``.

    ``cookie_max_age``
      ``Max-Age`` of the cookie in seconds; ``None`` for a browser-session
      cookie. With a value, the cookie is re-sent on every response of a
      request that used the session. Default: ``None``.

    ``cookie_path``
      ``Path`` of the cookie. Default: ``'/'``.

    ``cookie_domain``
      Default: ``None`` (the request's host).

    ``cookie_secure``
      Send the cookie over HTTPS only. Default: ``False``.

    ``cookie_httponly``
      Hide the cookie from JavaScript. Default: ``True``.

    ``cookie_on_exception``
      When false and the response comes from an exception view, none of the
      request's session changes are saved and no cookie is set.
      Default: ``True``.

    ``url``
      A ``redis://``, ``rediss://`` or ``unix://`` URL; when given, it wins
      over ``host``, ``port``, ``db``, ``username``, ``password`` and
      ``unix_socket_path``. Default: ``None``.

    ``host``, ``port``, ``db``, ``username``, ``password``, ``unix_socket_path``
      Where Redis is, when there is no ``url``.
      Default: ``'localhost'``, ``6379``, ``0``, ``None``, ``None``, ``None``.

      .. versionchanged:: 2.0
         ``username`` is new (Redis ACL users).

    ``socket_timeout``, ``socket_connect_timeout``
      Seconds to wait for an answer from Redis, and for a connection, before
      the request that needs the session fails with
      :class:`~pyramid_redis_sessions.exceptions.SessionStoreUnavailable`.
      Default: ``1.5`` and ``0.5``.

      .. versionchanged:: 2.0
         ``socket_connect_timeout`` is new, and both have bounded defaults
         instead of waiting forever.

    ``retries``
      How often a command that met a connection error or a timeout is tried
      again, with exponential backoff and jitter. With the defaults a
      request that needs an unreachable store fails within 10 seconds in
      all (the formula is in :mod:`pyramid_redis_sessions.client`).
      Default: ``2``.

      .. versionadded:: 2.0

    ``sentinels``, ``sentinel_service``, ``sentinel_username``, ``sentinel_password``
      Redis Sentinel: the ``host:port`` of each sentinel, the name of the
      monitored master, and the credentials of the sentinels if they need
      any (``username``, ``password``, ``db`` and TLS apply to the master).
      Reads and writes go to the master. Default: ``None`` each.

      .. versionadded:: 2.0

    ``cluster``
      Redis Cluster: ``url`` (or ``host`` and ``port``) names any node.
      Default: ``False``.

      .. versionadded:: 2.0

    ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``
      TLS, with redis-py's meanings (a ``rediss://`` URL turns TLS on too).
      Default: ``None`` each.

      .. versionadded:: 2.0

    ``connection_pool``
      A :class:`redis.ConnectionPool` to use instead of making one.
      Default: ``None``.

    ``client_callable``
      ``client_callable(request, **redis_options)`` returning a
      :class:`redis.Redis`, called when a request first needs Redis. It
      should return a shared client. Default: ``None`` (one client per
      factory, made here).

    ``serializer``
      ``'pickle'``, ``'json'``, or an object with ``dumps(obj) -> bytes`` and
      ``loads(bytes) -> obj``. Default: ``None`` (pickle).

      .. versionadded:: 2.0

    ``serialize``, ``deserialize``
      1.x's pair of functions, used when ``serializer`` is not given.
      Default: ``None``.

    ``id_generator``
      Returns a new session id. Default: 256 bits from :mod:`secrets`.

    ``prefix``
      Namespace of the session keys in Redis. Default: ``'session:'``.

      .. versionchanged:: 2.0
         The prefix is no longer part of the session id, and defaults to
         ``'session:'``.

    ``cookie_samesite``
      ``'Lax'``, ``'Strict'``, ``'None'`` (needs ``cookie_secure``, else
      :class:`~pyramid_redis_sessions.exceptions.ConfigurationError`), or
      ``None``/empty for no attribute.
      Default: ``'Lax'``.

      .. versionadded:: 2.0

    ``secret_fallbacks``
      Older secrets still accepted for cookies and stored values, so that
      ``secret`` can be rotated. Default: ``()``.

      .. versionadded:: 2.0

    ``absolute_timeout``
      Seconds after creation when a session ends however active it is.
      Default: ``None``.

      .. versionadded:: 2.0

    ``detect_changes``
      Save nested changes (``session['cart'].append(x)``) without
      ``changed()``. Default: ``True``.

      .. versionadded:: 2.0

    ``legacy_cookies``
      Recognise the cookies of ``pyramid_redis_sessions`` 1.x and of
      ``pyramid_session_redis`` (signed with ``secret`` or one of
      ``secret_fallbacks``), load the session each names from its old key
      (with ``deserialize`` if given, else with pickle, restricted as
      ``legacy_pickle_allow`` says), and move it to the new format, under a
      new id, on that response. Turn it off once one ``timeout`` has passed after the
      upgrade: old values are unsigned pickles. When false, such cookies
      are invalid cookies. Default: ``True``.

      .. versionadded:: 2.0

    ``legacy_pickle_allow``
      Classes of the application's own (or their dotted names,
      ``module.Class`` or ``module:Class``) that the old packages' pickles
      may contain. Legacy values are unpickled restricted: only builtin
      containers and scalars, :mod:`datetime`, :class:`~decimal.Decimal`,
      :class:`~uuid.UUID`, :mod:`collections`' containers and these classes
      may appear; a value naming anything else is refused (a new session,
      and a warning naming the global). Not used with ``deserialize``,
      which then reads legacy values as given. Default: ``()``.

      .. versionadded:: 2.0

    ``max_session_size``
      The most bytes a session may take in Redis (its field names and
      stored values, all together). A save that would make a session
      larger stores nothing and raises
      :class:`~pyramid_redis_sessions.exceptions.SessionTooLarge`, naming
      the largest keys; ``0`` or ``None`` for no limit.
      Default: ``1048576`` (1 MiB).

    ``local_cache``
      How many sessions each process keeps in memory, kept fresh by Redis
      (``CLIENT TRACKING``): a read of one of them costs no round trip.
      ``0`` turns the cache off. Not used with ``client_callable`` or on
      Cluster, nor with ``slide_interval=0``. See :ref:`local-cache`.
      Default: ``10000``.

      .. versionadded:: 2.0

    ``local_cache_max_lag``
      Seconds: the cache serves only while Redis has answered a heartbeat
      on its connection sent at most this long ago; otherwise it empties
      and reads go to Redis. Default: ``1.0``.

      .. versionadded:: 2.0

    ``slide_interval``
      Seconds: a read moves the session's expiry (``timeout`` from now)
      only once at least this long has passed since it last did, in the
      request's one round trip; an idle session then ends between
      ``timeout - slide_interval`` and ``timeout`` after its last request.
      ``0`` slides on every read (exact, and a round trip on every read).
      Must be less than ``timeout``. Default: ``min(60, timeout // 10)``.

      .. versionadded:: 2.0

      .. versionadded:: 2.0

    ``user_key``
      The session key whose value names the user (``session['user_id']``,
      say). With it, each user's sessions are indexed whenever a save sets,
      changes or removes that key, so that the application can list a
      user's sessions and end them
      (:class:`~pyramid_redis_sessions.users.UserSessions`).
      Apps that keep the user elsewhere call
      :meth:`~pyramid_redis_sessions.RedisSession.bind_user` instead.
      Default: ``None`` (no index, and no cost).

      .. versionadded:: 2.0

    ``charset``, ``errors``, ``encoding``, ``encoding_errors``
      Accepted with a :class:`DeprecationWarning` and ignored.

      .. deprecated:: 2.0
         Session values are bytes; remove these settings.
    """
    return _build(locals(), lambda name: f"argument {name!r}")


def session_factory_from_settings(settings: Mapping[str, Any]) -> SessionFactory:
    """Build a session factory from the ``redis.sessions.*`` settings.

    Raises :class:`~pyramid_redis_sessions.exceptions.ConfigurationError`
    naming any setting that is unknown or has a bad value.
    """
    read = settings_options(settings)
    given = {**_DEFAULTS, **read.options}
    return _build(
        given,
        lambda name: f"setting {read.keys.get(name, PREFIX + name)!r}",
        read.warnings,
    )


def _build(
    given: Mapping[str, Any],
    label: Callable[[str], str],
    notes: Sequence[Warning] = (),
) -> SessionFactory:
    """Coerce every option once (``label`` names it in errors) and build the
    factory; ``notes`` are warnings found while reading the settings.
    Called directly by the two public entry points, so that
    ``stacklevel=3`` names the application's line in warnings."""
    for note in notes:
        warnings.warn(note, stacklevel=3)
    opts: dict[str, Any] = {}
    for name, value in given.items():
        if name in DEPRECATED:
            if value is not None:
                warnings.warn(
                    f"{label(name)}: {DEPRECATED[name]}", DeprecationWarning, 3
                )
            continue
        opts[name] = coerce_option(name, value, label(name))
    if opts["cookie_samesite"] == "None" and not opts["cookie_secure"]:
        # Browsers reject such a cookie, and WebOb refuses to write one.
        raise ConfigurationError(
            f"{label('cookie_samesite')}='None' needs {label('cookie_secure')}: "
            "browsers reject SameSite=None cookies that are not Secure"
        )
    serializer_ = opts["serializer"]
    if serializer_ is None:
        if (opts["serialize"] is None) != (opts["deserialize"] is None):
            raise ConfigurationError(
                f"{label('serialize')} and {label('deserialize')} go together: "
                "give both"
            )
        if opts["serialize"] is not None:
            serializer_ = FunctionSerializer(opts["serialize"], opts["deserialize"])
        else:
            serializer_ = PickleSerializer()
    redis_options = {name: opts[name] for name in _REDIS_OPTIONS}
    check_connection_options(redis_options)
    legacy_loads = opts["deserialize"]
    if legacy_loads is None or legacy_loads is pickle.loads:
        legacy_loads = RestrictedLoads(opts["legacy_pickle_allow"])
    slide = _slide_interval(opts["timeout"], opts["slide_interval"], label)
    store = None
    if opts["client_callable"] is None:
        client = make_client(**redis_options)
        cache = None
        if opts["local_cache"] and slide:
            cache = local_cache_for(
                client,
                opts["prefix"],
                opts["local_cache"],
                opts["local_cache_max_lag"] or DEFAULT_MAX_LAG,
            )
        store = RedisStore(client, opts["prefix"], cache)
    return SessionFactory(
        codec=FieldCodec(opts["secret"], opts["secret_fallbacks"]),
        cookie=CookieCodec(
            opts["secret"],
            opts["secret_fallbacks"],
            CookieSettings(
                name=opts["cookie_name"],
                max_age=opts["cookie_max_age"],
                path=opts["cookie_path"],
                domain=opts["cookie_domain"],
                secure=opts["cookie_secure"],
                httponly=opts["cookie_httponly"],
                samesite=opts["cookie_samesite"],
            ),
            LegacyCookies(opts["secret"], opts["secret_fallbacks"])
            if opts["legacy_cookies"]
            else None,
        ),
        serializer=serializer_,
        timeout=opts["timeout"],
        absolute_timeout=opts["absolute_timeout"],
        cookie_on_exception=opts["cookie_on_exception"],
        detect_changes=opts["detect_changes"],
        user_key=opts["user_key"],
        handles=Handles(opts["secret"]),
        id_generator=opts["id_generator"] or generate_session_id,
        prefix=opts["prefix"],
        store=store,
        client_callable=opts["client_callable"],
        redis_options=redis_options,
        legacy_loads=legacy_loads,
        max_session_size=opts["max_session_size"],
        slide_interval=slide,
    )


def _slide_interval(
    timeout: int | None, given: int | None, label: Callable[[str], str]
) -> int:
    """``slide_interval`` checked against ``timeout``, or its default."""
    if given is None:
        return (
            MAX_DEFAULT_SLIDE
            if timeout is None
            else min(MAX_DEFAULT_SLIDE, timeout // 10)
        )
    if timeout is not None and given >= timeout:
        raise ConfigurationError(
            f"{label('slide_interval')}={given} must be less than "
            f"{label('timeout')}={timeout}: a session would expire before it slid"
        )
    return given


#: What ``client_callable`` receives as keywords, as in 1.x: the options
#: that make the client, read off :func:`.client.make_client`.
_REDIS_OPTIONS = list(inspect.signature(make_client).parameters)


#: The defaults of every option, read off the signature: one source.
_DEFAULTS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(RedisSessionFactory).parameters.items()
    if p.default is not inspect.Parameter.empty
}
