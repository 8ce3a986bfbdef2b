#!/usr/bin/env python3
"""A password-reset HTTP API, as `specs/password-reset.md` describes.

This is the starting point of the password-reset demo: the coding stage (an
agent) implements the API here. The stub already serves on 127.0.0.1:$PORT
and answers `GET /health`; every other request answers 501.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.send_text(200, "ok")
        else:
            self.send_json(501, {"ok": False, "error": "not_implemented"})

    def do_POST(self):
        # To be implemented by the agent: see specs/password-reset.md.
        self.send_json(501, {"ok": False, "error": "not_implemented"})

    def send_json(self, status, value):
        self.send_body(status, "application/json", json.dumps(value).encode())

    def send_text(self, status, text):
        self.send_body(status, "text/plain; charset=utf-8", text.encode())

    def send_body(self, status, content_type, data):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # keep stderr quiet


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
