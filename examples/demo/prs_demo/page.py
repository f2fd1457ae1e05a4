"""The demo's only page, as a plain format string (no template engine)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from pyramid_redis_sessions.users import SessionInfo

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pyramid_redis_sessions demo</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; color: #222; margin: 0; }}
main {{ display: flex; flex-wrap: wrap; gap: 2rem; padding: 1.5rem 2rem; }}
main > section {{ flex: 1 1 22rem; max-width: 34rem; }}
h1 {{ font-size: 1.4rem; margin: 0; padding: 1rem 2rem; background: #2d3e50;
     color: #fff; }}
h2 {{ font-size: 1.1rem; margin: 1.5rem 0 .5rem; }}
form {{ display: flex; gap: .5rem; margin: .5rem 0; }}
input {{ flex: 1; padding: .3rem .5rem; }}
button {{ padding: .3rem .9rem; }}
#flash {{ background: #fff6d6; border-left: 4px solid #e0b400; padding: .5rem 2rem;
         list-style: none; }}
#inspector {{ background: #f4f6f8; border-radius: 6px; padding: .2rem 1.2rem 1rem;
             font-size: .92rem; }}
#inspector dt {{ font-weight: 600; margin-top: .6rem; }}
#inspector dd {{ margin: 0; }}
code {{ font-size: .88rem; background: #e6eaee; padding: 0 .25rem;
       border-radius: 3px; }}
</style>
</head>
<body>
<h1>pyramid_redis_sessions demo</h1>
{flash}
<main>
<section>
<p id="count">Counter in this session: <strong>{count}</strong></p>
<form id="count-form" method="post" action="{count_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <button type="submit">Add one</button>
</form>

<h2>Note</h2>
<form id="note" method="post" action="{note_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <input name="note" value="{note}" maxlength="200" aria-label="Note">
  <button type="submit">Save note</button>
</form>

<h2>Account</h2>
{account}
</section>
{panel}
</main>
</body>
</html>
"""

PANEL = """<section id="inspector">
<h2>What the session did</h2>
<dl>
<dt>Redis key</dt><dd id="key">{key}</dd>
<dt>Stored</dt><dd id="stored">{stored}</dd>
<dt>This request, before the page was drawn</dt><dd id="so-far">{so_far}</dd>
<dt>The previous request</dt><dd id="previous">{previous}</dd>
<dt>Fields its save wrote</dt><dd id="saved">{saved}</dd>
<dt>Fields its save deleted</dt><dd id="deleted">{deleted}</dd>
</dl>
<p>A read costs one round trip and saves nothing; a save sends only the
fields that changed. The key is shown as a digest: the session id is the
user's credential.</p>
</section>"""


@dataclass(frozen=True)
class Panel:
    """What the inspector shows about the session."""

    key: str | None
    #: TTL in seconds, bytes in Redis, number of fields; None if not stored.
    stored: tuple[int, int, int] | None
    so_far: list[str]
    previous: list[str] | None
    saved: tuple[list[str], list[str]]


def _trips(commands: Sequence[str]) -> str:
    if not commands:
        return "no round trip"
    plural = "s" if len(commands) != 1 else ""
    listed = ", ".join(f"<code>{escape(c)}</code>" for c in commands)
    return f"<strong>{len(commands)}</strong> round trip{plural}: {listed}"


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"<code>{escape(n)}</code>" for n in names) or "none"


def render_panel(panel: Panel) -> str:
    if panel.stored is None:
        stored = "nothing yet: this session is not in Redis"
    else:
        ttl, size, fields = panel.stored
        expiry = "no expiry" if ttl < 0 else f"expires in {ttl} s"
        stored = f"{fields} fields, {size} bytes, {expiry}"
    return PANEL.format(
        key=f"<code>{escape(panel.key)}</code>" if panel.key else "none yet",
        stored=stored,
        so_far=_trips(panel.so_far),
        previous="not seen" if panel.previous is None else _trips(panel.previous),
        saved=_names(panel.saved[0]),
        deleted=_names(panel.saved[1]),
    )


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
    panel: Panel,
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
        count_url=escape(urls["count"]),
        panel=render_panel(panel),
        note_url=escape(urls["note"]),
        note=escape(note),
        csrf_token=token,
        account=account,
    )
