"""The image model's runtime: ONNX Runtime parity with transformers on the real photos, the measured
`auto` choice (cached, re-measured when the machine changes), the fallback to torch, int8 opt-in, CUDA."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, CLIPModel

from photoman.embedding import onnx_image
from photoman.embedding import precision as prec
from photoman.embedding.model import ClipEncoder, load_encoder
from photoman.embedding.precision import cached_choice, calibrate, precision_choice
from photoman.embedding.query_text import QueryTextEncoder
from photoman.media.decode import load_image

from .reference import reference_image_vectors

PHOTO_EXTS = (".jpg", ".png")


def _reference(model_dir: Path, files: list[Path]) -> np.ndarray:
    """transformers' own pipeline: full decode, CLIPProcessor, get_image_features, fp32."""
    clip = CLIPModel.from_pretrained(str(model_dir)).eval()
    return reference_image_vectors(clip, AutoProcessor.from_pretrained(str(model_dir)), files)


def _parity(enc: ClipEncoder, files: list[Path], reference: np.ndarray) -> float:
    fast = np.concatenate(
        [
            enc.encode_images([load_image(f, min_side=enc.spec.size) for f in files[i : i + 8]])
            for i in range(0, len(files), 8)
        ]
    )
    return float((1.0 - (fast * reference).sum(axis=1)).max())


def _photos(photos_src: Path) -> list[Path]:
    files = sorted(p for p in photos_src.iterdir() if p.suffix in PHOTO_EXTS)
    assert len(files) >= 30
    return files


def test_onnx_image_tower_matches_transformers_on_the_real_photos(
    tiny_model: Path, photos_src: Path, tmp_path: Path
) -> None:
    """ONNX Runtime's vectors vs transformers' reference pipeline: ≤ 1e-3 cosine distance on every photo."""
    files = _photos(photos_src)
    enc = load_encoder(str(tiny_model), device="cpu", precision="onnx", cache_dir=tmp_path)
    assert isinstance(enc.image_runtime, onnx_image.OrtImageEncoder)
    assert precision_choice(enc)["runtime"] == "onnx-fp32"
    assert _parity(enc, files, _reference(tiny_model, files)) <= 1e-3
    # the exported graph is the loaded modules' forward: same pixels, same vectors
    px = prec.test_batch(4, enc.spec.crop)
    assert prec.max_cosine_distance(enc.encode_pixels(px), enc.encode_pixels_torch(px)) < 1e-5
    # the next process's session loads the optimised graph the first one saved: the same vectors
    assert len(list(enc.image_runtime.model_file.parent.glob("fp32.opt-all-*.onnx"))) == 1
    again = load_encoder(str(tiny_model), device="cpu", precision="onnx", cache_dir=tmp_path)
    assert np.allclose(again.encode_pixels(px), enc.encode_pixels(px), atol=1e-6)
    # sessions follow the calling thread's count (the daemon's indexer/query split)
    from photoman.embedding import threads

    def one_thread() -> None:
        threads.use(1)
        enc.encode_pixels(px[:2])

    worker = threading.Thread(target=one_thread)
    worker.start()
    worker.join()
    assert 1 in enc.image_runtime._sessions


def test_onnx_vit_b32_parity_on_the_real_photos(photos_src: Path, tmp_path: Path) -> None:
    """The production image tower (ViT-B/32, random weights) holds the bound too: ONNX Runtime, and
    the torch image tower opened without transformers, in fp32 and in bf16 (the text tower is tiny:
    it plays no part in image parity, and the full one doubled the test's time)."""
    from photoman.embedding import torch_image
    from photoman.embedding.preprocess import resize_crop
    from tests.checkpoints import build_random_clip

    from .conftest import BPE_DIR

    model_dir = build_random_clip(tmp_path / "vit-b-32-image", BPE_DIR, shape="vit-b-32-image")
    files = _photos(photos_src)[::5]  # 8 real photos: the bound holds on each
    enc = load_encoder(str(model_dir), device="cpu", precision="onnx", cache_dir=tmp_path)
    assert enc.image_runtime is not None
    reference = _reference(model_dir, files)
    assert _parity(enc, files, reference) <= 1e-3
    mean, std = enc.spec.mean, enc.spec.std
    assert torch_image.save_pack(enc.model, tmp_path / "tower", mean, std, enc.encode_pixels_torch)
    px = np.stack([resize_crop(load_image(f, min_side=enc.spec.size), enc.spec) for f in files])
    for runtime in ("torch-fp32", "torch-bf16"):
        tower = torch_image.open_pack(tmp_path / "tower", runtime, False, enc.spec.mean, enc.spec.std)
        assert tower is not None
        got = tower.features(px)
        got /= np.linalg.norm(got, axis=1, keepdims=True)
        assert float((1.0 - (got * reference).sum(axis=1)).max()) <= 1e-3, runtime


def test_auto_measures_once_per_machine_and_caches_the_choice(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="photoman")
    enc = load_encoder(str(tiny_model), device="cpu", cache_dir=tmp_path)
    choice = precision_choice(enc)
    said = [r.getMessage() for r in caplog.records if r.name == "photoman.embedding.model"]
    assert any("Measuring" in m for m in said) and not choice["cached"]
    assert not any("Exporting" in m for m in said)  # the measuring notice covers the export
    assert choice["runtime"] in ("torch-fp32", "torch-bf16", "onnx-fp32")
    assert choice["reason"] and choice["measured"]["torch-fp32"]["images_per_s"] > 0
    assert choice["measured"]["onnx-fp32"]["parity"] <= 1e-3
    assert (enc.image_runtime is not None) == choice["runtime"].startswith("onnx")
    # the status path reads the same decision without loading the model
    assert cached_choice(tmp_path, str(tiny_model))["runtime"] == choice["runtime"]

    caplog.clear()
    again = load_encoder(str(tiny_model), device="cpu", cache_dir=tmp_path)
    assert precision_choice(again)["cached"] and not any("Measuring" in m for m in caplog.messages)
    assert precision_choice(again)["runtime"] == choice["runtime"]

    # another CPU (or torch/onnxruntime version) reading the same cache: measured again
    file = onnx_image.cache_folder(tmp_path, str(tiny_model)) / prec.CHOICE_FILE
    saved = json.loads(file.read_text())
    saved["signature"]["cpu"] = "Some Other CPU"
    file.write_text(json.dumps(saved))
    assert cached_choice(tmp_path, str(tiny_model)) is None
    third = load_encoder(str(tiny_model), device="cpu", cache_dir=tmp_path)
    assert not precision_choice(third)["cached"]
    assert json.loads(file.read_text())["signature"] == prec.signature()


def _runner(seconds_per_image: float, noise: float = 0.0, single_s: float | None = None) -> Any:
    base = np.random.default_rng(1).normal(size=(8, 16)).astype(np.float32)

    def run(px: np.ndarray) -> np.ndarray:
        time.sleep(single_s if single_s is not None and len(px) == 1 else seconds_per_image * len(px))
        out = base[: len(px)] + noise * np.random.default_rng(2).normal(size=(len(px), 16))
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return run


def test_auto_keeps_the_fastest_runtime_at_parity_and_never_a_slower_one() -> None:
    choice = calibrate(
        {
            "torch-fp32": _runner(0.004),
            "onnx-fp32": _runner(0.002),
            "onnx-int8": _runner(0.0005, noise=0.2),  # fastest, but its vectors drift: never chosen
            "torch-bf16": _runner(0.04),  # ten times slower: dropped after the first small batch
        },
        crop=32,
        seconds=0.3,
    )
    assert choice["runtime"] == "onnx-fp32" and choice["single"] == "onnx-fp32"
    assert "onnx-int8 fails parity" in choice["reason"]
    assert "dropped" in choice["measured"]["torch-bf16"]
    # a moment of other load during its first small batch does not drop a runtime that is faster
    calls = {"n": 0}
    fast = _runner(0.001)

    def hiccup(px: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:  # the first timed probe: the machine was busy just then
            time.sleep(0.2)
        return fast(px)

    loaded = calibrate({"torch-fp32": _runner(0.004), "onnx-fp32": hiccup}, crop=32, seconds=0.2)
    assert loaded["runtime"] == "onnx-fp32" and "dropped" not in loaded["measured"]["onnx-fp32"]
    # no clear win over torch fp32: the reference runtime stays
    tie = calibrate({"torch-fp32": _runner(0.002), "onnx-fp32": _runner(0.002)}, crop=32, seconds=0.2)
    assert tie["runtime"] == "torch-fp32"
    # faster in batches but slower for one image (an image query): single images stay on torch fp32
    runners = {"torch-fp32": _runner(0.004, single_s=0.002), "onnx-fp32": _runner(0.001, single_s=0.02)}
    split = calibrate(runners, crop=32, seconds=0.2)
    assert split["runtime"] == "onnx-fp32" and split["single"] == "torch-fp32"


def test_without_onnx_runtime_auto_falls_back_to_torch(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_image, "available", lambda: False)
    enc = load_encoder(str(tiny_model), device="cpu", cache_dir=tmp_path / "a")
    choice = precision_choice(enc)
    assert choice["runtime"].startswith("torch-") and enc.image_runtime is None
    assert choice["measured"]["onnx-fp32"] == {"failed": "onnxruntime is not installed"}
    px = prec.test_batch(3, enc.spec.crop)
    assert prec.max_cosine_distance(enc.encode_pixels(px), enc.encode_pixels_torch(px)) < 1e-2


def test_a_failing_export_falls_back_to_torch(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # auto measured ONNX Runtime fastest, then its cached graph is lost and the export now fails
    load_encoder(str(tiny_model), device="cpu", cache_dir=tmp_path)
    folder = onnx_image.cache_folder(tmp_path, str(tiny_model))
    choice = json.loads((folder / prec.CHOICE_FILE).read_text())
    choice.update(runtime="onnx-fp32", single="onnx-fp32")
    (folder / prec.CHOICE_FILE).write_text(json.dumps(choice))
    (folder / "fp32.onnx").unlink()

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_image, "export", broken)
    enc = load_encoder(str(tiny_model), device="cpu", cache_dir=tmp_path)
    choice = precision_choice(enc)
    assert choice["runtime"] == "torch-fp32" and enc.image_runtime is None
    assert "exporter exploded" in choice["reason"]
    explicit = load_encoder(str(tiny_model), device="cpu", precision="onnx", cache_dir=tmp_path)
    assert explicit.image_runtime is None and "exporter exploded" in precision_choice(explicit)["reason"]
    px = prec.test_batch(2, enc.spec.crop)
    assert enc.encode_pixels(px).shape == (2, enc.dim)


def test_a_broken_cached_graph_is_rebuilt(tiny_model: Path, tmp_path: Path) -> None:
    enc = load_encoder(str(tiny_model), device="cpu", precision="onnx", cache_dir=tmp_path)
    enc.image_runtime.model_file.write_bytes(b"truncated by a crash")
    again = load_encoder(str(tiny_model), device="cpu", precision="onnx", cache_dir=tmp_path)
    px = prec.test_batch(2, enc.spec.crop)
    assert prec.max_cosine_distance(again.encode_pixels(px), again.encode_pixels_torch(px)) < 1e-5


def test_int8_images_are_opt_in_and_say_their_parity(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="photoman")
    enc = load_encoder(str(tiny_model), device="cpu", precision="int8", cache_dir=tmp_path)
    said = caplog.messages
    info = precision_choice(enc)
    assert info["runtime"] == "onnx-int8" and enc.image_runtime.int8
    assert 0 <= info["parity"] < 0.1
    assert any("parity bound" in m and f"{info['parity']:.1e}" in m for m in said)
    auto = cached_choice(tmp_path, str(tiny_model))
    assert auto is None or auto["runtime"] != "onnx-int8"  # auto never picks it


def test_queries_keep_the_onnx_text_encoder_whatever_the_image_precision(tiny_model: Path) -> None:
    """Issue 16: bf16 images once sent every query through torch's bf16 path (58 ms instead of 17)."""
    fp32 = load_encoder(str(tiny_model), device="cpu", precision="fp32", text_int8=True)
    for precision in ("bf16", "int8", "auto"):
        enc = load_encoder(str(tiny_model), device="cpu", precision=precision, text_int8=True)
        assert isinstance(enc.query_text, QueryTextEncoder), precision
        assert np.array_equal(enc.encode_texts(["a red boat"]), fp32.encode_texts(["a red boat"]))


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU here (torch.cuda.is_available() is False)"
)
def test_cuda_path_fp16_pinned_and_at_parity(tiny_model: Path, photos_src: Path) -> None:
    files = _photos(photos_src)
    enc = load_encoder(str(tiny_model), device="cuda")
    info = precision_choice(enc)
    assert enc.autocast == torch.float16 and info["runtime"] == "torch-cuda-fp16"
    assert enc.preferred_batch_size(32) >= 32
    assert _parity(enc, files, _reference(tiny_model, files)) <= 1e-3
    big = np.repeat(prec.test_batch(2, enc.spec.crop), enc.preferred_batch_size(32) // 2, axis=0)
    vecs = enc.encode_pixels(big)
    assert vecs.shape == (len(big), enc.dim) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-3)
