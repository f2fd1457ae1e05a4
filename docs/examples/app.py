"""A small application whose sessions live in Redis.

The documentation shows this file whole, and tests/test_doc_examples.py
runs it against a real server, so what the pages show works as shown.
"""

import os
from html import escape

from pyramid.config import Configurator
from pyramid.csrf import new_csrf_token
from pyramid.exceptions import ConfigurationError
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.response import Response

THIRTY_DAYS = 30 * 24 * 3600
USERS = {"ann": "correct horse battery staple"}  # stands for your user store


def main(global_config, **settings):
    # The secret comes from the environment, not from a file in version control.
    secret = os.environ.get("SESSION_SECRET")
    if not secret:
        raise ConfigurationError(
            "SESSION_SECRET is not set: export a long random string, made with "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    settings["redis.sessions.secret"] = secret
    with Configurator(settings=settings) as config:
        # Reads the redis.sessions.* settings and sets the session factory.
        config.include("pyramid_redis_sessions")
        # Every POST (PUT, DELETE...) must carry the session's CSRF token, in a
        # form field csrf_token or an X-CSRF-Token header; else Pyramid says 400.
        config.set_default_csrf_options(require_csrf=True)
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


FORM = """<form method="post" action="{action}">
<input type="hidden" name="csrf_token" value="{token}">{fields}
<button type="submit">{label}</button></form>"""
LOGIN_FIELDS = """
<input name="name"> <input name="password" type="password">
<label><input name="remember" type="checkbox" value="1"> Remember me</label>"""


def home(request):
    lines = [f"<p>{escape(message)}</p>" for message in request.session.pop_flash()]
    user_id = request.session.get("user_id")
    token = escape(request.session.get_csrf_token())
    if user_id:
        lines.append(f"<p>Logged in as {escape(user_id)}.</p>")
        form = FORM.format(
            action=request.route_path("logout"), token=token, fields="", label="Log out"
        )
    else:
        form = FORM.format(
            action=request.route_path("login"),
            token=token,
            fields=LOGIN_FIELDS,
            label="Log in",
        )
    return Response(f"<html><body>{''.join(lines)}{form}</body></html>")
