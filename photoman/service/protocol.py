"""Wire format: one JSON object per line each way, over a Unix socket (mode 0600) in the runtime dir.

Request:  {"op": "find", "args": {...}}\\n
Response: {"ok": true, "result": ...}\\n   or   {"ok": false, "error": "one line", "code": 2}\\n
Ops: ping, find, caption, photo, heatmap, tag, tags, dupes, status, index, stop.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from photoman.errors import PhotomanError

MAX_LINE = 64 * 1024 * 1024


class DaemonError(PhotomanError):
    """An error the daemon reported for a request (its message and exit code travel as they are)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code


def encode(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def read_line(sock: socket.socket) -> bytes:
    """One newline-terminated message (without the newline); b'' when the peer closed first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        nl = chunk.find(b"\n")
        if nl >= 0:
            chunks.append(chunk[:nl])
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_LINE:
            raise DaemonError("message too long")


def call(path: Path, op: str, args: dict[str, Any] | None = None, timeout: float = 300.0) -> Any:
    """One request, its result; DaemonError for an error reply, OSError when nobody listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(encode({"op": op, "args": args or {}}))
        line = read_line(sock)
    if not line:
        raise DaemonError("the daemon closed the connection without answering (is it shutting down?)")
    reply = json.loads(line)
    if not reply.get("ok"):
        raise DaemonError(reply.get("error", "unknown daemon error"), int(reply.get("code", 1)))
    return reply.get("result")


def daemon_running(path: Path) -> bool:
    """Whether a daemon answers on this socket (a stale socket file from a crash does not count)."""
    if not path.exists():
        return False
    try:
        return call(path, "ping", timeout=5.0) == "pong"
    except (OSError, DaemonError, ValueError):
        return False
