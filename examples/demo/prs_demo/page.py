"""The demo's only page, as a plain format string (no template engine)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape

from pyramid_redis_sessions.users import SessionInfo

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pyramid_redis_sessions demo</title>
</head>
<body>
<h1>pyramid_redis_sessions demo</h1>
{flash}
<p id="count">Visits in this session: <strong>{count}</strong></p>

<h2>Note</h2>
<form id="note" method="post" action="{note_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <input name="note" value="{note}" maxlength="200" aria-label="Note">
  <button type="submit">Save note</button>
</form>

<h2>Account</h2>
{account}
</body>
</html>
"""

LOGIN_FORM = """\
<p id="user">Not logged in.</p>
<form id="login" method="post" action="{login_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <input name="username" placeholder="any name" aria-label="User name">
  <button type="submit">Log in</button>
</form>"""

LOGOUT_FORM = """\
<p id="user">Logged in as <strong>{user}</strong>.</p>
<p><a id="sessions-link" href="{sessions_url}">Your sessions</a></p>
<form id="logout" method="post" action="{logout_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <button type="submit">Log out</button>
</form>"""


SESSIONS_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Your sessions - pyramid_redis_sessions demo</title>
</head>
<body>
<h1>Your sessions, {user}</h1>
{flash}
<p>Every browser where you are logged in. End one you do not recognise.</p>
<table id="sessions">
<tr><th>Logged in</th><th>Last active</th><th>Browser</th><th>Address</th><th></th></tr>
{rows}
</table>
<form id="end-others" method="post" action="{end_others_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <button type="submit">Log out everywhere else</button>
</form>
<p><a href="{home_url}">Back</a></p>
</body>
</html>
"""

SESSION_ROW = """\
<tr class="session{current_class}">
<td>{created}</td><td>{last_active}</td><td>{user_agent}</td><td>{ip}</td>
<td>{action}</td>
</tr>"""

END_FORM = """\
<form class="end" id="end-{handle}" method="post" action="{end_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <input type="hidden" name="handle" value="{handle}">
  <button type="submit">End</button>
</form>"""


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def _flash(messages: Sequence[str]) -> str:
    if not messages:
        return ""
    items = "".join(f"<li>{escape(message)}</li>" for message in messages)
    return f'<ul id="flash">{items}</ul>'


def render_sessions(
    *,
    user: str,
    sessions: Sequence[SessionInfo],
    messages: Sequence[str],
    csrf_token: str,
    urls: Mapping[str, str],
) -> str:
    """Return the "Your sessions" page; every value is escaped."""
    token = escape(csrf_token)
    rows = []
    for info in sessions:
        if info.current:
            action = "<strong>this browser</strong>"
        else:
            action = END_FORM.format(
                handle=escape(info.handle),
                end_url=escape(urls["end_session"]),
                csrf_token=token,
            )
        rows.append(
            SESSION_ROW.format(
                current_class=" current" if info.current else "",
                created=_when(info.created),
                last_active=_when(info.last_active),
                user_agent=escape(info.details.get("user_agent", "?")),
                ip=escape(info.details.get("ip", "?")),
                action=action,
            )
        )
    return SESSIONS_PAGE.format(
        user=escape(user),
        flash=_flash(messages),
        rows="\n".join(rows),
        end_others_url=escape(urls["end_others"]),
        home_url=escape(urls["home"]),
        csrf_token=token,
    )


def render_page(
    *,
    count: int,
    messages: Sequence[str],
    note: str,
    user: str | None,
    csrf_token: str,
    urls: Mapping[str, str],
) -> str:
    """Return the page's HTML; every value from the session is escaped."""
    token = escape(csrf_token)
    if user is None:
        account = LOGIN_FORM.format(login_url=escape(urls["login"]), csrf_token=token)
    else:
        account = LOGOUT_FORM.format(
            user=escape(user),
            logout_url=escape(urls["logout"]),
            sessions_url=escape(urls["sessions"]),
            csrf_token=token,
        )
    return PAGE.format(
        flash=_flash(messages),
        count=count,
        note_url=escape(urls["note"]),
        note=escape(note),
        csrf_token=token,
        account=account,
    )
