"""uvicorn's httptools protocol with a bound on a request's head (request line and
headers together).

httptools itself accepts a head of any size: a client sending one endless header kept
the event loop busy and the process growing by hundreds of megabytes, and the request
still went through. Past :data:`MAX_HEAD_BYTES` the connection is answered 431 and
closed, as h11 and common proxies do (their limits are 16 to 64 KiB)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.log_config import get_logger

logger = get_logger(__name__)

MAX_HEAD_BYTES = 64 * 1024

# What `codeqr serve`, the benchmark and the tests give uvicorn as `http`.
HTTP_PROTOCOL = "server.http_protocol:BoundedHttpToolsProtocol"

_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 47\r\n"
    b"\r\n"
    b"request line and headers are larger than 64 KiB"
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._messages_ended = 0

    # The count restarts when a message ends, not when the next one begins: the parser
    # announces a begin while it reads the chunk just counted, and restarting there
    # forgot that chunk (a head that reached us in two reads got a second 64 KiB).
    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # A pipelined request's bytes in the chunk that ended this message go uncounted:
        # its head may pass the bound by at most one read, never without limit.
        self._in_head = True
        self._head_bytes = 0
        self._messages_ended += 1
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if not self._in_head:
            super().data_received(data)
            return
        # Feed the head's remaining budget only: a head still open once the budget is
        # spent is refused before the parser sees a byte more.
        budget = MAX_HEAD_BYTES - self._head_bytes
        first, rest = data[:budget], data[budget:]
        self._head_bytes += len(first)
        ended_before = self._messages_ended
        if first:
            super().data_received(first)
        if not rest or self.transport.is_closing():
            return
        if self._in_head and self._messages_ended == ended_before:
            logger.warning(
                "http.head_too_large", client=self.client, limit=MAX_HEAD_BYTES
            )
            self.transport.write(_REFUSAL)
            self.transport.close()
            return
        # The head ended within the budget: the rest is its body, or the next request
        # (with a budget of its own), or frames for the WebSocket protocol the head
        # upgraded to.
        protocol = cast(asyncio.Protocol, self.transport.get_protocol())
        if protocol is self:
            self.data_received(rest)
        else:
            protocol.data_received(rest)
