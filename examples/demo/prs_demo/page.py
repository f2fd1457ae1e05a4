"""The demo's pages, as plain format strings (no template engine)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from ua_parser import parse as parse_user_agent

from pyramid_redis_sessions.debugtoolbar import SessionReport
from pyramid_redis_sessions.users import SessionInfo

LAYOUT = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; color: #222; margin: 0; }}
main {{ display: flex; flex-wrap: wrap; gap: 2rem; padding: 1.5rem 2rem; }}
main > section {{ flex: 1 1 22rem; max-width: 34rem; }}
main > section.wide {{ max-width: 48rem; flex-basis: 34rem; }}
h1 {{ font-size: 1.4rem; margin: 0; padding: 1rem 2rem; background: #2d3e50;
     color: #fff; }}
h1 a {{ color: #fff; text-decoration: none; }}
h2 {{ font-size: 1.1rem; margin: 1.5rem 0 .5rem; }}
form {{ display: flex; gap: .5rem; margin: .5rem 0; }}
input {{ flex: 1; padding: .3rem .5rem; }}
button {{ padding: .3rem .9rem; }}
#flash {{ background: #fff6d6; border-left: 4px solid #e0b400; padding: .5rem 2rem;
         margin: 0; list-style: none; }}
#inspector {{ background: #f4f6f8; border-radius: 6px; padding: .2rem 1.2rem 1rem;
             font-size: .92rem; }}
#inspector dt {{ font-weight: 600; margin-top: .6rem; }}
#inspector dd {{ margin: 0; }}
code {{ font-size: .88rem; background: #e6eaee; padding: 0 .25rem;
       border-radius: 3px; }}
table {{ border-collapse: collapse; width: 100%; font-size: .95rem; }}
th, td {{ text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #dde2e6;
         vertical-align: middle; }}
th {{ font-weight: 600; background: #f4f6f8; }}
tr.current td {{ background: #eef6ee; }}
td form {{ margin: 0; }}
.browser {{ cursor: help; border-bottom: 1px dotted #889; }}
.muted {{ color: #667; font-size: .9rem; }}
</style>
</head>
<body>
<h1><a href="{home_url}">pyramid_redis_sessions demo</a>{subtitle}</h1>
{flash}
<main>
{body}
{panel}
</main>
</body>
</html>
"""

HOME = """\
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
</section>"""

PANEL = """<section id="inspector">
<h2>What the session did</h2>
<dl>
<dt>Redis key</dt><dd id="key">{key}</dd>
<dt>Stored, after the previous request</dt><dd id="stored">{stored}</dd>
<dt>This request, before the page was drawn</dt><dd id="so-far">{so_far}</dd>
<dt>The previous request</dt><dd id="previous">{previous}</dd>
<dt>Fields its save wrote</dt><dd id="saved">{saved}</dd>
<dt>What its save deleted</dt><dd id="deleted">{deleted}</dd>
<dt>Its cookie</dt><dd id="cookie">{cookie}</dd>
</dl>
<p>A read costs one round trip and saves nothing, or none at all when this
process has read the session before (its local cache, which Redis keeps
fresh); a save sends only the fields that changed. The key is shown as a
digest: the session id is the user's credential. The debug toolbar (the tab
at the right) has the same for every request, under "Redis session".</p>
</section>"""


@dataclass(frozen=True)
class Panel:
    """What the inspector shows about the session."""

    #: The session's key as a digest, or None without a session cookie.
    key: str | None
    #: This request's round trips so far (its save comes after the page).
    so_far: list[list[str]]
    #: The session's previous request, once it was complete.
    previous: SessionReport | None
    #: This request's load was served from the process's local cache.
    cached: bool = False


def _trips(trips: Sequence[Sequence[str]], cached: bool = False) -> str:
    if not trips and cached:
        return "<strong>0</strong> round trips: served from this process's cache"
    if not trips:
        return "no round trip"
    plural = "s" if len(trips) != 1 else ""
    listed = ", ".join(f"<code>{escape(' + '.join(t))}</code>" for t in trips)
    return f"<strong>{len(trips)}</strong> round trip{plural}: {listed}"


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"<code>{escape(n)}</code>" for n in names) or "none"


def _deleted(report: SessionReport) -> str:
    if report.deleted_keys:
        keys = _names(report.deleted_keys)
        if any(event.startswith("ended") for event in report.events):
            whole = f"the whole session {keys} (invalidate(): a logout)"
        elif any(event.startswith("moved") for event in report.events):
            whole = f"the old key {keys} (regenerate_id(): a login)"
        else:
            whole = f"the whole session {keys}"
        return f"{whole}; fields: {_names(report.deleted)}" if report.deleted else whole
    return "fields: " + _names(report.deleted)


def _stored(report: SessionReport | None) -> str:
    if report is None:
        return "not seen (a new browser, or the demo restarted)"
    if report.ttl is None:
        return "nothing: this session is not in Redis"
    size = "?" if report.size is None else f"{report.size} bytes"
    expiry = "no expiry" if report.ttl < 0 else f"expires in {report.ttl} s"
    return f"{size}, {expiry}"


def render_panel(panel: Panel) -> str:
    previous = panel.previous
    if panel.key is None:
        stored = "nothing yet: this session is not in Redis"
    else:
        stored = _stored(previous)
    cookie = "-"
    if previous is not None:
        sent = {"set": "set", "cleared": "cleared", None: "not sent"}[previous.cookie]
        cookie = f"{sent}: {escape(previous.cookie_reason)}"
    return PANEL.format(
        key=f"<code>{escape(panel.key)}</code>" if panel.key else "none yet",
        stored=stored,
        so_far=_trips(panel.so_far, panel.cached),
        previous="not seen"
        if previous is None
        else _trips(previous.round_trips, (previous.cache or "").startswith("hit")),
        saved="-" if previous is None else _names(previous.saved),
        deleted="-" if previous is None else _deleted(previous),
        cookie=cookie,
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


SESSIONS = """\
<section class="wide">
<h2>Your sessions, {user}</h2>
<p>Every browser where you are logged in. End one you do not recognise.</p>
<table id="sessions">
<tr><th>Browser</th><th>Address</th><th>Logged in</th><th>Last active</th><th></th></tr>
{rows}
</table>
<form id="end-others" method="post" action="{end_others_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <button type="submit">Log out everywhere else</button>
</form>
<p><a id="back" href="{home_url}">Back</a></p>
</section>"""

SESSION_ROW = """\
<tr class="session{current_class}">
<td><span class="browser" title="{user_agent}">{browser}</span></td><td>{ip}</td>
<td>{created}</td><td>{last_active}</td>
<td>{action}</td>
</tr>"""

END_FORM = """\
<form class="end" id="end-{handle}" method="post" action="{end_url}">
  <input type="hidden" name="csrf_token" value="{csrf_token}">
  <input type="hidden" name="handle" value="{handle}">
  <button type="submit">End</button>
</form>"""

#: ua-parser's operating system names, as people say them.
_OS_NAMES = {"Mac OS X": "macOS"}
_RAW_SHOWN = 40


def summarize_user_agent(user_agent: str) -> str:
    """ "Firefox 131 on macOS", from a User-Agent header; what ua-parser
    does not recognise is shown as it is, cut short."""
    result = parse_user_agent(user_agent) if user_agent else None
    agent = result.user_agent if result is not None else None
    if agent is None:
        if not user_agent:
            return "unknown browser"
        if len(user_agent) <= _RAW_SHOWN:
            return user_agent
        return user_agent[: _RAW_SHOWN - 1] + "…"
    browser = f"{agent.family} {agent.major}" if agent.major else agent.family
    system = result.os if result is not None else None
    if system is None or system.family == "Other":
        return browser
    return f"{browser} on {_OS_NAMES.get(system.family, system.family)}"


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
    panel: Panel,
) -> str:
    """Return the "Your sessions" page; every value is escaped."""
    token = escape(csrf_token)
    rows = []
    for info in sessions:
        if info.current:
            action = '<strong class="this">this browser</strong>'
        else:
            action = END_FORM.format(
                handle=escape(info.handle),
                end_url=escape(urls["end_session"]),
                csrf_token=token,
            )
        user_agent = info.details.get("user_agent", "")
        rows.append(
            SESSION_ROW.format(
                current_class=" current" if info.current else "",
                created=_when(info.created),
                last_active=_when(info.last_active),
                browser=escape(summarize_user_agent(user_agent)),
                user_agent=escape(user_agent or "no User-Agent header"),
                ip=escape(info.details.get("ip", "?")),
                action=action,
            )
        )
    body = SESSIONS.format(
        user=escape(user),
        rows="\n".join(rows),
        end_others_url=escape(urls["end_others"]),
        home_url=escape(urls["home"]),
        csrf_token=token,
    )
    return LAYOUT.format(
        title="Your sessions - pyramid_redis_sessions demo",
        home_url=escape(urls["home"]),
        subtitle=" · Your sessions",
        flash=_flash(messages),
        body=body,
        panel=render_panel(panel),
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
    body = HOME.format(
        count=count,
        count_url=escape(urls["count"]),
        note_url=escape(urls["note"]),
        note=escape(note),
        csrf_token=token,
        account=account,
    )
    return LAYOUT.format(
        title="pyramid_redis_sessions demo",
        home_url=escape(urls["home"]),
        subtitle="",
        flash=_flash(messages),
        body=body,
        panel=render_panel(panel),
    )
