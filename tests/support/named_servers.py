"""A loopback HTTP server that answers with its own name, standing in for a model server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class NamedServer:
    """Answers every request with its own name; serves ``metrics_text`` on /metrics."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.metrics_text = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                if self.path == "/metrics":
                    body, kind = owner.metrics_text.encode(), "text/plain; version=0.0.4"
                else:
                    body, kind = json.dumps({"server": owner.name}).encode(), "application/json"
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"
