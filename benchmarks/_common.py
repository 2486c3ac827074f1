"""Helpers shared by the benchmark scripts: an offline ViT-B/32-shaped model and 12 MP test JPEGs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BPE = ROOT / "tests" / "fixtures" / "clip-bpe"
PHOTOS = Path(os.environ.get("PHOTOMAN_TEST_PHOTOS") or ROOT.parent / "shared" / "photos")
CACHE = ROOT / "bench-data"


def vit_b32_model() -> Path:
    """Random weights in the production shape (ViT-B/32 vision, 512-d text): the real model's cost."""
    from tests.checkpoints import build_random_clip

    out = CACHE / "clip-vit-b-32-random"
    if not (out / "config.json").exists():
        build_random_clip(out, BPE, shape="vit-b-32")
    return out


def twelve_mp_jpegs(count: int) -> Path:
    """``count`` 4000x3000 JPEGs (quality 92) made from the real photos, as a phone would write them."""
    out = CACHE / f"jpeg12mp-{count}"
    if out.exists() and len(list(out.glob("*.jpg"))) == count:
        return out
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in PHOTOS.iterdir() if p.suffix in (".jpg", ".png"))
    for i in range(count):
        src = Image.open(sources[i % len(sources)]).convert("RGB")
        img = src.resize((4000, 3000), Image.Resampling.BICUBIC)
        if i >= len(sources):  # distinct bytes for every file, so nothing is deduplicated
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            img.putpixel((i, i), (i % 256, 0, 0))
        img.save(out / f"IMG_{i:04d}.jpg", quality=92)
    return out


def bench_root(lib: object) -> int:
    """The synthetic library's one root (``/bench``, not on disk: an offline drive), its row id."""
    from datetime import datetime

    from photoman.catalog.models import Root

    with lib.catalog.session() as s:  # type: ignore[attr-defined]
        root = Root(path="/bench", added_at=datetime.now())
        s.add(root)
        s.flush()
        return int(root.id)


def daemon_env(data: Path, model: Path, config_dir: Path) -> dict[str, str]:
    """This environment without the user's PHOTOMAN_* settings, pointed at the benchmark's data dir
    and model, with an empty config file and no daemon started on demand."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMAN_")}
    env.update(PHOTOMAN_DATA_DIR=str(data), PHOTOMAN_MODEL=str(model),
               PHOTOMAN_STATE_DIR=str(data / "state"), PHOTOMAN_RUNTIME_DIR=str(data / "run"),
               PHOTOMAN_CONFIG=str(config_dir / "none.toml"), PHOTOMAN_AUTOSTART="0")  # fmt: skip
    (config_dir / "none.toml").write_text("")
    return env
