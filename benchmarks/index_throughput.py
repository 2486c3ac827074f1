"""Indexing throughput on 12 MP JPEGs: the stock transformers path vs photoman's pipeline, same run.

(a) stock: full decode + CLIPProcessor + get_image_features, one image per batch, fp32, no workers;
(b) photoman: `index()` (draft decode in worker processes, batched model at the auto precision,
    Qdrant Edge + SQLite).
Both use the same ViT-B/32-shaped model (random weights; cost is the same as the real checkpoint).
Also prints the embedding parity of the fast path against the reference pipeline.

    python benchmarks/index_throughput.py [--count 96] [--workers 2] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import twelve_mp_jpegs, vit_b32_model


def stock(files: list[Path], model_dir: Path) -> tuple[float, list]:
    import torch
    from PIL import Image
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    vecs = []
    t = time.perf_counter()
    for f in files:
        img = Image.open(f).convert("RGB")
        with torch.inference_mode():
            out = model.get_image_features(**processor(images=[img], return_tensors="pt"))
        vecs.append(torch.nn.functional.normalize(out.pooler_output, dim=-1)[0].numpy())
    return len(files) / (time.perf_counter() - t), vecs


def pipeline(folder: Path, model_dir: Path, workers: int, batch: int) -> float:
    from photoman.config import Settings
    from photoman.indexing.pipeline import index
    from photoman.library import Library

    data = Path(tempfile.mkdtemp(prefix="photoman-bench-"))
    try:
        cfg = Settings(data_dir=data, model=str(model_dir), workers=workers, batch_size=batch)
        with Library(cfg) as lib:
            lib.encoder  # noqa: B018 - load the model before timing, as the stock path does
            t = time.perf_counter()
            report = index(lib, [folder])
            elapsed = time.perf_counter() - t
            assert report.embedded == len(list(folder.glob("*.jpg"))), report
        return report.embedded / elapsed
    finally:
        shutil.rmtree(data, ignore_errors=True)


def model_ceiling(model_dir: Path, batch: int, seconds: float = 10.0) -> tuple[float, str]:
    """Images/s of the model alone on ready pixels at the auto precision: no pipeline can beat it."""
    import numpy as np

    from photoman.embedding.model import load_encoder

    enc = load_encoder(str(model_dir))
    shape = (batch, enc.spec.crop, enc.spec.crop, 3)
    pixels = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    enc.encode_pixels(pixels)
    done, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        enc.encode_pixels(pixels)
        done += batch
    return done / (time.perf_counter() - t), str(enc.autocast or "fp32").replace("torch.", "")


def parity(files: list[Path], model_dir: Path, reference: list) -> tuple[float, float]:
    from photoman.embedding.model import load_encoder
    from photoman.media.decode import load_image

    worst = {}
    for precision in ("fp32", "bf16"):
        enc = load_encoder(str(model_dir), device="cpu", precision=precision)
        fast = enc.encode_images([load_image(f, min_side=enc.spec.size) for f in files])
        worst[precision] = max(1.0 - float(a @ b) for a, b in zip(fast, reference, strict=True))
    return worst["fp32"], worst["bf16"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=96)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    import torch

    folder = twelve_mp_jpegs(args.count)
    files = sorted(folder.glob("*.jpg"))
    model_dir = vit_b32_model()
    print(
        f"{len(files)} JPEGs of 4000x3000 (12 MP), ViT-B/32-shaped CLIP, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    a, reference = stock(files, model_dir)
    print(f"(a) stock transformers path : {a:6.2f} photos/s")
    b = pipeline(folder, model_dir, args.workers, args.batch_size)
    print(
        f"(b) photoman index pipeline : {b:6.2f} photos/s  "
        f"({args.workers} decode workers, batch {args.batch_size})"
    )
    print(f"ratio (b)/(a)               : {b / a:6.2f}x")
    from photoman.embedding.model import cpu_has_bf16

    ceiling, precision = model_ceiling(model_dir, args.batch_size)
    print(
        f"model alone, ready pixels  : {ceiling:6.2f} images/s at {precision} "
        f"(CPU bf16 instructions: {'yes' if cpu_has_bf16() else 'no'}); (b) reaches {b / ceiling:.0%} of it"
    )
    fp32, bf16 = parity(files, model_dir, reference)
    print(f"parity vs reference, max cosine distance: fast path fp32 {fp32:.2e}, fast path bf16 {bf16:.2e}")


if __name__ == "__main__":
    main()
