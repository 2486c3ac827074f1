"""What the tests compare photoman with: transformers' own pipeline, and a fresh torch-free process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def reference_image_vectors(model: Any, processor: Any, files: list[Path]) -> np.ndarray:
    """The model card's way: full decode, the checkpoint's processor, get_image_features, fp32, unit rows."""
    import torch

    from photoman.media.decode import load_image

    out = []
    for i in range(0, len(files), 8):
        inputs = processor(images=[load_image(f) for f in files[i : i + 8]], return_tensors="pt")
        with torch.inference_mode():
            feats = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        out.append(torch.nn.functional.normalize(feats, dim=-1).numpy())
    return np.concatenate(out)


def cold_pack_query(model_dir: Path, text: str) -> tuple[np.ndarray, set[str]]:
    """One text through the cached query pack in a fresh process, as a cold `find` does: its vector,
    and which of torch / transformers that process imported."""
    code = (
        "import json, os, sys; from pathlib import Path; from photoman.embedding.query_text import open_pack;"
        f"e = open_pack(Path(os.environ['PHOTOMAN_CACHE_DIR']), {str(model_dir)!r});"
        f"v = e.encode_texts([{text!r}])[0].tolist();"
        "print(json.dumps({'v': v, 'mods': [m for m in ('torch', 'transformers') if m in sys.modules]}))"
    )
    out = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    return np.asarray(out["v"], dtype=np.float32), set(out["mods"])
