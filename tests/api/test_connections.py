"""One keep-alive connection carries request after request, whatever the answers were."""

from __future__ import annotations

import trio
import trio.testing

from tests.api.conftest import TOKEN, Api


async def answers(stream: trio.SocketStream, count: int) -> list[bytes]:
    """The status lines of the next ``count`` answers (each with a Content-Length body)."""
    data = bytearray()
    lines: list[bytes] = []
    with trio.fail_after(30):
        while len(lines) < count:
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some()
                assert chunk, f"the server closed the connection after {lines}: {bytes(data)!r}"
                data += chunk
            head, _, rest = bytes(data).partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            while len(rest) < length:
                chunk = await stream.receive_some()
                assert chunk, "the server closed the connection in the middle of an answer"
                rest += chunk
            lines.append(head.split(b"\r\n")[0])
            data = bytearray(rest[length:])
    return lines


async def test_a_refused_request_whose_body_comes_late_does_not_stall_the_connection(
    api: Api,
) -> None:
    """Headers first, the body once the server has done all it could with them, then another
    request: both are answered (hypercorn never answers the second one if the first was
    answered before its body arrived)."""
    host, _, port = api.url.removeprefix("http://").rpartition(":")
    body = b'{"name": "v", "size": "1Gi"}'
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(
            b"POST /v1/volumes HTTP/1.1\r\nHost: lhtrio\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        await trio.testing.wait_all_tasks_blocked()
        await stream.send_all(body)
        await trio.testing.wait_all_tasks_blocked()
        await stream.send_all(
            b"GET /v1/volumes HTTP/1.1\r\nHost: lhtrio\r\nAuthorization: Bearer %s\r\n\r\n"
            % TOKEN.encode()
        )
        assert await answers(stream, 2) == [b"HTTP/1.1 401 ", b"HTTP/1.1 200 "]
