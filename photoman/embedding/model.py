"""Load a CLIP or SigLIP checkpoint (hub id or local folder) and encode images and text into one unit-norm
space. What differs between the two families is looked up in :mod:`photoman.embedding.family`."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from photoman.embedding.checkpoint import model_identity
from photoman.embedding.family import CLIP, SIGLIP, Family, embedding_dim, family_of, read_config
from photoman.embedding.preprocess import PreprocessSpec, resize_crop
from photoman.errors import BadInputError, ModelError

if TYPE_CHECKING:
    import torch

# notices (a download, a one-time export, a fallback): front ends decide where they go (README)
log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> str:
    """CUDA when present, then Apple MPS, else CPU; an explicit choice must exist."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(
            f"device {requested!r} asked for, but no CUDA GPU is available (use --device cpu)"
        )
    if requested not in ("cpu", "mps") and not requested.startswith("cuda"):
        raise BadInputError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps")
    if requested == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise BadInputError(
            "device 'mps' asked for, but Apple's Metal (MPS) is not available here (use --device cpu)"
        )
    if requested.startswith("cuda:"):
        index = requested.split(":", 1)[1]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise BadInputError(f"device {requested!r}: no such GPU ({torch.cuda.device_count()} found)")
    return requested


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


from photoman.config import PRECISIONS  # noqa: E402 - with its neighbours, where it is used


def _autocast_dtype(device: str, precision: str) -> torch.dtype | None:
    """torch's autocast type for the image model; on CPU `auto` starts at fp32 and is then measured."""
    import torch

    if precision not in PRECISIONS:
        raise BadInputError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    if precision in ("onnx", "int8"):
        if device != "cpu":
            raise BadInputError(f"precision {precision!r} runs on the CPU only (use --device cpu)")
        return None
    if precision == "auto":  # CPU: chosen by measurement (photoman.embedding.precision), not by flags
        precision = "fp16" if device.startswith("cuda") else "fp32"
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision == "fp16" and device == "cpu":
        return torch.bfloat16  # fp16 matmuls are slow or missing on CPUs
    return table[precision]


def _resolve_source(model: str) -> str:
    """Local folder as is; a hub id from the HF cache, downloading it once (saying what and how big)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(
                f"model folder {path} has no config.json (not a saved CLIP or SigLIP checkpoint)"
            )
        return str(path.resolve())
    if path.suffix or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelError(f"model {model!r} is neither a folder nor a Hugging Face model id")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return model
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline:
        raise ModelError(f"model {model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set")
    size = _download_size(model)
    log.info("Downloading %s %s from the Hugging Face Hub%s (first use only)…", _kind(model), model, size)
    return model


# download sizes of the weights of models photoman is often pointed at (to say so without network)
KNOWN_SIZES_MB = {
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K": 605,
    "openai/clip-vit-base-patch32": 605,
    "openai/clip-vit-base-patch16": 599,
    "openai/clip-vit-large-patch14": 1710,
    "google/siglip2-base-patch16-224": 1500,
}


def _kind(model: str) -> str:
    """What to call a model in a message before its config is on disk (it says which family it is)."""
    return "SigLIP model" if "siglip" in model.lower() else "CLIP model"


def _download_size(model: str) -> str:
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(model, files_metadata=True, timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure here means we cannot download
        known = KNOWN_SIZES_MB.get(model)
        size = f" (about {known} MB)" if known else ""
        reason = str(exc).splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(
            f"cannot download the {_kind(model)} {model}{size} from the Hugging Face Hub ({reason}); "
            "connect to the internet once (it is cached for good), or set PHOTOMAN_MODEL to a folder "
            "holding a saved copy, or HTTPS_PROXY if you are behind a proxy"
        ) from None
    sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
    weights = sizes.get("model.safetensors") or sizes.get("pytorch_model.bin") or 0
    return f", about {weights / 1e6:.0f} MB" if weights else ""


class ModelNotCached(ModelError):
    """The model is a hub id not downloaded yet (the first command that embeds downloads it)."""


@dataclass
class ClipEncoder:
    """A loaded CLIP or SigLIP model with its tokenizer and preprocessing numbers, ready to encode."""

    model_id: str
    model: Any
    tokenizer: Any
    spec: PreprocessSpec
    device: str
    autocast: Any  # torch.dtype or None
    dim: int
    text_int8: bool = False
    # LeanTextTower on CPU when there is no query_text: a single text (every text, when int8) without
    # the transformers forward's per-module overhead; batches of fp32 texts keep that forward
    lean_text: Any = None
    query_text: Any = None  # QueryTextEncoder: the same in ONNX Runtime, torch-free (preferred)
    image_runtime: Any = None  # OrtImageEncoder when ONNX Runtime runs the image model (CPU)
    single_fp32: bool = False  # one-image batches (image queries) on torch fp32: faster there at batch 1
    precision_info: dict[str, Any] | None = None  # what runs the image model and why (precision_choice)
    family: Family = CLIP

    def __post_init__(self) -> None:
        # the TUI re-runs the same words on every filter or mode change: those are free the 2nd time
        self._one_text = functools.lru_cache(maxsize=512)(self._encode_one_text)
        self._norm: dict[str, Any] = {}  # mean/std tensors on the device, made once

    def clear_text_cache(self) -> None:
        """Forget cached text vectors (benchmarks that must time a real encoding)."""
        self._one_text.cache_clear()
        if self.query_text is not None:
            self.query_text.clear_text_cache()

    @property
    def logit_scale(self) -> float:
        """The model's learned temperature (CLIP's is about 100), for zero-shot scores."""
        return float(self.model.logit_scale.exp().item())

    @property
    def logit_bias(self) -> float:
        """SigLIP's learned bias of its sigmoid zero-shot scores (CLIP has none: 0)."""
        bias = getattr(self.model, "logit_bias", None)
        return float(bias.item()) if bias is not None else 0.0

    @property
    def templates(self) -> tuple[str, ...]:
        """The zero-shot prompt(s) this model's family uses."""
        return self.family.templates

    @property
    def max_text_length(self) -> int:
        """Tokens the text tower takes (CLIP 77, SigLIP 64); longer texts are truncated."""
        return int(getattr(self.model.config.text_config, "max_position_embeddings", 77))

    def tokenize(self, texts: Sequence[str], **kw: Any) -> dict[str, Any]:
        """Token ids (and a mask when the tokenizer gives one) exactly as the model card's reference.

        CLIP: padded to the longest text of the batch. SigLIP: ``padding="max_length"`` to 64, as the
        model was trained; the mask is passed only if the checkpoint's tokenizer returns one (SigLIP 2's
        does not), as transformers does with ``model(**processor(text=...))``.
        """
        padding: Any = kw.pop("padding", True)
        if self.family.pad_to_max_length:
            padding = "max_length"
        out = self.tokenizer(
            list(texts), padding=padding, truncation=True, max_length=self.max_text_length, **kw
        )
        return {k: v for k, v in out.items() if k in ("input_ids", "attention_mask")}

    def _autocast_ctx(self) -> Any:
        import contextlib

        import torch

        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=self.autocast)

    @staticmethod
    def _pooled(out: Any) -> torch.Tensor:
        # transformers 5 returns an output object from get_*_features; 4.x returned the tensor
        return out.pooler_output if hasattr(out, "pooler_output") else out

    def _finish(self, feats: torch.Tensor) -> np.ndarray:
        import torch

        feats = feats.float()
        feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats.cpu().numpy().astype(np.float32)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Unit vectors for a uint8 batch (N, crop, crop, 3) produced by :func:`resize_crop`."""
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(pixels) == 1 and self.single_fp32:
            return self.encode_pixels_torch(pixels, None)
        if self.image_runtime is not None:
            return self.encode_pixels_onnx(pixels)
        return self.encode_pixels_torch(pixels, self.autocast)

    def encode_pixels_onnx(self, pixels: np.ndarray, runtime: Any = None) -> np.ndarray:
        """The batch through ONNX Runtime (``runtime``, default the chosen one); normalised here."""
        feats = (runtime or self.image_runtime).features(pixels).astype(np.float32, copy=False)
        return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)

    def encode_pixels_torch(self, pixels: np.ndarray, autocast: Any = None) -> np.ndarray:
        """The batch through the torch model, under ``autocast`` (a dtype, or None for fp32)."""
        import contextlib

        import torch

        x = torch.from_numpy(np.ascontiguousarray(pixels))
        if self.device.startswith("cuda"):
            # uint8 over the bus (a quarter of float32's bytes) from pinned memory, without a sync;
            # the conversion and normalisation run on the GPU
            x = x.pin_memory().to(self.device, non_blocking=True)
        else:
            x = x.to(self.device)
        mean, std = self._norm_tensors()
        x = (x.permute(0, 3, 1, 2).float().div_(255.0) - mean) / std
        ctx = (
            contextlib.nullcontext()
            if autocast is None
            else torch.autocast(device_type=self.device.split(":")[0], dtype=autocast)
        )
        with torch.inference_mode(), ctx:
            feats = self._pooled(self.model.get_image_features(pixel_values=x))
        return self._finish(feats)

    def _norm_tensors(self) -> tuple[Any, Any]:
        if not self._norm:
            import torch

            self._norm["mean"] = torch.tensor(self.spec.mean, device=self.device).view(1, 3, 1, 1)
            self._norm["std"] = torch.tensor(self.spec.std, device=self.device).view(1, 3, 1, 1)
        return self._norm["mean"], self._norm["std"]

    def preferred_batch_size(self, configured: int) -> int:
        """Images per model call for indexing: the setting on CPU; on a CUDA GPU, enough to fill it."""
        if not self.device.startswith("cuda"):
            return configured
        return max(configured, gpu_batch_size(self.model, self.device))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit vectors for decoded RGB images."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(np.stack([resize_crop(im, self.spec) for im in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for texts (77 tokens for CLIP, 64 for SigLIP; longer text is truncated)."""
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.query_text is not None:
            return self.query_text.encode_texts(texts)
        if self.lean_text is not None and (len(texts) == 1 or self.text_int8):
            # int8 dynamic quantisation scales activations per batch: one text at a time keeps a
            # text's vector independent of whatever it was batched with
            return np.stack([self._one_text(t) for t in texts])
        if self.text_int8 and len(texts) > 1:
            return np.concatenate([self.encode_texts([t]) for t in texts])
        tok = {k: v.to(self.device) for k, v in self.tokenize(texts, return_tensors="pt").items()}
        with torch.inference_mode(), self._autocast_ctx():
            feats = self._pooled(self.model.get_text_features(**tok))
        return self._finish(feats)

    def _encode_one_text(self, text: str) -> np.ndarray:
        import torch

        ids = self.tokenize([text], padding=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            vec = self._finish(self.lean_text(ids.to(self.device)))[0]
        vec.flags.writeable = False  # shared by every caller of the cache
        return vec


def _quantize_text_tower(clip: Any) -> bool:
    """int8 dynamic quantisation (one scale per matrix) of the transformers text tower's Linears, in place.

    Two uses. Where the ONNX pack or the int8 lean tower encodes the texts, this tower is a spare
    copy and int8 keeps its Linear weights at a quarter of their fp32 size. On a CPU where neither
    applies (a CLIP text layout the lean tower does not mirror), this tower encodes the texts: faster than
    fp32, its vectors close to (not equal to) the fp32 ones. Image embeddings are untouched. If this
    torch no longer ships the eager API, fp32 stays (False).
    """
    import warnings

    import torch

    try:
        quantize = torch.ao.quantization.quantize_dynamic
    except AttributeError:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # in place: embeddings and LayerNorms stay the very objects the lean tower shares
        clip.text_model = quantize(clip.text_model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        if hasattr(clip, "text_projection"):  # SigLIP's projection (`head`) is inside text_model
            clip.text_projection = quantize(torch.nn.Sequential(clip.text_projection), {torch.nn.Linear},
                                            dtype=torch.qint8, inplace=True)[0]  # fmt: skip
    return True


def _onnx_tower(clip: Any, tokenizer: Any, model: str, cache_dir: Path | None) -> Any:
    """The int8 ONNX Runtime text encoder, or None (not installed, or the export failed: torch it is).

    SigLIP checkpoints get one too (texts padded to 64 tokens, attention both ways, last position
    pooled); a checkpoint whose tokenizer has no `tokenizers` form says so here and keeps torch.
    """
    from photoman.config import default_cache_dir
    from photoman.embedding import onnx_text, query_text

    if not onnx_text.available():
        return None
    cache = cache_dir or default_cache_dir()
    try:
        pack = query_text.pack_dir(cache, model)
        if pack is None or not query_text.pack_ready(pack):
            log.info("Preparing the fast text encoder for this model (once, a few seconds)…")
        return onnx_text.load(clip, tokenizer, model, cache)
    except Exception as exc:  # noqa: BLE001 - any exporter/runtime failure: fall back, say why
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        log.warning("fast text encoder unavailable (%s); using the torch one", first)
        return None


def _spec_from_processor(image_processor: Any) -> PreprocessSpec:
    """The resize/crop/normalise numbers of a loaded image processor (or its JSON, via _DictProcessor).

    ``size`` with a shortest edge: CLIP's resize-then-centre-crop. ``size`` as height × width with no
    centre crop: SigLIP's plain resize to a square.
    """
    size = getattr(image_processor, "size", None) or {}
    crop = getattr(image_processor, "crop_size", None) or {}

    def get(d: Any, key: str, default: int) -> int:
        value = d.get(key) if isinstance(d, dict) else getattr(d, key, None)
        return int(value) if value else default

    resample = int(getattr(image_processor, "resample", None) or Image.Resampling.BICUBIC)
    mean = tuple(float(v) for v in image_processor.image_mean)
    std = tuple(float(v) for v in image_processor.image_std)
    shortest = get(size, "shortest_edge", 0)
    if not shortest and not getattr(image_processor, "do_center_crop", None) and get(size, "height", 0):
        side = get(size, "height", 0)
        if get(size, "width", side) != side:
            width = get(size, "width", side)
            raise ModelError(f"the model takes {width}x{side} images; photoman needs square ones")
        # decoders keep 1.5x the side: a JPEG drafted down to just the side, then resized with SigLIP's
        # bilinear filter, drifted up to 4.8e-3 from the full decode on a test photo; at 1.5x, 4e-4
        return PreprocessSpec(size=(side * 3 + 1) // 2, crop=side, resample=resample, mean=mean,  # type: ignore[arg-type]
                              std=std, square=True)  # type: ignore[arg-type]  # fmt: skip
    shortest = shortest or get(size, "height", 224)
    return PreprocessSpec(
        size=shortest,
        crop=get(crop, "height", shortest),
        resample=resample,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
    )


def load_encoder(
    model: str,
    device: str = "auto",
    precision: str = "auto",
    text_int8: bool = False,
    cache_dir: Path | None = None,
) -> ClipEncoder:
    """Load model, tokenizer and preprocessing config the same way for the hub and local folders.

    On CPU a single query text takes the fastest path available: the int8 ONNX Runtime session
    (``text_int8``, built once per checkpoint into ``cache_dir``), else the lean torch tower; this
    holds whatever runs the image model. Images on CPU: ``precision="auto"`` runs the runtime measured
    fastest here at parity (see :mod:`photoman.embedding.precision`), ``"onnx"`` ONNX Runtime fp32,
    ``"int8"`` ONNX Runtime with int8 weights (opt-in: below photoman's parity bound), ``"fp32"`` and
    ``"bf16"`` torch.
    """
    source = _resolve_source(model)
    dev = pick_device(device)
    autocast = _autocast_dtype(dev, precision)
    import transformers
    from safetensors import SafetensorError  # a damaged weights file (a download cut short)
    from transformers import AutoConfig, AutoProcessor, CLIPModel, SiglipModel

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        family = family_of(AutoConfig.from_pretrained(source).to_dict(), repr(model))
        model_class: Any = {CLIP: CLIPModel, SIGLIP: SiglipModel}[family]
        clip = model_class.from_pretrained(source)
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError, KeyError, ImportError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ModelError(f"cannot load the {_kind(model)} {model!r}: {first}") from None
    clip.eval().to(dev)
    from photoman.embedding.text_tower import LeanTextTower

    lean: Any = None
    fast: Any = None
    # query texts on CPU never depend on the image precision: a bf16 image model once sent every query
    # through torch's bf16 path (58 ms instead of 17 ms, issue 16)
    if dev == "cpu" and LeanTextTower.supports(clip, processor.tokenizer):
        if text_int8:
            fast = _onnx_tower(clip, processor.tokenizer, model, cache_dir)
        if fast is None:
            lean = LeanTextTower(clip, int8=text_int8)
        if fast is not None or lean.int8:  # texts go the fast way; int8 keeps the unused copy small
            _quantize_text_tower(clip)
        text_int8 = fast.int8 if fast is not None else lean.int8
    else:
        if dev == "cpu" and text_int8 and family is SIGLIP:
            # torch's per-tensor int8 drifts past 1e-3 on SigLIP's text tower: the fallback stays fp32
            log.warning("fast text encoder unavailable (this tokenizer masks padding); using the torch one")
            text_int8 = False
        text_int8 = bool(text_int8 and dev == "cpu" and autocast is None and _quantize_text_tower(clip))
    dim = embedding_dim(clip.config.to_dict())
    enc = ClipEncoder(
        model_id=model_identity(model),
        model=clip,
        tokenizer=processor.tokenizer,
        spec=_spec_from_processor(processor.image_processor),
        device=dev,
        autocast=autocast,
        dim=dim,
        text_int8=text_int8,
        lean_text=lean,
        query_text=fast,
        family=family,
    )
    _choose_image_runtime(enc, model, precision, cache_dir)
    if fast is not None:  # what a later process needs to open this encoder without torch
        from photoman.config import default_cache_dir
        from photoman.embedding.cached import write_manifest

        write_manifest(
            cache_dir or default_cache_dir(),
            model,
            family=family,
            logit_scale=enc.logit_scale,
            logit_bias=enc.logit_bias,
            spec=enc.spec,
        )
    return enc


def _runtime_name(device: str, autocast: Any) -> str:
    """torch-fp32, torch-bf16, torch-cuda-fp16, …: what runs the image model, as status shows it."""
    kind = "cuda" if device.startswith("cuda") else device
    prefix = "torch" if kind == "cpu" else f"torch-{kind}"
    dtype = str(autocast).replace("torch.", "") if autocast is not None else "fp32"
    return f"{prefix}-{ {'bfloat16': 'bf16', 'float16': 'fp16'}.get(dtype, dtype) }"


def _choose_image_runtime(enc: ClipEncoder, model: str, precision: str, cache_dir: Path | None) -> None:
    """Set what runs the image model: the setting, or on CPU for `auto` the one measured fastest here."""
    import torch

    from photoman.config import default_cache_dir

    name = _runtime_name(enc.device, enc.autocast)
    if enc.device != "cpu":
        why = "fp16 autocast on the GPU" if enc.autocast is not None else "fp32"
        enc.precision_info = {"runtime": name, "single": name, "reason": f"precision = {precision!r}: {why}"}
        return
    cache = cache_dir or default_cache_dir()
    if precision in ("onnx", "int8"):
        runtime = "onnx-int8" if precision == "int8" else "onnx-fp32"
        chosen, failed = _onnx_image(enc, model, cache, runtime)
        if chosen is None:
            why = f"precision = {precision!r}, but ONNX Runtime failed ({failed}): torch fp32"
            enc.precision_info = {"runtime": name, "single": name, "reason": why}
            return
        enc.image_runtime = chosen
        enc.precision_info = {
            "runtime": runtime,
            "single": runtime,
            "reason": f"precision = {precision!r} in the settings",
        }
        if runtime == "onnx-int8":
            enc.precision_info.update(_int8_parity(enc, chosen))
            p = enc.precision_info["parity"]
            bound = "within" if p <= 1e-3 else "beyond"
            log.info(
                'Image model in int8 (precision = "int8", opt-in): max cosine distance to fp32 %.1e '
                "on a test batch, %s photoman's parity bound of 1e-3",
                p,
                bound,
            )
        return
    if precision != "auto":
        enc.precision_info = {
            "runtime": name,
            "single": name,
            "reason": f"precision = {precision!r} in the settings",
        }
        from photoman.embedding.cached import TORCH

        if precision in TORCH:
            _save_torch_pack(enc, model, cache)
        return
    from photoman.embedding import onnx_image
    from photoman.embedding import precision as prec

    folder = onnx_image.cache_folder(cache, model, enc.model)
    choice = prec.read_choice(folder)
    cached = choice is not None
    ort: Any = None
    if choice is None:
        log.info("Measuring which runtime runs this model fastest on this CPU (once per machine and model)…")
        runners: dict[str, Any] = {
            "torch-fp32": lambda px: enc.encode_pixels_torch(px, None),
            "torch-bf16": lambda px: enc.encode_pixels_torch(px, torch.bfloat16),
        }
        ort, failed = _onnx_image(enc, model, cache, "onnx-fp32", quiet=True)  # "Measuring" said it
        if ort is not None:
            runners["onnx-fp32"] = lambda px: enc.encode_pixels_onnx(px, ort)
            if enc.image_runtime is None and prec.cpu_identity()["arch"] in ("aarch64", "arm64"):
                from photoman.embedding.onnx_image import OrtImageEncoder

                fast = OrtImageEncoder(ort.model_file, "onnx-bf16-fastmath")
                runners["onnx-bf16-fastmath"] = lambda px: enc.encode_pixels_onnx(px, fast)
        choice = prec.calibrate(runners, enc.spec.crop, threads=torch.get_num_threads())
        if ort is None:
            choice["measured"]["onnx-fp32"] = {"failed": failed}
        prec.write_choice(folder, choice)
    runtime = choice["runtime"]
    info = {**choice, "precision": "auto", "cached": cached}
    if runtime.startswith("onnx"):
        if ort is None:
            ort, failed = _onnx_image(enc, model, cache, "onnx-fp32")
        if ort is None:  # the cache was removed and the export now fails: the reference runtime
            runtime = "torch-fp32"
            info.update(runtime=runtime, single=runtime, reason=f"ONNX Runtime failed ({failed}); torch fp32")
        else:
            if runtime != ort.runtime:
                from photoman.embedding.onnx_image import OrtImageEncoder

                ort = OrtImageEncoder(ort.model_file, runtime)
            enc.image_runtime = ort
    enc.autocast = torch.bfloat16 if runtime == "torch-bf16" else None
    enc.single_fp32 = info.get("single") == "torch-fp32" and runtime != "torch-fp32"
    enc.precision_info = info
    if runtime.startswith("torch"):
        _save_torch_pack(enc, model, cache)


def _save_torch_pack(enc: ClipEncoder, model: str, cache: Path) -> None:
    """Where torch runs the images on a CPU, save the image tower for a torch-only open next time
    (:mod:`photoman.embedding.torch_image`: no transformers, a second instead of four)."""
    from photoman.embedding import onnx_image, torch_image

    if enc.device != "cpu" or enc.image_runtime is not None or enc.query_text is None:
        return  # not a CPU torch runtime, or no int8 text pack: a later process loads the model anyway
    if not torch_image.supports(enc.model):
        return
    try:
        folder = onnx_image.cache_folder(cache, model, enc.model)
    except (OSError, ValueError):
        return
    torch_image.save_pack(enc.model, folder, enc.spec.mean, enc.spec.std, enc.encode_pixels_torch)


def _onnx_image(
    enc: ClipEncoder, model: str, cache: Path, runtime: str, quiet: bool = False
) -> tuple[Any, str]:
    """The exported image encoder for ``runtime``, or (None, why) when ONNX Runtime is missing or fails."""
    from photoman.embedding import onnx_image

    if not onnx_image.available():
        return None, "onnxruntime is not installed"
    try:
        folder = onnx_image.cache_folder(cache, model, enc.model)
        if not quiet and not (folder / ("int8.onnx" if runtime == "onnx-int8" else "fp32.onnx")).is_file():
            log.info("Exporting the image model to ONNX Runtime for this machine (once, seconds)…")
        return onnx_image.load(enc.model, enc.spec, model, cache, runtime), ""
    except Exception as exc:  # noqa: BLE001 - any exporter/runtime failure: torch it is, and say why
        return None, (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]


def _int8_parity(enc: ClipEncoder, ort: Any) -> dict[str, Any]:
    """int8's max cosine distance to torch fp32 on a test batch (cached next to the int8 graph)."""
    import contextlib
    import json

    from photoman.embedding import precision as prec

    file = ort.model_file.with_name("int8-parity.json")
    try:
        saved = json.loads(file.read_text())
        if saved.get("signature") == prec.signature():
            return {"parity": float(saved["parity"])}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    pixels = prec.test_batch(8, enc.spec.crop)
    parity = prec.max_cosine_distance(
        enc.encode_pixels_onnx(pixels, ort), enc.encode_pixels_torch(pixels, None)
    )
    with contextlib.suppress(OSError):
        file.write_text(json.dumps({"parity": parity, "signature": prec.signature()}))
    return {"parity": parity}


def gpu_batch_size(clip: Any, device: str) -> int:
    """Images per call that keep a CUDA GPU busy without filling its memory: a power of two, 32–512."""
    import torch

    vc = clip.config.vision_config
    tokens = (vc.image_size // vc.patch_size) ** 2 + 1
    # fp16 activations alive at once in a layer: the MLP's hidden state and the attention scores, with slack
    per_image = tokens * vc.intermediate_size * 2 * 4 + tokens * tokens * vc.num_attention_heads * 2 * 3
    try:
        free, _total = torch.cuda.mem_get_info(torch.device(device))
    except Exception:  # noqa: BLE001 - no figure: a size any GPU photoman runs on can hold
        return 128
    fit = int(free * 0.25 / per_image)
    size = 32
    while size * 2 <= min(fit, 512):
        size *= 2
    return size


def model_dim(model: str) -> int:
    """Embedding size from the checkpoint's config.json: no torch and never the network.

    Raises :class:`ModelNotCached` for a hub id that is not downloaded yet.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        cfg_file: str | Path | None = path / "config.json"
    else:
        if path.suffix or model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise ModelError(f"model {model!r} is neither a folder nor a Hugging Face model id")
        from huggingface_hub import try_to_load_from_cache

        try:
            cfg_file = try_to_load_from_cache(model, "config.json")
        except ValueError:  # the hub's own check of an id (spaces, too long, ...)
            raise ModelError(f"model {model!r} is neither a folder nor a Hugging Face model id") from None
        if not isinstance(cfg_file, str):
            known = KNOWN_SIZES_MB.get(model)
            size = f" (about {known} MB)" if known else ""
            raise ModelNotCached(f"model {model}{size} is not downloaded yet; `photoman index` downloads it")
    cfg = read_config(cfg_file)  # type: ignore[arg-type]
    try:
        return embedding_dim(cfg)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ModelError(f"model {model!r} has an incomplete config.json (no vector size in it)") from None


def checkpoint_spec(model: str) -> PreprocessSpec:
    """Resize/crop numbers from the processor JSON, so decode workers can start before torch loads."""
    import json

    path = Path(model).expanduser()
    for name in ("preprocessor_config.json", "processor_config.json"):
        if path.is_dir():
            file: Any = path / name if (path / name).exists() else None
        else:
            from huggingface_hub import try_to_load_from_cache

            file = try_to_load_from_cache(model, name)
            file = file if isinstance(file, str) else None
        if file:
            try:
                cfg = json.loads(Path(file).read_text())
            except (OSError, ValueError):
                continue
            cfg = cfg.get("image_processor", cfg)
            return _spec_from_processor(_DictProcessor(cfg))
    return PreprocessSpec()


class _DictProcessor:
    """Attribute view of an image processor JSON for :func:`_spec_from_processor`."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        d = PreprocessSpec()
        self.size = cfg.get("size") or {"shortest_edge": d.size}
        self.crop_size = cfg.get("crop_size") or {"height": d.crop}
        self.do_center_crop = cfg.get("do_center_crop")
        self.resample = cfg.get("resample", d.resample)
        self.image_mean = cfg.get("image_mean") or d.mean
        self.image_std = cfg.get("image_std") or d.std
