"""uvicorn's httptools protocol with a bound on a request's head (request line and
headers together).

httptools itself accepts a head of any size: a client sending one endless header kept
the event loop busy and the process growing by hundreds of megabytes, and the request
still went through. Past :data:`MAX_HEAD_BYTES` the connection is answered 431 and
closed, as h11 and common proxies do (their limits are 16 to 64 KiB)."""

from __future__ import annotations

from typing import Any

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

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Counted after parsing, so a chunk that holds a small head and a large body is
        # not mistaken for a large head; a head still open after the chunk counts it all.
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            logger.warning(
                "http.head_too_large", client=self.client, received=self._head_bytes
            )
            self.transport.write(_REFUSAL)
            self.transport.close()
