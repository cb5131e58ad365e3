"""A minimal Confluent-compatible schema registry for tradeflow's tests, on Python's own
http.server (the registry's REST API is small; this is not a fake of the broker).

    schema_registry.py

Listens on 127.0.0.1 on a free port and prints `listening on PORT` on stderr, then one
line per request (`GET /schemas/ids/41 -> 200`), so a test can see what was asked and
how often. It answers:

* `POST /subjects/{subject}/versions` with `{"schema": "..."}`: registers the schema (an
  identical schema, compared as parsed JSON, keeps its id) and answers `{"id": N}`; ids
  start at 41 so that no test passes by accident with id 0 or 1;
* `GET /schemas/ids/{id}`: `{"schema": "..."}`, or 404 with error code 40403.
"""

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCHEMAS = {}  # id -> schema text
# One request line at a time: print() writes the text and its newline separately, so two
# handler threads could otherwise run their lines together.
LOG = threading.Lock()
SUBJECTS = {}  # subject -> [id, ...]


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        with LOG:
            print(f"{self.command} {self.path} -> {status}", file=sys.stderr, flush=True)

    def do_GET(self):
        found = re.fullmatch(r"/schemas/ids/(\d+)", self.path)
        if found and int(found.group(1)) in SCHEMAS:
            self.answer(200, {"schema": SCHEMAS[int(found.group(1))]})
        else:
            self.answer(404, {"error_code": 40403, "message": "Schema not found"})

    def do_POST(self):
        found = re.fullmatch(r"/subjects/([^/]+)/versions", self.path)
        length = int(self.headers.get("Content-Length", "0"))
        try:
            text = json.loads(self.rfile.read(length))["schema"]
            parsed = json.loads(text)
        except (ValueError, KeyError, TypeError):
            self.answer(422, {"error_code": 42201, "message": "Invalid schema"})
            return
        if not found:
            self.answer(404, {"error_code": 404, "message": "Not found"})
            return
        for known, known_text in SCHEMAS.items():
            if json.loads(known_text) == parsed:
                schema_id = known
                break
        else:
            schema_id = 41 + len(SCHEMAS)
            SCHEMAS[schema_id] = text
        versions = SUBJECTS.setdefault(found.group(1), [])
        if schema_id not in versions:
            versions.append(schema_id)
        self.answer(200, {"id": schema_id})

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on {server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
