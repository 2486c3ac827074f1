"""Which checkpoint a `model` setting names: its identity and a key for its files, found without loading it
(no torch, no network), so cached encoders can be looked up by a process that never loads the model."""

from __future__ import annotations

import hashlib
from pathlib import Path

_IDENTITY_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.json")


def model_identity(model: str) -> str:
    """The id recorded in the catalog and collection name: hub id as given, local folders absolute."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return model


def checkpoint_key(model: str) -> str | None:
    """Identity of a checkpoint's files, found without loading it; None when it is not on disk yet."""
    path = Path(model).expanduser()
    if path.is_dir():
        h = hashlib.sha256(str(path.resolve()).encode())
        for name in _IDENTITY_FILES:
            try:
                st = (path / name).stat()
            except OSError:
                continue
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:20]
    snapshot = _hub_snapshot(model)
    if snapshot is None:
        return None
    return hashlib.sha256(f"{model}\n{snapshot}".encode()).hexdigest()[:20]


def _hub_snapshot(model: str) -> str | None:
    """The commit of the cached Hugging Face snapshot of ``model`` (read from the cache, no network)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    ref = Path(HF_HUB_CACHE) / f"models--{model.replace('/', '--')}" / "refs" / "main"
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if (ref.parent.parent / "snapshots" / commit / "config.json").exists() else None
