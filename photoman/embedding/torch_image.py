"""A CLIP image tower in plain torch, saved once from the loaded model and opened without transformers.

Where torch runs the image model fastest (bf16 autocast on CPUs with bf16 matrix units; the README's
Benchmarks give the figures and CPUs), every `photoman index` and daemon start used to load the
checkpoint through transformers first: seconds of imports and the whole model (text tower included)
before the first photo was embedded. This module holds the same weights (the vision tower and its
projection, nothing else) and runs the very same ops (convolution, LayerNorms, Linears,
scaled-dot-product attention, the checkpoint's activation) as transformers' ``CLIPVisionModel``, so
it opens with torch alone, without importing transformers.
q, k and v run as one Linear (one matrix product instead of three; the same sums).

:func:`save_pack` writes it from a loaded model and keeps it only if its vectors match the
transformers forward (1e-5 cosine in fp32, the runtime's own parity bound under its autocast); a
layout it does not mirror (SigLIP's attention-pooling head, an unknown activation) gets no pack, and
those models keep the full load. :class:`TorchImageEncoder` is what :mod:`photoman.embedding.cached`
runs when the measured choice here is a torch runtime.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS = "torch-image.safetensors"
CONFIG = "torch-image.json"
FORMAT = 1  # bump when the saved layout changes: older packs are then ignored and written again
SAME = 1e-5  # max cosine distance between this tower and the transformers forward, both in fp32
ACTIVATIONS = ("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh")


def supports(clip: Any) -> bool:
    """Whether this module mirrors the loaded model's image tower (a CLIP ViT, known activation)."""
    vm = getattr(clip, "vision_model", None)
    cfg = getattr(getattr(clip, "config", None), "vision_config", None)
    return (
        vm is not None
        and cfg is not None
        and getattr(clip, "visual_projection", None) is not None
        and hasattr(vm, "pre_layrnorm")
        and getattr(cfg, "hidden_act", None) in ACTIVATIONS
    )


def _layout(clip: Any) -> dict[str, Any]:
    c = clip.config.vision_config
    return {
        "format": FORMAT,
        "hidden": int(c.hidden_size),
        "heads": int(c.num_attention_heads),
        "layers": int(c.num_hidden_layers),
        "mlp": int(c.intermediate_size),
        "patch": int(c.patch_size),
        "image_size": int(c.image_size),
        "channels": int(getattr(c, "num_channels", 3)),
        "eps": float(c.layer_norm_eps),
        "act": str(c.hidden_act),
        "dim": int(clip.visual_projection.out_features),
    }


def _state_from_clip(clip: Any) -> dict[str, Any]:
    """The tower's weights under this module's names (q, k and v side by side)."""
    import torch

    vm = clip.vision_model
    sd: dict[str, Any] = {
        "class_embedding": vm.embeddings.class_embedding,
        "patch.weight": vm.embeddings.patch_embedding.weight,
        "positions": vm.embeddings.position_embedding.weight,
        "pre.weight": vm.pre_layrnorm.weight,
        "pre.bias": vm.pre_layrnorm.bias,
        "post.weight": vm.post_layernorm.weight,
        "post.bias": vm.post_layernorm.bias,
        "projection.weight": clip.visual_projection.weight,
    }
    for i, layer in enumerate(vm.encoder.layers):
        a = layer.self_attn
        sd[f"blocks.{i}.qkv.weight"] = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        sd[f"blocks.{i}.qkv.bias"] = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
        for mine, theirs in (
            ("out", a.out_proj),
            ("ln1", layer.layer_norm1),
            ("ln2", layer.layer_norm2),
            ("fc1", layer.mlp.fc1),
            ("fc2", layer.mlp.fc2),
        ):
            sd[f"blocks.{i}.{mine}.weight"] = theirs.weight
            sd[f"blocks.{i}.{mine}.bias"] = theirs.bias
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sd.items()}


def _module_class() -> Any:
    """The module classes, made on first use: importing this file must not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, hidden: int, heads: int, mlp: int, eps: float, act: str) -> None:
            super().__init__()
            self.heads, self.act = heads, act
            self.ln1 = nn.LayerNorm(hidden, eps=eps)
            self.qkv = nn.Linear(hidden, 3 * hidden)
            self.out = nn.Linear(hidden, hidden)
            self.ln2 = nn.LayerNorm(hidden, eps=eps)
            self.fc1 = nn.Linear(hidden, mlp)
            self.fc2 = nn.Linear(mlp, hidden)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            attn = F.scaled_dot_product_attention(q, k, v, scale=(d // self.heads) ** -0.5)
            x = x + self.out(attn.transpose(1, 2).reshape(b, n, d))
            h = self.fc1(self.ln2(x))
            if self.act == "quick_gelu":
                h = h * torch.sigmoid(1.702 * h)
            else:
                h = F.gelu(h, approximate="none" if self.act == "gelu" else "tanh")
            return x + self.fc2(h)

    class Tower(nn.Module):
        def __init__(self, layout: dict[str, Any]) -> None:
            super().__init__()
            hidden, p = layout["hidden"], layout["patch"]
            self.class_embedding = nn.Parameter(torch.empty(hidden))
            self.patch = nn.Conv2d(layout["channels"], hidden, kernel_size=p, stride=p, bias=False)
            self.positions = nn.Parameter(torch.empty((layout["image_size"] // p) ** 2 + 1, hidden))
            self.pre = nn.LayerNorm(hidden, eps=layout["eps"])
            self.blocks = nn.ModuleList(
                Block(hidden, layout["heads"], layout["mlp"], layout["eps"], layout["act"])
                for _ in range(layout["layers"])
            )
            self.post = nn.LayerNorm(hidden, eps=layout["eps"])
            self.projection = nn.Linear(hidden, layout["dim"], bias=False)

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            patches = self.patch(pixel_values).flatten(2).transpose(1, 2)
            cls = self.class_embedding.expand(patches.shape[0], 1, -1)
            x = self.pre(torch.cat([cls, patches], dim=1) + self.positions)
            for block in self.blocks:
                x = block(x)
            return self.projection(self.post(x[:, 0, :]))

    return Tower


def build(layout: dict[str, Any], state: dict[str, Any]) -> Any:
    """The tower with these weights (no random initialisation first: built on the meta device)."""
    import torch

    with torch.device("meta"):
        tower = _module_class()(layout)
    tower.load_state_dict(state, assign=True)
    return tower.eval()


class TorchImageEncoder:
    """Runs the tower on the CPU under the chosen runtime (torch-fp32 or torch-bf16); one-image
    batches in fp32 when that was measured faster at batch 1."""

    def __init__(self, tower: Any, layout: dict[str, Any], runtime: str, single_fp32: bool,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:  # fmt: skip
        import torch

        self.tower, self.layout, self.runtime = tower, layout, runtime
        self.autocast = torch.bfloat16 if runtime == "torch-bf16" else None
        self.single_fp32 = single_fp32
        if self.autocast is not None and not single_fp32:
            # autocast casts each matrix's weights to bf16 on every call; cast once instead: the same
            # numbers (the product runs in bf16 either way), less work per call, half the weights' memory
            for m in tower.modules():
                if isinstance(m, torch.nn.Linear | torch.nn.Conv2d):
                    m.to(torch.bfloat16)
            # what stays float32 (LayerNorms, embeddings, biases cast above aside) still points into the
            # mapped weights file, and one such tensor keeps the whole mapping: the fp32 file stayed in
            # the daemon's RSS beside its bf16 copy (ViT-B/32: 335 MB). Copied out, the file is let go.
            for param in tower.parameters():
                if param.dtype == torch.float32:
                    param.data = param.data.clone()
        self._mean = torch.tensor(mean).view(1, 3, 1, 1)
        self._std = torch.tensor(std).view(1, 3, 1, 1)

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Projected (unnormalised) float32 features for a uint8 batch (N, crop, crop, 3)."""
        import contextlib

        import torch

        dtype = None if len(pixels) == 1 and self.single_fp32 else self.autocast
        x = torch.from_numpy(np.ascontiguousarray(pixels))
        x = (x.permute(0, 3, 1, 2).float().div_(255.0) - self._mean) / self._std
        ctx = contextlib.nullcontext() if dtype is None else torch.autocast("cpu", dtype=dtype)
        # torch's thread count is the caller's: the daemon sizes each thread's team (use_threads)
        with torch.inference_mode(), ctx:
            return self.tower(x).float().numpy()

    def warm(self) -> None:
        """Nothing to open ahead (the weights are loaded): no forward pass here, as one would form an
        OpenMP thread team on the calling thread, which the daemon's main thread must never have."""


def save_pack(
    clip: Any,
    folder: Path,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    reference: Callable[[np.ndarray], np.ndarray],
) -> bool:
    """Write the tower beside the exported encoders if it mirrors ``clip``: its fp32 vectors must match
    ``reference`` (the loaded model's own fp32 forward on uint8 pixels, e.g. ``ClipEncoder.
    encode_pixels_torch``) on a test batch. True if a usable pack is there. Atomic: a reader sees the
    old pack or the new one, never half of one."""
    from safetensors.torch import save_file

    from photoman.embedding.precision import max_cosine_distance, test_batch

    if not supports(clip):
        return False
    layout = _layout(clip)
    if _read_layout(folder) == layout and (folder / WEIGHTS).is_file():
        return True
    try:
        state = _state_from_clip(clip)
        tower = build(layout, state)
        pixels = test_batch(4, layout["image_size"])
        mine = TorchImageEncoder(tower, layout, "torch-fp32", False, mean, std).features(pixels)
        if max_cosine_distance(mine, reference(pixels)) > SAME:
            return False  # a variant this module does not mirror: the full load stays
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{WEIGHTS}.{os.getpid()}"
        save_file(state, str(tmp))
        os.replace(tmp, folder / WEIGHTS)
        tmp = folder / f".{CONFIG}.{os.getpid()}"
        tmp.write_text(json.dumps(layout, indent=1))
        os.replace(tmp, folder / CONFIG)
        return True
    except Exception:  # noqa: BLE001 - a read-only or full cache (safetensors: SafetensorError): the full load stays
        return False


def _read_layout(folder: Path) -> dict[str, Any] | None:
    try:
        layout = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    return layout if isinstance(layout, dict) and layout.get("format") == FORMAT else None


def open_pack(folder: Path, runtime: str, single_fp32: bool,
              mean: tuple[float, ...], std: tuple[float, ...]) -> TorchImageEncoder | None:  # fmt: skip
    """The saved tower, or None when there is none (or it does not load: the full load rebuilds it)."""
    layout = _read_layout(folder)
    if layout is None or not (folder / WEIGHTS).is_file():
        return None
    from safetensors.torch import load_file

    try:
        tower = build(layout, load_file(str(folder / WEIGHTS)))
    except Exception:  # noqa: BLE001 - damaged (a crash mid-copy, a bad disk): SafetensorError and others
        for name in (CONFIG, WEIGHTS):  # gone, so the next full load writes it again
            (folder / name).unlink(missing_ok=True)
        return None
    return TorchImageEncoder(tower, layout, runtime, single_fp32, mean, std)
