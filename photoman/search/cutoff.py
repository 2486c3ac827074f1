"""Relevance cutoff: drop results that do not stand out from this query's own score distribution.

CLIP cosine scores live on different scales for text→image (relevant ≈ 0.25–0.35, background ≈
0.15–0.22) and image→image (near copies > 0.9, related ≈ 0.7–0.85, background ≈ 0.4–0.6), so a fixed
threshold is wrong for one of them. Per query, a result is kept when it is within ``gap`` of the
best score *and* ``z`` standard deviations above the mean of the candidate pool (the nearest
``POOL`` points). The best result is always kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

POOL = 100


@dataclass(frozen=True)
class Calibration:
    gap: float
    z: float


CALIBRATION = {
    "text": Calibration(gap=0.06, z=1.0),  # text terms present: cross-modal scores are compressed
    "image": Calibration(gap=0.15, z=1.0),  # image-only queries: scores spread wider
}


def adaptive_threshold(scores: Sequence[float], kind: str) -> float:
    """Score a result must reach; -inf when the pool is too small to say anything."""
    if len(scores) < 5:
        return float("-inf")
    s = np.asarray(scores, dtype=np.float64)
    cal = CALIBRATION[kind]
    top = float(s.max())
    threshold = max(top - cal.gap, float(s.mean() + cal.z * s.std()))
    return min(threshold, top)
