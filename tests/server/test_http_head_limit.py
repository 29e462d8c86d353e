"""A request's head (request line and headers) is bounded: past 64 KiB the server
answers 431 and closes, and keeps serving everyone else."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from server.http_protocol import MAX_HEAD_BYTES
from tests.conftest import LiveServer


def _connect(live_server: LiveServer) -> socket.socket:
    parts = urlsplit(live_server.url)
    assert parts.hostname and parts.port
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _refused(sock: socket.socket) -> bool:
    """Whether the server answered 431 and closed. A close with our unread bytes in its
    buffer may reach us as a reset that overtakes the 431: that is a refusal too. A
    server that waited for the rest of the head would leave us in recv until timeout."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        return not chunks or b"".join(chunks).startswith(b"HTTP/1.1 431 ")
    answer = b"".join(chunks)
    return answer.startswith(b"HTTP/1.1 431 ") and answer.endswith(
        b"request line and headers are larger than 64 KiB"
    )


def test_an_endless_header_gets_431_and_the_connection_closed(
    live_server: LiveServer,
) -> None:
    with _connect(live_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        try:
            while sent < 4 * MAX_HEAD_BYTES:  # far past the bound, never finished
                sock.sendall(b"a" * 8192)
                sent += 8192
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed while we were still sending
        assert _refused(sock)

    with live_server.client() as http:
        assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * (MAX_HEAD_BYTES + 1024)
        + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 1000) for i in range(70))
        + b"\r\n",
        b"GET /" + b"c" * (MAX_HEAD_BYTES + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["one-header", "many-headers", "request-line"],
)
def test_a_complete_head_just_over_the_bound_gets_431(
    live_server: LiveServer, head: bytes
) -> None:
    """Sent whole, in one piece: the bound holds for the chunk that ends the head."""
    assert MAX_HEAD_BYTES < len(head) < MAX_HEAD_BYTES + 8192
    with _connect(live_server) as sock:
        sock.sendall(head)
        assert _refused(sock)


@pytest.mark.parametrize("pieces", [2, 9], ids=["two-reads", "nine-reads"])
def test_a_head_arriving_in_several_reads_counts_every_read(
    live_server: LiveServer, pieces: int
) -> None:
    """The server must see each piece as its own read (hence the pauses): the count of
    the first read once restarted when the parser announced the message, so a head
    over the bound by less than its first read went through (CI saw a 200 here)."""
    head = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * (MAX_HEAD_BYTES + 1024)
        + b"\r\n\r\n"
    )
    size = -(-len(head) // pieces)
    with _connect(live_server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for start in range(0, len(head), size):
                sock.sendall(head[start : start + size])
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the last piece: what we want
        assert _refused(sock)


def test_pipelined_requests_each_get_their_own_budget(live_server: LiveServer) -> None:
    """Two requests of 40 KiB heads sent together pass 64 KiB between them; each is
    under the bound, so both are served (the second was once refused)."""
    one = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"d" * (40 * 1024)
        + b"\r\n\r\n"
    )
    with _connect(live_server) as sock:
        sock.sendall(one + one[:-2] + b"Connection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert answer.count(b"HTTP/1.1 200 OK") == 2, answer[:300]
    assert b" 431 " not in answer


def test_an_endless_request_line_gets_431_too(live_server: LiveServer) -> None:
    with _connect(live_server) as sock:
        sock.sendall(b"GET /" + b"a" * (MAX_HEAD_BYTES + 1024))
        assert _refused(sock)


def test_large_heads_under_the_bound_pass_on_one_kept_alive_connection(
    live_server: LiveServer,
) -> None:
    """Each request of a connection has its own budget; bodies do not count."""
    big = "b" * (MAX_HEAD_BYTES - 4096)
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        for _ in range(3):
            assert http.get("/healthz", headers={"X-Big": big}).status_code == 200
        # A body several times the head bound, in one request, is not a head.
        answer = http.post(
            "/graphql",
            content=b'{"query": "{ __typename }", "x": "' + b"c" * 200_000 + b'"}',
            headers={"content-type": "application/json"},
        )
        assert answer.status_code != 431
