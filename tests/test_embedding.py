"""Model loading through the production path, and fast-path parity with transformers' reference."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from photoman.embedding.model import ClipEncoder, checkpoint_spec, load_encoder, model_dim
from photoman.errors import ModelError
from photoman.media.decode import load_image

PHOTO_EXTS = (".jpg", ".png")


@pytest.fixture(scope="module")
def encoder(tiny_model: Path) -> ClipEncoder:
    return load_encoder(str(tiny_model), device="cpu", precision="fp32")


def test_loads_tokenizer_and_config_like_a_real_checkpoint(encoder: ClipEncoder, tiny_model: Path) -> None:
    assert encoder.dim == 16 == model_dim(str(tiny_model))
    assert encoder.spec.size == 224 and encoder.spec.crop == 224
    assert checkpoint_spec(str(tiny_model)) == encoder.spec
    ids = encoder.tokenizer("a photo of a cat")["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]  # OpenAI CLIP BPE ids


def test_vectors_are_unit_norm_and_deterministic(encoder: ClipEncoder, photos_src: Path) -> None:
    img = load_image(photos_src / "scikit-image--chelsea.png")
    a = encoder.encode_images([img, img])
    t = encoder.encode_texts(["a cat", "two dogs running across a frosty field", "x " * 200])
    assert a.shape == (2, 16) and t.shape == (3, 16)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert np.allclose(a[0], a[1])
    assert not np.allclose(t[0], t[1])


def test_bf16_autocast_stays_close_to_fp32(tiny_model: Path, encoder: ClipEncoder, photos_src: Path) -> None:
    bf16 = load_encoder(str(tiny_model), device="cpu", precision="bf16")
    img = load_image(photos_src / "scikit-learn--china.jpg")
    cos = float(bf16.encode_images([img])[0] @ encoder.encode_images([img])[0])
    assert cos > 0.99


def test_fast_path_matches_reference_pipeline(
    encoder: ClipEncoder, tiny_model: Path, photos_src: Path
) -> None:
    """Draft decode + our resize/crop vs CLIPProcessor on the full image: ≤ 1e-3 cosine distance."""
    processor = AutoProcessor.from_pretrained(str(tiny_model))
    worst = 0.0
    files = sorted(p for p in photos_src.iterdir() if p.suffix in PHOTO_EXTS)
    assert len(files) >= 30
    for path in files:
        full = load_image(path)  # fully decoded, upright
        inputs = processor(images=[full], return_tensors="pt")
        with torch.inference_mode():
            out = encoder.model.get_image_features(pixel_values=inputs["pixel_values"])
        ref = torch.nn.functional.normalize(out.pooler_output, dim=-1)[0].numpy()
        fast = encoder.encode_images([load_image(path, min_side=encoder.spec.size)])[0]
        worst = max(worst, 1.0 - float(ref @ fast))
    assert worst <= 1e-3, worst


def test_unknown_model_offline_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_encoder("nobody/no-such-clip-model")
    with pytest.raises(ModelError, match="not downloaded yet"):  # model_dim never downloads
        model_dim("nobody/no-such-clip-model")
    with pytest.raises(ModelError, match="no config.json"):
        load_encoder(str(tmp_path))
    with pytest.raises(ModelError, match="neither a folder"):
        load_encoder(str(tmp_path / "missing-folder"))


def test_int8_text_tower_is_close_to_fp32_and_batch_independent(
    tiny_model: Path, encoder: ClipEncoder
) -> None:
    int8 = load_encoder(str(tiny_model), device="cpu", precision="fp32", text_int8=True)
    assert int8.text_int8 and not encoder.text_int8
    texts = ["a cat", "two dogs running across a frosty field", "sunset"]
    together = int8.encode_texts(texts)
    alone = np.stack([int8.encode_texts([t])[0] for t in texts])
    assert np.array_equal(together, alone)  # a text's vector never depends on its batch
    cos = (together * encoder.encode_texts(texts)).sum(axis=1)
    assert cos.min() > 0.99


def test_lean_text_tower_equals_the_transformers_forward(encoder: ClipEncoder) -> None:
    """One query at a time skips transformers' per-module overhead; the vectors must not change."""
    import torch

    assert encoder.lean_text is not None  # CPU fp32: single texts take the lean path
    texts = ["a cat", "two dogs running across a frosty field", "x " * 200]  # the last one is truncated
    tok = encoder.tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.inference_mode():
        out = encoder.model.get_text_features(**{k: tok[k] for k in ("input_ids", "attention_mask")})
    ref = torch.nn.functional.normalize(out.pooler_output, dim=-1).numpy()
    lean = np.stack([encoder.encode_texts([t])[0] for t in texts])
    assert np.abs(lean - ref).max() < 1e-5


def test_a_repeated_query_text_is_encoded_once(tiny_model: Path) -> None:
    enc = load_encoder(str(tiny_model), device="cpu", precision="fp32", text_int8=True)
    first = enc.encode_texts(["a red boat"])[0]
    again = enc.encode_texts(["a red boat"])[0]
    info = enc.query_text._one.cache_info()
    assert info.hits == 1 and info.misses == 1
    assert np.array_equal(first, again)
    again[0] = 5.0  # callers get their own arrays: the cached vector stays intact
    assert np.array_equal(enc.encode_texts(["a red boat"])[0], first)


def test_onnx_text_tower_is_the_transformers_forward_and_is_cached(tiny_model: Path, tmp_path: Path) -> None:
    """The query-time ONNX Runtime tower: exported from the loaded modules, equal in fp32, built once."""
    from transformers import CLIPModel

    from photoman.embedding import onnx_text

    clip = CLIPModel.from_pretrained(str(tiny_model)).eval()
    enc = load_encoder(str(tiny_model), device="cpu", precision="fp32")
    texts = ["a cat", "Two dogs running across a FROSTY field!", "ça été naïve 東京", "x " * 200]
    tok = enc.tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.inference_mode():
        ref = clip.get_text_features(**{k: tok[k] for k in ("input_ids", "attention_mask")}).pooler_output
    fp32 = onnx_text.load(clip, enc.tokenizer, str(tiny_model), tmp_path, quantize=False)
    for i, text in enumerate(texts):
        ids = enc.tokenizer([text], truncation=True, max_length=77)["input_ids"][0]
        assert fp32.token_ids(text) == ids  # the tokenizers-only path tokenises exactly as transformers
        assert np.abs(fp32.features(ids) - ref[i : i + 1].numpy()).max() < 1e-5
    int8 = onnx_text.load(clip, enc.tokenizer, str(tiny_model), tmp_path)
    built = int8.model_file.stat().st_mtime_ns
    again = onnx_text.load(clip, enc.tokenizer, str(tiny_model), tmp_path)
    assert again.model_file.stat().st_mtime_ns == built  # reused, not rebuilt
    int8.model_file.write_bytes(b"truncated by a crash")
    again = onnx_text.load(clip, enc.tokenizer, str(tiny_model), tmp_path)  # rebuilt, not fatal
    unit = torch.nn.functional.normalize(ref[:1], dim=-1).numpy()[0]
    assert float(again.encode_texts(["a cat"])[0] @ unit) > 0.99


def test_cpu_queries_use_the_onnx_tower_by_default(tiny_model: Path) -> None:
    from photoman.embedding.query_text import QueryTextEncoder

    enc = load_encoder(str(tiny_model), device="cpu", precision="fp32", text_int8=True)
    assert isinstance(enc.query_text, QueryTextEncoder) and enc.text_int8
    assert enc.query_text.pack.parent.parent == Path(os.environ["PHOTOMAN_CACHE_DIR"])


def test_the_text_pack_encodes_without_torch(tiny_model: Path) -> None:
    """A cold query process finds the pack by the checkpoint's files and never imports torch."""
    from .reference import cold_pack_query

    enc = load_encoder(str(tiny_model), device="cpu", precision="fp32", text_int8=True)
    want = enc.encode_texts(["a red car"])[0]
    vec, heavy = cold_pack_query(tiny_model, "a red car")
    assert not heavy and np.allclose(vec, want, atol=1e-6)


def test_the_text_pack_saves_its_optimised_graph(tiny_model: Path, tmp_path: Path) -> None:
    """The first open saves ONNX Runtime's optimised graph; later opens load it (cheaper) and encode
    exactly as the first did."""
    import shutil

    from photoman.embedding.query_text import QueryTextEncoder

    enc = load_encoder(str(tiny_model), device="cpu", precision="fp32", text_int8=True)
    assert enc.query_text is not None
    pack = tmp_path / "pack"
    shutil.copytree(enc.query_text.pack, pack, ignore=shutil.ignore_patterns("model.opt-*"))
    first = QueryTextEncoder(pack).encode_texts(["a red car", "two dogs in the snow"])
    saved = list(pack.glob("model.opt-*.onnx"))
    assert len(saved) == 1 and not list(pack.glob(".*.tmp"))
    again = QueryTextEncoder(pack).encode_texts(["a red car", "two dogs in the snow"])
    assert np.array_equal(first, again)
    saved[0].write_bytes(b"damaged")  # a damaged saved graph is optimised again, not fatal
    assert np.array_equal(QueryTextEncoder(pack).encode_texts(["a red car", "two dogs in the snow"]), first)
