"""The answer to a request whose session store is unreachable: a 503.

:func:`store_unavailable` is the exception view ``includeme`` registers for
:class:`~pyramid_redis_sessions.exceptions.SessionStoreUnavailable`: a
``503 Service Unavailable`` with ``Retry-After``, and one ERROR log line per
request that names the server and never a session id. An application
replaces it by registering its own exception view for that exception.
"""

from __future__ import annotations

import logging

from pyramid.httpexceptions import HTTPServiceUnavailable
from pyramid.request import Request
from pyramid.response import Response

from .exceptions import SessionStoreUnavailable

__all__ = ["RETRY_AFTER", "store_unavailable"]

log = logging.getLogger(__name__)

#: Seconds a client is asked to wait: about a Sentinel failover.
RETRY_AFTER = 5


def store_unavailable(exc: SessionStoreUnavailable, request: Request) -> Response:
    """503 with ``Retry-After``; the body says nothing about the servers."""
    # The exception's own message names the server; the request's cookie
    # and the session key (which holds the id) are left out on purpose.
    log.error(
        "session store unavailable (%s) for %s %s: %s",
        exc.server or "server unknown",
        request.method,
        request.path,
        exc,
    )
    response = HTTPServiceUnavailable(
        explanation="The session store is unavailable; try again shortly."
    )
    response.retry_after = RETRY_AFTER
    return response
