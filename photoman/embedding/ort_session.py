"""ONNX Runtime sessions that pay the graph optimisation once per model file, not once per process.

Optimising the graph is most of opening a session: 0.1-0.8 s for the int8 query text tower and
1.5-2.5 s for the ViT-B/32 image tower on the 2-core AMD EPYC (loaded), paid by every `photoman`
process and daemon start. The first open saves the optimised graph beside the model (written aside,
then renamed: a reader never sees half a file); later opens load it with optimisation off. The saved
graph is named after the ONNX Runtime version, the model file (size, time) and, for level "all"
(which adds layouts for this very CPU), the CPU; a damaged one is optimised again.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any


def optimized_session(ort: Any, model_file: Path, opts: Any, level: str = "extended", key: str = "") -> Any:
    """An InferenceSession on ``model_file`` at optimisation ``level`` ("extended" or "all"), from the
    saved optimised graph when there is one. ``key`` names what else the graph depends on."""
    if level == "all":
        from photoman.embedding.precision import cpu_identity

        cpu = cpu_identity()
        key = f"{key}-{cpu['arch']}-{cpu['flags']}"
    st = model_file.stat()
    saved = model_file.with_name(
        f"{model_file.stem}.opt-{level}{key}-ort{ort.__version__}-{st.st_size}-{st.st_mtime_ns}.onnx"
    )
    providers = ["CPUExecutionProvider"]
    if saved.exists():
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(saved), opts, providers=providers)
        except Exception:  # noqa: BLE001 - a damaged saved graph: optimise from the model again
            saved.unlink(missing_ok=True)
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if level == "all"
        else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    )
    tmp = saved.with_name(f".{saved.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    opts.optimized_model_filepath = str(tmp)
    try:
        sess = ort.InferenceSession(str(model_file), opts, providers=providers)
    except Exception:  # noqa: BLE001 - e.g. a read-only cache: open without saving (a bad model raises below)
        tmp.unlink(missing_ok=True)
        opts.optimized_model_filepath = ""
        return ort.InferenceSession(str(model_file), opts, providers=providers)
    try:
        os.replace(tmp, saved)
    except OSError:  # the next open optimises again
        tmp.unlink(missing_ok=True)
    return sess


def cpu_options(ort: Any, threads: int, spinning: bool) -> Any:
    """SessionOptions for a CPU session: ``threads`` intra-op threads, one inter-op, quiet logs.
    Spinning threads are faster between the many small ops of one run and stop the moment it ends;
    blocking ones leave the cores at once to whatever follows (the store's scan after a query)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if spinning:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.log_severity_level = 3
    return opts


def ort_quantization() -> Any:
    """``onnxruntime.quantization``, imported without its side effect: one of its modules calls
    ``logging.basicConfig`` at import, which would print every library's INFO records on stderr (and
    each photoman notice twice, once as ``INFO:photoman…``). The root logger is left as it was."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import onnxruntime.quantization as quantization

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    return quantization
