"""CLIP: model loading, preprocessing and batched image/text encoding."""
