"""Trust in the daemon's socket: a private runtime dir (like ssh-agent's and tmux's) and a peer of our uid.

The socket lives in a runtime dir; with XDG_RUNTIME_DIR unset that is /tmp/photoman-<uid>, a name any
local user can create first. So both ends check the dir before use: it must be a real directory (not a
symlink), owned by us, with no group/other permission bits. The client also asks the kernel who runs
the process on the other end of the socket (SO_PEERCRED) and talks only to its own uid.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import sys
from pathlib import Path

from photoman.errors import PhotomanError


class UnsafeRuntimeError(PhotomanError):
    """The daemon's runtime dir or socket could be controlled by another user: refuse to use it."""


def _who(uid: int) -> str:
    import pwd

    with contextlib.suppress(KeyError):
        return f"{pwd.getpwuid(uid).pw_name}, uid {uid}"
    return f"uid {uid}"


def check_runtime_dir(path: Path) -> Path:
    """Refuse a runtime dir another user could control (not ours, a symlink, or open to group/other)."""
    path = Path(path)
    st = os.lstat(path)  # FileNotFoundError when missing: the caller decides what that means
    me = os.getuid()
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeRuntimeError(
            f"runtime dir {path} is a symlink; photoman needs a real private directory there: "
            "remove it, or set PHOTOMAN_RUNTIME_DIR to a directory only you can use"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeError(
            f"runtime dir {path} is not a directory; remove it, or set PHOTOMAN_RUNTIME_DIR elsewhere"
        )
    if st.st_uid != me:
        raise UnsafeRuntimeError(
            f"runtime dir {path} belongs to another user ({_who(st.st_uid)}), not to you (uid {me}): "
            "someone may be impersonating the photoman daemon; have it removed, or set "
            "PHOTOMAN_RUNTIME_DIR to a directory only you can use"
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise UnsafeRuntimeError(
            f"runtime dir {path} has permissions {mode:o}, open to other users who could replace the "
            f"daemon's socket; run `chmod 700 {path}` (or remove it) and try again"
        )
    return path


def secure_runtime_dir(path: Path) -> Path:
    """The runtime dir, created 0700 if missing; UnsafeRuntimeError if another user could control it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass  # whoever made it, it is checked below
    else:
        os.chmod(path, 0o700)  # ours, new and private (the umask may have taken bits away)
    return check_runtime_dir(path)


def _ucred(sock: socket.socket) -> tuple[int, int, int] | None:
    """Linux's struct ucred {pid, uid, gid} of the other end of a connected Unix socket, else None."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process on the other end of a connected Unix socket; None where unknowable."""
    cred = _ucred(sock)
    if cred is not None:
        return cred[1]
    if sys.platform == "darwin":  # LOCAL_PEERCRED: struct xucred {u_int version; uid_t uid; ...}
        with contextlib.suppress(OSError):
            raw = sock.getsockopt(0, getattr(socket, "LOCAL_PEERCRED", 1), 76)
            return struct.unpack_from("2I", raw)[1]
    return None


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process on the other end of a connected Unix socket (Linux); None elsewhere."""
    cred = _ucred(sock)
    return None if cred is None or cred[0] == 0 else cred[0]


def check_peer(sock: socket.socket, path: Path) -> None:
    """Refuse to talk to a socket served by another user (it could read our queries and lie back)."""
    uid = peer_uid(sock)
    me = os.getuid()
    if uid is not None and uid != me:
        raise UnsafeRuntimeError(
            f"the daemon socket {path} is served by another user ({_who(uid)}), not by you (uid {me}): "
            "someone may be impersonating the photoman daemon; nothing was sent to it"
        )
