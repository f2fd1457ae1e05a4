"""A loopback TCP proxy that can freeze the network, for fault tests.

Fault tests put a :class:`FreezableProxy` between a client (redis-py, or the
app under test) and a real Redis or Valkey server the suite started, then
call :meth:`~FreezableProxy.freeze` to simulate a network stall: every socket
stays open but no byte moves either way, so the client sees silence (a
timeout), never a reset, while the server itself keeps running.
:meth:`~FreezableProxy.thaw` delivers what was held back, in order, and
:meth:`~FreezableProxy.cut` drops every current connection abruptly.

One daemon thread runs a selector; standard library only.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from typing import cast

LOOPBACK = "127.0.0.1"
#: The longest a ``select()`` waits, so that a closing proxy notices soon.
TICK = 0.05
CHUNK = 65536
#: A side is not read while this much of what it sent waits for its peer.
HIGH_WATER = 1 << 20
#: How long ``cut()`` and ``close()`` wait for the thread, and a connection
#: to the target may take.
TIMEOUT = 2.0
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class _Pair:
    """An accepted client socket (side 0) and its upstream socket (side 1)."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.socks = (client, upstream)
        #: ``pending[i]``: read from ``socks[i]``, not yet written to the other.
        self.pending = (bytearray(), bytearray())
        self.eof = [False, False]
        #: What each socket is registered for in the selector (0: not at all).
        self.events = [0, 0]
        self.closed = False


class FreezableProxy:
    """Forwards each connection on ``127.0.0.1:port`` to the target; see the
    module docstring. Bind happens at construction, forwarding on ``start()``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, _READ, "accept")
        self._selector.register(self._wake_r, _READ, "wake")
        self._lock = threading.Condition()
        self._pairs: set[_Pair] = set()
        self._frozen = False
        self._closing = False
        self._cuts_asked = self._cuts_done = 0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def connections(self) -> int:
        """How many proxied client/upstream pairs are open."""
        with self._lock:
            return len(self._pairs)

    # -- control (any thread) ---------------------------------------------

    def start(self) -> FreezableProxy:
        with self._lock:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(
                    target=self._run, name=f"FreezableProxy-{self.port}", daemon=True
                )
                self._thread.start()
        return self

    def freeze(self) -> None:
        """Stop moving bytes, both ways, on every connection, old and new."""
        with self._lock:
            # Forwarding happens under the lock: none is under way from here.
            self._frozen = True
        self._wake()

    def thaw(self) -> None:
        with self._lock:
            self._frozen = False
        self._wake()

    def cut(self) -> None:
        """Reset every current connection (both sides); keep accepting."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._cut_all()
                return
            self._cuts_asked += 1
            asked = self._cuts_asked
            self._wake()
            self._lock.wait_for(
                lambda: self._cuts_done >= asked or self._closing, TIMEOUT
            )

    def close(self) -> None:
        """Stop accepting and close every socket; the thread ends."""
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wake()
        if thread is None:
            self._shut_down()
        else:
            thread.join(TIMEOUT)

    def __enter__(self) -> FreezableProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _wake(self) -> None:
        # Full (a wake-up is pending anyway) or closed: nothing to do.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # -- the thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closing:
                        return
                    if self._cuts_done < self._cuts_asked:
                        self._cut_all()
                        self._cuts_done = self._cuts_asked
                        self._lock.notify_all()
                    self._update_interest()
                for key, mask in self._selector.select(TICK):
                    with self._lock:
                        self._dispatch(key.data, mask)
        finally:
            self._shut_down()

    def _shut_down(self) -> None:
        with self._lock:
            self._closing = True
            for pair in list(self._pairs):
                self._drop(pair)
            self._selector.close()
            for sock in (self._listener, self._wake_r, self._wake_w):
                sock.close()
            self._lock.notify_all()

    def _dispatch(self, data: object, mask: int) -> None:
        if self._closing:
            return
        if data == "wake":
            with contextlib.suppress(OSError):  # until it would block
                while self._wake_r.recv(CHUNK):
                    pass
        elif data == "accept":
            self._accept()
        else:
            pair, side = cast("tuple[_Pair, int]", data)
            if pair.closed or self._frozen:
                return
            if mask & _WRITE:
                self._flush(pair, 1 - side)
            if mask & _READ and not pair.closed:
                self._read(pair, side)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=TIMEOUT)
        except OSError:
            self._reset(client)
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pairs.add(_Pair(client, upstream))

    def _read(self, pair: _Pair, side: int) -> None:
        try:
            data = pair.socks[side].recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._drop(pair)
            return
        if data:
            pair.pending[side].extend(data)
        else:
            pair.eof[side] = True
        self._flush(pair, side)

    def _flush(self, pair: _Pair, side: int) -> None:
        """Write what ``socks[side]`` sent to its peer, as far as it takes it."""
        buffer = pair.pending[side]
        while buffer:
            try:
                sent = pair.socks[1 - side].send(buffer)
            except BlockingIOError:
                return
            except OSError:
                self._drop(pair)
                return
            del buffer[:sent]
        if pair.eof[side]:
            # Everything that side said is delivered; it will say no more.
            self._drop(pair)

    def _update_interest(self) -> None:
        for pair in self._pairs:
            for side in (0, 1):
                want = 0
                if not self._frozen:
                    if not pair.eof[side] and len(pair.pending[side]) < HIGH_WATER:
                        want |= _READ
                    if pair.pending[1 - side]:
                        want |= _WRITE
                if want != pair.events[side]:
                    if pair.events[side]:
                        self._selector.unregister(pair.socks[side])
                    if want:
                        self._selector.register(pair.socks[side], want, (pair, side))
                    pair.events[side] = want

    def _cut_all(self) -> None:
        for pair in list(self._pairs):
            self._drop(pair, abrupt=True)

    def _drop(self, pair: _Pair, *, abrupt: bool = False) -> None:
        pair.closed = True
        self._pairs.discard(pair)
        for side, sock in enumerate(pair.socks):
            if pair.events[side]:
                self._selector.unregister(sock)
                pair.events[side] = 0
            if abrupt:
                self._reset(sock)
            else:
                sock.close()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        """Close with an RST rather than a FIN (SO_LINGER, zero timeout)."""
        with contextlib.suppress(OSError):
            linger = struct.pack("ii", 1, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        sock.close()
