"""Zero-shot localisation time on a 24 MP photo with the ViT-B/32-shaped model, on this machine.

python benchmarks/locate_time.py [PHOTO] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import PHOTOS, vit_b32_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", nargs="?", default=str(PHOTOS / "exif--sony-alpha-6000.jpg"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from photoman.embedding.model import load_encoder
    from photoman.media.decode import load_image
    from photoman.zeroshot.locate import locate

    enc = load_encoder(str(vit_b32_model()), device="cpu")
    text = enc.encode_texts(["the eiffel tower at night"])[0]
    times, windows = [], 0
    for _ in range(args.runs):
        t = time.perf_counter()
        image = load_image(args.photo, min_side=1024)  # decode is part of the job
        windows = locate(enc, image, text).windows
        times.append(time.perf_counter() - t)
    print(f"{args.photo}: {windows} windows, median {statistics.median(times):.1f}s over {args.runs} runs "
          f"(decode + windows + batched ViT-B/32 + heat map)")  # fmt: skip


if __name__ == "__main__":
    main()
