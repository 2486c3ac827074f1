"""The per-file work done in decode worker processes: read, hash, read EXIF, decode, resize and crop."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from photoman.captions.sources import read_embedded, read_sidecar
from photoman.embedding.preprocess import PreprocessSpec, resize_crop
from photoman.errors import DecodeError
from photoman.indexing.scanner import FileStat
from photoman.media.decode import decode_rgb, open_image_file, open_regular, plan_decode
from photoman.media.exif import PhotoMeta, read_meta
from photoman.media.formats import is_raw_path
from photoman.media.hashing import content_hash, hash_fd
from photoman.media.raw import raw_format, read_raw

_SPEC = PreprocessSpec()
_KNOWN: frozenset[str] = frozenset()
_CAPTIONS: tuple[str, ...] = ("sidecar", "embedded")
# a decode worker's memory beyond what it maps once started (the decode bounds need well under half)
WORKER_MEMORY = 3 << 30


@dataclass
class Prepared:
    """A file's result: always its stat, then either an error or hash + metadata (+ pixels to embed)."""

    file: FileStat
    content_hash: str | None = None
    meta: PhotoMeta | None = None
    pixels: np.ndarray | None = None  # uint8 (crop, crop, 3); None when the hash already has a vector
    error: str | None = None
    caption: str | None = None
    caption_source: str | None = None  # sidecar | embedded


def init_worker(
    spec: PreprocessSpec,
    known_hashes: frozenset[str],
    captions: tuple[str, ...],
    parent_pid: int | None = None,
) -> None:
    """Worker initializer: preprocessing numbers, hashes that need no embedding, caption sources in
    order; and, given the indexing process's pid, the worker dies with it (see :func:`die_with`)."""
    global _SPEC, _KNOWN, _CAPTIONS
    _SPEC, _KNOWN, _CAPTIONS = spec, known_hashes, captions
    import signal

    # Ctrl-C reaches the whole process group: the parent reports it once; a worker just stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Pillow's "Corrupt EXIF data" and similar: the reason goes to the catalog, not the terminal
    warnings.simplefilter("ignore")
    # the pool already runs one file per worker on every core: LibRaw's OpenMP demosaic must not
    # start a thread per core in each of them too (read when its first parallel region starts)
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if parent_pid is not None:
        die_with(parent_pid)
        limit_memory(WORKER_MEMORY)


def limit_memory(extra: int) -> None:
    """Cap this worker's data memory at what it maps now plus ``extra`` (RLIMIT_DATA, Linux): past
    the decode bounds, an allocation nobody foresaw fails with MemoryError, recorded against its
    file, instead of the kernel's OOM killer choosing a victim (maybe the indexing process itself)."""
    import resource
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/status", "rb") as fh:
            now = next(int(line.split()[1]) * 1024 for line in fh if line.startswith(b"VmData:"))
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        cap = now + extra if hard == resource.RLIM_INFINITY else min(now + extra, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    except (OSError, ValueError, StopIteration):
        pass


def die_with(pid: int) -> None:
    """End this process as soon as process ``pid`` (the indexing command or daemon) ends, even by
    `kill -9`. A decode worker is forked by multiprocessing's fork server, not by that process, so
    the kernel's parent-death signal (prctl PR_SET_PDEATHSIG, set too) only covers the fork server
    dying; the sure way is a thread that waits on a pidfd of ``pid`` (Linux 5.3+), else polls it."""
    import os
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = 1, SIGKILL = 9
        except (OSError, AttributeError):
            pass
    if not _alive(pid):
        os._exit(1)
    try:
        fd = os.pidfd_open(pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        fd = None

    def watch() -> None:
        if fd is not None:
            import select

            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not poller.poll(None):
                pass
        else:
            import time

            while _alive(pid):
                time.sleep(0.5)
        os._exit(1)  # nobody left to hand results to

    threading.Thread(target=watch, name="photoman-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare(
    file: FileStat,
    spec: PreprocessSpec | None = None,
    known: frozenset[str] | None = None,
    captions: tuple[str, ...] | None = None,
) -> Prepared:
    """Never raises for a bad file: the error text is returned so one bad photo never stops a run.

    Bounded whatever the file: only a regular file is opened (never a FIFO, socket or device), its
    size is checked before reading, it is hashed in chunks (a RAW file, which LibRaw reads whole, from
    those bytes), and the header is checked (pixels, shape) before any pixel is decoded
    (:func:`photoman.media.decode.plan_decode`; for RAW, :mod:`photoman.media.raw`)."""
    spec = spec or _SPEC
    known = _KNOWN if known is None else known
    captions = _CAPTIONS if captions is None else captions
    if file.problem is not None:
        return Prepared(file, error=file.problem)
    try:
        fh = open_regular(file.path, "file")
    except DecodeError as exc:
        return Prepared(file, error=str(exc).removeprefix("file: "))
    with fh, warnings.catch_warnings():  # Pillow's "Corrupt EXIF data" and the like: not for the terminal
        warnings.simplefilter("ignore")
        digest: str | None = None
        img: Image.Image | None = None  # what an embedded caption is read from (not a RAW file)
        try:
            pixels = None
            if is_raw_path(file.path):  # LibRaw reads the whole file: hash those same bytes
                data = fh.read()
                digest = content_hash(data)
                raw = read_raw(data, "file", spec.size, decode=digest not in known, fmt=raw_format(file.path))
                meta = raw.meta
                if raw.image is not None:
                    pixels = resize_crop(raw.image, spec)
            else:
                img = open_image_file(fh, "file")
                size = img.size
                plan_decode(img, spec.size, "file")  # bounds first: Pillow decodes a PNG to read its EXIF
                meta = read_meta(img, size)
                digest = hash_fd(fh.fileno())
                if digest not in known:
                    pixels = resize_crop(decode_rgb(img, min_side=spec.size, name="file"), spec)
        except DecodeError as exc:
            return Prepared(file, content_hash=digest, error=str(exc).removeprefix("file: "))
        except OSError as exc:
            return Prepared(file, content_hash=digest, error=f"cannot read: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's problem, not the run's
            return Prepared(
                file, content_hash=digest, error=f"cannot decode image ({exc.__class__.__name__}: {exc})"
            )
        prep = Prepared(file, digest, meta, pixels)
        for source in captions:
            try:
                text = (
                    read_sidecar(file.path)
                    if source == "sidecar"
                    else read_embedded(img)
                    if source == "embedded" and img is not None
                    else None
                )
            except Exception:  # noqa: BLE001 - a bad caption field never costs the photo
                text = None
            if text:
                prep.caption, prep.caption_source = text, source
                break
    return prep
