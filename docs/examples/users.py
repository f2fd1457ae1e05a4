"""A user's sessions: recorded at login, listed, ended one by one, and all
ended after a password change (docs: advanced, "User sessions")."""

import os

from pyramid.config import Configurator
from pyramid.csrf import new_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.response import Response

from pyramid_redis_sessions import session_factory_from_settings
from pyramid_redis_sessions.users import UserSessions

PASSWORDS = {"42": "old password"}  # stands for your user store


def main(global_config, **settings):
    settings["redis.sessions.secret"] = os.environ["SESSION_SECRET"]
    with Configurator(settings=settings) as config:
        config.include("pyramid_redis_sessions")
        for name, view in [
            ("login", login),
            ("sessions", your_sessions),
            ("end", end_one),
            ("password", change_password),
        ]:
            config.add_route(name, f"/{name}")
            config.add_view(view, route_name=name)
        return config.make_wsgi_app()


def check_credentials(request):
    """The user id if the password is right, else None (your code)."""
    user_id = request.POST.get("user_id", "")
    if PASSWORDS.get(user_id) == request.POST.get("password"):
        return user_id
    return None


def login(request):
    user_id = check_credentials(request)
    if user_id is None:
        return HTTPSeeOther(request.route_url("login"))
    request.session.regenerate_id()
    new_csrf_token(request)
    request.session.bind_user(
        user_id,
        details={
            "user_agent": request.user_agent or "",
            "ip": request.client_addr or "",
        },
    )
    return HTTPSeeOther(request.route_url("sessions"))


def your_sessions(request):
    user_id = request.session.bound_user
    if user_id is None:  # logged out, perhaps from another browser
        return HTTPSeeOther(request.route_url("login"))
    lines = []
    for info in request.session.user_sessions().list(user_id):
        # info.handle names the session, never by its id; info.created,
        # info.last_active (from the TTL: no write per request) and
        # info.expires are seconds since the epoch; info.details is what
        # bind_user(..., details=...) recorded.
        here = " (this browser)" if info.current else ""
        lines.append(f"{info.handle} {info.details['user_agent']}{here}")
    return Response("\n".join(lines))


def end_one(request):
    request.session.user_sessions().end(
        request.session.bound_user, request.POST["handle"]
    )
    return HTTPSeeOther(request.route_url("sessions"))


def change_password(request):
    user_id = request.session.bound_user
    PASSWORDS[user_id] = request.POST["new_password"]  # your code
    sessions = request.session.user_sessions()
    # Every other browser is logged out; this one stays, with a new id.
    sessions.end_all(user_id, keep=sessions.current_handle)
    request.session.regenerate_id()
    new_csrf_token(request)
    return HTTPSeeOther(request.route_url("sessions"))


def log_out_everywhere(settings, user_id):
    """From a script or a job, with only the application's settings."""
    sessions = UserSessions(session_factory_from_settings(settings))
    return sessions.end_all(user_id)
