"""The daemon's socket protocol under abuse: pipelined and broken frames, bursts of connections, idle
and slow clients, and another local user trying to impersonate the daemon. Real Unix sockets, a small
dispatch function (no model)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pwd
import random
import shutil
import socket
import stat
import subprocess
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from photoman.errors import BadInputError, PhotomanError
from photoman.service.protocol import DaemonError, call, daemon_running, encode
from photoman.service.server import SocketServer

Dispatch = Callable[[str, dict[str, Any]], Any]


def dispatch(op: str, args: dict[str, Any]) -> Any:
    """Echo-style ops, and one op per kind of failure a real handler can raise."""
    if op == "ping":
        return args.get("i", "pong")
    if op == "sleep":
        time.sleep(float(args["s"]))
        return "slept"
    failures: dict[str, BaseException] = {
        "type": TypeError("text must be a string, not int"),
        "value": ValueError("limit must be positive"),
        "key": KeyError("path"),
        "recursion": RecursionError("maximum recursion depth exceeded"),
        "user": BadInputError("no such folder: /nope"),
        "boom": RuntimeError("kaput"),
        "attr": AttributeError("'int' object has no attribute 'strip'"),
    }
    if op in failures:
        raise failures[op]
    raise BadInputError(f"unknown request {op!r}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., SocketServer]]:
    """Start SocketServers on sockets under tmp_path/run; all closed at the end."""
    servers: list[SocketServer] = []

    def start(
        handler: Dispatch = dispatch, name: str = "s.sock", run: bool = True, **kw: Any
    ) -> SocketServer:
        srv = SocketServer(tmp_path / "run" / name, handler, **kw)
        servers.append(srv)
        if run:
            srv.serve_in_thread()
        return srv

    yield start
    for srv in servers:
        srv.close()


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


class Lines:
    """The test's own line reader (independent of the code under test)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def next(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def ask(sock: socket.socket, raw: bytes) -> dict[str, Any] | None:
    sock.sendall(raw + b"\n")
    return Lines(sock).next()


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the server closes this connection within `within` seconds (replies are skipped)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


# ---- framing (issue 20) ----


def test_pipelined_requests_in_one_write_each_get_a_reply_in_order(
    serve: Callable[..., SocketServer],
) -> None:
    srv = serve()
    with connect(srv.path) as s:
        s.sendall(b"".join(encode({"op": "ping", "args": {"i": i}}) for i in range(1000)))
        lines = Lines(s)
        got = [lines.next() for _ in range(1000)]
    assert [r and r["result"] for r in got] == list(range(1000))


def test_requests_split_anywhere_across_writes(serve: Callable[..., SocketServer]) -> None:
    srv = serve()
    data = b"".join(encode({"op": "ping", "args": {"i": i}}) for i in range(50))
    with connect(srv.path) as s:
        rng = random.Random(7)
        pos = 0
        while pos < len(data):
            step = rng.randint(1, 40)
            s.sendall(data[pos : pos + step])
            pos += step
            time.sleep(0.001)
        lines = Lines(s)
        assert [lines.next()["result"] for _ in range(50)] == list(range(50))  # type: ignore[index]


def test_oversize_frame_gets_one_error_then_the_connection_closes(serve: Callable[..., SocketServer]) -> None:
    srv = serve(max_line=1024)
    with connect(srv.path) as s:
        with contextlib.suppress(OSError):  # the server stops reading: the send may hit a closed socket
            s.sendall(b"x" * 300_000)
        reply = Lines(s).next()
        assert reply is not None and reply["ok"] is False and reply["code"] == 2
        assert reply["error"].startswith("bad request:") and "1024" in reply["error"]
        assert closed_by_peer(s, 2.0)
    with connect(srv.path) as s:  # the server itself is fine
        assert ask(s, b'{"op": "ping"}') == {"ok": True, "result": "pong"}


def test_frame_just_under_the_limit_is_read(serve: Callable[..., SocketServer]) -> None:
    srv = serve(max_line=1024)
    line = encode({"op": "ping", "args": {"i": "y" * 900}})
    assert len(line) <= 1024
    with connect(srv.path) as s:
        assert ask(s, line.rstrip(b"\n")) == {"ok": True, "result": "y" * 900}


# ---- request shapes (issue 20) ----

BAD_REQUESTS = [
    (b"garbage", "not JSON"),
    (b'{"op": "ping"', "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'"ping"', "JSON object"),
    (b'{"args": {}}', "'op'"),
    (b'{"op": 5}', "'op'"),
    (b'{"op": ""}', "'op'"),
    (b'{"op": "ping", "args": [1]}', "'args'"),
    (b'{"op": "ping", "args": "x"}', "'args'"),
    (b'\xff\xfe{"op": "ping"}', "UTF-8"),
    (b'{"op": "ping", "args": {"t": "\xe9t\xe9"}}', "UTF-8"),  # Latin-1, not UTF-8
    (b"[" * 200_000, "nested too deeply"),
    (b'{"op": "ping", "args": ' + b'{"a": ' * 200 + b"1" + b"}" * 201, "nested too deeply"),
    (b"", "empty request"),
    (b"   ", "empty request"),
]


@pytest.mark.parametrize(
    ("raw", "why"), BAD_REQUESTS, ids=[w + str(i) for i, (_, w) in enumerate(BAD_REQUESTS)]
)
def test_bad_request_shapes_answer_bad_request_and_keep_the_connection(
    serve: Callable[..., SocketServer], raw: bytes, why: str
) -> None:
    srv = serve()
    with connect(srv.path) as s:
        reply = ask(s, raw)
        assert reply is not None and reply["ok"] is False and reply["code"] == 2, reply
        assert reply["error"].startswith("bad request: ") and why in reply["error"], reply
        assert "\n" not in reply["error"] and len(reply["error"]) < 600
        assert ask(s, b'{"op": "ping"}') == {"ok": True, "result": "pong"}


def test_args_may_be_left_out_or_null(serve: Callable[..., SocketServer]) -> None:
    srv = serve()
    with connect(srv.path) as s:
        assert ask(s, b'{"op": "ping"}') == {"ok": True, "result": "pong"}
        assert ask(s, b'{"op": "ping", "args": null}') == {"ok": True, "result": "pong"}
        assert ask(s, b'{"op": "ping", "args": {"i": 3}}\r') == {"ok": True, "result": 3}  # CRLF


@pytest.mark.parametrize(
    ("op", "code", "message"),
    [
        ("type", 2, "bad request: text must be a string, not int"),
        ("value", 2, "bad request: limit must be positive"),
        ("key", 2, "bad request: missing 'path'"),
        ("recursion", 2, "bad request: nested too deeply"),
        ("user", 2, "no such folder: /nope"),
        ("boom", 1, "internal error: RuntimeError: kaput"),
        ("attr", 1, "internal error: AttributeError: 'int' object has no attribute 'strip'"),
    ],
)
def test_errors_raised_by_dispatch_become_one_line_replies(
    serve: Callable[..., SocketServer], caplog: pytest.LogCaptureFixture, op: str, code: int, message: str
) -> None:
    srv = serve()
    caplog.set_level(logging.ERROR, logger="photoman")
    with pytest.raises(DaemonError) as err:
        call(srv.path, op, {"x": 1}, timeout=10)
    assert (str(err.value), err.value.exit_code) == (message, code)
    logged = [r for r in caplog.records if r.name == "photoman.server"]
    if code == 1:  # a bug: logged with its traceback
        assert logged and logged[-1].exc_info is not None and op in logged[-1].getMessage()
    else:
        assert not [r for r in logged if r.exc_info]


def test_unserialisable_result_is_an_internal_error_not_a_dropped_connection(
    serve: Callable[..., SocketServer],
) -> None:
    srv = serve(lambda op, args: {"x": object()} if op == "odd" else "pong")
    with connect(srv.path) as s:
        reply = ask(s, b'{"op": "odd"}')
        assert reply and reply["ok"] is False and reply["error"].startswith("internal error: ")
        assert ask(s, b'{"op": "ping"}') == {"ok": True, "result": "pong"}


def test_abusive_clients_do_not_disturb_a_good_client(serve: Callable[..., SocketServer]) -> None:
    srv = serve(max_line=64 * 1024, idle_timeout=1.5)
    path = srv.path
    stop = threading.Event()
    failures: list[str] = []

    def abuse(kind: str) -> None:
        rng = random.Random(kind)
        while not stop.is_set():
            try:
                with connect(path, timeout=2.0) as s:
                    if kind == "garbage":
                        s.sendall(rng.randbytes(20_000))
                    elif kind == "truncated":
                        s.sendall(b'{"op": "ping", "args": {"i": ')
                    elif kind == "latin1":
                        s.sendall(b'{"op": "\xe9\xe9"}\n' * 50)
                    elif kind == "oversize":
                        s.sendall(b"[" * 100_000)
                    elif kind == "deep":
                        s.sendall(b"[" * 50_000 + b"\n")
                    elif kind == "no-reader":  # asks a lot, never reads a reply
                        s.sendall(encode({"op": "ping", "args": {"i": "z" * 5000}}) * 200)
                    elif kind == "slowloris":
                        for b in b'{"op": "ping"':
                            s.sendall(bytes([b]))
                            if stop.wait(0.1):
                                break
                    elif kind == "idle":
                        stop.wait(3.0)
            except OSError:
                pass  # the server is allowed to cut abusers off
            stop.wait(0.01)  # abuse in what is sent, not a connection flood

    abusers = [
        threading.Thread(target=abuse, args=(k,), daemon=True)
        for k in ("garbage", "truncated", "latin1", "oversize", "deep", "no-reader", "slowloris", "idle")
    ]
    for t in abusers:
        t.start()
    latencies = []
    try:
        deadline = time.monotonic() + 4.0
        i = 0
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                if i % 2:
                    got = call(path, "ping", {"i": i}, timeout=5)
                else:  # several requests on one connection
                    with connect(path) as s:
                        lines = Lines(s)
                        s.sendall(encode({"op": "ping", "args": {"i": i}}) * 3)
                        got = [lines.next() for _ in range(3)][-1]["result"]  # type: ignore[index]
            except (OSError, DaemonError) as exc:
                failures.append(repr(exc))
                got = None
            latencies.append(time.perf_counter() - t0)
            assert got == i, failures
            i += 1
    finally:
        stop.set()
        for t in abusers:
            t.join(timeout=10)
    assert not failures
    assert len(latencies) > 20 and max(latencies) < 1.0, (len(latencies), max(latencies))
    # every abusive connection ends (read timeout, error, close): no thread is left pinned
    deadline = time.monotonic() + 5.0
    while srv.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.connections == 0


# ---- load and bounded work per connection (issue 17) ----


def test_a_burst_of_300_connections_waits_in_the_backlog_instead_of_being_refused(
    serve: Callable[..., SocketServer],
) -> None:
    srv = serve(run=False)  # nobody accepts yet: every connection must queue in the listen backlog
    socks, refused = [], 0
    try:
        for _ in range(300):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(srv.path))
            except BlockingIOError as exc:  # EAGAIN: backlog full
                assert exc.errno == errno.EAGAIN
                refused += 1
                s.close()
                continue
            socks.append(s)
        assert refused == 0
        srv.serve_in_thread()
        for i, s in enumerate(socks):
            s.settimeout(10)
            s.sendall(encode({"op": "ping", "args": {"i": i}}))
        assert [Lines(s).next()["result"] for s in socks] == list(range(300))  # type: ignore[index]
    finally:
        for s in socks:
            s.close()


def test_call_waits_for_room_in_a_full_backlog_instead_of_failing(serve: Callable[..., SocketServer]) -> None:
    srv = serve(run=False, backlog=2)
    filler = []
    try:
        while True:  # fill the backlog until the kernel says EAGAIN
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(str(srv.path))
            except BlockingIOError:
                s.close()
                break
            filler.append(s)
        threading.Timer(0.5, srv.serve_in_thread).start()
        t0 = time.monotonic()
        assert call(srv.path, "ping", timeout=10) == "pong"
        assert 0.4 < time.monotonic() - t0 < 5
    finally:
        for s in filler:
            s.close()


def test_an_idle_client_is_disconnected_after_the_idle_timeout(serve: Callable[..., SocketServer]) -> None:
    srv = serve(idle_timeout=0.5)
    with connect(srv.path) as s:
        assert ask(s, b'{"op": "ping"}') == {"ok": True, "result": "pong"}
        t0 = time.monotonic()
        assert closed_by_peer(s, 3.0)
        assert 0.4 < time.monotonic() - t0 < 2.0


def test_a_slow_trickle_cannot_hold_a_connection_past_the_timeout(serve: Callable[..., SocketServer]) -> None:
    srv = serve(idle_timeout=0.5)
    with connect(srv.path) as s:
        t0 = time.monotonic()
        with pytest.raises(OSError):
            for _ in range(40):  # one byte every 50 ms: never idle, never a whole request
                s.sendall(b" ")
                time.sleep(0.05)
        assert time.monotonic() - t0 < 1.5


def test_a_long_request_is_not_cut_by_the_idle_timeout(serve: Callable[..., SocketServer]) -> None:
    srv = serve(idle_timeout=0.3)
    assert call(srv.path, "sleep", {"s": 0.8}, timeout=5) == "slept"


def test_connections_over_the_cap_are_told_busy_and_closed(serve: Callable[..., SocketServer]) -> None:
    srv = serve(max_connections=3)
    held = [connect(srv.path) for _ in range(3)]
    try:
        for s in held:
            assert ask(s, b'{"op": "ping"}') == {"ok": True, "result": "pong"}
        with connect(srv.path) as extra:
            reply = Lines(extra).next()
            assert reply and reply["ok"] is False and "busy" in reply["error"] and "3" in reply["error"]
            assert closed_by_peer(extra, 2.0)
        held.pop().close()
        deadline = time.monotonic() + 3
        while srv.connections >= 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert call(srv.path, "ping", timeout=5) == "pong"
    finally:
        for s in held:
            s.close()


def test_requests_are_answered_by_a_bounded_number_of_threads(serve: Callable[..., SocketServer]) -> None:
    srv = serve(workers=4)
    before = threading.active_count()
    socks = [connect(srv.path, timeout=20) for _ in range(40)]
    try:
        for s in socks:
            s.sendall(encode({"op": "sleep", "args": {"s": 0.1}}))
        time.sleep(0.3)
        assert threading.active_count() - before <= 4
        assert all(Lines(s).next() == {"ok": True, "result": "slept"} for s in socks)
    finally:
        for s in socks:
            s.close()


def test_a_half_closed_client_still_gets_its_replies(serve: Callable[..., SocketServer]) -> None:
    srv = serve()
    with connect(srv.path) as s:
        s.sendall(b'{"op": "ping", "args": {"i": 1}}\n{"op": "ping", "args": {"i": 2}}\n{"op": "pi')
        s.shutdown(socket.SHUT_WR)
        lines = Lines(s)
        assert [lines.next() for _ in range(2)] == [{"ok": True, "result": 1}, {"ok": True, "result": 2}]
        last = lines.next()
        assert last and last["code"] == 2 and "incomplete request" in last["error"]
        assert lines.next() is None  # and then the server closes


def test_a_socket_deep_in_a_long_runtime_dir_still_serves(tmp_path: Path) -> None:
    """A Unix socket address holds ~107 bytes; a runtime dir deeper than that (a long home, a test's
    temp dir) still binds and connects, through a handle on the folder (Linux)."""
    from photoman.service.protocol import call

    path = tmp_path / ("d" * 60) / ("e" * 60) / "photoman-0123456789ab.sock"
    assert len(str(path)) > 120
    srv = SocketServer(path, dispatch)
    try:
        srv.serve_in_thread()
        assert path.is_socket()
        assert call(path, "ping", {"i": 7}) == 7
    finally:
        srv.close()


def test_listen_backlog_is_large(serve: Callable[..., SocketServer]) -> None:
    srv = serve(run=False)
    assert srv.request_queue_size >= 1024


# ---- the runtime dir and the daemon's identity (issue 17) ----


def test_missing_runtime_dir_is_created_private_whatever_the_umask(tmp_path: Path) -> None:
    from photoman.service.runtime import secure_runtime_dir

    old = os.umask(0)
    try:
        d = secure_runtime_dir(tmp_path / "a" / "run")
    finally:
        os.umask(old)
    assert d == tmp_path / "a" / "run" and stat.S_IMODE(d.stat().st_mode) == 0o700
    assert secure_runtime_dir(d) == d  # an existing private dir is fine


@pytest.mark.parametrize("mode", [0o777, 0o755, 0o750, 0o701, 0o1777], ids=oct)
def test_runtime_dir_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    from photoman.service.runtime import UnsafeRuntimeError, secure_runtime_dir

    d = tmp_path / "run"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(UnsafeRuntimeError) as err:
        secure_runtime_dir(d)
    msg = str(err.value)
    assert str(d) in msg and oct(mode)[2:] in msg and "chmod 700" in msg and "\n" not in msg
    assert isinstance(err.value, PhotomanError)
    assert stat.S_IMODE(d.stat().st_mode) == mode  # refused, not silently "fixed"
    with pytest.raises(UnsafeRuntimeError):
        SocketServer(d / "s.sock", dispatch)
    assert not (d / "s.sock").exists()


def test_client_refuses_a_socket_in_a_runtime_dir_others_can_write(
    serve: Callable[..., SocketServer],
) -> None:
    from photoman.service.runtime import UnsafeRuntimeError

    srv = serve()
    assert daemon_running(srv.path) and call(srv.path, "ping") == "pong"
    srv.path.parent.chmod(0o777)  # from now on anyone could have swapped the socket
    try:
        with pytest.raises(UnsafeRuntimeError, match="chmod 700"):
            call(srv.path, "ping")
        with pytest.raises(UnsafeRuntimeError):
            daemon_running(srv.path)
    finally:
        srv.path.parent.chmod(0o700)


def test_runtime_dir_that_is_a_symlink_or_a_file_is_refused(tmp_path: Path) -> None:
    from photoman.service.runtime import UnsafeRuntimeError, secure_runtime_dir

    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafeRuntimeError, match="symlink"):
        secure_runtime_dir(tmp_path / "link")
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafeRuntimeError, match="not a directory"):
        secure_runtime_dir(tmp_path / "file")


def test_no_daemon_and_no_runtime_dir_is_simply_not_running(tmp_path: Path) -> None:
    sock = tmp_path / "nothing" / "s.sock"
    assert daemon_running(sock) is False
    with pytest.raises(OSError):
        call(sock, "ping")
    assert not sock.parent.exists()  # the client never creates the runtime dir


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing a dir's owner needs root")


@needs_root
def test_runtime_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    from photoman.service.runtime import UnsafeRuntimeError, secure_runtime_dir

    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(UnsafeRuntimeError) as err:
        secure_runtime_dir(d)
    assert "uid 65534" in str(err.value) and str(d) in str(err.value)
    with pytest.raises(UnsafeRuntimeError):
        SocketServer(d / "s.sock", dispatch)


FAKE_DAEMON = textwrap.dedent(
    """
    import os, socket, sys, threading
    d = sys.argv[1]
    os.mkdir(d, 0o700)
    path = os.path.join(d, "photoman.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o777)
    srv.listen(16)
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    threading.Timer(60, lambda: os._exit(0)).start()
    print("ready", os.getuid(), flush=True)
    while True:
        conn, _ = srv.accept()
        conn.settimeout(2)
        try:
            got = conn.recv(65536)
        except OSError:
            got = b""
        print("got", len(got), flush=True)
        try:
            conn.sendall(b'{"ok": true, "result": "pong"}\\n')
        except OSError:
            pass
        conn.close()
    """
)


@pytest.fixture(scope="module")
def other_user() -> Iterator[pwd.struct_passwd]:
    """A throwaway local user (deleted afterwards, even on failure)."""
    if os.geteuid() != 0:
        pytest.skip("creating a second local user needs root")
    missing = [t for t in ("useradd", "userdel", "runuser") if not shutil.which(t)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not available: cannot create a second local user")
    name = f"pmtest{os.getpid() % 100000}{random.randrange(1000)}"
    made = subprocess.run(
        ["useradd", "--create-home", "--shell", "/bin/sh", name], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "-r", name], capture_output=True)


@pytest.fixture
def attacker(other_user: pwd.struct_passwd) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """The other user runs a fake daemon on a socket in a dir it owns; yields (that dir, the process)."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
    if not python:
        pytest.skip("no system python3 for the other user to run")
    base = Path(tempfile.mkdtemp(prefix="photoman-attack-"))
    base.chmod(0o1733)  # like /tmp: anyone may create an entry (sticky), nobody may list
    script = base / "fake_daemon.py"
    script.write_text(FAKE_DAEMON)
    script.chmod(0o644)
    evil = base / "evil"
    proc = subprocess.Popen(
        ["runuser", "-u", other_user.pw_name, "--", python, str(script), str(evil)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        if not first.startswith("ready"):
            err = proc.stderr.read() if proc.stderr else ""
            pytest.skip(f"runuser could not start a process as {other_user.pw_name}: {first} {err}".strip())
        assert int(first.split()[1]) == other_user.pw_uid
        yield evil, proc
    finally:
        if proc.stdin:
            proc.stdin.close()  # the fake daemon exits when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def test_client_refuses_a_daemon_run_by_another_user(
    attacker: tuple[Path, subprocess.Popen[str]], tmp_path: Path, other_user: pwd.struct_passwd
) -> None:
    from photoman.service.runtime import UnsafeRuntimeError

    evil, proc = attacker
    sock = evil / "photoman.sock"
    # 1. the other user got to the runtime dir first: the dir's owner gives it away
    with pytest.raises(UnsafeRuntimeError) as err:
        call(sock, "find", {"text": "my private query"})
    assert f"uid {other_user.pw_uid}" in str(err.value) and other_user.pw_name in str(err.value)
    with pytest.raises(UnsafeRuntimeError):
        daemon_running(sock)
    # 2. its socket ends up in a dir we own (say it was swapped in while the dir was open to all):
    #    the peer's credentials give it away, before the request is sent
    mine = tmp_path / "run"
    mine.mkdir(mode=0o700)
    os.rename(sock, mine / "photoman.sock")
    with pytest.raises(UnsafeRuntimeError) as err:
        call(mine / "photoman.sock", "find", {"text": "my private query"})
    msg = str(err.value)
    assert f"uid {other_user.pw_uid}" in msg and "impersonat" in msg and "\n" not in msg
    with pytest.raises(UnsafeRuntimeError):
        daemon_running(mine / "photoman.sock")
    assert proc.stdout is not None
    seen = [proc.stdout.readline().split() for _ in range(2)]
    assert seen == [["got", "0"], ["got", "0"]]  # it never saw a byte of either request


def test_daemon_refuses_to_serve_in_a_dir_another_user_owns(
    attacker: tuple[Path, subprocess.Popen[str]],
) -> None:
    from photoman.service.runtime import UnsafeRuntimeError

    evil, _ = attacker
    with pytest.raises(UnsafeRuntimeError, match="another user"):
        SocketServer(evil / "photoman.sock", dispatch)
    assert (evil / "photoman.sock").exists()  # the other user's socket was left alone, not replaced
