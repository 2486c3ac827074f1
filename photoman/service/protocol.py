"""Wire format: one JSON object per line each way, over a Unix socket (mode 0600) in the runtime dir.

Request:  {"op": "find", "args": {...}}\\n
Response: {"ok": true, "result": ...}\\n   or   {"ok": false, "error": "one line", "code": 2}\\n
Ops: ping, find, caption, photo, heatmap, tag, tags, dupes, status, index, stop, models, models_use (starts a
background model switch), models_drop; the full table is photoman.ops.OPS plus the daemon's own.

Every request line gets exactly one reply, in order, so a client may pipeline several on one
connection. A line that is not a JSON object with a string "op" and an object "args" (absent or null
means {}), is not UTF-8, or nests deeper than MAX_DEPTH answers code 2 "bad request: ..."; a line
longer than the server's limit answers that once and the connection is closed. Before connecting, the
client checks the runtime dir (see runtime.py) and, once connected, that the daemon runs as its own uid.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from photoman.errors import PhotomanError
from photoman.service.runtime import check_peer, check_runtime_dir, peer_pid

MAX_LINE = 64 * 1024 * 1024  # bytes in one message (an image sent on stdin travels inside a request)
MAX_DEPTH = 32  # nesting of arrays/objects in a request's args (real requests use less than 6)
PING_TIMEOUT = 5.0  # a daemon that takes longer to say "pong" is busy, not gone
BUSY_REPLY = "daemon busy:"  # how the server refuses a connection past its limit (service/server.py)


class DaemonError(PhotomanError):
    """An error the daemon reported for a request (its message and exit code travel as they are)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code


def encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


class FrameTooLong(DaemonError):
    """A message longer than the reader's limit: its end cannot be found without unbounded memory."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message longer than {limit} bytes", 2)


class BadRequest(ValueError):
    """A request line that is not a well-formed request (answered as code 2 "bad request: ...")."""


class LineBuffer:
    """Splits a byte stream into newline-terminated messages, holding back an unfinished one."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self.buf = bytearray()
        self.scanned = 0  # bytes of buf known to hold no newline
        self.overflow = False  # a message outgrew max_line: the stream cannot be framed any more

    def feed(self, data: bytes) -> list[bytes]:
        """The messages `data` completes (without their newlines), in order; FrameTooLong once the
        unfinished message is longer than max_line (its bytes are dropped)."""
        if self.overflow:
            raise FrameTooLong(self.max_line)
        self.buf += data
        lines = []
        pos = 0
        while (nl := self.buf.find(b"\n", max(pos, self.scanned))) >= 0:
            lines.append(bytes(self.buf[pos:nl]))
            pos = nl + 1
        if pos:
            del self.buf[:pos]
        self.scanned = len(self.buf)
        if len(self.buf) > self.max_line:
            self.buf, self.scanned, self.overflow = bytearray(), 0, True
            if not lines:
                raise FrameTooLong(self.max_line)
        return lines  # with an overflow behind them: the next feed raises

    @property
    def pending(self) -> int:
        """Bytes received after the last whole message."""
        return len(self.buf)


class LineReader:
    """Newline-terminated messages from one blocking socket; bytes after a newline wait for the next call."""

    def __init__(self, sock: socket.socket, max_line: int = MAX_LINE) -> None:
        self.sock = sock
        self.lines = LineBuffer(max_line)
        self.ready: list[bytes] = []

    def readline(self, timeout: float | None = None) -> bytes | None:
        """The next message without its newline; None at end of stream (a partial last line is lost,
        see `.pending`). `timeout` bounds the whole message, so a slow trickle cannot stretch it.
        Raises FrameTooLong past max_line, TimeoutError when the timeout passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ready:
            if self.lines.overflow:
                self.lines.feed(b"")  # raises FrameTooLong
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out waiting for a whole message")
                self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.ready = self.lines.feed(chunk)
        return self.ready.pop(0)

    @property
    def pending(self) -> int:
        """Bytes received after the last whole message (a truncated one, at end of stream)."""
        return self.lines.pending


def read_line(sock: socket.socket, max_line: int = MAX_LINE) -> bytes:
    """One message (without the newline); b'' when the peer closed first. Anything the peer sent after
    that message is dropped: to read several from one socket, keep one LineReader."""
    line = LineReader(sock, max_line).readline()
    return b"" if line is None else line


def _depth_over(obj: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than `limit` (iterative: a deep value cannot recurse here)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > limit:
            return True
        stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return False


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """(op, args) from one request line; BadRequest saying what is wrong with anything else."""
    if not line.strip():
        raise BadRequest('empty request; send one JSON object per line, e.g. {"op": "ping"}')
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        req = json.loads(text)
    except RecursionError:
        raise BadRequest(f"JSON nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:
        raise BadRequest(f"not JSON ({exc})") from None
    if not isinstance(req, dict):
        raise BadRequest(f'a request must be a JSON object like {{"op": "ping"}}, not {type(req).__name__}')
    op, args = req.get("op"), req.get("args")
    if not isinstance(op, str) or not op:
        raise BadRequest(f"'op' must be a non-empty string, not {op!r:.40}")
    if args is None:
        args = {}
    elif not isinstance(args, dict):
        raise BadRequest(f"'args' must be an object, not {type(args).__name__}")
    if _depth_over(args, MAX_DEPTH):
        raise BadRequest(f"JSON nested too deeply (at most {MAX_DEPTH} levels in 'args')")
    return op, args


SUN_PATH_MAX = 103  # bytes of a Unix socket address that fit everywhere (Linux 107, macOS 103)


@contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """``path`` as a Unix socket address. The address field is short: a socket deep in a long
    runtime dir is reached on Linux through an open handle on its folder (``/proc/self/fd/N/NAME``,
    the same file); elsewhere such a path is a one-line error that says what to change."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    if not sys.platform.startswith("linux"):
        raise PhotomanError(
            f"the daemon's socket path {path} is too long for a Unix socket ({len(os.fsencode(path))} bytes, "
            f"at most {SUN_PATH_MAX}): set runtime_dir (PHOTOMAN_RUNTIME_DIR) to a shorter folder"
        )
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def _connect(path: Path, timeout: float) -> socket.socket:
    """A connected socket; while the daemon's listen backlog is full (EAGAIN), wait for room as a
    blocking connect would (a socket with a timeout is non-blocking and would fail at once)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            with unix_address(path) as address:
                sock.connect(address)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() + delay > deadline:
                raise
        except BaseException:
            sock.close()
            raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def call(path: Path, op: str, args: dict[str, Any] | None = None, timeout: float = 300.0) -> Any:
    """One request, its result; DaemonError for an error reply, OSError when nobody listens,
    UnsafeRuntimeError (before anything is sent) when another user could be posing as the daemon."""
    path = Path(path)
    check_runtime_dir(path.parent)  # FileNotFoundError (an OSError) when there is none: no daemon
    with _connect(path, timeout) as sock:
        check_peer(sock, path)
        sock.sendall(encode({"op": op, "args": args or {}}))
        line = LineReader(sock).readline()
    if not line:
        raise DaemonError("the daemon closed the connection without answering (is it shutting down?)")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise DaemonError(f"the daemon sent a malformed reply: {line[:100]!r}")
    if not reply.get("ok"):
        raise DaemonError(reply.get("error", "unknown daemon error"), int(reply.get("code", 1)))
    return reply.get("result")


def daemon_running(path: Path) -> bool:
    """Whether a daemon serves this socket, answering or busy (a stale socket file from a crash does
    not count; see :func:`daemon_state`).

    False when there is no socket. When there is one but the runtime dir is not private to us or the
    process serving it is another user's, this raises UnsafeRuntimeError instead of answering False:
    False would quietly fall back to opening the stores here, and the user would never learn that
    someone is posing as their daemon (its query texts would go to whoever asks next).
    """
    return daemon_state(path) != "absent"


def daemon_state(path: Path) -> str:
    """"answering", "busy" or "absent" (as :func:`daemon_running`, which counts busy as running).

    A daemon is busy when it accepts the connection (only a live process can: a dead one's socket
    refuses it) but does not answer a ping within :data:`PING_TIMEOUT` (stopped with Ctrl-Z, a machine
    under load, or native code holding the interpreter, as Qdrant Edge's optimiser did before the
    store sealed its shards in a child process). Taken for gone, it had every command start a second
    daemon, which failed on the library's lock."""
    path = Path(path)
    if not path.exists():
        return "absent"
    try:
        return "answering" if call(path, "ping", timeout=PING_TIMEOUT) == "pong" else "absent"
    except (TimeoutError, BlockingIOError):  # no answer in time / its listen backlog full
        return "busy"
    except DaemonError as exc:  # its connection slots all taken: there, and busy
        return "busy" if str(exc).startswith(BUSY_REPLY) else "absent"
    except (OSError, ValueError):
        return "absent"


def busy_daemon(path: Path) -> tuple[int | None, bool]:
    """A busy daemon's pid (asked of the kernel, not of the daemon, so a busy or stopped one has one;
    None when nobody serves the socket or the platform cannot tell) and whether its process is
    stopped (Ctrl-Z, SIGSTOP), for a message that says what to do."""
    try:
        with _connect(Path(path), 1.0) as sock:
            check_peer(sock, Path(path))
            pid = peer_pid(sock)
    except OSError:
        return None, False
    return pid, pid is not None and process_stopped(pid)


def process_stopped(pid: int) -> bool:
    """Whether the process is stopped (Ctrl-Z, SIGSTOP): it then answers nothing until resumed."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] in (["T"], ["t"])
