"""Content hashes: a photo's identity, so moves and renames never re-embed."""

from __future__ import annotations

import os

from blake3 import blake3


def content_hash(data: bytes) -> str:
    """BLAKE3 hex digest of the file bytes."""
    return blake3(data).hexdigest()


def hash_fd(fd: int, chunk: int = 1 << 20) -> str:
    """BLAKE3 hex digest of an open file's bytes, read in chunks (memory stays flat for any size);
    the same digest as :func:`content_hash` of the whole content. The file offset is untouched."""
    h, offset = blake3(), 0
    while True:
        block = os.pread(fd, chunk, offset)
        if not block:
            return h.hexdigest()
        h.update(block)
        offset += len(block)
