"""A loopback HTTP file server for download tests: Range requests, cut transfers, failures."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Files:
    """What the server serves (URL path -> file) and how it misbehaves."""

    files: dict[str, Path] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)  # first GET: half the body, then close
    fail_times: dict[str, int] = field(default_factory=dict)  # answer 503 this many times
    fail_code: dict[str, int] = field(default_factory=dict)  # ... with this status instead
    status: dict[str, int] = field(default_factory=dict)  # always answer this error status
    short_once: dict[str, int] = field(default_factory=dict)  # first GET: this many bytes,
    # with a Content-Length that matches them (a truncated file, or a lying proxy)
    corrupt_once: set[str] = field(default_factory=set)  # first GET: one byte flipped mid-body
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    base: str = ""

    def add(self, path: Path, name: str | None = None) -> str:
        name = name or path.name
        self.files["/" + name] = path
        return f"{self.base}/{name}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


def _handler(state: Files):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = self.path.split("?")[0]
            state.requests.append((path, self.headers.get("Range")))
            if state.fail_times.get(path, 0) > 0:
                state.fail_times[path] -= 1
                self.send_error(state.fail_code.get(path, 503))
                return
            if path in state.status:
                self.send_error(state.status[path])
                return
            if path not in state.files:
                self.send_error(404)
                return
            data = state.files[path].read_bytes()
            if body and path in state.short_once:
                data = data[:state.short_once.pop(path)]
            if body and path in state.corrupt_once:
                state.corrupt_once.discard(path)
                mid = len(data) // 2
                data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if not body:
                return
            payload = data[start:]
            if path in state.cut_once and body:
                state.cut_once.discard(path)
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)

    return Handler


@contextmanager
def serve(state: Files | None = None) -> Iterator[Files]:
    """Run a server on 127.0.0.1 (a free port) for the duration of the block."""
    state = state or Files()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
