"""A webhook subscriber for the delivery benchmark, in a process of its own: HTTP/1.1 with
keep-alive on 127.0.0.1, every POST answered 200 (empty) and counted; `GET /count` answers
the count.

    .venv/bin/python tests/perf/subscriber.py PORT

As little work a request as a real receiver that queues the event and answers can do, so the
figure it takes from a load generator is the ceiling the delivery worker is measured against.
"""

from __future__ import annotations

import asyncio
import sys

COUNT = 0


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global COUNT
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            if lines[0].startswith("GET /count"):
                body = str(COUNT).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            else:
                COUNT += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_handle, "127.0.0.1", port, backlog=512)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
