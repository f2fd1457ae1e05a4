"""The demo's views. Each reads or changes ``request.session``.

Every POST is checked against the session's CSRF token before the view
runs (see ``set_default_csrf_options`` in :func:`prs_demo.main`), and
answers with a redirect to the page, which shows the flash messages.
"""

from __future__ import annotations

from pyramid.csrf import new_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.response import Response

from pyramid_redis_sessions.debugtoolbar import report_for

from .inspector import Inspector, session_key
from .page import Panel, render_page, render_sessions

MAX_NOTE_LENGTH = 200
# Route names the pages link or post to.
FORMS = (
    "home",
    "count",
    "note",
    "login",
    "logout",
    "sessions",
    "end_session",
    "end_others",
)


def home(request: Request) -> Response:
    """Show the page. Once the session has its CSRF token, this only reads:
    one round trip, and nothing is saved (unless a flash message is shown,
    which removes it)."""
    session = request.session
    page = render_page(
        count=session.get("count", 0),
        # Popped, not peeked: each message is shown once.
        messages=session.pop_flash(),
        note=session.get("note", ""),
        user=session.get("user"),
        csrf_token=session.get_csrf_token(),
        urls={name: request.route_path(name) for name in FORMS},
        panel=panel(request),
    )
    return Response(page)


def panel(request: Request) -> Panel:
    """What the page's inspector shows."""
    inspector: Inspector = request.registry.inspector
    report = report_for(request)
    key = session_key(request)
    return Panel(
        key=key,
        so_far=[list(trip) for trip in report.round_trips] if report else [],
        previous=inspector.previous(key),
        cached=getattr(request.session, "loaded_from", None) == "local cache",
    )


def count(request: Request) -> HTTPSeeOther:
    """Add one to the counter: a write, saved as a one-field delta."""
    request.session["count"] = request.session.get("count", 0) + 1
    return HTTPSeeOther(request.route_url("home"))


def save_note(request: Request) -> HTTPSeeOther:
    """Keep the posted note in the session."""
    request.session["note"] = request.POST.get("note", "")[:MAX_NOTE_LENGTH]
    request.session.flash("Note saved.")
    return HTTPSeeOther(request.route_url("home"))


def login(request: Request) -> HTTPSeeOther:
    """Log in under any user name: this demo checks no password."""
    username = request.POST.get("username", "").strip()
    if not username:
        request.session.flash("Please enter a user name.")
        return HTTPSeeOther(request.route_url("home"))
    # A new session id at login, so that an id someone learnt or planted
    # before the login is worthless after it. The data comes along.
    request.session.regenerate_id()
    # The same for the CSRF token: one seen before the login is no use after.
    new_csrf_token(request)
    # With redis.sessions.user_key = user, this line also puts the session in
    # the user's index of sessions, in the same round trip as the save.
    request.session["user"] = username
    # Optional: what the "Your sessions" page shows about this browser.
    request.session.bind_user(
        username,
        details={
            "user_agent": request.user_agent or "",
            "ip": request.client_addr or "",
        },
    )
    request.session.flash(f"Logged in as {username}.")
    return HTTPSeeOther(request.route_url("home"))


def sessions(request: Request) -> Response | HTTPSeeOther:
    """List the logged-in user's sessions, in every browser."""
    user = request.session.get("user")
    if user is None:
        request.session.flash("Log in to see your sessions.")
        return HTTPSeeOther(request.route_url("home"))
    return Response(
        render_sessions(
            user=user,
            sessions=request.session.user_sessions().list(user),
            messages=request.session.pop_flash(),
            csrf_token=request.session.get_csrf_token(),
            urls={name: request.route_path(name) for name in FORMS},
            panel=panel(request),
        )
    )


def end_session(request: Request) -> HTTPSeeOther:
    """End one of the user's sessions, named by its handle (never its id)."""
    user = request.session.get("user")
    if user is not None:
        handle = request.POST.get("handle", "")
        if request.session.user_sessions().end(user, handle):
            request.session.flash("That session has ended.")
        else:
            request.session.flash("No such session.")
    return HTTPSeeOther(request.route_url("sessions"))


def end_others(request: Request) -> HTTPSeeOther:
    """Log out everywhere else: end every session of the user but this one.
    After a password change, an application would do this by itself."""
    user = request.session.get("user")
    if user is not None:
        sessions = request.session.user_sessions()
        ended = sessions.end_all(user, keep=sessions.current_handle)
        request.session.flash(f"Logged out {ended} other session(s).")
    return HTTPSeeOther(request.route_url("sessions"))


def logout(request: Request) -> HTTPSeeOther:
    """Forget everything in the session."""
    # Deletes the session from Redis. Writing afterwards (the flash below)
    # starts a new, empty session under a new id.
    request.session.invalidate()
    request.session.flash("Logged out.")
    return HTTPSeeOther(request.route_url("home"))
