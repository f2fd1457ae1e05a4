"""What the session's response callback does to the response besides the
cookie: ``Vary: Cookie``, and the answer when the save failed.
"""

from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response

from .cookies import CookieCodec, CookieState

__all__ = ["answer_error", "set_cookie", "vary_on_cookie"]


def vary_on_cookie(response: Response) -> None:
    """Add ``Cookie`` to the response's ``Vary``: what a shared cache must
    know of a response that depends on the session."""
    headers = response.headerlist
    for name, _value in headers:
        if name.lower() == "vary":
            vary = response.vary or ()
            if "Cookie" not in vary:
                response.vary = (*vary, "Cookie")
            return
    headers.append(("Vary", "Cookie"))  # the common case, no parsing


def answer_error(request: Request, response: Response) -> None:
    """The save at the end of the request failed with a
    :class:`~pyramid_redis_sessions.exceptions.SessionStoreError` (being
    handled): the response becomes what the application's exception view
    for it answers (for an unreachable Redis, a 503 with
    ``config.include``). Response callbacks run outside Pyramid's exception
    views, so the view is invoked here; without one the error propagates as
    before."""
    answer = request.invoke_exception_view(reraise=True)
    prepare = getattr(answer, "prepare", None)
    if prepare is not None:  # an HTTPException renders its body lazily
        prepare(request.environ)
    response.status = answer.status
    response.headerlist[:] = answer.headerlist
    response.app_iter = answer.app_iter


def set_cookie(
    codec: CookieCodec, cookie: CookieState, response: Response, live_id: str | None
) -> None:
    """Set the cookie to ``live_id``, the session stored after the save, or
    clear the request's ``cookie`` when there is none (``None``). An
    unchanged cookie is set again only when it has a ``max_age`` to renew
    or was signed with a fallback secret."""
    if live_id is None:
        if cookie.present:
            codec.delete(response)
    elif (
        live_id != cookie.session_id
        or not cookie.current
        or codec.settings.max_age is not None
    ):
        codec.set(response, live_id)
