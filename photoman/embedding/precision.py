"""`precision = "auto"` on CPU: time the candidate image runtimes once per machine and model; keep the best.

CPU flags do not say which runtime is fastest: a Xeon with AVX512-BF16 ran ViT-B/32 *slower* in torch's
bf16 autocast than in fp32 (issue 16), and ONNX Runtime's kernels beat torch's on some CPUs and not on
others. So the first time a model loads on a machine, each candidate encodes the same synthetic batch
for a few seconds, interleaved; the fastest one whose vectors stay within 1e-3 cosine distance of
torch fp32 wins. The decision is cached as JSON next to the exported encoder with what it depends on
(torch and ONNX Runtime versions, CPU model and flags, core count) and measured again when any of
those change. :func:`precision_choice` says what was chosen and why (for ``photoman status``).

Single images (an image query in the daemon) take the winner only if it is not slower than torch fp32
at batch 1 too, so the query path never gets slower through this choice. Query *texts* never depend on
it: on CPU they always go through the int8 ONNX text encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

PARITY = 1e-3  # max cosine distance to torch fp32 a runtime may show and still be chosen
MARGIN = 0.05  # leave torch fp32 (the reference runtime) only for a clear win
CHOICE_FILE = "choice.json"
CHOICE_FORMAT = 1
EXPORT_FORMAT = 1  # bump when the exported image graph changes: old cache folders are then ignored

Runner = Callable[[np.ndarray], np.ndarray]  # uint8 batch (N, crop, crop, 3) -> unit vectors


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def runtime_versions() -> dict[str, str | None]:
    """torch and ONNX Runtime versions, read without importing either."""
    ort = _dist_version("onnxruntime") or _dist_version("onnxruntime-gpu")
    return {"torch": _dist_version("torch"), "onnxruntime": ort}


def cpu_identity() -> dict[str, Any]:
    """The CPU's model name, a hash of its feature flags and the core count (what kernels depend on)."""
    name, flags = "", ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if not name and key in ("model name", "hardware", "cpu part"):
                    name = value.strip()
                elif not flags and key in ("flags", "features"):
                    flags = " ".join(sorted(value.split()))
                if name and flags:
                    break
    except OSError:
        pass
    return {
        "cpu": name or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "cores": os.cpu_count() or 1,
    }


def signature() -> dict[str, Any]:
    """Everything the decision depends on; a cached decision with another signature is measured again."""
    return {"format": CHOICE_FORMAT, **runtime_versions(), **cpu_identity()}


def cpu_name() -> str:
    """The CPU's model name (for benchmark output and status)."""
    return str(cpu_identity()["cpu"])


def test_batch(n: int, crop: int, seed: int = 0) -> np.ndarray:
    """Deterministic photo-like uint8 crops: smooth gradients and blobs with a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:crop, 0:crop].astype(np.float32) / crop
    out = np.empty((n, crop, crop, 3), dtype=np.uint8)
    for i in range(n):
        a, b, c = rng.uniform(0.2, 1.0, 3)
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4)
        blob = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r).astype(np.float32)
        chans = [a * xx + (1 - a) * blob, b * yy, c * (1 - xx) * (1 - yy) + 0.5 * blob]
        img = np.stack(chans, axis=-1) * 220 + rng.normal(0, 6, (crop, crop, 3))
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def max_cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Worst row-wise cosine distance between two sets of vectors (normalised here)."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(max(0.0, (1.0 - (a * b).sum(axis=1)).max()))


def calibrate(
    runners: dict[str, Runner], crop: int, seconds: float = 3.0, batch: int = 8, threads: int | None = None
) -> dict[str, Any]:
    """Time each runner on the same batch, interleaved; the fastest at parity with ``torch-fp32`` wins.

    ``runners`` must hold ``torch-fp32`` (the reference). A runner clearly slower than it on a first
    small batch (less than half its rate: bf16 on CPUs without bf16 units) is dropped before the rounds.
    """
    assert "torch-fp32" in runners
    started = time.perf_counter()
    pixels = test_batch(batch, crop)
    probe = pixels[:2]
    measured: dict[str, dict[str, Any]] = {name: {} for name in runners}
    failed: dict[str, str] = {}
    probe_rate: dict[str, float] = {}
    for name, run in runners.items():  # warm-up (sessions, one-off allocations), then a first rate
        try:
            run(probe)
            best = float("inf")
            for _ in range(3):  # best of three: a moment of other load must not drop a fast runtime
                t = time.perf_counter()
                run(probe)
                best = min(best, time.perf_counter() - t)
            probe_rate[name] = len(probe) / best
        except Exception as exc:  # noqa: BLE001 - a runtime that fails here is simply not chosen
            failed[name] = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    # only a runtime faster than the reference can win: one at under half its rate is not timed further
    ref_probe = probe_rate.get("torch-fp32", 0.0)
    live = [n for n in runners if n in probe_rate and (n == "torch-fp32" or probe_rate[n] >= 0.5 * ref_probe)]
    for name in probe_rate:
        measured[name]["probe_images_per_s"] = round(probe_rate[name], 2)
        if name not in live:
            measured[name]["dropped"] = (
                f"{ref_probe / probe_rate[name]:.1f}x slower than torch fp32 on a first batch"
            )
    rates: dict[str, list[float]] = {n: [] for n in live}
    vectors: dict[str, np.ndarray] = {}
    rounds = 0
    while rounds < 2 or (time.perf_counter() - started < seconds and rounds < 6):
        order = live if rounds % 2 == 0 else live[::-1]  # alternate the order: drift hits all alike
        for name in order:
            t = time.perf_counter()
            vecs = runners[name](pixels)
            rates[name].append(len(pixels) / (time.perf_counter() - t))
            vectors.setdefault(name, vecs)
        rounds += 1
    single: dict[str, float] = {}
    for name in live:  # batch of one: an image query in the daemon
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            runners[name](pixels[:1])
            best = min(best, time.perf_counter() - t)
        single[name] = best * 1000
    reference = vectors["torch-fp32"]
    for name in live:
        # best of the rounds: other load on the machine only ever makes a run slower
        measured[name].update(
            images_per_s=round(max(rates[name]), 2),
            images_per_s_range=[round(min(rates[name]), 2), round(max(rates[name]), 2)],
            single_ms=round(single[name], 1),
            parity=float(f"{max_cosine_distance(vectors[name], reference):.2e}"),
        )
    for name, why in failed.items():
        measured[name]["failed"] = why
    fp32 = measured["torch-fp32"]["images_per_s"]
    at_parity = [n for n in live if measured[n]["parity"] <= PARITY]
    winner = max(at_parity, key=lambda n: measured[n]["images_per_s"])
    if winner != "torch-fp32" and measured[winner]["images_per_s"] < fp32 * (1 + MARGIN):
        winner = "torch-fp32"
    w = measured[winner]
    if winner == "torch-fp32":
        reason = f"torch fp32 was fastest at parity ({fp32:.1f} images/s)"
        others = [f"{n} {measured[n].get('images_per_s', measured[n].get('probe_images_per_s', 0)):.1f}"
                  for n in runners if n != "torch-fp32" and n not in failed]  # fmt: skip
        if others:
            reason += "; " + ", ".join(others)
    else:
        reason = (
            f"{winner} {w['images_per_s']:.1f} images/s vs torch fp32 {fp32:.1f} "
            f"({w['images_per_s'] / fp32:.2f}x), parity {w['parity']:.1e} <= {PARITY:.0e}"
        )
    for name in live:
        if measured[name]["parity"] > PARITY:
            reason += f"; {name} fails parity ({measured[name]['parity']:.1e})"
    single_runtime = winner
    if winner != "torch-fp32" and w["single_ms"] > measured["torch-fp32"]["single_ms"] * (1 + MARGIN):
        single_runtime = "torch-fp32"
        reason += "; single images stay on torch fp32 (faster at batch 1)"
    return {
        "runtime": winner,
        "single": single_runtime,
        "reason": reason,
        "measured": measured,
        "batch": batch,
        "threads": threads,
        "seconds": round(time.perf_counter() - started, 2),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "signature": signature(),
    }


def read_choice(folder: Path) -> dict[str, Any] | None:
    """The cached decision in ``folder`` if it was measured on this machine with these runtimes."""
    try:
        choice = json.loads((folder / CHOICE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(choice, dict) or choice.get("signature") != signature():
        return None
    return choice


def write_choice(folder: Path, choice: dict[str, Any]) -> None:
    """Store the decision atomically (another process may be reading it)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHOICE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(choice, indent=1))
    os.replace(tmp, folder / CHOICE_FILE)


def encoder_folder(cache_dir: Path, model: str, content_key: str | None = None) -> Path | None:
    """Where a checkpoint's exported image encoder and its `auto` decision live (torch-free).

    Named by the checkpoint's files, as the text pack is (or ``content_key``, a fingerprint of the
    weights, when the files cannot be identified), plus the torch and ONNX Runtime versions: an
    upgrade of either exports afresh.
    """
    from photoman.embedding.checkpoint import checkpoint_key

    key = checkpoint_key(model) or content_key
    if key is None:
        return None
    v = runtime_versions()
    versions = f"torch{v['torch']}-ort{v['onnxruntime'] or 'none'}".replace("+", "_")
    return cache_dir / "image-encoder" / f"v{EXPORT_FORMAT}-{key}-{versions}"


def cached_choice(cache_dir: Path, model: str) -> dict[str, Any] | None:
    """The `auto` decision for ``model`` on this machine without loading anything (no torch): for status."""
    folder = encoder_folder(cache_dir, model)
    return None if folder is None else read_choice(folder)


def precision_choice(encoder: Any) -> dict[str, Any]:
    """What runs the image model of a loaded encoder, and why: for ``photoman status`` and the daemon.

    Keys: ``runtime`` (torch-fp32, torch-bf16, torch-fp16, onnx-fp32, onnx-int8, …), ``single`` (the
    runtime for one-image batches), ``reason`` (one line), ``device``, ``precision`` (the setting),
    ``measured`` (per runtime: images/s, ms for one image, parity; only when `auto` measured).
    """
    info = dict(getattr(encoder, "precision_info", None) or {})
    info.setdefault("device", encoder.device)
    info.setdefault(
        "runtime", "torch-" + (str(encoder.autocast).replace("torch.", "") if encoder.autocast else "fp32")
    )
    info.setdefault("single", info["runtime"])
    info.setdefault("reason", "")
    return info


def summary(info: dict[str, Any] | None) -> str:
    """One line for ``photoman status``: the image runtime, and why (from :func:`precision_choice`
    on a loaded encoder, or :func:`cached_choice` without loading one)."""
    if not info:
        return "not measured yet (the first command that loads the model measures it, a few seconds)"
    line = str(info.get("runtime", "?"))
    if info.get("single") and info["single"] != info.get("runtime"):
        line += f" (single images: {info['single']})"
    if info.get("reason"):
        line += f": {info['reason']}"
    if info.get("measured_at"):
        line += f" [measured {str(info['measured_at'])[:10]} at {info.get('threads')} threads]"
    return line
