"""Which model family a checkpoint belongs to (CLIP or SigLIP), read from its config.json without torch.

The two families embed into one unit-norm space the same way, but differ where a user's text meets the
model: CLIP pads to the longest text, masks attention causally and pools its end token; SigLIP was
trained on texts padded to a fixed length (64 tokens), attends both ways and pools the last position.
For zero-shot labels CLIP takes a softmax over the labels with its prompt ensemble; SigLIP scores each
label on its own with a sigmoid (learned scale and bias) and its own prompt, "This is a photo of {}.".
Everything that depends on the family asks this module instead of testing class names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photoman.errors import ModelError

# CLIP's zero-shot prompts (a prompt ensemble: a label's vector is the mean of these, re-normalised)
CLIP_TEMPLATES = (
    "a photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of the {}.",
    "a good photo of a {}.",
    "a cropped photo of a {}.",
    "a bright photo of a {}.",
    "a dark photo of a {}.",
    "a photo of many {}.",
)
# the prompt SigLIP's and SigLIP 2's model cards use for zero-shot classification
SIGLIP_TEMPLATES = ("This is a photo of {}.",)


@dataclass(frozen=True)
class Family:
    """What differs between CLIP and SigLIP checkpoints, for the code that encodes and scores."""

    name: str  # "clip" | "siglip"
    label: str  # for messages
    pad_to_max_length: bool  # texts padded to the model's max length (how SigLIP was trained)
    causal_text: bool  # CLIP's text tower masks attention causally; SigLIP's does not
    pool_last: bool  # SigLIP pools the last position (a pad token for short texts); CLIP its end token
    sigmoid: bool  # zero-shot scores: SigLIP sigmoid(scale·cos + bias) per label, CLIP softmax over labels
    templates: tuple[str, ...]


CLIP = Family("clip", "CLIP", False, True, False, False, CLIP_TEMPLATES)
SIGLIP = Family("siglip", "SigLIP", True, False, True, True, SIGLIP_TEMPLATES)
_BY_TYPE = {"clip": CLIP, "siglip": SIGLIP}

# SiglipVisionConfig's default width: the hub SigLIP 2 configs leave it out (their vectors are this size)
_SIGLIP_DEFAULT_WIDTH = 768


def family_of(config: dict[str, Any], model: str = "model") -> Family:
    """The family of a checkpoint from its config.json contents; a one-line error for any other kind."""
    kind = str(config.get("model_type", ""))
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    if kind == "siglip2":
        raise ModelError(
            f"{model} is a SigLIP 2 NaFlex checkpoint (variable resolution), which photoman does not "
            "support; use a fixed-resolution one such as google/siglip2-base-patch16-224"
        )
    what = f"a {kind!r} checkpoint" if kind else "not a CLIP or SigLIP checkpoint (no model_type)"
    raise ModelError(f"{model} is {what}; photoman runs CLIP (CLIPModel) and SigLIP (SiglipModel) models")


def embedding_dim(config: dict[str, Any]) -> int:
    """The size of the vectors a checkpoint produces, from its config.json contents."""
    if family_of(config) is CLIP:
        return int(config["projection_dim"])
    vision = config.get("vision_config") or {}
    return int(vision.get("hidden_size", _SIGLIP_DEFAULT_WIDTH))


def read_config(path: Path | str) -> dict[str, Any]:
    """A checkpoint's config.json as a dict (a ModelError when it is missing or not JSON)."""
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        raise ModelError(f"cannot read the model's config.json ({path})") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"the model's config.json ({path}) is not a JSON object")
    return cfg
