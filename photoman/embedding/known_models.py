"""The models photoman knows by name, with what a user needs to choose one.

Retrieval figures are published ones, not ours: MSCOCO 5k text→image recall@1 and @5 from OpenCLIP's
zero-shot retrieval table (github.com/mlfoundations/open_clip, docs/openclip_retrieval_results.csv),
which evaluates every CLIP checkpoint the same way. SigLIP 2 is not in that table: its COCO
text→image recall@1 is the authors' (the SigLIP 2 paper, arXiv:2502.14786, Table 1, repeated in
big_vision's configs/proj/image_text/README_siglip2.md), measured by them, so compare it with care;
they publish no recall@5. Relative CPU cost is the ratio of the GFLOPs per image-text pair in
OpenCLIP's table (ViT-B/32 = 1; SigLIP 2 B/16 taken as its SigLIP B/16 row); download sizes are those
of the weights file on the Hub, rounded.
Any other Hugging Face id or local folder that loads as a supported architecture works too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

OPENCLIP_TABLE = "OpenCLIP docs/openclip_retrieval_results.csv (MSCOCO 5k, text→image R@1, R@5)"
SIGLIP2_TABLE = (
    "SigLIP 2 paper (arXiv:2502.14786) Table 1 / big_vision README_siglip2.md: COCO text→image R@1 "
    "52.1 for B/16 at 224 px (the authors' evaluation; no R@5 published)"
)


@dataclass(frozen=True)
class KnownModel:
    name: str  # Hugging Face id
    family: str
    dim: int
    resolution: int
    download_mb: int
    languages: str
    relative_cost: float  # image-tower FLOPs / ViT-B/32's
    coco_t2i_r5: float | None  # published MSCOCO text→image recall@5
    source: str
    coco_t2i_r1: float | None = None  # published MSCOCO text→image recall@1

    def to_json(self) -> dict[str, object]:
        return asdict(self)


KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "CLIP ViT-B/32 (LAION-2B)", 512, 224, 605, "English",
               1.0, 0.6543, OPENCLIP_TABLE, 0.3934),
    KnownModel("openai/clip-vit-base-patch32", "CLIP ViT-B/32 (OpenAI)", 512, 224, 605, "English",
               1.0, 0.5594, OPENCLIP_TABLE, 0.3044),
    KnownModel("laion/CLIP-ViT-B-16-laion2B-s34B-b88K", "CLIP ViT-B/16 (LAION-2B)", 512, 224, 599, "English",
               2.8, 0.6770, OPENCLIP_TABLE, 0.4231),
    KnownModel("openai/clip-vit-base-patch16", "CLIP ViT-B/16 (OpenAI)", 512, 224, 599, "English",
               2.8, 0.5842, OPENCLIP_TABLE, 0.3309),
    KnownModel("laion/CLIP-ViT-L-14-laion2B-s32B-b82K", "CLIP ViT-L/14 (LAION-2B)", 768, 224, 1710, "English",
               11.9, 0.7108, OPENCLIP_TABLE, 0.4651),
    KnownModel("openai/clip-vit-large-patch14", "CLIP ViT-L/14 (OpenAI)", 768, 224, 1710, "English",
               11.9, 0.6106, OPENCLIP_TABLE, 0.3651),
    KnownModel("google/siglip2-base-patch16-224", "SigLIP 2 B/16 (WebLI, multilingual)", 768, 224, 1500,
               "multilingual", 3.1, None, SIGLIP2_TABLE, 0.521),
)  # fmt: skip

DEFAULT = KNOWN_MODELS[0].name


def known(name: str) -> KnownModel | None:
    """The entry for a Hugging Face id, if photoman knows it."""
    return next((m for m in KNOWN_MODELS if m.name == name), None)
