"""Build randomly initialised CLIP and SigLIP checkpoints with their tokenizers, entirely offline.

Tests and benchmarks save one with ``save_pretrained`` and load it through :func:`load_encoder`,
the same code path a downloaded checkpoint takes; ``vit-b-32`` has the production model's shape
(and so its cost), ``tiny`` keeps the production image size (224, patch 32) at a fraction of it.
CLIP gets the real CLIP BPE files; SigLIP gets a Gemma-style tokenizer (BPE with byte fallback, as
SigLIP 2's) trained here on a few hundred words in several scripts, configured like
google/siglip2-base-patch16-224's (end token appended, no start token, pad id 0, input ids only),
and that checkpoint's image processor numbers (224 × 224 bilinear, mean and std 0.5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# words in other scripts and languages, so the tiny SigLIP's tokenizer has real tokens for them
# (anything else falls back to byte tokens, as Gemma's does)
MULTILINGUAL_WORDS = (
    "кошка собака на пляже закат горы море снег город дом лес река "
    "猫 犬 海 山 夕日 写真 東京 桜 雪 "
    "chat chien plage coucher de soleil montagne été naïve ça "
    "Katze Hund Strand Sonnenuntergang Berge Straße "
    "gato perro playa atardecer montaña niño "
    "قطة كلب شاطئ 고양이 개 바다 "
)

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        projection_dim=16,
    ),
    # a second tiny model with another vector size (switching models: tests/test_switch.py)
    "tiny-24": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        projection_dim=24,
    ),
    "vit-b-32": dict(
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        projection_dim=512,
    ),
    # the production image tower with a tiny text tower: image parity tests pay for the image side only
    "vit-b-32-image": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
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


def _siglip_tokenizer(vocab_size: int) -> object:
    """A Gemma-style tokenizer (``GemmaTokenizer``) trained now on the built-in label vocabulary."""
    import json
    from importlib import resources

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    words = resources.files("photoman.zeroshot").joinpath("vocabulary.txt").read_text().split()
    words = [w for w in words if not w.startswith("#")] + MULTILINGUAL_WORDS.split()
    corpus = [" ".join(words[i : i + 6]) for i in range(0, len(words), 6)]
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{b:02X}>" for b in range(256)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(" ", "\u2581")
    bpe.pre_tokenizer = pre_tokenizers.Split("\u2581", "merged_with_next")  # merges stay within words
    bpe.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    )
    trained = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    return GemmaTokenizer(
        vocab=trained["vocab"], merges=merges,  # type: ignore[arg-type]  # pairs, as tokenizers takes them
        add_bos_token=False, add_eos_token=True,
        padding_side="right", model_input_names=["input_ids"],
    )  # fmt: skip


def build_random_siglip(out_dir: Path, shape: str = "tiny", seed: int = 0, vocab_size: int = 800) -> Path:
    """Save a random SiglipModel + SiglipProcessor (tokenizer trained offline) to out_dir and return it."""
    import torch
    import transformers
    from PIL import Image
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    spec = SHAPES[shape]
    tokenizer: Any = _siglip_tokenizer(vocab_size)
    torch.manual_seed(seed)
    text = dict(spec["text"], projection_size=spec["vision"]["hidden_size"])
    config = SiglipConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=64, pad_token_id=0,
                         eos_token_id=1, bos_token_id=2, **text),
        vision_config=dict(image_size=224, patch_size=32, **spec["vision"]),
    )  # fmt: skip
    model = SiglipModel(config).eval()
    with torch.no_grad():  # the SigLIP paper's initial temperature and bias (log 10 and -10)
        model.logit_scale.fill_(float(torch.tensor(10.0).log()))
        model.logit_bias.fill_(-10.0)
    image_processor = SiglipImageProcessorPil(
        size={"height": 224, "width": 224}, resample=Image.Resampling.BILINEAR,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )  # fmt: skip
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
