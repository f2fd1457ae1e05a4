"""The other ways to give Pyramid a session factory (getting started)."""

import os

from pyramid.config import Configurator

from pyramid_redis_sessions import RedisSessionFactory, session_factory_from_settings


def main(global_config, **settings):
    with Configurator(settings=settings) as config:
        factory = session_factory_from_settings(settings)
        config.set_session_factory(factory)
        return config.make_wsgi_app()


def make_factory():
    return RedisSessionFactory(
        os.environ["SESSION_SECRET"],
        url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        timeout=1800,
        cookie_secure=True,
    )
