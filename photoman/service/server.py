"""The daemon's Unix socket server: one JSON request/response per line (see protocol.py).

One I/O thread accepts, frames and writes for every connection (non-blocking, so a burst of hundreds
of clients costs no thread each); up to `workers` threads answer requests, one request of a connection
at a time so its replies keep their order. Bounded per connection: a request line up to `max_line`
bytes; `idle_timeout` seconds to send a whole request, or to take a reply; at most `max_connections`
at once (the next is told "busy"); bursts of connections wait in a listen backlog of `backlog`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photoman.errors import PhotomanError, path_error
from photoman.service.protocol import (
    BUSY_REPLY,
    MAX_LINE,
    BadRequest,
    FrameTooLong,
    LineBuffer,
    encode,
    parse_request,
    unix_address,
)
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
        bad_path = path_error(exc)
        if bad_path is not None:
            return encode({"ok": False, "error": _one_line(str(bad_path)), "code": bad_path.exit_code})
        return _internal(op, exc)
    try:
        return encode({"ok": True, "result": result})
    except Exception as exc:  # noqa: BLE001 - a result that is not JSON is the daemon's bug, not the client's
        return _internal(op, exc)


def _internal(op: str, exc: BaseException) -> bytes:
    log.error("request %r failed", op, exc_info=exc)
    error = _one_line(f"internal error: {exc.__class__.__name__}: {exc}")
    return encode({"ok": False, "error": error, "code": 1})


class _Conn:
    """One client connection's state, owned by the I/O loop (workers only hand replies back)."""

    __slots__ = ("sock", "lines", "todo", "final", "out", "busy", "eof", "deadline", "events", "closed")

    def __init__(self, sock: socket.socket, max_line: int, deadline: float) -> None:
        self.sock = sock
        self.lines = LineBuffer(max_line)
        self.todo: deque[bytes] = deque()  # whole requests, not yet handed to a worker
        self.final: bytes | None = None  # a last reply (frame too long, stream cut): sent, then close
        self.out: deque[memoryview] = deque()  # replies not yet sent
        self.busy = False  # one of its requests is with a worker (one at a time: replies stay in order)
        self.eof = False  # the client has sent all it will
        self.deadline = deadline  # while it is not busy: when it is dropped if nothing moves
        self.events = selectors.EVENT_READ
        self.closed = False


class SocketServer:
    """The daemon's socket: one I/O thread frames every connection, a few worker threads answer."""

    def __init__(
        self,
        path: Path,
        dispatch: Handler,
        *,
        backlog: int = 1024,
        idle_timeout: float | None = 60.0,
        max_line: int = MAX_LINE,
        max_connections: int = 1024,
        workers: int = 64,  # finds waiting together are answered together: up to this many per pass
    ) -> None:
        """Bind the socket (0600) in a private runtime dir; UnsafeRuntimeError if it is not ours alone."""
        self.dispatch = dispatch
        self.path = path
        self.request_queue_size = backlog  # listen() backlog: a burst of clients waits here, not refused
        self.idle_timeout = idle_timeout
        self.max_line = max_line
        self.max_connections = max_connections
        self.workers = workers
        busy = f"{BUSY_REPLY} {max_connections} connections open; try again shortly"
        self._busy = encode({"ok": False, "error": busy, "code": 1})
        secure_runtime_dir(path.parent)
        path.unlink(missing_ok=True)  # a stale socket from a crash; the data-dir lock proves nobody serves it
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            with unix_address(path) as address:
                self.socket.bind(address)
            os.chmod(path, 0o600)
            self.socket.listen(backlog)
        except BaseException:
            self.socket.close()
            raise
        finally:
            os.umask(old)
        self.socket.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.socket, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._conns: set[_Conn] = set()
        self._done: deque[tuple[_Conn, bytes]] = deque()  # replies from workers for the I/O loop
        self._jobs: queue.SimpleQueue[tuple[_Conn, bytes] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = self._idle = self._queued = 0
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        self._last_sweep = 0.0

    @property
    def connections(self) -> int:
        """Client connections open now."""
        return len(self._conns)

    # ---- lifecycle ----
    def serve_in_thread(self) -> threading.Thread:
        self._loop = threading.Thread(target=self.serve_forever, name="socket", daemon=True)
        self._loop.start()
        return self._loop

    def serve_forever(self, poll_interval: float = 0.1) -> None:
        """Run the I/O loop until close(); a failure on one connection closes that one only."""
        while not self._stop.is_set():
            for key, events in self._sel.select(poll_interval):
                if key.data is None:
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        while self._wake_r.recv(4096):
                            pass
                else:
                    conn = key.data
                    try:
                        if events & selectors.EVENT_WRITE:
                            self._flush(conn)
                        if events & selectors.EVENT_READ and not conn.closed:
                            self._read(conn)
                        self._update(conn)
                    except Exception:
                        log.exception("socket connection failed")
                        self._close(conn)
            self._replies()
            self._sweep()

    def close(self) -> None:
        """Stop serving: drop every connection, remove the socket file."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join(timeout=10)
        for conn in list(self._conns):
            self._close(conn)
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._jobs.put(None)
        self._sel.close()
        for s in (self.socket, self._wake_r, self._wake_w):
            s.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    # ---- the I/O loop ----
    def _accept(self) -> None:
        for _ in range(256):  # then let the loop serve the others
            try:
                sock, _addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: leave the rest in the backlog
                log.warning("cannot accept a connection: %s", exc)
                return
            sock.setblocking(False)
            if len(self._conns) >= self.max_connections:
                with contextlib.suppress(OSError):
                    sock.send(self._busy)
                sock.close()
                continue
            conn = _Conn(sock, self.max_line, self._deadline())
            self._conns.add(conn)
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _deadline(self) -> float:
        return float("inf") if self.idle_timeout is None else time.monotonic() + self.idle_timeout

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            conn.eof = True
            if conn.lines.pending:  # a half-closed client may still read why its last line was lost
                conn.final = encode(_bad("incomplete request (the stream ended before its newline)"))
        else:
            try:
                conn.todo.extend(conn.lines.feed(data))
            except FrameTooLong as exc:
                conn.final = encode(_bad(str(exc)))
            if conn.lines.overflow and conn.final is None:  # whole lines came first: answer them, then this
                conn.final = encode(_bad(str(FrameTooLong(self.max_line))))
        self._next(conn)

    def _next(self, conn: _Conn) -> None:
        """Hand the connection's next request to a worker; after the last, queue its final reply."""
        if conn.busy or conn.closed:
            return
        if conn.todo:
            conn.busy = True
            self._submit(conn, conn.todo.popleft())
        elif conn.final is not None:
            self._send(conn, conn.final)
            conn.final = b""  # sent: close once flushed

    def _send(self, conn: _Conn, data: bytes) -> None:
        if data:
            conn.out.append(memoryview(data))
            self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.out and not conn.closed:
            head = conn.out[0]
            try:
                n = conn.sock.send(head)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
            conn.deadline = self._deadline()  # it reads: give it time for the rest
            if n < len(head):
                conn.out[0] = head[n:]
                return
            conn.out.popleft()

    def _update(self, conn: _Conn) -> None:
        """Close a finished connection, or watch it for what it waits on (reading stops while it owes
        us reading its replies, so a client that never reads cannot fill the daemon's memory)."""
        if conn.closed:
            return
        done = conn.eof or conn.final == b""
        if done and not conn.busy and not conn.todo and not conn.out and not conn.final:
            self._close(conn)
            return
        events = 0
        if not done and conn.final is None and len(conn.todo) < 64 and len(conn.out) < 16:
            events |= selectors.EVENT_READ
        if conn.out:
            events |= selectors.EVENT_WRITE
        if events != conn.events:
            if not conn.events:
                self._sel.register(conn.sock, events, conn)
            elif not events:
                self._sel.unregister(conn.sock)
            else:
                self._sel.modify(conn.sock, events, conn)
            conn.events = events

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._conns.discard(conn)
        if conn.events:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
        conn.sock.close()

    def _replies(self) -> None:
        """Replies the workers finished: queue them, hand on the next request of the same connection."""
        while self._done:
            conn, reply = self._done.popleft()
            if conn.closed:
                continue
            conn.busy = False
            conn.deadline = self._deadline()
            try:
                self._send(conn, reply)
                self._next(conn)
                self._update(conn)
            except Exception:
                log.exception("socket connection failed")
                self._close(conn)

    def _sweep(self) -> None:
        """Drop connections that let the idle timeout pass without a whole request or reading a reply."""
        now = time.monotonic()
        if now - self._last_sweep < 0.05:
            return
        self._last_sweep = now
        for conn in [c for c in self._conns if not c.busy and c.deadline < now]:
            self._close(conn)

    # ---- workers ----
    def _submit(self, conn: _Conn, line: bytes) -> None:
        with self._lock:
            self._queued += 1
            spawn = self._queued > self._idle and self._threads < self.workers
            if spawn:
                self._threads += 1
        self._jobs.put((conn, line))
        if spawn:
            threading.Thread(target=self._work, name="request", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            if job is None or self._stop.is_set():
                return
            conn, line = job
            try:
                reply = answer(self.dispatch, line)
            except BaseException as exc:  # noqa: BLE001 - SystemExit and the like from a handler
                reply = _internal("?", exc)
            self._done.append((conn, reply))
            with contextlib.suppress(OSError):  # a full wake pipe already means "wake up"
                self._wake_w.send(b"\0")
