"""The demo's only page, as a plain format string (no template engine)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

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
<form id="logout" method="post" action="{logout_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <button type="submit">Log out</button>
</form>"""


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
            user=escape(user), logout_url=escape(urls["logout"]), csrf_token=token
        )
    flash = ""
    if messages:
        items = "".join(f"<li>{escape(message)}</li>" for message in messages)
        flash = f'<ul id="flash">{items}</ul>'
    return PAGE.format(
        flash=flash,
        count=count,
        note_url=escape(urls["note"]),
        note=escape(note),
        csrf_token=token,
        account=account,
    )
