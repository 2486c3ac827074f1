"""The encoder opened from the caches alone: the full load's very vectors, torch never imported, and the
model loaded instead whenever the caches do not hold what the settings ask for."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from photoman.config import Settings
from photoman.embedding import cached
from photoman.embedding import precision as prec
from photoman.embedding.cached import CachedEncoder, open_cached
from photoman.embedding.model import ClipEncoder, load_encoder
from photoman.media.decode import load_image

TEXTS = ["a tabby cat on a sofa", "two dogs running across a frosty field", "ein rotes Auto", ""]


def _photos(photos_src: Path, n: int = 12) -> list[Path]:
    return sorted(p for p in photos_src.iterdir() if p.suffix in (".jpg", ".png"))[:n]


def _folder(model: Path, cache: Path) -> Path:
    folder = prec.encoder_folder(cache, str(model))
    assert folder is not None
    return folder


def _in_a_fresh_process(model: Path, precision: str, cache: Path, files: list[Path]) -> dict:
    """What a later process gets from the cache: its vectors for ``files`` and TEXTS, its numbers,
    and which heavy modules it imported."""
    script = (
        "import json, sys; from pathlib import Path\n"
        "from photoman.embedding.cached import open_cached\n"
        "from photoman.media.decode import load_image\n"
        f"enc = open_cached({str(model)!r}, 'cpu', {precision!r}, True, Path({str(cache)!r}))\n"
        f"files = [Path(f) for f in {[str(f) for f in files]!r}]\n"
        "ims = enc.encode_images([load_image(f, min_side=enc.spec.size) for f in files])\n"
        f"txt = enc.encode_texts({TEXTS!r})\n"
        "print(json.dumps({'images': ims.tolist(), 'texts': txt.tolist(), 'scale': enc.logit_scale,\n"
        "  'dim': enc.dim, 'info': enc.precision_info, 'torch_tower': enc.uses_torch,\n"
        "  'heavy': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_the_cached_encoder_gives_the_full_loads_vectors_without_torch(
    tiny_model: Path, photos_src: Path, tmp_path: Path
) -> None:
    """A first load writes what a later process needs; that process opens it without torch or
    transformers and embeds the real photos and texts exactly as the full load does."""
    cache = tmp_path / "cache"
    full = load_encoder(str(tiny_model), device="cpu", precision="onnx", text_int8=True, cache_dir=cache)
    assert (_folder(tiny_model, cache) / cached.MANIFEST).is_file()
    files = _photos(photos_src)
    images = [load_image(f, min_side=full.spec.size) for f in files]
    want_images, want_texts = full.encode_images(images), full.encode_texts(TEXTS)
    got = _in_a_fresh_process(tiny_model, "onnx", cache, files)
    assert got["heavy"] == []
    assert np.array_equal(np.asarray(got["images"], dtype=np.float32), want_images)
    assert np.array_equal(np.asarray(got["texts"], dtype=np.float32), want_texts)
    assert got["scale"] == pytest.approx(full.logit_scale) and got["dim"] == full.dim
    assert got["info"]["runtime"] == "onnx-fp32" and "not loaded" in got["info"]["torch"]


def test_auto_opens_from_the_cache_only_what_the_cache_holds(tiny_model: Path, tmp_path: Path) -> None:
    """`precision = "auto"` follows the choice measured on this machine: ONNX Runtime for batches and
    single images → cached; torch for either with no torch tower saved, or a choice measured on
    another CPU → the model loads."""
    cache = tmp_path / "cache"
    full = load_encoder(str(tiny_model), device="cpu", precision="onnx", text_int8=True, cache_dir=cache)
    folder = _folder(tiny_model, cache)
    assert open_cached(str(tiny_model), "cpu", "auto", True, cache) is None  # nothing measured yet
    onnx = {"runtime": "onnx-fp32", "single": "onnx-fp32", "reason": "-", "signature": prec.signature()}
    prec.write_choice(folder, onnx)
    enc = open_cached(str(tiny_model), "cpu", "auto", True, cache)
    assert isinstance(enc, CachedEncoder) and enc.precision_info["precision"] == "auto"
    px = prec.test_batch(3, enc.spec.crop)
    assert np.array_equal(enc.encode_pixels(px), full.encode_pixels(px))
    for choice in (
        {**onnx, "single": "torch-fp32"},  # image queries faster in torch here: never made slower
        {**onnx, "runtime": "torch-bf16", "single": "torch-bf16"},
        {**onnx, "signature": {**prec.signature(), "cpu": "another CPU"}},
    ):
        prec.write_choice(folder, choice)
        assert open_cached(str(tiny_model), "cpu", "auto", True, cache) is None, choice


def test_the_model_loads_when_the_caches_do_not_hold_it(tiny_model: Path, tmp_path: Path) -> None:
    """Settings the cached graphs do not run, a missing manifest, a damaged graph: None, and the full
    load (which rebuilds what was damaged) takes over; afterwards the cache opens again."""
    cache = tmp_path / "cache"
    load_encoder(str(tiny_model), device="cpu", precision="onnx", text_int8=True, cache_dir=cache)
    folder = _folder(tiny_model, cache)
    assert open_cached(str(tiny_model), "cpu", "onnx", True, cache) is not None
    for device, precision, int8 in (("cpu", "fp32", True), ("cpu", "bf16", True), ("cpu", "onnx", False),
                                    ("cuda", "onnx", True), ("cpu", "int8", True)):  # fmt: skip
        assert open_cached(str(tiny_model), device, precision, int8, cache) is None, (device, precision, int8)
    graph = folder / "fp32.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 3])  # a crash mid-write, say
    assert open_cached(str(tiny_model), "cpu", "onnx", True, cache) is None
    again = load_encoder(str(tiny_model), device="cpu", precision="onnx", text_int8=True, cache_dir=cache)
    assert isinstance(again, ClipEncoder)
    assert open_cached(str(tiny_model), "cpu", "onnx", True, cache) is not None
    (folder / cached.MANIFEST).unlink()
    assert open_cached(str(tiny_model), "cpu", "onnx", True, cache) is None
    # another checkpoint in the same folder (retrained, copied over): other files, other cache entries
    assert open_cached(str(tmp_path / "no-such-model"), "cpu", "onnx", True, cache) is None


def test_a_gpu_is_left_to_torch() -> None:
    """`device = "auto"` on a machine where torch may find a GPU loads the model (torch decides)."""
    import torch

    if torch.cuda.is_available():
        assert cached.gpu_possible()
    elif sys.platform.startswith("linux") and not Path("/dev/nvidiactl").exists():
        assert not cached.gpu_possible()


@pytest.mark.parametrize("precision", ["auto", "onnx", "bf16"])
def test_a_text_query_opens_the_text_pack_alone(
    settings: Settings, library_dir: Path, precision: str
) -> None:
    """Query texts on a CPU go through the int8 text pack whatever runs the images, so a text query
    opens that pack and nothing of the image side (no image session, no torch model)."""
    from dataclasses import replace

    from photoman import ops
    from photoman.embedding.query_text import QueryTextEncoder
    from photoman.library import Library

    with Library(settings) as lib:
        ops.index(lib, folders=[str(library_dir)])  # builds the caches (the model loads here)
    with Library(replace(settings, precision=precision)) as lib:
        assert len(ops.find(lib, text="a tabby cat", limit=3)) == 3
        assert isinstance(lib.text_encoder, QueryTextEncoder) and not lib.encoder_loaded


def _clip_with(act: str) -> object:
    """A small random CLIP (production image size) whose image tower uses activation ``act``."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from tests.checkpoints import SHAPES

    torch.manual_seed(1)
    tiny = SHAPES["tiny"]
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, max_position_embeddings=77, **tiny["text"]),
        vision_config=dict(image_size=224, patch_size=32, hidden_act=act, **tiny["vision"]),
        projection_dim=tiny["projection_dim"],
    )
    return CLIPModel(config).eval()


def _transformers_forward(clip: object, mean: tuple, std: tuple, bf16: bool = False) -> Callable:
    """transformers' own image features for uint8 pixels (fp32, or under bf16 autocast)."""
    import contextlib

    import torch

    def run(px: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(px).permute(0, 3, 1, 2).float() / 255
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            return clip.get_image_features(pixel_values=x).pooler_output.float().numpy()  # type: ignore[attr-defined]

    return run


@pytest.mark.parametrize("act", ["quick_gelu", "gelu", "gelu_pytorch_tanh"])
def test_the_torch_image_tower_mirrors_the_transformers_forward(act: str, tmp_path: Path) -> None:
    """The saved tower computes the transformers image features (fp32: within 1e-5 cosine; bf16
    autocast: within the parity bound of the fp32 reference) for each activation CLIP uses."""
    from photoman.embedding import torch_image

    clip = _clip_with(act)
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    assert torch_image.save_pack(clip, tmp_path, mean, std, _transformers_forward(clip, mean, std))
    fp32 = torch_image.open_pack(tmp_path, "torch-fp32", False, mean, std)
    bf16 = torch_image.open_pack(tmp_path, "torch-bf16", False, mean, std)
    assert fp32 is not None and bf16 is not None
    px = prec.test_batch(5, 224, seed=3)
    ref = _transformers_forward(clip, mean, std)(px)
    assert prec.max_cosine_distance(fp32.features(px), ref) <= 1e-5
    assert 0 < prec.max_cosine_distance(bf16.features(px), ref) <= prec.PARITY  # bf16: close, not equal
    auto = _transformers_forward(clip, mean, std, bf16=True)(px)  # its weights cast once: autocast's numbers
    assert prec.max_cosine_distance(bf16.features(px), auto) <= 1e-5


def test_a_bf16_tower_lets_its_fp32_weights_file_go(tmp_path: Path) -> None:
    """The bf16 tower copies its matrices to bf16 at open; nothing of it may still point into the mapped
    fp32 weights file, or the whole file stays in the process's memory beside the copy (335 MB of a
    ViT-B/32 daemon's RSS). The fp32 tower runs on the mapped file itself."""
    import gc

    from photoman.embedding import torch_image

    clip = _clip_with("quick_gelu")
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    assert torch_image.save_pack(clip, tmp_path, mean, std, _transformers_forward(clip, mean, std))
    weights = str(tmp_path / torch_image.WEIGHTS)

    def mapped() -> bool:
        gc.collect()
        return weights in Path("/proc/self/maps").read_text()

    bf16 = torch_image.open_pack(tmp_path, "torch-bf16", False, mean, std)
    assert bf16 is not None and not mapped()
    ref = _transformers_forward(clip, mean, std, bf16=True)(px := prec.test_batch(3, 224, seed=4))
    assert prec.max_cosine_distance(bf16.features(px), ref) <= 1e-5  # the same numbers as before
    fp32 = torch_image.open_pack(tmp_path, "torch-fp32", False, mean, std)
    assert fp32 is not None and mapped()


def test_a_layout_the_tower_does_not_mirror_gets_no_pack(tmp_path: Path) -> None:
    """An activation it does not know: no pack is written, so such a model keeps the full load."""
    from photoman.embedding import torch_image

    clip, half = _clip_with("relu"), (0.5,) * 3
    assert not torch_image.save_pack(clip, tmp_path, half, half, _transformers_forward(clip, half, half))
    assert not (tmp_path / torch_image.WEIGHTS).exists()


def test_torch_precisions_open_from_the_cache_without_transformers(
    tiny_model: Path, photos_src: Path, tmp_path: Path
) -> None:
    """Where torch runs the images (bf16 on a CPU with bf16 units, say), a first load saves the image
    tower; later processes open it with torch alone (no transformers) and embed
    the real photos as the full load does; the query texts keep the int8 text pack."""
    cache = tmp_path / "cache"
    files = _photos(photos_src)
    for precision, bound in (("fp32", 1e-5), ("bf16", prec.PARITY)):
        full = load_encoder(str(tiny_model), "cpu", precision, text_int8=True, cache_dir=cache)
        images = [load_image(f, min_side=full.spec.size) for f in files]
        want, want_texts = full.encode_images(images), full.encode_texts(TEXTS)
        got = _in_a_fresh_process(tiny_model, precision, cache, files)
        assert got["torch_tower"] and got["heavy"] == ["torch"]
        assert got["info"]["runtime"] == f"torch-{precision}" and "image tower only" in got["info"]["torch"]
        assert prec.max_cosine_distance(np.asarray(got["images"]), want) <= bound, precision
        assert np.array_equal(np.asarray(got["texts"], dtype=np.float32), want_texts)


def test_auto_opens_the_torch_tower_when_torch_was_measured_fastest(tiny_model: Path, tmp_path: Path) -> None:
    """A measured torch choice opens the saved tower (single images on fp32 when that was faster at
    batch 1); a damaged tower is dropped, the model loads, and the load writes it again."""
    from photoman.embedding import torch_image

    cache = tmp_path / "cache"
    full = load_encoder(str(tiny_model), device="cpu", precision="bf16", text_int8=True, cache_dir=cache)
    folder = _folder(tiny_model, cache)
    base = {"reason": "-", "signature": prec.signature()}
    prec.write_choice(folder, {**base, "runtime": "torch-bf16", "single": "torch-fp32"})
    enc = open_cached(str(tiny_model), "cpu", "auto", True, cache)
    assert isinstance(enc, CachedEncoder) and enc.uses_torch
    one = prec.test_batch(1, enc.spec.crop)
    assert prec.max_cosine_distance(enc.encode_pixels(one), full.encode_pixels_torch(one, None)) <= 1e-5
    weights = folder / torch_image.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])  # a crash mid-copy, say
    assert open_cached(str(tiny_model), "cpu", "auto", True, cache) is None
    assert not weights.exists()
    again = load_encoder(str(tiny_model), device="cpu", precision="auto", text_int8=True, cache_dir=cache)
    assert isinstance(again, ClipEncoder) and weights.is_file()
    assert isinstance(open_cached(str(tiny_model), "cpu", "auto", True, cache), CachedEncoder)


def test_a_library_indexes_and_searches_with_the_saved_torch_tower(
    settings: Settings, library_dir: Path, tmp_path: Path
) -> None:
    """End to end where torch runs the images: the first library load saves the tower, the next
    library opens it (no transformers), indexes with it, and an image query finds the photo itself."""
    from dataclasses import replace

    from photoman import ops
    from photoman.library import Library

    bf16 = replace(settings, precision="bf16", cache_dir=tmp_path / "cache")
    with Library(bf16) as lib:
        assert isinstance(lib.encoder, ClipEncoder)  # nothing cached yet: the full load, which saves it
    with Library(bf16) as lib:
        report = ops.index(lib, folders=[str(library_dir)])
        assert report["embedded"] == 10 and not report["errors"]
        assert isinstance(lib.encoder, CachedEncoder) and lib.encoder.uses_torch and lib.torch_loaded
        photo = library_dir / "scikit-image--chelsea.png"
        assert ops.find(lib, image=str(photo), limit=1)[0]["path"] == str(photo)
        assert lib.encoder.precision_info["runtime"] == "torch-bf16"


def test_a_pack_that_cannot_be_written_leaves_the_full_load(tmp_path: Path) -> None:
    """A full or read-only cache (here: the temporary file's name taken by a folder) costs the pack,
    never the load: save_pack says False and raises nothing."""
    import os

    from photoman.embedding import torch_image

    (tmp_path / f".{torch_image.WEIGHTS}.{os.getpid()}").mkdir()
    clip, half = _clip_with("quick_gelu"), (0.5,) * 3
    assert not torch_image.save_pack(clip, tmp_path, half, half, _transformers_forward(clip, half, half))
    assert not (tmp_path / torch_image.WEIGHTS).exists()
