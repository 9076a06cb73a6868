"""uvicorn's HTTP protocol, answering a request it cannot parse with problem+json.

uvicorn answers an unreadable request (a 100 kB URL, a broken request line) itself, before any
application code, with `text/plain` "Invalid HTTP request received."; clients of this API
parse every error as RFC 9457 problem+json, so this one is too.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ProblemHttpProtocol"]

# Past this many bytes of URL, the request is refused as 414 rather than as malformed.
LONG_URL_BYTES = 8 * 1024
REASONS = {400: b"Bad Request", 414: b"URI Too Long"}


def problem_bytes(status: int, url_bytes: int) -> bytes:
    if status == 414:
        slug, title = "uri-too-long", "The URL is too long"
        detail = f"the URL is {url_bytes:,} bytes long, more than this server reads"
    else:
        slug, title = "bad-request", "The request is malformed"
        detail = "the request line or headers could not be read as HTTP/1.1"
    body = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    return json.dumps(body).encode()


class ProblemHttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        url_bytes = len(getattr(self, "url", b"") or b"")
        status = 414 if url_bytes >= LONG_URL_BYTES else 400
        body = problem_bytes(status, url_bytes)
        content = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/problem+json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
