"""Runs an exported image tower in ONNX Runtime: torch-free, so a process whose encoders are all cached
never imports torch (:mod:`photoman.embedding.cached`). Exporting is :mod:`photoman.embedding.onnx_image`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from photoman.embedding.ort_session import cpu_options, optimized_session
from photoman.embedding.threads import current as threads_now


class OrtImageEncoder:
    """Runs the exported image tower; one session per thread count (the daemon's indexer/query split,
    :mod:`photoman.embedding.threads`)."""

    def __init__(self, model_file: Path, runtime: str, spinning: bool = True) -> None:
        self.model_file = model_file
        self.runtime = runtime  # "onnx-fp32" | "onnx-int8" | "onnx-bf16-fastmath"
        self.int8 = runtime == "onnx-int8"
        self.spinning = spinning
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _session(self, threads: int) -> Any:
        sess = self._sessions.get(threads)
        if sess is None:
            import onnxruntime as ort

            # threads spin between the ~150 ops of one batch (10-20% faster at 2 threads than
            # blocking), and stop the moment a run ends: otherwise they would spin on for ~30-50 ms,
            # taking the cores from a query or the decode workers
            opts = cpu_options(ort, threads, self.spinning)
            if self.runtime == "onnx-bf16-fastmath":  # ARM64 CPUs with bf16 matrix instructions
                opts.add_session_config_entry("mlas.enable_gemm_fastmath_arm64_bfloat16", "1")
            with self._lock:
                sess = self._sessions.get(threads)
                if sess is None:
                    sess = optimized_session(ort, self.model_file, opts, "all", key=f"-{self.runtime}")
                    self._sessions[threads] = sess
        return sess

    def warm(self, threads: int | None = None) -> None:
        """Open the session for this thread count now (default: the calling thread's), not mid-batch."""
        self._session(max(1, threads or threads_now()))

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Projected (unnormalised) float32 features for a uint8 batch (N, crop, crop, 3)."""
        sess = self._session(threads_now())
        return sess.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})[0]
