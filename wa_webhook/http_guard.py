"""A bound on the time a client may take to send its request HEADERS (slowloris on headers).

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not the time to
send the headers of a request: its keep-alive timer is cancelled by the first byte, so a
client that sends one header byte every few seconds holds a connection (and its memory) for
as long as it likes, and 1,000 of them hold 1,000 connections. Bodies are bounded by the
webhook route (``WEBHOOK_BODY_TIMEOUT_SECONDS``, 408); this protocol bounds the headers.

:class:`HeaderTimeoutProtocol` is uvicorn's httptools protocol with one timer per request: armed
when the connection opens and when the first byte of each further request arrives, cancelled
when the headers are complete. A request pipelined behind another (its first bytes came while
the previous response was being sent) gets the full bound again from the moment that response
is complete; a response in progress is never interrupted. When it fires, the client gets ``408 Request Timeout`` with
``Connection: close``, the connection is closed, one log line is written and
``wa_http_header_timeouts_total`` counts it. Nothing can be lost: no request was started.
Serve with ``uvicorn.run(..., http=HeaderTimeoutProtocol)`` (``wa-onboarding serve`` does).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wa_webhook import metrics

log = logging.getLogger("wa_webhook.http")

_RESPONSE_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 23\r\nconnection: close\r\n\r\nrequest headers timeout"
)


def _default_timeout() -> float:
    from wa_core.settings import get_settings

    return get_settings().http_header_timeout_seconds


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus a deadline for each request's headers.

    ``header_timeout`` (seconds) is read once per process from ``HTTP_HEADER_TIMEOUT_SECONDS``
    (:class:`wa_core.settings.Settings`) unless a subclass sets it.
    """

    header_timeout: float | None = None

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - uvicorn's signature
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.header_timeout is None:
            cls.header_timeout = _default_timeout()
        self._header_timer: asyncio.TimerHandle | None = None
        self._headers_pending = False  # a request has begun and its headers are not complete

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_pending = True
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._headers_pending = False
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm_header_timer()
        if self._headers_pending and not self.transport.is_closing():
            # a pipelined request began during that response: its headers get a full bound
            # from now (uvicorn's keep-alive timer is cancelled by its next byte)
            self._arm_header_timer()
        # else idle between requests: uvicorn's keep-alive timer takes over until the next byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined request's headers while the previous response is still being sent:
            # that response is not interrupted; on_response_complete re-arms the bound
            return
        log.warning(
            "request headers not received within %.0f s: answering 408 and closing the connection",
            self.header_timeout,
            extra={"client": self.client[0] if self.client else None},
        )
        metrics.HEADER_TIMEOUTS.inc()
        self.transport.write(_RESPONSE_408)
        self.transport.close()
