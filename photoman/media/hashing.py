"""Content hashes: a photo's identity, so moves and renames never re-embed."""

from __future__ import annotations

from blake3 import blake3


def content_hash(data: bytes) -> str:
    """BLAKE3 hex digest of the file bytes."""
    return blake3(data).hexdigest()
