"""The daemon's Unix socket server: one thread per connection, one JSON request/response per line.

Bounded per connection: a request line up to `max_line` bytes, `idle_timeout` seconds to send a whole
request (or to take a reply), at most `max_connections` at once (the next is told "busy"); bursts of
connections wait in a listen backlog of `backlog`. A reply to one connection never waits on another's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photoman.errors import PhotomanError
from photoman.service.protocol import MAX_LINE, BadRequest, FrameTooLong, LineReader, encode, parse_request
from photoman.service.runtime import secure_runtime_dir

log = logging.getLogger("photoman.server")
Handler = Callable[[str, dict[str, Any]], Any]


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad(message: str) -> dict[str, Any]:
    return {"ok": False, "error": _one_line(f"bad request: {message}"), "code": 2}


def answer(dispatch: Handler, line: bytes) -> bytes:
    """The encoded reply to one line: the result, the user's error, "bad request" or "internal error"."""
    try:
        op, args = parse_request(line)
    except BadRequest as exc:
        return encode(_bad(str(exc)))
    try:
        result = dispatch(op, args)
    except PhotomanError as exc:
        return encode({"ok": False, "error": _one_line(str(exc)), "code": exc.exit_code})
    except RecursionError:
        return encode(_bad("nested too deeply"))
    except KeyError as exc:
        return encode(_bad(f"missing {exc}"))
    except (ValueError, TypeError) as exc:
        return encode(_bad(str(exc)))
    except Exception as exc:  # noqa: BLE001 - a bug in one request must not kill the daemon
        return _internal(op, exc)
    try:
        return encode({"ok": True, "result": result})
    except Exception as exc:  # noqa: BLE001 - a result that is not JSON is the daemon's bug, not the client's
        return _internal(op, exc)


def _internal(op: str, exc: BaseException) -> bytes:
    log.error("request %r failed", op, exc_info=exc)
    error = _one_line(f"internal error: {exc.__class__.__name__}: {exc}")
    return encode({"ok": False, "error": error, "code": 1})


class _RequestHandler(socketserver.BaseRequestHandler):
    server: SocketServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        srv = self.server
        reader = LineReader(sock, srv.max_line)
        while True:
            try:
                line = reader.readline(timeout=srv.idle_timeout)
            except FrameTooLong as exc:
                self._send(encode(_bad(str(exc))))
                return
            except OSError:  # timed out (idle or too slow) or the connection broke
                return
            if line is None:
                if reader.pending:  # the stream ended inside a request: say so to a half-closed peer
                    self._send(encode(_bad("incomplete request (the stream ended before its newline)")))
                return
            if not self._send(answer(srv.dispatch, line)):
                return

    def _send(self, data: bytes) -> bool:
        try:
            self.request.settimeout(self.server.idle_timeout)  # a client that never reads is let go
            self.request.sendall(data)
            return True
        except OSError:
            return False


class SocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(
        self,
        path: Path,
        dispatch: Handler,
        *,
        backlog: int = 1024,
        idle_timeout: float | None = 60.0,
        max_line: int = MAX_LINE,
        max_connections: int = 1024,
    ) -> None:
        """Bind the socket (0600) in a private runtime dir; UnsafeRuntimeError if it is not ours alone."""
        self.dispatch = dispatch
        self.request_queue_size = backlog  # listen() backlog; socketserver's default of 5 refuses bursts
        self.idle_timeout = idle_timeout
        self.max_line = max_line
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._count_lock = threading.Lock()
        self._connections = 0
        self._serving = False
        self.path = path
        secure_runtime_dir(path.parent)
        if path.is_socket() or path.is_symlink():
            path.unlink()  # stale socket from a crash; the data-dir lock proves nobody else serves it
        old = os.umask(0o177)
        try:
            super().__init__(str(path), _RequestHandler)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return self._connections

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(encode({
                    "ok": False, "code": 1,
                    "error": f"daemon busy: {self.max_connections} connections open; try again shortly",
                }))  # fmt: skip
            self.shutdown_request(request)
            return
        with self._count_lock:
            self._connections += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._count_lock:
            self._connections -= 1
        self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("connection handler failed")

    def serve_in_thread(self) -> threading.Thread:
        self._serving = True
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="socket", daemon=True
        )
        thread.start()
        return thread

    def close(self) -> None:
        if self._serving:  # shutdown() would wait forever for a loop that never started
            self.shutdown()
        self.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
