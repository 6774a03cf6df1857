"""Fault injection for S3: a reverse proxy in front of the emulator that can slow down or fail the
multipart uploads of chosen keys. Real HTTP end to end; the sync under test only sees AWS_ENDPOINT_URL."""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


class S3FaultProxy:
    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.key_prefix = ""  # which object keys the faults apply to
        self.part_delay = 0.0  # seconds added to each UploadPart of those keys
        self.fail_from_part: int | None = None  # UploadPart number from which the proxy answers 500
        self.parts_seen = 0
        self.parts_done = 0  # UploadParts of those keys that the emulator answered
        self.lost_start_answers = 0  # CreateMultipartUploads of those keys done, their answers then lost
        self.before = None  # called as before(method, key) ahead of forwarding each request
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        chunk = self.rfile.read(size + 2)[:-2]
                        data += chunk
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                key = url.path.split("/", 2)[2] if url.path.count("/") >= 2 else ""
                if proxy.before is not None:
                    proxy.before(self.command, key)
                faulted = bool(proxy.key_prefix) and key.startswith(proxy.key_prefix)  # a key the faults apply to
                part = faulted and "partNumber" in query
                starting = faulted and self.command == "POST" and "uploads" in url.query.split("&")
                if part:
                    proxy.parts_seen += 1
                    time.sleep(proxy.part_delay)
                    if proxy.fail_from_part is not None and int(query["partNumber"][0]) >= proxy.fail_from_part:
                        payload = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                        self.send_response(500)
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                conn.close()
                if starting and proxy.lost_start_answers > 0:
                    proxy.lost_start_answers -= 1
                    self.close_connection = True  # the emulator started the upload; its answer never comes
                    return
                if part and reply.status == 200:
                    proxy.parts_done += 1
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in HOP_HEADERS and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
