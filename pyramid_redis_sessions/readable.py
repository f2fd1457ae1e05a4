"""Whether a socket has something to read, asked without letting go of
the GIL.

The local cache looks at its invalidation connection before every read it
serves. Python's own ways of asking (``recv`` on a non-blocking socket,
``select``, ``poll``) release the GIL around the system call, as they must
for a call that may block. With zero timeout the call does not block, but
the release does cost: with other threads running Python on another CPU
(waitress's, say), the thread that let go waits for the GIL to come back,
often for much of the interpreter's switch interval (5 ms). Measured on a
2-vCPU VM with one other thread busy: 150-500 µs per such call, against
about 1 µs without the release. A read from the local cache would cost as
much as a round trip to Redis.

:func:`poller` gives a function that asks ``poll(2)`` with a zero timeout
through ``ctypes.PyDLL``, which keeps the GIL for the call, so that the
common answer, "nothing arrived", costs no switch. Only when it says there
is something (data, end of file, an error) does the cache call ``recv``.
Where the C library has no ``poll`` (Windows), there is no poller and the
cache calls ``recv`` every time, as before.

A TLS connection is asked about the same way: the cache reads until the
TLS layer wants more from the socket, so nothing decrypted is left waiting
inside it when the socket itself has nothing.
"""

from __future__ import annotations

import ctypes
import select
from collections.abc import Callable

__all__ = ["poller"]


class _PollFd(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_int),
        ("events", ctypes.c_short),
        ("revents", ctypes.c_short),
    ]


def _libc_poll() -> object | None:
    try:
        poll = ctypes.PyDLL(None).poll
    except (OSError, AttributeError, TypeError):  # no C library symbols here
        return None
    poll.argtypes = [ctypes.POINTER(_PollFd), ctypes.c_ulong, ctypes.c_int]
    poll.restype = ctypes.c_int
    return poll


_POLL = _libc_poll()
_EVENTS = getattr(select, "POLLIN", 1) | getattr(select, "POLLPRI", 2)


def poller(fd: int) -> Callable[[], bool] | None:
    """A function answering whether ``fd`` has something to read (or has
    failed, or was closed by the other end): ``poll(2)``, zero timeout,
    with the GIL held. ``None`` where there is no such call. Not for two
    threads at once: the cache calls it with its lock held."""
    poll = _POLL
    if poll is None:
        return None
    entry = _PollFd(fd, _EVENTS, 0)
    pointer = ctypes.byref(entry)

    def readable() -> bool:
        # > 0: something to read, or POLLHUP/POLLERR/POLLNVAL, which recv
        # then reports; < 0 (EINTR): recv finds out.
        return poll(pointer, 1, 0) != 0  # type: ignore[operator,no-any-return]

    return readable
