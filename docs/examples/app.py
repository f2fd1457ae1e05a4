"""A small application whose sessions live in Redis.

The documentation includes parts of this file, and tests/test_doc_examples.py
runs it against a real server, so what the pages show works as shown.
"""

import os

from pyramid.config import Configurator
from pyramid.csrf import new_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.response import Response

THIRTY_DAYS = 30 * 24 * 3600
USERS = {"ann": "correct horse battery staple"}  # stands for your user store


def main(global_config, **settings):
    settings["redis.sessions.secret"] = os.environ["SESSION_SECRET"]
    with Configurator(settings=settings) as config:
        config.include("pyramid_redis_sessions")
        config.add_route("home", "/")
        config.add_route("login", "/login")
        config.add_route("logout", "/logout")
        config.add_view(home, route_name="home")
        config.add_view(login, route_name="login", request_method="POST")
        config.add_view(logout, route_name="logout", request_method="POST")
        return config.make_wsgi_app()


def check_credentials(request):
    """The user name if the password is right, else None (your code)."""
    name = request.POST.get("name", "")
    if USERS.get(name) == request.POST.get("password"):
        return name
    return None


def login(request):
    user_id = check_credentials(request)
    if user_id is None:
        request.session.flash("Wrong name or password.")
        return HTTPSeeOther(request.route_url("home"))
    request.session.regenerate_id()  # same data, new id
    new_csrf_token(request)  # a token seen before the login is no use after
    request.session["user_id"] = user_id
    if request.POST.get("remember"):
        request.session.adjust_timeout_for_session(THIRTY_DAYS)
    return HTTPSeeOther(request.route_url("home"))


def logout(request):
    request.session.invalidate()
    request.session.flash("You are logged out.")
    return HTTPSeeOther(request.route_url("home"))


def home(request):
    lines = request.session.pop_flash()
    user_id = request.session.get("user_id")
    if user_id:
        lines.append(f"Logged in as {user_id}.")
    return Response(" ".join(lines))
