#!/usr/bin/env python3
"""mail: the digital twin of the mail API that the password-reset service uses.

A stand-in for the real mail provider, first-party and small enough to
read at a glance: it accepts the same requests and answers the same way,
but delivers nothing. Python 3, standard library only. Run it as

    PORT=9000 python3 twins/mail.py

and point the service at it with MAIL_API_URL=http://127.0.0.1:9000.

API (on 127.0.0.1:$PORT):

- `POST /send` with a JSON object `{"to": ..., "subject": ..., "body": ...}`
  (three strings): answers 202 `{"id": n}`, n counting up from 1. A body
  that is not such an object answers 400 `{"error": "bad_request"}`.
- `GET /sent`: 200, the accepted messages so far as a JSON list of
  `{"id", "to", "subject", "body"}`, oldest first.
- `GET /health`: 200 `ok`.

It can be told to fail: with `MAIL_FAIL=1` in its environment, every
`POST /send` answers 503 `{"error": "unavailable"}` and nothing is kept.

Messages are kept in memory only and are gone when the process ends.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIELDS = ("to", "subject", "body")

lock = threading.Lock()
sent = []  # accepted messages, oldest first


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self.send_body(200, "text/plain; charset=utf-8", b"ok")
        elif path == "/sent":
            with lock:
                self.send_json(200, list(sent))
        else:
            self.send_json(404, {"error": "not_found"})

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/send":
            self.send_json(404, {"error": "not_found"})
            return
        message = self.read_json()
        if os.environ.get("MAIL_FAIL") == "1":
            self.send_json(503, {"error": "unavailable"})
            return
        if not isinstance(message, dict) or not all(isinstance(message.get(f), str) for f in FIELDS):
            self.send_json(400, {"error": "bad_request"})
            return
        with lock:
            record = {"id": len(sent) + 1, **{f: message[f] for f in FIELDS}}
            sent.append(record)
        self.send_json(202, {"id": record["id"]})

    def read_json(self):
        """The request body as JSON, or None when it is not valid JSON."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length > 0 else None
        except ValueError:
            return None

    def send_json(self, status, value):
        self.send_body(status, "application/json", json.dumps(value).encode())

    def send_body(self, status, content_type, data):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # keep stderr quiet


def main():
    port = int(os.environ.get("PORT", "9000"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
