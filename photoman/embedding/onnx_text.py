"""The query hot path on CPU: the text tower (CLIP or SigLIP) as an int8 ONNX Runtime session.

One search query is ~10 tokens, so encoding it is ~50 small matrix products, each bound by
per-call overhead rather than arithmetic. torch's int8 kernels (fbgemm) take ~150 µs per product
and more once a vector-store scan has pushed the weights out of the CPU cache; ONNX Runtime's
int8 kernels take a fraction of that: one ViT-B/32 query encodes in ~6 ms instead of ~15 ms on two
cores. The graph is exported from the very modules the model loaded (the lean tower's forward, fp32),
quantised once per checkpoint (int8 weights in a 7-bit range, one scale per output row: AVX2's
int8 products then cannot saturate) and cached on disk. For SigLIP the graph attends both ways and
pools the last position, and the pack pads every query to the model's 64 tokens with its pad token,
as the model card's reference does (``padding="max_length"``); a SigLIP tokenizer that returns an
attention mask gets no pack (its reference masks the padding, which this graph does not).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from photoman.embedding.checkpoint import model_identity
from photoman.embedding.family import embedding_dim
from photoman.embedding.query_text import QueryTextEncoder, pack_dir, pack_ready
from photoman.embedding.text_tower import LeanTextTower, _projection

FORMAT = 5  # bump when the exported graph changes: old cache files are then ignored


def available() -> bool:
    """Whether ONNX Runtime and the ONNX tools needed to build the session are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        from photoman.embedding.ort_session import ort_quantization

        ort_quantization()
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
    proj = _projection(clip)
    for name, p in list(tm.named_parameters()) + list(proj.named_parameters()):
        h.update(f"{name}{tuple(p.shape)}".encode())
    for t in (tm.final_layer_norm.weight, tm.encoder.layers[0].self_attn.q_proj.bias,
              tm.encoder.layers[-1].mlp.fc2.weight[:8], proj.weight):  # fmt: skip
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def build(lean: LeanTextTower, target: Path, quantize: bool = True) -> None:
    """Export the text tower to ONNX (fp32), quantise its weights to int8, write ``target`` atomically."""
    from photoman.embedding.ort_session import ort_quantization

    quantization = ort_quantization()
    QuantType, quantize_dynamic = quantization.QuantType, quantization.quantize_dynamic
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


def build_pack(clip: Any, tokenizer: Any, model_id: str, pack: Path, quantize: bool = True) -> None:
    """Everything a torch-free query needs, written to ``pack`` atomically (meta.json marks it done)."""
    from photoman.embedding.query_text import FORMAT as PACK_FORMAT

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("the checkpoint's tokenizer has no `tokenizers` form")
    if not LeanTextTower.supports(clip, tokenizer):
        raise ValueError("this text tower's layout (or its attention mask) is not one the pack mirrors")
    lean = LeanTextTower(clip, int8=False)
    pack.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=pack.parent))
    try:
        build(lean, tmp / "model.onnx", quantize=quantize)
        (tmp / "tokenizer.json").write_text(backend.to_str())
        np.save(tmp / "token_embedding.npy", lean.token_embedding.weight.detach().float().numpy())
        np.save(tmp / "position_embedding.npy", lean.position_embedding.weight.detach().float().numpy())
        meta = {
            "format": PACK_FORMAT,
            "model_id": model_id,
            "dim": embedding_dim(clip.config.to_dict()),
            "int8": quantize,
            "max_length": int(getattr(clip.config.text_config, "max_position_embeddings", 77)),
            # CLIP: the end token's position is pooled; SigLIP: the last one, texts padded to max_length
            "eos_token_id": int(lean.eos_token_id or 0) if lean.causal else None,
            "pad_token_id": None if lean.causal else int(tokenizer.pad_token_id or 0),
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        if pack.exists():  # a broken pack from a crash or another runtime
            shutil.rmtree(pack)
        os.replace(tmp, pack)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(clip: Any, tokenizer: Any, model: str, cache_dir: Path, quantize: bool = True) -> QueryTextEncoder:
    """This checkpoint's query text encoder, its pack built on first use (seconds, once).

    A pack that does not load (truncated by a crash, or from another ONNX Runtime) is rebuilt once.
    """
    pack = pack_dir(cache_dir, model, quantize)
    if pack is None:  # files not identifiable (unusual): name the pack by the weights themselves
        pack = cache_dir / "text-encoder" / f"content-{fingerprint(clip)}-{'int8' if quantize else 'fp32'}"
    if not pack_ready(pack):
        build_pack(clip, tokenizer, model_identity(model), pack, quantize)
    try:
        enc = QueryTextEncoder(pack)
        enc.warm()
    except Exception:  # noqa: BLE001 - onnxruntime raises its own exception types
        build_pack(clip, tokenizer, model_identity(model), pack, quantize)
        enc = QueryTextEncoder(pack)
        enc.warm()
    return enc
