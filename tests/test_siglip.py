"""SigLIP / SigLIP 2 next to CLIP on every path, with a tiny random SigLIP built offline (its Gemma-style
tokenizer trained at test time) and loaded through the production code: image vectors (fast decode
path, torch and ONNX Runtime) and text vectors (torch, lean, the ONNX query pack) against the
transformers reference on the real photos, SigLIP's own zero-shot scoring, and the CLI end to end
with queries in other scripts."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, SiglipModel
from typer.testing import CliRunner

from photoman.cli import app
from photoman.config import Settings
from photoman.embedding import onnx_image
from photoman.embedding.family import SIGLIP
from photoman.embedding.known_models import known
from photoman.embedding.model import ClipEncoder, checkpoint_spec, load_encoder, model_dim
from photoman.embedding.precision import precision_choice
from photoman.embedding.query_text import QueryTextEncoder
from photoman.errors import ModelError
from photoman.media.decode import load_image
from photoman.zeroshot.labels import label_vectors
from photoman.zeroshot.tagging import classify

from .reference import cold_pack_query, reference_image_vectors

PHOTO_EXTS = (".jpg", ".png")
# English with capitals and punctuation, other scripts, bytes the tokenizer never saw, a truncated one
TEXTS = [
    "a cat",
    "Two dogs running across a FROSTY field!",
    "кошка на пляже",
    "東京の夕日",
    "قطة على الشاطئ 🐈",
    "x " * 200,
]


@pytest.fixture(scope="module")
def reference(tiny_siglip: Path) -> tuple[SiglipModel, object]:
    """transformers' own model and processor for the checkpoint (the model card's reference)."""
    folder = str(tiny_siglip)
    return SiglipModel.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)


@pytest.fixture(scope="module")
def encoder(tiny_siglip: Path) -> ClipEncoder:
    """What queries use on a CPU by default: fp32 images, the int8 ONNX text pack."""
    return load_encoder(str(tiny_siglip), device="cpu", precision="fp32", text_int8=True)


def _reference_texts(reference: Any, texts: list[str]) -> np.ndarray:
    model, processor = reference
    # the model card: processor(text=..., padding="max_length", max_length=64) and get_text_features
    inputs = processor(text=texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        return torch.nn.functional.normalize(model.get_text_features(**inputs).pooler_output, dim=-1).numpy()


def _cos_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float((1.0 - (a * b).sum(axis=1)).max())


def test_a_siglip_checkpoint_loads_like_a_hub_one(
    encoder: ClipEncoder, tiny_siglip: Path, tmp_path: Path
) -> None:
    assert encoder.family is SIGLIP and encoder.dim == 32 == model_dim(str(tiny_siglip))
    spec = encoder.spec  # read from the processor config: a square resize, bilinear, mean/std 0.5
    assert spec.square and spec.crop == 224 and spec.resample == Image.Resampling.BILINEAR
    assert spec.mean == spec.std == (0.5, 0.5, 0.5) and checkpoint_spec(str(tiny_siglip)) == spec
    ids = encoder.tokenize(["a photo of a cat"])["input_ids"][0]
    assert len(ids) == 64 and ids[ids.index(1) + 1 :] == [0] * (63 - ids.index(1))  # <eos>, then <pad>s
    assert encoder.templates == ("This is a photo of {}.",) and encoder.logit_bias == pytest.approx(-10)
    # google/siglip2-base-patch16-224's own config files (as published): defaults fill what they omit
    hub = tmp_path / "siglip2-base-patch16-224"
    hub.mkdir()
    (hub / "config.json").write_text(json.dumps({
        "model_type": "siglip", "text_config": {"model_type": "siglip_text_model", "vocab_size": 256000},
        "vision_config": {"model_type": "siglip_vision_model"}}))  # fmt: skip
    (hub / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor", "resample": 2, "rescale_factor": 1 / 255,
        "size": {"height": 224, "width": 224}}))  # fmt: skip
    assert model_dim(str(hub)) == 768
    assert checkpoint_spec(str(hub)) == spec  # the tiny one mirrors it
    naflex = tmp_path / "naflex"
    naflex.mkdir()
    (naflex / "config.json").write_text(json.dumps({"model_type": "siglip2"}))
    for call in (lambda: model_dim(str(naflex)), lambda: load_encoder(str(naflex), device="cpu")):
        with pytest.raises(ModelError, match="NaFlex") as err:
            call()
        assert "\n" not in str(err.value)


def test_image_vectors_match_transformers_on_the_real_photos(
    tiny_siglip: Path, reference: Any, photos_src: Path, tmp_path: Path
) -> None:
    """Draft decode + photoman's square resize vs SiglipProcessor on the full image, torch and ONNX
    Runtime (and the runtime `auto` measures): at most 1e-3 cosine distance on every photo."""
    model, processor = reference
    files = sorted(p for p in photos_src.iterdir() if p.suffix in PHOTO_EXTS)
    assert len(files) >= 30
    reference_vecs = reference_image_vectors(model, processor, files)
    for precision in ("fp32", "onnx", "auto"):
        enc = load_encoder(str(tiny_siglip), device="cpu", precision=precision, cache_dir=tmp_path)
        runtime = precision_choice(enc)["runtime"]
        assert (enc.image_runtime is not None) == runtime.startswith("onnx"), runtime
        if precision == "onnx":
            assert isinstance(enc.image_runtime, onnx_image.OrtImageEncoder)
        fast = np.concatenate(
            [
                enc.encode_images([load_image(f, min_side=enc.spec.size) for f in files[i : i + 8]])
                for i in range(0, len(files), 8)
            ]
        )
        assert _cos_dist(fast, reference_vecs) <= 1e-3, (precision, runtime)


def test_text_vectors_match_transformers_on_every_path(
    encoder: ClipEncoder, tiny_siglip: Path, reference: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queries (the int8 ONNX pack; the int8 lean tower without ONNX Runtime), the lean torch tower and
    batches vs get_text_features."""
    ref = _reference_texts(reference, TEXTS)
    _model, processor = reference
    pack = encoder.query_text
    assert isinstance(pack, QueryTextEncoder) and pack.int8
    for text in TEXTS:  # the torch-free tokenisation is the processor's, padding included
        want = processor(text=[text], padding="max_length", max_length=64, truncation=True)["input_ids"][0]
        assert pack.token_ids(text) == list(want), text
    assert _cos_dist(encoder.encode_texts(TEXTS), ref) <= 1e-3  # what a query uses
    exact = load_encoder(str(tiny_siglip), device="cpu", precision="fp32", text_int8=False)
    assert exact.lean_text is not None and exact.query_text is None
    assert np.abs(exact.encode_texts(TEXTS) - ref).max() < 1e-5  # a batch: the transformers forward
    lean = np.stack([exact.encode_texts([t])[0] for t in TEXTS])  # one at a time: the lean tower
    assert np.abs(lean - ref).max() < 1e-5

    from photoman.embedding import onnx_text

    fp32 = onnx_text.load(reference[0], processor.tokenizer, str(tiny_siglip), tmp_path, quantize=False)
    assert np.abs(fp32.encode_texts(TEXTS) - ref).max() < 1e-5  # the exported graph is the same forward
    monkeypatch.setattr(onnx_text, "available", lambda: False)  # no ONNX Runtime: int8 torch, lean
    no_ort = load_encoder(str(tiny_siglip), device="cpu", precision="fp32", text_int8=True)
    assert no_ort.query_text is None and no_ort.lean_text.int8
    assert _cos_dist(no_ort.encode_texts(TEXTS), ref) <= 1e-3


def test_the_query_pack_encodes_without_torch(encoder: ClipEncoder, tiny_siglip: Path) -> None:
    """A cold query process (no daemon) finds the SigLIP pack and never imports torch."""
    want = encoder.encode_texts(["собака на пляже"])[0]
    vec, heavy = cold_pack_query(tiny_siglip, "собака на пляже")
    assert not heavy and np.allclose(vec, want, atol=1e-6)


def test_a_tokenizer_that_masks_padding_keeps_the_torch_path(
    tiny_siglip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The pack mirrors SigLIP's unmasked forward; a checkpoint whose tokenizer returns a mask (which the
    reference then passes) stays on torch, says so in one line, and still matches the reference."""
    masked = tmp_path / "masked"
    shutil.copytree(tiny_siglip, masked)
    cfg = json.loads((masked / "tokenizer_config.json").read_text())
    cfg["model_input_names"] = ["input_ids", "attention_mask"]
    (masked / "tokenizer_config.json").write_text(json.dumps(cfg))
    caplog.set_level(logging.INFO, logger="photoman")
    enc = load_encoder(str(masked), device="cpu", precision="fp32", text_int8=True)
    assert enc.query_text is None and enc.lean_text is None
    said = [r for r in caplog.records if "fast text encoder unavailable" in r.getMessage()]
    assert said and all(r.levelno == logging.WARNING and "\n" not in r.getMessage() for r in said)
    ref = _reference_texts((SiglipModel.from_pretrained(str(masked)).eval(),
                            AutoProcessor.from_pretrained(str(masked))), TEXTS)  # fmt: skip
    assert _cos_dist(enc.encode_texts(TEXTS), ref) <= 1e-3


def test_zero_shot_is_siglips_sigmoid_with_its_own_prompt(
    encoder: ClipEncoder, reference: Any, photos_src: Path
) -> None:
    """classify = sigmoid(logits_per_image) of SiglipModel's forward on "This is a photo of {}."."""
    model, processor = reference
    labels = ["cat", "dog", "rocket", "coffee cup"]
    image = load_image(photos_src / "scikit-image--chelsea.png")
    got = dict(classify(encoder, image, labels))
    prompts = [f"This is a photo of {label}." for label in labels]
    inputs = processor(text=prompts, images=[image], padding="max_length", max_length=64, return_tensors="pt")
    with torch.inference_mode():
        want = torch.sigmoid(model(**inputs).logits_per_image)[0].numpy()
    assert np.abs(np.array([got[label] for label in labels]) - want).max() < 2e-3
    vecs = label_vectors(encoder, labels, None)  # one prompt: the label vector is its text vector
    assert np.allclose(vecs, encoder.encode_texts(prompts), atol=1e-6)


def test_known_models_list_siglip2_with_its_published_figure() -> None:
    entry = known("google/siglip2-base-patch16-224")
    assert entry is not None and entry.languages == "multilingual" and entry.dim == 768
    assert entry.coco_t2i_r1 == pytest.approx(0.521) and "2502.14786" in entry.source
    assert all(m.coco_t2i_r1 for m in [known("openai/clip-vit-base-patch32"), entry] if m)


def test_index_find_tag_classify_locate_with_siglip(
    cli_env: Settings, tiny_siglip: Path, library_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: a library indexed with SigLIP answers text queries in any script with no flag, image
    queries, tag, classify and locate."""
    monkeypatch.setenv("PHOTOMAN_MODEL", str(tiny_siglip))
    runner = CliRunner()
    res = runner.invoke(app, ["index", str(library_dir), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["embedded"] == 10, res.output
    for query in ("a tabby cat on a sofa", "кошка на диване", "ソファの上の猫", "Katze auf dem Sofa"):
        res = runner.invoke(app, ["find", query, "--limit", "3", "--all", "--json"])
        assert res.exit_code == 0, (query, res.output)
        assert len(json.loads(res.stdout)) == 3, query
    cat = library_dir / "scikit-image--chelsea.png"
    res = runner.invoke(app, ["find", "--image", str(cat), "--limit", "1", "--all", "--json"])
    assert json.loads(res.stdout)[0]["path"] == str(cat)  # its own vector comes first
    assert runner.invoke(app, ["tag"]).exit_code == 0
    probs = json.loads(runner.invoke(app, ["classify", str(cat), "-l", "cat,dog,car", "--json"]).stdout)
    assert set(probs) == {"cat", "dog", "car"} and all(0 < p < 1 for p in probs.values())
    assert abs(sum(probs.values()) - 1) > 1e-3  # a sigmoid per label, not a softmax over them
    res = runner.invoke(app, ["locate", str(cat), "a cat's face", "--json"])
    x0, y0, x1, y1 = json.loads(res.stdout)["box"]
    assert res.exit_code == 0 and 0 <= x0 < x1 <= 451 and 0 <= y0 < y1 <= 300
    info = json.loads(runner.invoke(app, ["models", "--json"]).stdout)
    assert [m["photos"] for m in info["models"] if m["current"]] == [10]
