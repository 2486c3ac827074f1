"""The encoder opened from its caches alone, without transformers (and without torch where ONNX
Runtime runs the images).

Loading a checkpoint through transformers costs ~5 s of imports and ~0.5 GB before the first photo
is embedded (2-core AMD EPYC), and the process then holds the torch weights beside ONNX Runtime's
own copy of them. Yet once a first load on this machine has built what actually runs on a CPU (the
int8 text pack; the exported image graph, or the saved torch image tower, whichever `precision =
"auto"` measured fastest) and written down the few numbers that come from the weights (vector size,
family, zero-shot scale and bias, preprocessing), every later daemon, `photoman index` or model-only
command needs only those files. The vectors are the ones the full load gives: the same graphs, or
the same torch ops (:mod:`photoman.embedding.torch_image`) compute them.

Used only where the full load would run the same: on the CPU, with the int8 text pack, and an ONNX
Runtime image runtime (the cached `auto` choice for this machine, or `precision = "onnx"` / `"int8"`)
or a torch one (`auto` measured torch fastest, or `"fp32"` / `"bf16"`) for a CLIP image tower. Anything
missing or stale (another checkpoint, torch or ONNX Runtime version, CPU): None, and the caller loads
the model, which rebuilds the caches.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from photoman.embedding import torch_image
from photoman.embedding.family import CLIP, SIGLIP, Family
from photoman.embedding.ort_image import OrtImageEncoder
from photoman.embedding.preprocess import PreprocessSpec, resize_crop
from photoman.embedding.query_text import QueryTextEncoder

MANIFEST = "encoder.json"
TORCH = ("fp32", "bf16")  # precisions torch runs: the saved image tower (photoman/embedding/torch_image.py)
FORMAT = 1  # bump when the manifest's contents change: old ones are then ignored (one full load rewrites)


ImageRuntime = OrtImageEncoder | torch_image.TorchImageEncoder


class CachedEncoder:
    """What :class:`photoman.embedding.model.ClipEncoder` offers the library, from cached graphs only."""

    device = "cpu"
    autocast = None  # the image runtime applies its own (precision_info names it)

    def __init__(
        self,
        model_id: str,
        text: QueryTextEncoder,
        image: ImageRuntime,
        spec: PreprocessSpec,
        family: Family,
        logit_scale: float,
        logit_bias: float,
        precision_info: dict[str, Any],
    ) -> None:
        self.model_id = model_id
        self.query_text = text
        self.image_runtime = image
        self.spec = spec
        self.family = family
        self.dim = text.dim
        self.logit_scale = logit_scale
        self.logit_bias = logit_bias
        self.precision_info = precision_info

    @property
    def uses_torch(self) -> bool:
        """Whether the image tower runs in torch (imported whole then: thread settings apply)."""
        return isinstance(self.image_runtime, torch_image.TorchImageEncoder)

    @property
    def templates(self) -> tuple[str, ...]:
        """The zero-shot prompt(s) this model's family uses."""
        return self.family.templates

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for texts, one at a time (the int8 pack's rule)."""
        return self.query_text.encode_texts(texts)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Unit vectors for a uint8 batch (N, crop, crop, 3) produced by :func:`resize_crop`."""
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        feats = self.image_runtime.features(pixels).astype(np.float32, copy=False)
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit vectors for decoded RGB images."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(np.stack([resize_crop(im, self.spec) for im in images]))

    def clear_text_cache(self) -> None:
        """Forget cached text vectors (benchmarks that must time a real encoding)."""
        self.query_text.clear_text_cache()

    def preferred_batch_size(self, configured: int) -> int:
        """Images per model call: the setting (this encoder runs on the CPU only)."""
        return configured


def write_manifest(
    cache_dir: Path,
    model: str,
    *,
    family: Family,
    logit_scale: float,
    logit_bias: float,
    spec: PreprocessSpec,
) -> None:
    """Note what a later process needs besides the graphs (called by the full load; atomic)."""
    from photoman.embedding.checkpoint import model_identity
    from photoman.embedding.precision import encoder_folder

    folder = encoder_folder(cache_dir, model)
    if folder is None:
        return
    manifest = {
        "format": FORMAT,
        "model_id": model_identity(model),
        "family": family.name,
        "logit_scale": logit_scale,
        "logit_bias": logit_bias,
        "spec": asdict(spec),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if _read(folder / MANIFEST) == manifest:
            return
        tmp = folder / f".{MANIFEST}.{os.getpid()}"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, folder / MANIFEST)
    except OSError:  # a read-only cache: every process loads the model, as before
        pass


def _read(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def gpu_possible() -> bool:
    """Whether `device = "auto"` might pick a GPU here, answered without importing torch."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"  # Apple's Metal (MPS)
    if not sys.platform.startswith("linux"):
        return True  # let torch answer
    if not any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")):
        return False
    # a GPU is here: it matters only to a torch built for it (torch/version.py says, torch not imported)
    from importlib.util import find_spec

    spec = find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        return True
    return not all(re.search(rf"^{name}\b.*=\s*None\s*$", text, re.M) for name in ("cuda", "hip"))


def open_cached(
    model: str,
    device: str,
    precision: str,
    text_int8: bool,
    cache_dir: Path,
    text: QueryTextEncoder | None = None,
) -> CachedEncoder | None:
    """The encoder from this machine's caches, or None when the model has to load (see the module)."""
    from photoman.embedding import precision as prec
    from photoman.embedding.checkpoint import model_identity
    from photoman.embedding.query_text import open_pack

    if not text_int8 or device not in ("auto", "cpu") or precision not in ("auto", "onnx", "int8", *TORCH):
        return None
    if device == "auto" and gpu_possible():
        return None
    folder = prec.encoder_folder(cache_dir, model)
    if folder is None:
        return None
    manifest = _read(folder / MANIFEST)
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or manifest.get("model_id") != model_identity(model)
    ):
        return None
    single_fp32 = False
    if precision == "auto":
        choice = prec.read_choice(folder)
        if choice is None or not str(choice.get("runtime")).startswith(("onnx", "torch-fp32", "torch-bf16")):
            return None
        runtime = str(choice["runtime"])
        single = choice.get("single", runtime)
        if single != runtime and not (runtime.startswith("torch") and single == "torch-fp32"):
            return None  # single images (image queries) run faster in torch here: the model loads
        single_fp32 = single != runtime
        info = {**choice, "precision": "auto", "cached": True}
    elif precision in TORCH:
        runtime = f"torch-{precision}"
        info = {"runtime": runtime, "single": runtime, "reason": f"precision = {precision!r} in the settings"}
    else:
        runtime = "onnx-int8" if precision == "int8" else "onnx-fp32"
        info = {"runtime": runtime, "single": runtime, "reason": f"precision = {precision!r} in the settings"}
        if runtime == "onnx-int8":
            saved = _read(folder / "int8-parity.json")
            if not isinstance(saved, dict) or saved.get("signature") != prec.signature():
                return None
            info["parity"] = float(saved["parity"])
    graph = folder / ("int8.onnx" if runtime == "onnx-int8" else "fp32.onnx")
    on_torch = runtime.startswith("torch")
    if not (folder / torch_image.WEIGHTS if on_torch else graph).is_file():
        return None
    try:
        text = text or open_pack(cache_dir, model)
        if text is None or text.model_id != manifest["model_id"]:
            return None
        f = manifest["spec"]
        spec = PreprocessSpec(
            size=int(f["size"]), crop=int(f["crop"]), resample=int(f["resample"]), mean=tuple(f["mean"]),
            std=tuple(f["std"]), square=bool(f["square"]),
        )  # fmt: skip
        image: ImageRuntime | None
        if on_torch:
            image = torch_image.open_pack(folder, runtime, single_fp32, spec.mean, spec.std)
            if image is None:
                return None
        else:
            image = OrtImageEncoder(graph, runtime)
        image.warm()
        family = {CLIP.name: CLIP, SIGLIP.name: SIGLIP}[manifest["family"]]
        return CachedEncoder(
            model_id=manifest["model_id"],
            text=text,
            image=image,
            spec=spec,
            family=family,
            logit_scale=float(manifest["logit_scale"]),
            logit_bias=float(manifest["logit_bias"]),
            precision_info={
                **info,
                "torch": "image tower only, without transformers (opened from the cache)"
                if on_torch
                else "not loaded (encoders opened from the cache)",
            },
        )
    except Exception:  # noqa: BLE001 - a damaged file or a missing runtime: the full load rebuilds
        return None
