"""An HTTP proxy that misbehaves on purpose, in front of a real server: for each request, what
`plan(method, path, n)` says (n counts requests from 0):

    "pass"          forward, answer what the server answered
    "fail_before"   answer 500 without forwarding (the server never saw it)
    "fail_after"    forward (the server acts on it), then answer 500 instead of its answer
    "reset_before"  close the connection without forwarding
    "reset_after"   forward, then close the connection without answering
    "cut"           forward, answer the server's status and headers, then half its body and a reset
    "flip"          forward with one byte of the request's body changed (damage on the way)
    "bad_digest"    answer 400 BadDigest without forwarding (S3 finding the Content-MD5 wrong)
    "slow_down"     answer 503 SlowDown without forwarding
    "portal"        answer 200 with an HTML page without forwarding (a captive portal, a proxy's page)
    "stall:S"       wait S seconds (past the client's timeout), then forward
    "delay:S"       wait S seconds, then forward

`down()` stops listening (connections are refused, as to a server that is off); `up()` listens
again on the same port."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultProxy:
    def __init__(self, upstream: str, plan: Callable[[str, str, int], str] | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.plan = plan or (lambda method, path, n: "pass")
        self.count = 0
        self.done: list[tuple[str, str, str]] = []   # (method, path, action) of every request
        self._lock = threading.Lock()
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.up()
        self.url = f"http://127.0.0.1:{self.port}"

    def _action(self, method: str, path: str) -> str:
        with self._lock:
            n, self.count = self.count, self.count + 1
        action = self.plan(method, path, n)
        with self._lock:
            self.done.append((method, path, action))
        return action

    def up(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                length = str(len(body))
                if self.command == "HEAD":  # no body, and the length is the object's
                    length = next((v for k, v in headers if k.lower() == "content-length"), "0")
                self.send_header("Content-Length", length)
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self.close_connection = True

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                up = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                    up.request(self.command, self.path, body=body or None, headers=headers)
                    res = up.getresponse()
                    return res.status, res.getheaders(), res.read()
                finally:
                    up.close()

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = proxy._action(self.command, self.path)
                kind, _, arg = action.partition(":")
                if kind in ("stall", "delay"):
                    time.sleep(float(arg))
                if kind == "fail_before":
                    return self._answer(500, [("Content-Type", "text/plain")], b"injected failure")
                if kind == "slow_down":
                    return self._answer(503, [("Content-Type", "application/xml")],
                                        b"<Error><Code>SlowDown</Code></Error>")
                if kind == "bad_digest":
                    return self._answer(400, [("Content-Type", "application/xml")],
                                        b"<Error><Code>BadDigest</Code><Message>The Content-MD5 you specified did not"
                                        b" match what we received.</Message></Error>")
                if kind == "portal":
                    return self._answer(200, [("Content-Type", "text/html")], b"<html>Welcome</html>")
                if kind == "reset_before":
                    return self._reset()
                if kind == "flip" and body:
                    body = body[:len(body) // 2] + bytes([body[len(body) // 2] ^ 0x20]) + body[len(body) // 2 + 1:]
                status, headers, data = self._forward(body)
                if kind == "fail_after":
                    return self._answer(500, [("Content-Type", "text/plain")], b"injected failure after the fact")
                if kind == "reset_after":
                    return self._reset()
                if kind == "cut" and len(data) > 1:
                    return self._cut(status, headers, data)
                self._answer(status, headers, data)

            def _cut(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                self._reset()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:  # a client gone mid-answer: meant to be
                pass

        server = Server(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def close(self) -> None:
        self.down()
