"""Build a randomly initialised CLIP checkpoint with the real CLIP tokenizer, entirely offline.

Tests and benchmarks save one with ``save_pretrained`` and load it through :func:`load_encoder`,
the same code path a downloaded checkpoint takes; ``vit-b-32`` has the production model's shape
(and so its cost), ``tiny`` keeps the production image size (224, patch 32) at a fraction of it.
"""

from __future__ import annotations

from pathlib import Path

SHAPES = {
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        projection_dim=16,
    ),
    "vit-b-32": dict(
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        projection_dim=512,
    ),
}


def build_random_clip(out_dir: Path, bpe_dir: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """Save a random CLIPModel + CLIPProcessor (real BPE vocab/merges) to out_dir and return it."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    spec = SHAPES[shape]
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, max_position_embeddings=77, **spec["text"]),
        vision_config=dict(image_size=224, patch_size=32, **spec["vision"]),
        projection_dim=spec["projection_dim"],
    )
    model = CLIPModel(config).eval()
    tokenizer = CLIPTokenizer(vocab=str(bpe_dir / "vocab.json"), merges=str(bpe_dir / "merges.txt"))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
