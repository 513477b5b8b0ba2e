"""A fast stand-in for Nector's answer: a fixed small JSON body (a lead's for a lead read) over
keep-alive HTTP/1.1, with request counters (GET /count, of them the GETs at GET /count-reads;
POST /reset) so a benchmark can check what reached "Nector".

Plain asyncio protocol on uvloop: tens of thousands of requests a second on one core, so it is
never the bottleneck for a proxy that forwards a few thousand.
"""

from __future__ import annotations

import argparse
import asyncio
import typing

BODY = (
    b'{"meta":{"status":"success"},"data":{"activity":{"_id":"a1"},'
    b'"wallet_reward":{"coins":10,"operation":"cr","balance":10}}}'
)


def _response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


OK = _response(BODY)
# A lead, for the reads that look one up (a customer_id session's lists need its id).
LEAD = _response(b'{"meta":{"status":"success"},"data":{"item":{"_id":"lead-1","available":10}}}')


class Upstream(asyncio.Protocol):
    count = 0
    reads = 0  # of count, the GETs: what the proxy's reads cost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are asyncio.Transport in behaviour, not by inheritance.
        self.transport = typing.cast(asyncio.Transport, transport)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            if head.startswith(b"get /count-reads"):
                self.transport.write(_response(str(Upstream.reads).encode()))
            elif head.startswith(b"get /count"):
                self.transport.write(_response(str(Upstream.count).encode()))
            elif head.startswith(b"post /reset"):
                Upstream.count = Upstream.reads = 0
                self.transport.write(_response(b"0"))
            else:
                Upstream.count += 1
                if head.startswith(b"get "):
                    Upstream.reads += 1
                lead = head.startswith(b"get /api/v2/merchant/leads/")
                self.transport.write(LEAD if lead else OK)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port))
    except ImportError:
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
