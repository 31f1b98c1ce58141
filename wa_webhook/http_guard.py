"""Bounds on the time a client may take to send a request's HEADERS and its BODY (slowloris).

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not the time to
send a request: its keep-alive timer is cancelled by the first byte, so a client that sends one
byte every few seconds holds a connection (and its memory) for as long as it likes, and 1,000
of them hold 1,000 connections.

:class:`RequestTimeoutProtocol` is uvicorn's httptools protocol with two deadlines per request:

- **headers** (``HTTP_HEADER_TIMEOUT_SECONDS``): from the connection's opening or the first byte
  of each further request until its headers are complete. When it passes, the client gets
  ``408 Request Timeout`` with ``Connection: close``, the connection is closed and
  ``wa_http_header_timeouts_total`` counts it. Nothing can be lost: no request was started.
- **body** (``WEBHOOK_BODY_TIMEOUT_SECONDS``): from the end of the headers until the body is
  complete. When it passes before the app has begun its answer, the client gets the same 408,
  the connection is closed, the app's next ``receive()`` gets ``http.disconnect`` (the webhook
  route counts it as its ``body_timeout`` outcome, and nothing is stored) and
  ``wa_http_body_timeouts_total`` counts it.

The header deadline bounds time, not bytes, and neither uvicorn nor httptools bounds the size of
a head: within the deadline one client sent ~137 MB of tiny headers, which uvicorn keeps as a
list (3.1 GB of RSS), or one huge header value, which httptools grows by concatenation (the
event loop stalled for seconds). So a head is also bounded in **size**
(:attr:`RequestTimeoutProtocol.max_header_bytes`, 64 kB): past it the client gets ``431 Request
Header Fields Too Large``, the connection is closed and ``wa_http_headers_too_large_total``
counts it.

A request pipelined behind another (its first bytes came while the previous response was being
sent) gets its full bounds from the moment that response is complete; a response in progress is
never interrupted.

The deadlines cost a request no timer: the protocol stamps them (one ``loop.time()`` each), and
one sweep per server, every :attr:`RequestTimeoutProtocol.sweep_interval` seconds while
connections are open, ends the connections past theirs. A bound is therefore enforced within one
sweep interval after it passes (a tenth of the shorter bound, at most 1 s). Measured, a timer
armed and cancelled per request (``loop.call_later``) and an ``asyncio.timeout`` around the body
read cost the receiver ~4 % of its throughput (``docs/benchmarks.md``, receiver).

The app learns that the server bounds bodies from the request scope: :data:`BODY_BOUND_SCOPE_KEY`
is set on every request served by this protocol, and :data:`BODY_TIMED_OUT_SCOPE_KEY` on the one
whose body deadline passed. Served by any other server, the webhook route bounds its body read
itself. Serve with ``uvicorn.run(..., http=RequestTimeoutProtocol)`` (``wa-onboarding serve``
does).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wa_webhook import metrics

log = logging.getLogger("wa_webhook.http")

#: set (to the body bound, seconds) in the scope of every request this protocol serves
BODY_BOUND_SCOPE_KEY = "wa.body_timeout"
#: set (``True``) in the scope of a request whose body did not arrive within the bound
BODY_TIMED_OUT_SCOPE_KEY = "wa.body_timed_out"

_HEADERS = 1  # the request's headers are not complete
_BODY = 2  # the headers are in, the body is not complete


def _refusal(status: bytes, text: bytes) -> bytes:
    """A whole plain-text HTTP/1.1 response that closes the connection."""
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


_HEADERS_408 = _refusal(b"408 Request Timeout", b"request headers timeout")
_BODY_408 = _refusal(b"408 Request Timeout", b"request body timeout")
_HEADERS_431 = _refusal(b"431 Request Header Fields Too Large", b"request headers too large")


def _default_timeouts() -> tuple[float, float]:
    from wa_core.settings import get_settings

    settings = get_settings()
    return settings.http_header_timeout_seconds, settings.webhook_body_timeout_seconds


class _Sweep:
    """The open connections of one server, and the periodic check of their deadlines: every
    ``interval`` seconds while any is open, none when the server has no connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.connections: set[RequestTimeoutProtocol] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, protocol: RequestTimeoutProtocol) -> None:
        self.connections.add(protocol)
        if self._handle is None:
            self._handle = self.loop.call_later(self.interval, self._run)

    def discard(self, protocol: RequestTimeoutProtocol) -> None:
        self.connections.discard(protocol)

    def _run(self) -> None:
        self._handle = None
        now = self.loop.time()
        for protocol in [p for p in self.connections if p._deadline is not None and now >= p._deadline]:
            try:
                protocol._deadline_passed(now)
            except Exception:  # noqa: BLE001 - one connection must not stop the sweep of the others
                log.exception("request deadline check failed")
        if self.connections:
            self._handle = self.loop.call_later(self.interval, self._run)


class RequestTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline for each request's headers and body.

    ``header_timeout`` and ``body_timeout`` (seconds) are read once per process from
    ``HTTP_HEADER_TIMEOUT_SECONDS`` and ``WEBHOOK_BODY_TIMEOUT_SECONDS``
    (:class:`wa_core.settings.Settings`) unless a subclass sets them; ``sweep_interval``
    (seconds) defaults to a tenth of the shorter one, between 0.01 and 1. A request head past
    ``max_header_bytes`` gets ``431`` (a head that begins in the same read as the end of the
    previous request's body is counted from the next read: at most one read, 256 kB, more).
    """

    header_timeout: float | None = None
    body_timeout: float | None = None
    sweep_interval: float | None = None
    #: the largest request head (request line and headers) a client may send, in bytes
    max_header_bytes: int = 64 * 1024

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - uvicorn's signature
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.header_timeout is None or cls.body_timeout is None:
            header, body = _default_timeouts()
            cls.header_timeout = header if cls.header_timeout is None else cls.header_timeout
            cls.body_timeout = body if cls.body_timeout is None else cls.body_timeout
        if cls.sweep_interval is None:
            cls.sweep_interval = min(1.0, max(0.01, min(cls.header_timeout, cls.body_timeout) / 10))
        self._phase: int | None = None
        self._deadline: float | None = None  # loop time past which the phase has taken too long
        self._head_bytes = 0  # bytes read so far of the head not complete yet (see data_received)
        # one sweep per server (its connections share the server state and the event loop)
        sweep = getattr(self.server_state, "wa_request_sweep", None)
        if sweep is None:
            sweep = _Sweep(self.loop, cls.sweep_interval)
            self.server_state.wa_request_sweep = sweep  # type: ignore[attr-defined]
        self._sweep = sweep

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase = _HEADERS
        self._deadline = self.loop.time() + self.header_timeout
        self._sweep.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline = None
        self._sweep.discard(self)
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        # the connection now belongs to uvicorn's WebSocket protocol, and this one never sees its
        # connection_lost: out of the sweep now, or it stays in the sweep's set for good (and
        # its deadline would cut the WebSocket)
        self._phase = None
        self._deadline = None
        self._sweep.discard(self)
        super().handle_websocket_upgrade()

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn warns twice per such request, the second time that "no supported WebSocket
        # library" is installed and how to install one: wrong advice under `serve`, which turns
        # WebSockets off on purpose (ws="none"); the request is answered as plain HTTP
        if log.isEnabledFor(logging.DEBUG):
            log.debug("upgrade request served as plain HTTP (no WebSocket route)")

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == _HEADERS:  # this read continues a head that is not complete
            if self._head_bytes > self.max_header_bytes:
                self.flow.pause_reading()  # refused already, waiting for the response in progress
                return  # nothing more is parsed or kept
            self._head_bytes += len(data)
        elif phase is None:  # between requests: this read begins the next head
            self._head_bytes = len(data)
        # (a head that begins after a body in the same read is counted from the next read)
        super().data_received(data)
        if self._phase == _HEADERS and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._head_too_large()

    def _head_too_large(self) -> None:
        """The head passed ``max_header_bytes``: 431 and close, once no response is in progress."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # that response is not interrupted: reading stops, on_response_complete answers this one
            self.flow.pause_reading()
            return
        metrics.HEADERS_TOO_LARGE.inc()
        log.warning(
            "request headers over %d bytes: answering 431 and closing the connection",
            self.max_header_bytes,
            extra={"client": self.client[0] if self.client else None},
        )
        self._deadline = None
        self.transport.write(_HEADERS_431)
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEADERS
        self._deadline = self.loop.time() + self.header_timeout

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._head_bytes = 0
        self.scope[BODY_BOUND_SCOPE_KEY] = self.body_timeout  # type: ignore[literal-required]
        self._phase = _BODY
        self._deadline = self.loop.time() + self.body_timeout

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = None
        self._deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._phase == _HEADERS and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._head_too_large()  # refused while that response was being sent
            return
        if self._phase is not None and not self.transport.is_closing():
            # a pipelined request began during that response (or the answered request's body
            # is still coming): a full bound from now, uvicorn's keep-alive timer being
            # cancelled by its bytes
            self._deadline = self.loop.time() + (self.header_timeout if self._phase == _HEADERS else self.body_timeout)
        # else idle between requests: uvicorn's keep-alive timer takes over until the next byte

    def _deadline_passed(self, now: float) -> None:
        """Called by the sweep once ``now`` is past this connection's deadline."""
        if self.transport.is_closing():
            self._deadline = None
            return
        cycle = self.cycle
        if self.pipeline or (self._phase == _HEADERS and cycle is not None and not cycle.response_complete):
            # a request waiting behind a response still being sent: that response is not
            # interrupted; on_response_complete gives the waiting request its full bound
            return
        client = self.client[0] if self.client else None
        self._deadline = None
        if self._phase == _HEADERS:
            log.warning(
                "request headers not received within %.0f s: answering 408 and closing the connection",
                self.header_timeout,
                extra={"client": client},
            )
            metrics.HEADER_TIMEOUTS.inc()
            self.transport.write(_HEADERS_408)
            self.transport.close()
            return
        if cycle is not None and cycle.response_started:
            if not cycle.response_complete:
                self._deadline = now + self.body_timeout  # the app is answering: let it finish
                return
            metrics.BODY_TIMEOUTS.inc()
            log.warning(
                "request body not received within %.0f s after its answer: closing the connection",
                self.body_timeout,
                extra={"client": client},
            )
            self.transport.close()
            return
        metrics.BODY_TIMEOUTS.inc()
        log.warning(
            "request body not received within %.0f s: answering 408 and closing the connection",
            self.body_timeout,
            extra={"client": client, "path": self.scope.get("path")},
        )
        if cycle is not None:
            cycle.scope[BODY_TIMED_OUT_SCOPE_KEY] = True  # type: ignore[literal-required]
            cycle.disconnected = True  # the app's receive() now gets http.disconnect, its send is dropped
            cycle.message_event.set()
        self.transport.write(_BODY_408)
        self.transport.close()
