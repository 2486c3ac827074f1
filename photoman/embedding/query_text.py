"""Query texts → unit vectors without torch: the `tokenizers` library plus a cached ONNX Runtime session.

A search query is one short sentence. Loading torch and transformers to encode it costs seconds;
this needs only what a query touches: the checkpoint's own tokenizer (its ``tokenizer.json``), the
token and position embedding tables (memory-mapped, so only the query's rows are read) and the
text tower exported to ONNX with int8 weights. The daemon uses it for every query on CPU, and a
command run without the daemon uses it so a cold text query never imports torch.

A *pack* holds those files for one checkpoint. It is built by :mod:`photoman.embedding.onnx_text`
(which needs torch) the first time the model loads, under a name derived from the checkpoint's
files (folder, sizes and times, or the Hugging Face snapshot), so it can be found again without
loading the model.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from photoman.embedding.checkpoint import checkpoint_key
from photoman.embedding.ort_session import cpu_options, optimized_session
from photoman.embedding.threads import current as threads_now

FORMAT = 7  # bump when the pack's contents change: old packs are then ignored


def pack_dir(cache_dir: Path, model: str, int8: bool = True) -> Path | None:
    """Where this checkpoint's pack lives (whether or not it is built yet); None if not identifiable."""
    key = checkpoint_key(model)
    if key is None:
        return None
    return cache_dir / "text-encoder" / f"v{FORMAT}-{key}-{'int8' if int8 else 'fp32'}"


def pack_ready(pack: Path) -> bool:
    return (pack / "meta.json").is_file()


def pack_dim(cache_dir: Path, model: str, int8: bool = True) -> int | None:
    """The vector size a built pack records, read without opening it (an ONNX Runtime session costs
    tenths of a second that opening a library for `index` need not wait for); None without one."""
    pack = pack_dir(cache_dir, model, int8)
    if pack is None:
        return None
    try:
        meta = json.loads((pack / "meta.json").read_text())
        return int(meta["dim"]) if meta.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


class QueryTextEncoder:
    """Encodes query texts one at a time (a vector never depends on what it was batched with)."""

    def __init__(self, pack: Path) -> None:
        from tokenizers import Tokenizer

        meta = json.loads((pack / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"text encoder pack {pack} has format {meta.get('format')}, not {FORMAT}")
        self.pack = pack
        self.model_id: str = meta["model_id"]
        self.dim: int = int(meta["dim"])
        self.int8: bool = bool(meta["int8"])
        self.max_length: int = int(meta["max_length"])
        # CLIP packs name the end token (pooled there); SigLIP packs the pad token instead (padded to
        # max_length, the last position pooled)
        self.eos_token_id: int | None = meta.get("eos_token_id")
        self.pad_token_id: int | None = meta.get("pad_token_id")
        self.model_file = pack / "model.onnx"
        self.tokenizer = Tokenizer.from_file(str(pack / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.token_embedding = np.load(pack / "token_embedding.npy", mmap_mode="r")
        self.position_embedding = np.load(pack / "position_embedding.npy")
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._one = functools.lru_cache(maxsize=512)(self._encode_one)

    def _session(self, threads: int) -> Any:
        sess = self._sessions.get(threads)
        if sess is None:
            import onnxruntime as ort

            # idle session threads block instead of spinning: the store's scan follows every encoding
            sess = optimized_session(ort, self.model_file, cpu_options(ort, threads, spinning=False))
            with self._lock:
                self._sessions.setdefault(threads, sess)
        return sess

    def warm(self, threads: Sequence[int] | None = None) -> None:
        """Open the sessions for these thread counts now (default: the current one), not in a query."""
        for n in threads or [threads_now()]:
            self._session(max(1, n))

    def token_ids(self, text: str) -> list[int]:
        """The checkpoint's own tokenisation (normalisation, BPE, start/end tokens, truncation; SigLIP:
        padded to max_length with the pad token)."""
        ids = self.tokenizer.encode(text).ids
        if self.pad_token_id is not None:
            ids = ids + [self.pad_token_id] * (self.max_length - len(ids))
        return ids

    def eos_position(self, ids: Sequence[int]) -> int:
        """The position pooled: CLIP's end token (transformers' rule, legacy configs included), SigLIP's
        last position."""
        if self.eos_token_id is None:
            return len(ids) - 1
        if self.eos_token_id == 2:  # legacy configs: the end token has the highest id
            return int(np.argmax(ids))
        try:
            return list(ids).index(self.eos_token_id)
        except ValueError:
            return len(ids) - 1

    def features(self, ids: Sequence[int]) -> np.ndarray:
        """Projected (unnormalised) features, shape (1, dim), for one token sequence."""
        x = self.token_embedding[np.asarray(ids)] + self.position_embedding[: len(ids)]
        eos = np.array(self.eos_position(ids), dtype=np.int64)
        sess = self._session(threads_now())
        return sess.run(None, {"x": x[None].astype(np.float32), "eos": eos})[0]

    def _encode_one(self, text: str) -> np.ndarray:
        feats = self.features(self.token_ids(text))[0].astype(np.float32)
        vec = feats / max(float(np.linalg.norm(feats)), 1e-12)
        vec.flags.writeable = False  # shared by every caller of the cache
        return vec

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors, one row per text (repeated texts come from a small cache)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._one(t) for t in texts])

    def clear_text_cache(self) -> None:
        """Forget cached vectors (benchmarks that must time a real encoding)."""
        self._one.cache_clear()


def open_pack(cache_dir: Path, model: str, int8: bool = True) -> QueryTextEncoder | None:
    """The ready pack for this checkpoint, or None (not built yet, broken, or ONNX Runtime missing)."""
    pack = pack_dir(cache_dir, model, int8)
    if pack is None or not pack_ready(pack):
        return None
    try:
        enc = QueryTextEncoder(pack)
        enc.warm()
    except Exception:  # noqa: BLE001 - a broken pack or a missing runtime: the torch path rebuilds it
        return None
    return enc
