"""The image tower (CLIP or SigLIP) in ONNX Runtime on CPU: the indexing hot path when it beats torch here.

Indexing is bound by the image model (ViT-B/32: ~4.4 GFLOP a photo), so its runtime is the lever.
The graph is exported from the very modules the model loaded (``get_image_features``: vision
transformer + projection, or SigLIP's attention-pooling head), with the processor's normalisation
inside it, so it takes the uint8 crops the decode workers make (N, crop, crop, 3) and returns the
projected, unnormalised features.
It is exported once per checkpoint and torch/ONNX Runtime versions into ``cache_dir`` and run at
graph optimisation level ALL. In fp32 it equals the transformers forward to ~1e-6 cosine distance.

``int8=True`` builds a second graph with int8 weights (dynamic quantisation): faster, but its
vectors drift past photoman's 1e-3 parity bound, so it is only used when asked for
(``precision = "int8"``), never chosen by ``auto``.
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

import torch

from photoman.embedding.checkpoint import model_identity
from photoman.embedding.ort_image import OrtImageEncoder
from photoman.embedding.ort_session import ort_quantization
from photoman.embedding.precision import EXPORT_FORMAT, encoder_folder
from photoman.embedding.preprocess import PreprocessSpec

FORMAT = EXPORT_FORMAT


def available() -> bool:
    """Whether ONNX Runtime and the ONNX exporter's dependency are installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Graph(torch.nn.Module):
    """What gets exported: uint8 crops (N, H, W, 3) in, projected image features out."""

    def __init__(self, clip: Any, spec: PreprocessSpec) -> None:
        super().__init__()
        self.clip = clip
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -mean / std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        scale, shift = self.get_buffer("scale"), self.get_buffer("shift")
        x = pixels.permute(0, 3, 1, 2).float() * scale + shift
        out = self.clip.get_image_features(pixel_values=x)
        return out.pooler_output if hasattr(out, "pooler_output") else out


def fingerprint(clip: Any) -> str:
    """Identifies a checkpoint's image tower by content (cheap: config, shapes, a few tensors)."""
    h = hashlib.sha256()
    h.update(json.dumps(clip.config.vision_config.to_dict(), sort_keys=True, default=str).encode())
    vm = clip.vision_model
    # CLIP projects with visual_projection; SigLIP's pooling head sits inside the vision model
    proj = getattr(clip, "visual_projection", None)
    params = list(vm.named_parameters()) + (list(proj.named_parameters()) if proj is not None else [])
    for name, p in params:
        h.update(f"{name}{tuple(p.shape)}".encode())
    last = proj.weight if proj is not None else params[-1][1]
    for t in (vm.post_layernorm.weight, vm.encoder.layers[0].self_attn.q_proj.bias,
              vm.encoder.layers[-1].mlp.fc2.weight[:8], last):  # fmt: skip
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def cache_folder(cache_dir: Path, model: str, clip: Any | None = None) -> Path:
    """Where this checkpoint's image encoder (and the `auto` precision decision) is cached."""
    folder = encoder_folder(cache_dir, model)
    if folder is None:  # files not identifiable (unusual): name it by the weights themselves
        folder = encoder_folder(
            cache_dir, model, f"content-{fingerprint(clip)}" if clip is not None else "unknown"
        )
    assert folder is not None
    return folder


def _prune_siblings(folder: Path) -> None:
    """Remove this checkpoint's folders built by other torch/ONNX Runtime versions (never read again)."""
    prefix = folder.name.split("-torch", 1)[0] + "-torch"
    for other in folder.parent.glob(prefix + "*"):
        if other != folder and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)


def export(clip: Any, spec: PreprocessSpec, target: Path, int8: bool = False) -> None:
    """Export the image tower to ONNX (fp32; int8 weights if asked), writing ``target`` atomically."""
    graph = _Graph(clip, spec).eval()
    target.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, spec.crop, spec.crop, 3, dtype=torch.uint8)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (dummy,),
                str(fp32),
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        out = fp32
        if int8:
            import logging

            quantization = ort_quantization()
            QuantType, quantize_dynamic = quantization.QuantType, quantization.quantize_dynamic
            out = Path(tmp) / "int8.onnx"
            logging.disable(logging.WARNING)  # the quantiser's advice is not for a CLI user's terminal
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    quantize_dynamic(
                        fp32,
                        out,
                        weight_type=QuantType.QInt8,
                        per_channel=True,
                        reduce_range=True,  # 7-bit weights: AVX2's int8 products cannot saturate
                        op_types_to_quantize=["MatMul", "Gemm"],
                        extra_options={"MatMulConstBOnly": True},
                    )
            finally:
                logging.disable(logging.NOTSET)
        os.replace(out, target)


def load(
    clip: Any, spec: PreprocessSpec, model: str, cache_dir: Path, runtime: str = "onnx-fp32"
) -> OrtImageEncoder:
    """This checkpoint's image encoder for ``runtime``, exported on first use (seconds, once).

    A file that does not load (truncated by a crash, say) is rebuilt once.
    """
    folder = cache_folder(cache_dir, model, clip)
    int8 = runtime == "onnx-int8"
    target = folder / ("int8.onnx" if int8 else "fp32.onnx")
    meta = folder / "meta.json"
    if not target.is_file():
        export(clip, spec, target, int8=int8)
        if not meta.is_file():
            _prune_siblings(folder)
            meta.write_text(json.dumps({"format": FORMAT, "model_id": model_identity(model)}))
    enc = OrtImageEncoder(target, runtime)
    try:
        enc.warm()
    except Exception:  # noqa: BLE001 - onnxruntime raises its own exception types
        export(clip, spec, target, int8=int8)
        enc = OrtImageEncoder(target, runtime)
        enc.warm()
    return enc
