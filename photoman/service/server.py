"""The daemon's Unix socket server: one thread per connection, one JSON request/response per line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photoman.errors import PhotomanError
from photoman.service.protocol import encode, read_line

log = logging.getLogger("photoman.server")
Handler = Callable[[str, dict[str, Any]], Any]


class _RequestHandler(socketserver.BaseRequestHandler):
    server: SocketServer

    def handle(self) -> None:
        while True:
            try:
                line = read_line(self.request)
            except OSError:
                return
            if not line:
                return
            try:
                req = json.loads(line)
                op, args = str(req["op"]), dict(req.get("args") or {})
                reply = {"ok": True, "result": self.server.dispatch(op, args)}
            except PhotomanError as exc:
                reply = {"ok": False, "error": str(exc), "code": exc.exit_code}
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}", "code": 2}
            except Exception as exc:  # noqa: BLE001 - a bug in one request must not kill the daemon
                log.exception("request failed")
                reply = {"ok": False, "error": f"internal error: {exc.__class__.__name__}: {exc}", "code": 1}
            try:
                self.request.sendall(encode(reply))
            except OSError:
                return


class SocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, dispatch: Handler) -> None:
        self.dispatch = dispatch
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        if path.exists():
            path.unlink()  # stale socket from a crash; the data-dir lock proves nobody else serves it
        old = os.umask(0o177)
        try:
            super().__init__(str(path), _RequestHandler)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self.path = path

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="socket", daemon=True
        )
        thread.start()
        return thread

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
