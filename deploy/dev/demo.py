#!/usr/bin/python3
"""demo.py - `make run`'s web server for the event console (deploy/demo),
standing in for the nginx site of a deployment: the console's files, and
/websocket/ passed through to the gateway on the same origin.

Owns: one asyncio listener on 127.0.0.1:$DEMO_PORT. GET / and the console's
four files (index.html, app.js, style.css, wsgw.js: the SDK, through its
link) are answered from deploy/demo; a request for /websocket/... is
written as received to the gateway ($WSGW_GATEWAY_LISTEN) and the two
connections are then spliced byte for byte until either side closes. Why:
the console may only connect to its own origin (CSP connect-src 'self'),
as behind nginx, so the websocket must be reachable on the port that
served the page. The browser's Host and Origin reach the gateway as sent:
they match, as they do behind the shipped nginx site.

Must not: serve any other file, listen beyond loopback, or hold unbounded
data: a request head is at most MAX_HEAD bytes within HEAD_TIMEOUT s, at
most MAX_CONNS connections at once, each splice direction buffers one
read (64 KiB). Development only: no TLS, no limits a public site needs.
"""

import asyncio
import os
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "demo"
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
    "/wsgw.js": ("wsgw.js", "text/javascript; charset=utf-8"),
}
MAX_HEAD = 16384
HEAD_TIMEOUT = 10
MAX_CONNS = 128
CHUNK = 65536


def respond(writer, status, ctype, body, head_only=False):
    writer.write((f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                  f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                  "Connection: close\r\n\r\n").encode())
    if not head_only:
        writer.write(body)


async def pipe(reader, writer):
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()  # backpressure: one read in flight per direction
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def websocket(head, reader, writer, gateway):
    host, port = gateway.rsplit(":", 1)
    try:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
    except OSError as e:
        respond(writer, "502 Bad Gateway", "text/plain", f"gateway {gateway}: {e}\n".encode())
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()
        return
    up_writer.write(head)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def serve(reader, writer, gateway, slots):
    if slots.locked():
        writer.close()
        return
    async with slots:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            writer.close()
            return
        try:
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        except ValueError:
            respond(writer, "400 Bad Request", "text/plain", b"bad request line\n")
            writer.close()
            return
        path = target.split("?", 1)[0]
        if path.startswith("/websocket/") or path == "/websocket":
            await websocket(head, reader, writer, gateway)
            return
        if method not in ("GET", "HEAD"):
            respond(writer, "405 Method Not Allowed", "text/plain", b"GET only\n")
        elif path not in FILES:
            respond(writer, "404 Not Found", "text/plain", b"not found\n", method == "HEAD")
        else:
            name, ctype = FILES[path]
            try:
                body = (DEMO / name).read_bytes()
                respond(writer, "200 OK", ctype, body, method == "HEAD")
            except OSError as e:  # wsgw.js's target missing: say which
                respond(writer, "500 Internal Server Error", "text/plain",
                        f"{name}: {e.strerror}\n".encode())
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()


async def main():
    port = os.environ.get("DEMO_PORT", "")
    gateway = os.environ.get("WSGW_GATEWAY_LISTEN", "")
    if not port.isdigit() or ":" not in gateway:
        sys.exit("demo.py: needs DEMO_PORT and WSGW_GATEWAY_LISTEN (host:port), "
                 "as .run/env sets them")
    slots = asyncio.Semaphore(MAX_CONNS)
    server = await asyncio.start_server(lambda r, w: serve(r, w, gateway, slots),
                                        "127.0.0.1", int(port), limit=MAX_HEAD)
    print(f"demo: http://127.0.0.1:{port}/ (websocket -> {gateway})", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
