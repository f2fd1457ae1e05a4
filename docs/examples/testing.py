"""What an application's own requests cost in Redis (docs: advanced, "Counting
round trips in your tests")."""

import os

import webtest
from pyramid.config import Configurator
from pyramid.response import Response

from pyramid_redis_sessions.testing import RoundTripCounter


def add_to_cart(request):
    request.session.setdefault("cart", []).append(request.POST["sku"])
    return Response("added")


def show_cart(request):
    return Response(", ".join(request.session.get("cart", [])))


def make_app(settings):
    with Configurator(settings=settings) as config:
        config.include("pyramid_redis_sessions")
        config.add_route("add", "/cart/add")
        config.add_route("cart", "/cart")
        config.add_view(add_to_cart, route_name="add", request_method="POST")
        config.add_view(show_cart, route_name="cart")
        return config.make_wsgi_app()


def test_the_cart_costs_what_we_expect(settings):
    counter = RoundTripCounter()
    # The sessions' connections come from the counter's pool.
    settings["redis.sessions.connection_pool"] = counter.pool(os.environ["REDIS_URL"])
    app = make_app(settings)
    # A server that has just started learns the package's scripts on their
    # first use, which costs more round trips once: warm it up first.
    webtest.TestApp(app).post("/cart/add", {"sku": "warm-up"})

    browser = webtest.TestApp(app)
    counter.reset()
    browser.post("/cart/add", {"sku": "A-100"})
    assert counter.commands == [["EVALSHA"]]  # a new session, created in one

    counter.reset()
    browser.post("/cart/add", {"sku": "B-7"})
    # The session this process just wrote is not in its local cache: a read
    # from Redis (HGETALL), then the save of the changed "cart" alone.
    assert counter.commands == [["HGETALL"], ["EVALSHA"]]

    counter.reset()
    assert browser.get("/cart").text == "A-100, B-7"
    assert counter.commands == [["HGETALL"]]  # a read: one round trip, no save

    counter.reset()
    assert browser.get("/cart").text == "A-100, B-7"
    assert counter.commands == []  # read before: served from the local cache
