"""`photoman doctor`: one screen of what works and what to fix, each finding with the fix to run."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from photoman.config import Settings

MIN_FREE_MB = 500


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _model(settings: Settings) -> Finding:
    from photoman.embedding.checkpoint import checkpoint_key
    from photoman.embedding.known_models import known

    name = settings.model
    if checkpoint_key(name) is not None:
        where = "local folder" if Path(name).expanduser().is_dir() else "in the Hugging Face cache"
        return Finding("model", True, f"{name} ({where})")
    entry = known(name)
    size = f", about {entry.download_mb} MB" if entry else ""
    return Finding(
        "model",
        False,
        f"{name} is not downloaded yet{size}",
        "run `photoman index FOLDER` once with network (or set PHOTOMAN_MODEL to a saved folder)",
    )


def _text_encoder(settings: Settings) -> Finding:
    from photoman.embedding.query_text import pack_dir, pack_ready

    pack = pack_dir(settings.cache_dir, settings.model)
    if pack is not None and pack_ready(pack):
        return Finding("query encoder", True, f"cached torch-free text encoder in {pack}")
    return Finding(
        "query encoder",
        False,
        "the fast text encoder is not built yet (the first query builds it, a few seconds)",
        "run any `photoman find`",
    )


def _device(settings: Settings) -> Finding:
    try:
        import torch
    except ImportError:  # pragma: no cover - a dependency
        return Finding("device", False, "torch is not installed", "pip install torch")
    if torch.cuda.is_available():
        return Finding(
            "device", True, f"CUDA GPU: {torch.cuda.get_device_name(0)} (device={settings.device})"
        )
    return Finding(
        "device",
        True,
        f"CPU, {os.cpu_count()} cores, torch {torch.__version__} "
        f"(device={settings.device}, precision={settings.precision})",
    )


def _folders_under(roots: list[str], limit: int = 2_000_000) -> int:
    n = 0
    for root in roots:
        for _dirpath, dirnames, _ in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            n += 1
            if n >= limit:
                return n
    return n


def _inotify(roots: list[str], polled: list[str]) -> Finding:
    try:
        watches = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    except (OSError, ValueError):
        return Finding("inotify", True, "not Linux (or no inotify): the watcher uses the platform's own API")
    folders = _folders_under([r for r in roots if r not in polled and os.path.isdir(r)])
    if folders * 1.1 < watches:
        return Finding("inotify", True, f"{folders} folders to watch, limit {watches}")
    want = max(524288, folders * 2)
    return Finding(
        "inotify",
        False,
        f"{folders} folders to watch but fs.inotify.max_user_watches is {watches}",
        f"sudo sysctl fs.inotify.max_user_watches={want}  (and in /etc/sysctl.conf to keep it)",
    )


def _disk(settings: Settings) -> Finding:
    here = settings.data_dir if settings.data_dir.exists() else settings.data_dir.parent
    while not here.exists() and here != here.parent:
        here = here.parent
    free = shutil.disk_usage(here).free / 1e6
    if free >= MIN_FREE_MB:
        return Finding("disk", True, f"{free:,.0f} MB free for {settings.data_dir}")
    return Finding(
        "disk",
        False,
        f"only {free:,.0f} MB free for {settings.data_dir}",
        "free some space (indexing stops writing when the disk is full)",
    )


def _runtime_dir(settings: Settings) -> Finding:
    d = settings.runtime_dir
    try:
        st = os.lstat(d)
    except FileNotFoundError:
        return Finding("socket dir", True, f"{d} (created 0700 when the daemon starts)")
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return Finding(
            "socket dir",
            False,
            f"{d} is not private (owner uid {st.st_uid}, mode {oct(st.st_mode & 0o777)})",
            f"remove it (`rm -r {d}`) or set PHOTOMAN_RUNTIME_DIR to a folder only you can use",
        )
    sock = settings.socket_path
    if sock.exists() and os.stat(sock).st_mode & 0o077:
        return Finding(
            "socket dir",
            False,
            f"{sock} is readable by others",
            "photoman stop; the daemon recreates it 0600",
        )
    return Finding("socket dir", True, f"{d} private (0700)")


def diagnose(settings: Settings) -> list[Finding]:
    """Every check, in the order a user would fix things."""
    from photoman.service.protocol import PING_TIMEOUT, busy_daemon, call, daemon_state

    findings = [
        _model(settings),
        _device(settings),
        _text_encoder(settings),
        _disk(settings),
        _runtime_dir(settings),
    ]
    try:
        state = daemon_state(settings.socket_path)
    except Exception as exc:  # noqa: BLE001 - an unsafe socket dir is itself the finding
        findings.append(Finding("daemon", False, str(exc), "see the socket dir finding"))
        state = "absent"
    if state == "busy":  # there, but not answering: the rest is read from the library itself
        pid, stopped = busy_daemon(settings.socket_path)
        who = "the daemon" + ("" if pid is None else f" (pid {pid})")
        findings.append(Finding(
            "daemon", False, f"{who} accepts connections but has not answered for {PING_TIMEOUT:g} s"
            + (" (the process is stopped)" if stopped else ""),
            f"`kill -CONT {pid}` resumes it" if stopped else
            f"busy (a model switch's last step, a machine under load) or stuck: see {settings.log_file}",
        ))  # fmt: skip
    roots: list[dict[str, Any]] = []
    if state == "answering":
        info = call(settings.socket_path, "status")
        d = info["daemon"]
        said = f"pid {d['pid']}, {d['state']}, queue {d['queue']}, log {d['log']}"
        if d["state"] == "error":  # its indexer failed: it retries by itself, but a user should know
            fix = f"it tries again by itself (backing off); `photoman index` retries now; see {d['log']}"
            why = d.get("last_error") or "indexing failed"
            findings.append(Finding("daemon", False, f"{said}: {why}", fix))
        else:
            findings.append(Finding("daemon", True, said))
        if d.get("store_error"):  # the store's background build: photos stay searchable meanwhile
            findings.append(Finding(
                "vector store", False, f"sealing new photos' vectors failed: {d['store_error']}",
                f"it tries again every minute (they are searched meanwhile); see {d['log']}",
            ))  # fmt: skip
    else:
        from photoman.library import Library
        from photoman.status import library_status

        if state == "absent":
            findings.append(Finding("daemon", True, "not running (commands that need it start it)"))
        try:
            with Library(settings, "photoman doctor", write=False, allow_busy=True) as lib:
                info = library_status(lib)
        except Exception as exc:  # noqa: BLE001 - an unreadable catalog is a finding, not a crash
            findings.append(
                Finding("catalog", False, str(exc).splitlines()[0], "see the message; `--debug` for more")
            )
            return findings
    roots = info["roots"]
    vec, photos = info["vectors"], info["photos"]
    findings.append(
        Finding("catalog", True, f"{info['catalog']['url']}: {photos['indexed']} photos, schema current")
    )
    if "error" in vec:
        findings.append(
            Finding("vectors", "busy" in vec["error"] or "not downloaded" in vec["error"], vec["error"])
        )
    elif vec["points"] == photos["unique"]:
        findings.append(
            Finding("vectors", True, f"{vec['points']} points = {photos['unique']} unique photos")
        )
    else:
        from photoman.indexing.reconcile import ORPHANS_KEPT_PAST

        unknown = vec["points"] - photos["unique"]
        foreign = unknown > 0 and (photos["unique"] == 0 or unknown > ORPHANS_KEPT_PAST * vec["points"])
        findings.append(
            Finding(
                "vectors",
                False,
                f"{vec['points']} points for {photos['unique']} unique photos",
                "most of the store's photos are unknown to this catalog: is catalog_url the library's "
                "catalog? (indexing leaves them alone)"
                if foreign
                else "run `photoman index` (it reconciles the two)",
            )
        )
    gone = (info.get("pending_removal") or {}).get("photos")  # an older daemon's status lacks it
    if gone:  # not a fault: a pause before forgetting many photos at once
        findings.append(Finding(
            "removals", True, f"{gone} photos went missing in one scan with much of their root (a deletion, "
            "or a drive half there): hidden from results, forgotten by the next scan that still misses "
            "them; if they should be there, check the drive before then",
        ))  # fmt: skip
    if not roots:
        findings.append(Finding("roots", False, "no roots yet", "photoman index ~/Pictures"))
    for r in roots:
        findings.append(
            Finding(
                "root",
                r["online"],
                f"{r['path']}: {r['photos']} photos, {'online' if r['online'] else 'offline'}",
                "" if r["online"] else "mount the drive, or `photoman roots relocate OLD NEW`",
            )
        )
    findings.append(_inotify([r["path"] for r in roots], settings.poll_roots))
    return findings
