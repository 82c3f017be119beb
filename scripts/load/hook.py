#!/usr/bin/env python3
"""A notification endpoint for the benchmarks: an HTTP/1.1 server (keep-alive) that answers
every POST 200, or 503 while the file FAIL_FLAG exists, and appends one line per notification
taken to OUT: "<arrival epoch ms> <marker>", the marker being the first value of `"value":"N-…"`
in the body (the referral's number) or "-".

    hook.py PORT OUT FAIL_FLAG
"""
import asyncio
import os
import re
import sys
import time

MARK = re.compile(rb'"value":"(N-\d+)"')


async def serve(reader, writer, out, flag):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if os.path.exists(flag):
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            else:
                m = MARK.search(body)
                out.write(f"{time.time() * 1000:.1f} {m.group(1).decode() if m else '-'}\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    port, path, flag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    out = open(path, "a", buffering=1 << 16)

    async def flush():
        while True:
            await asyncio.sleep(0.2)
            out.flush()

    asyncio.ensure_future(flush())
    server = await asyncio.start_server(lambda r, w: serve(r, w, out, flag), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main())
