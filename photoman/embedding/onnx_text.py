"""The query hot path on CPU: CLIP's text tower as an int8 ONNX Runtime session.

One search query is ~10 tokens, so encoding it is ~50 small matrix products, each bound by
per-call overhead rather than arithmetic. torch's int8 kernels (fbgemm) take ~150 µs per product
and more once a vector-store scan has pushed the weights out of the CPU cache; ONNX Runtime's
int8 kernels take a fraction of that: one ViT-B/32 query encodes in ~6 ms instead of ~15 ms on two
cores. The graph is exported from the very modules the model loaded (the lean tower's forward, fp32),
quantised once per checkpoint (int8 weights in a 7-bit range, one scale per output row: AVX2's
int8 products then cannot saturate) and cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from photoman.embedding.text_tower import LeanTextTower

FORMAT = 5  # bump when the exported graph changes: old cache files are then ignored


def available() -> bool:
    """Whether ONNX Runtime and the ONNX tools needed to build the session are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return False
    return True


class _Graph(torch.nn.Module):
    """What gets exported: embedded tokens in, projected features of the end token out."""

    def __init__(self, lean: LeanTextTower) -> None:
        super().__init__()
        self.lean = lean
        # registered so the exporter sees them as the module's own parameters
        modules = [m for layer in lean.layers for m in layer if isinstance(m, torch.nn.Module)]
        self.blocks = torch.nn.ModuleList(modules)
        self.heads = torch.nn.ModuleList([lean.final_ln, lean.projection])

    def forward(self, x: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
        return self.lean.project(self.lean.hidden(x), eos)


def fingerprint(clip: Any) -> str:
    """Identifies a checkpoint's text tower by content (cheap: config, shapes, a few tensors)."""
    h = hashlib.sha256()
    h.update(json.dumps(clip.config.text_config.to_dict(), sort_keys=True, default=str).encode())
    h.update(f"{FORMAT} {torch.__version__}".encode())
    tm = clip.text_model
    for name, p in list(tm.named_parameters()) + list(clip.text_projection.named_parameters()):
        h.update(f"{name}{tuple(p.shape)}".encode())
    for t in (tm.final_layer_norm.weight, tm.encoder.layers[0].self_attn.q_proj.bias,
              tm.encoder.layers[-1].mlp.fc2.weight[:8], clip.text_projection.weight):  # fmt: skip
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def build(lean: LeanTextTower, target: Path, quantize: bool = True) -> None:
    """Export the text tower to ONNX (fp32), quantise its weights to int8, write ``target`` atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = _Graph(lean).eval()
    dim = lean.token_embedding.embedding_dim
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (torch.zeros(1, 4, dim), torch.tensor(3)),
                str(fp32),
                input_names=["x", "eos"],
                output_names=["features"],
                dynamic_axes={"x": {1: "tokens"}},
                opset_version=17,
                dynamo=False,
            )
        out = Path(tmp) / "model.onnx"
        if not quantize:
            out = fp32
        else:
            import logging

            # the quantiser logs advice on the root logger, which would reach a CLI user's terminal
            logging.disable(logging.WARNING)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # weights only (MatMul by a constant); attention's activation products stay fp32
                    quantize_dynamic(
                        fp32,
                        out,
                        weight_type=QuantType.QInt8,
                        per_channel=True,
                        reduce_range=True,
                        op_types_to_quantize=["MatMul", "Gemm"],
                        extra_options={"MatMulConstBOnly": True},
                    )
            finally:
                logging.disable(logging.NOTSET)
        os.replace(out, target)


class OnnxTextTower:
    """Same call as :class:`LeanTextTower`; token embedding in torch, the rest in ONNX Runtime.

    One session per thread count (taken from torch's setting for the calling thread, so the
    daemon's query/indexer split applies here too); idle session threads block instead of
    spinning, leaving the cores to the vector store's scan that follows every encoding.
    """

    def __init__(self, lean: LeanTextTower, model_file: Path, int8: bool = True) -> None:
        self.lean = lean  # only its embeddings and end-token rule are used here: the session has the rest
        lean.layers, lean.projection = [], None  # so the fp32 copies of the weights can be freed
        self.model_file = model_file
        self.int8 = int8
        self._sessions: dict[int, Any] = {}

    def _session(self, threads: int) -> Any:
        sess = self._sessions.get(threads)
        if sess is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.log_severity_level = 3
            sess = ort.InferenceSession(str(self.model_file), opts, providers=["CPUExecutionProvider"])
            self._sessions[threads] = sess
        return sess

    def warm(self, threads: list[int] | None = None) -> None:
        """Open the sessions for these thread counts (default: the current one) now, not in a query."""
        for n in threads or [torch.get_num_threads()]:
            self._session(max(1, n))

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Projected (unnormalised) text features, shape (1, dim), for input_ids of shape (1, L)."""
        with torch.inference_mode():
            x = self.lean.embed(input_ids)
        eos = np.array(self.lean.eos_position(input_ids), dtype=np.int64)
        sess = self._session(max(1, torch.get_num_threads()))
        return torch.from_numpy(sess.run(None, {"x": x.numpy(), "eos": eos})[0])


def _target(clip: Any, cache_dir: Path, quantize: bool) -> Path:
    return cache_dir / f"text-{fingerprint(clip)}-{'int8' if quantize else 'fp32'}.onnx"


def cached(clip: Any, cache_dir: Path, quantize: bool = True) -> bool:
    """Whether this checkpoint's session file is already built."""
    return _target(clip, cache_dir, quantize).exists()


def load(clip: Any, cache_dir: Path, quantize: bool = True) -> OnnxTextTower:
    """The cached session file for this checkpoint, built on first use (seconds, once).

    A cache file that does not load (truncated by a crash, or from another ONNX Runtime) is
    rebuilt once.
    """
    lean = LeanTextTower(clip, int8=False)
    target = _target(clip, cache_dir, quantize)
    if not target.exists():
        build(lean, target, quantize=quantize)
    tower = OnnxTextTower(lean, target, int8=quantize)
    try:
        tower.warm()
    except Exception:  # noqa: BLE001 - onnxruntime raises its own exception types
        target.unlink(missing_ok=True)
        lean = LeanTextTower(clip, int8=False)
        build(lean, target, quantize=quantize)
        tower = OnnxTextTower(lean, target, int8=quantize)
        tower.warm()
    return tower
