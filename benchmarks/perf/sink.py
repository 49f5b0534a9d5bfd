"""A minimal HTTP/1.1 server that answers every request at once with a 202 and a job id: what the harness's
open-loop sender is measured against when the question is how fast the *harness* can send (§ 10), so that no
service's cost is in the figure. `python -m benchmarks.perf.sink PORT_FILE` writes its port there and serves."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ANSWER = b'{"job_id": "sink", "submitted_at": 0}'
RESPONSE = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(ANSWER),
    ANSWER,
)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main(port_file: Path) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    port_file.write_text(str(server.sockets[0].getsockname()[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
