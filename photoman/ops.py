"""Every operation a client can ask of a library, as one table: op name → function(lib, **args).

The daemon serves each socket request from this table and :class:`photoman.client.Client` calls the
same functions in-process when no daemon runs, so a result is the same JSON either way. Arguments
arrive as JSON from any socket client, so each function checks what it is given (a wrong type or
range is a BadInputError with a one-line message, never a crash).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photoman.diskspace import check_space
from photoman.errors import BadInputError

if TYPE_CHECKING:
    from photoman.library import Library
    from photoman.search.query import Query

Progress = Callable[[int, int], None]


# ---- argument checks (a socket client may send anything) ----
def _str(value: Any, name: str, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not empty_ok and not value.strip()):
        raise BadInputError(f"{name} must be a non-empty string")
    return value


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadInputError(f"{name} must be a whole number from {lo} to {hi}, not {value!r}")
    return value


def _float(value: Any, name: str, lo: float, hi: float, lo_open: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (lo < value if lo_open else lo <= value) or value > hi:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise BadInputError(f"{name} must be a number in {interval}, not {value!r}")
    return float(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise BadInputError(f"{name} must be true or false")
    return value


def _paths(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadInputError(f"{name} must be a list of paths")
    return value


def _image_file(path: Any) -> Path:
    """An existing regular file given by its absolute path (checked before any model loads)."""
    p = Path(_str(path, "path"))
    if not p.exists():
        raise BadInputError(f"no such image file: {p}")
    if not p.is_file():
        raise BadInputError(f"not an image file: {p}")
    return p


def _any_spelling(fn: Any, lib: Library, path: str, *args: Any) -> Any:
    """Call ``fn(lib, path, ...)`` with the path as given, then as its real path (a root reached
    through a symlink is stored as the real folder)."""
    from photoman.paths import canonical

    try:
        return fn(lib, path, *args)
    except BadInputError:
        real = canonical(path)
        if real == path:
            raise
        return fn(lib, real, *args)


# ---- the operations ----
def find(
    lib: Library,
    *,
    query: dict[str, Any] | None = None,
    text: str | None = None,
    image: str | None = None,
    limit: int = 10,
    include_offline: bool = False,
) -> list[dict[str, Any]]:
    """Search: ``query`` as :class:`photoman.search.query.Query` sends it, or the simple form for
    scripts on the socket: ``text`` or ``image`` (a path), ``limit``, ``include_offline``."""
    from photoman.search.engine import search

    q = _find_query(query=query, text=text, image=image, limit=limit, include_offline=include_offline)
    return [r.to_json() for r in search(lib, q)]


def _find_query(
    *,
    query: dict[str, Any] | None = None,
    text: str | None = None,
    image: str | None = None,
    limit: int = 10,
    include_offline: bool = False,
) -> Query:
    from photoman.search.query import Query, Term

    if query is not None:
        if text is not None or image is not None:
            raise BadInputError("give either a query or text/image, not both")
        return Query.from_json(query)
    if (text is None) == (image is None):
        raise BadInputError("give either text or image")
    term = (
        Term("text", _str(text, "text").strip())
        if text is not None
        else Term("image", str(_image_file(image)))
    )
    offline = _bool(include_offline, "include_offline")
    return Query([term], limit=limit, cutoff="none", include_offline=offline)


def find_many(lib: Library, requests: list[dict[str, Any]]) -> list[Any]:
    """Many `find` requests answered together (the daemon's clients arriving at once): each answer is
    its results or the exception it raised, exactly as :func:`find` alone would have."""
    from photoman.search.engine import search_many

    answers: list[Any] = [None] * len(requests)
    queries: dict[int, Query] = {}
    for i, args in enumerate(requests):
        try:
            if not isinstance(args, dict):
                raise BadInputError("request arguments must be an object")
            queries[i] = _find_query(**args)
        except TypeError as exc:
            answers[i] = BadInputError(f"bad arguments for find: {exc}")
        except Exception as exc:  # noqa: BLE001 - one request's error is its own answer
            answers[i] = exc
    try:
        found = search_many(lib, list(queries.values()))
    except Exception:  # noqa: BLE001 - not one query's mistake: each alone, so it fails only its own
        found = []
        for q in queries.values():
            try:
                found.append(search_many(lib, [q])[0])
            except Exception as exc:  # noqa: BLE001 - this query's own answer
                found.append(exc)
    for i, result in zip(queries, found, strict=True):
        answers[i] = result if isinstance(result, Exception) else [r.to_json() for r in result]
    return answers


def caption(lib: Library, *, path: str, text: str | None = None, clear: bool = False) -> dict[str, Any]:
    """Show a photo's caption, set it (``text``) or go back to the file's own (``clear``)."""
    from photoman.captions.edit import get_caption, set_caption

    path = _str(path, "path")
    if text is not None:
        _str(text, "caption", empty_ok=True)
    if _bool(clear, "clear") and text is not None:
        raise BadInputError("give a caption or --clear, not both")
    if text is None and not clear:
        return asdict(_any_spelling(get_caption, lib, path))
    check_space(lib.settings)
    return asdict(_any_spelling(set_caption, lib, path, None if clear else text))


def photo(lib: Library, *, path: str) -> dict[str, Any]:
    """What the catalog knows of one photo (the TUI's detail pane)."""
    from photoman.catalog.queries import lookup_photo

    return _any_spelling(lookup_photo, lib, _str(path, "path"))


def heatmap(lib: Library, *, path: str, content_hash: str, text: str) -> str:
    """A cached heat-map PNG of where ``text`` is in the photo; returns its path."""
    from photoman.zeroshot.locate import heatmap_png

    return heatmap_png(lib.encoder, lib.settings.thumbs_dir, _str(path, "path"),
                       _str(content_hash, "content_hash"), _str(text, "text"))[0]  # fmt: skip


def status(lib: Library, *, errors_limit: int = 20) -> dict[str, Any]:
    """Roots, counts, errors (the first ``errors_limit``), model and store sizes (the daemon adds its
    own state)."""
    from photoman.status import library_status

    info = library_status(lib, errors_limit=_int(errors_limit, "errors_limit", 0, 10_000_000))
    info["daemon"] = None
    return info


def roots(lib: Library, *, watching: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The library's folders with their photo counts, whether each is online, and how it is watched."""
    from photoman.catalog.roots import list_roots

    return list_roots(lib, watching)


def roots_remove(lib: Library, *, path: str) -> dict[str, Any]:
    """Forget a root and its photos (the files stay where they are)."""
    from photoman.catalog.roots import remove_root

    return remove_root(lib, _str(path, "path"))


def roots_relocate(lib: Library, *, old: str, new: str) -> dict[str, Any]:
    """A root moved (a drive mounted elsewhere): paths change, nothing is re-embedded."""
    from photoman.catalog.roots import relocate_root

    check_space(lib.settings)
    return relocate_root(lib, _str(old, "old"), _str(new, "new"))


def tags(lib: Library) -> dict[str, int]:
    """Each tag in the library with the number of photos that carry it."""
    from photoman.catalog.queries import tag_counts

    return dict(tag_counts(lib))


def tag(
    lib: Library,
    *,
    labels: list[str] | None = None,
    no_builtin: bool = False,
    retag: bool = False,
    min_prob: float = 0.1,
    top_k: int = 5,
) -> dict[str, Any]:
    """Zero-shot tagging of the library with the built-in vocabulary and/or label files."""
    from photoman.zeroshot.tagging import label_set, tag_library

    check_space(lib.settings)
    files = [Path(f) for f in _paths(labels, "labels")]
    if _bool(no_builtin, "no_builtin") and not files:
        raise BadInputError("--no-builtin needs at least one --labels FILE")
    min_prob = _float(min_prob, "--min-prob", 0.0, 1.0)
    top_k = _int(top_k, "--top-k", 1, 100)
    label_list = label_set(files, builtin=not no_builtin)
    return asdict(tag_library(lib, label_list, retag=_bool(retag, "retag"), min_prob=min_prob, top_k=top_k))


def dupes(
    lib: Library,
    *,
    threshold: float = 0.95,
    rotations: bool = True,
    trash: bool = False,
    dry_run: bool = False,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Duplicate groups and, with ``dry_run`` or ``trash``, the trash plan (keep/trash/skip, why).

    ``trash`` moves the copies the plan marks (only those in ``only`` when given: the plan a user
    approved), each checked again right before it moves.
    """
    from photoman.dupes import DupeGroup, find_duplicates, trash_duplicates, trash_plan

    threshold = _float(threshold, "--threshold", 0.0, 1.0, lo_open=True)
    if _bool(trash, "trash") and _bool(dry_run, "dry_run"):
        raise BadInputError("--trash and --dry-run contradict each other; pick one")
    approved = set(_paths(only, "only")) if only is not None else None
    groups = find_duplicates(lib, threshold=threshold, rotations=_bool(rotations, "rotations"))
    out: dict[str, Any] = {"groups": [g.to_json() for g in groups], "trashed": []}
    if dry_run or trash:
        out["plan"] = [step.to_json() for step in trash_plan(groups)]
    if trash:
        if approved is not None:  # drop what the user did not see marked for the trash
            keep = [[p for p in g.photos if p["path"] == g.keeper or p["path"] in approved] for g in groups]
            pairs = zip(groups, keep, strict=True)
            groups = [DupeGroup(g.kind, g.keeper, photos, g.threshold) for g, photos in pairs]
        out["trashed"] = trash_duplicates(lib, groups)
    return out


def classify(lib: Library, *, path: str, labels: list[str]) -> dict[str, float]:
    """Zero-shot classification of one image over the given labels (softmax with CLIP's scale)."""
    from photoman.media.decode import load_image
    from photoman.zeroshot.tagging import classify as run_classify

    file = _image_file(path)
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise BadInputError("labels must be a list of strings")
    names = list(dict.fromkeys(" ".join(x.split()) for x in labels if x.strip()))  # each label once
    if len(names) < 2:
        raise BadInputError("--labels needs at least two different labels, separated by commas")
    image = load_image(file, min_side=224)  # decoded (and checked) before the model loads
    encoder = lib.encoder
    if image.width < encoder.spec.size or image.height < encoder.spec.size:
        image = load_image(file, min_side=encoder.spec.size)
    return {n: round(p, 6) for n, p in run_classify(encoder, image, names)}


HEATMAP_MARK = "photoman locate"  # the PNG's Software text: a file photoman may write over


def _heatmap_mark() -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", HEATMAP_MARK)
    return info


def _heatmap_target(target: Path) -> Path:
    """Where the user asked for the heat map: a .png, and never over a file photoman did not write
    (`-o` naming the photo itself replaced it), nor into a device or FIFO."""
    from PIL import Image

    if target.suffix.lower() != ".png":
        raise BadInputError(f"{target}: the heat map is a PNG; give a name ending in .png")
    if not os.path.lexists(target):
        return target
    if not target.is_file():
        raise BadInputError(f"{target} exists and is not a regular file; give a new file name")
    try:
        with Image.open(target) as im:
            ours = getattr(im, "text", {}).get("Software") == HEATMAP_MARK
    except Exception:  # noqa: BLE001 - not an image photoman can read: not one it wrote
        ours = False
    if not ours:
        raise BadInputError(f"{target} exists and is not a heat map photoman wrote; give a new file name")
    return target


def locate(lib: Library, *, path: str, text: str, out: str | None = None) -> dict[str, Any]:
    """Where ``text`` is in one image: best box in the original's pixels, and a heat-map PNG."""
    from photoman.media.decode import image_size, load_image
    from photoman.zeroshot.locate import locate as run_locate
    from photoman.zeroshot.locate import overlay

    file = _image_file(path)
    text = _str(text, "query").strip()
    if out:
        target = _heatmap_target(Path(_str(out, "out")))
    else:  # never beside the photo: the next `index` would take the heat map for a photo
        import hashlib

        tag = hashlib.sha1(f"{file}\n{text}".encode()).hexdigest()[:8]
        target = lib.settings.cache_dir / "heatmaps" / f"{file.stem}-{tag}.heat.png"
        target.parent.mkdir(parents=True, exist_ok=True)
    image = load_image(file, min_side=1024)  # JPEGs decode at reduced scale; the box maps back below
    full_width = image_size(file)[0]
    encoder = lib.encoder
    result = run_locate(encoder, image, lib.text_encoder.encode_texts([text])[0])
    scale = full_width / image.width
    box = [int(round(v * scale)) for v in result.box]
    try:
        overlay(image, result.heat, result.box).save(target, pnginfo=_heatmap_mark())
    except OSError as exc:
        raise BadInputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return {**result.to_json(), "box": box, "path": str(file), "query": text, "heatmap": str(target)}


def embed(lib: Library, *, images: list[str] | None = None, texts: list[str] | None = None) -> dict[str, Any]:
    """Unit vectors of image files and texts, in input order (images first), for scripts."""
    from photoman.media.decode import load_image

    files = [_image_file(p) for p in _paths(images, "images")]
    if texts is not None and (not isinstance(texts, list) or not all(isinstance(t, str) for t in texts)):
        raise BadInputError("texts must be a list of strings")
    texts = texts or []
    if not files and not texts:
        raise BadInputError("nothing to embed: give image files and/or --text")
    rows: list[dict[str, Any]] = []
    if files:
        encoder = lib.encoder
        for f in files:
            vec = encoder.encode_images([load_image(f, min_side=encoder.spec.size)])[0]
            rows.append({"input": str(f), "kind": "image", "vector": vec})
    text_encoder = lib.text_encoder
    for t, vec in zip(texts, text_encoder.encode_texts(texts), strict=True):
        rows.append({"input": t, "kind": "text", "vector": vec})
    model, dim = lib.model_id, lib.dim
    return {
        "model": model,
        "dim": dim,
        # each row whole (what `photoman embed --json` prints): it names its model and size
        "vectors": [
            {"input": r["input"], "kind": r["kind"], "model": model, "dim": dim,
             "vector": [round(float(x), 7) for x in r["vector"]]}
            for r in rows
        ],  # fmt: skip
    }


def index(
    lib: Library, *, folders: list[str] | None = None, force: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Index folders (added as roots) or every root, in this process; the run's report."""
    from photoman.indexing.pipeline import index as run_index
    from photoman.paths import check_new_root
    from photoman.zeroshot.tagging import auto_tag, owe_auto_tag

    force, own = _bool(force, "force"), lib.settings.own_folders
    checked = [check_new_root(f, force=force, own=own) for f in _paths(folders, "folders")]
    owed = owe_auto_tag(lib)
    report = run_index(lib, checked or None, progress=progress)
    auto_tag(lib, report.new_hashes, everything=owed)
    return {
        "scanned": report.scanned,
        "unchanged": report.unchanged,
        "embedded": report.embedded,
        "reused": report.reused,
        "removed": report.removed,
        "errors": len(report.errors),
        "requeued": report.requeued,
        "orphans_removed": report.orphans_removed,
        "orphans_kept": report.orphans_kept,
        "offline_roots": report.offline_roots,
        "seconds": round(report.seconds, 3),
        "rate": round(report.processed / report.seconds, 2) if report.seconds > 0 else 0.0,
        "processed": report.processed,
        "error_files": [{"path": p, "error": e} for p, e in report.errors],
    }


def models(lib: Library) -> dict[str, Any]:
    """The models photoman knows and those this library has used: downloaded? a collection here?
    how many photos carry its vectors? which one is current."""
    from sqlalchemy import func, select

    from photoman.catalog.models import OK, Photo
    from photoman.embedding.known_models import KNOWN_MODELS
    from photoman.vectors import collection_name

    with lib.catalog.session() as s:
        counts = dict(
            s.execute(
                select(Photo.model_id, func.count(func.distinct(Photo.content_hash)))
                .where(Photo.status == OK)
                .group_by(Photo.model_id)
            ).all()
        )
    names = [m.name for m in KNOWN_MODELS]
    extra = [m for m in [lib.model_id, lib.target_name, *counts] if m and m not in names]
    rows = []
    for name in names + sorted(set(extra), key=extra.index):
        entry: dict[str, Any] = next((m.to_json() for m in KNOWN_MODELS if m.name == name), {"name": name})
        if "dim" not in entry:  # a folder or another hub id: its config says (no download, no network)
            from photoman.embedding.model import model_dim
            from photoman.errors import PhotomanError

            try:
                entry["dim"] = model_dim(name)
            except PhotomanError:
                entry["dim"] = None
        dim = int(entry.get("dim") or 0)
        entry.update(
            downloaded=_downloaded(name),
            collection=bool(dim) and (lib.settings.vectors_dir / collection_name(name, dim)).is_dir()
            if not lib.settings.qdrant_url
            else None,
            photos=int(counts.get(name, 0)),
            current=name == lib.model_id,
            target=name == lib.target_name,
        )
        if entry["target"]:  # photos already in the collection being built
            from photoman.indexing.switch import progress

            entry["photos"] = (progress(lib) or {}).get("done") or 0
        rows.append(entry)
    return {"current": lib.model_id, "target": lib.target_name, "models": rows}


def models_use(lib: Library, *, name: str, progress: Progress | None = None) -> dict[str, Any]:
    """Switch the library to model ``name``: here, in this process, the whole job (the daemon answers
    this op itself and builds in the background). The old collection stays until `models drop`."""
    from photoman.indexing import switch

    started = switch.start(lib, _str(name, "name").strip())
    if started["target"] is None:
        return {**started, "switched": False}
    from photoman.zeroshot.tagging import auto_tag, owe_auto_tag

    owe_auto_tag(lib)  # a kill after the switch's commit leaves the new model's tags owed
    switched = switch.run(lib, progress=progress)
    if switched:  # tags are per model: the new one's, as the daemon makes them
        auto_tag(lib, [], everything=True)
    return {"active": lib.model_id, "target": lib.target_name, "switched": switched,
            "from": started["active"], "switch": switch.progress(lib)}  # fmt: skip


def models_drop(lib: Library, *, name: str) -> dict[str, Any]:
    """Delete a model's collection; refused for the model the library searches with."""
    from photoman.indexing import switch

    return switch.drop(lib, _str(name, "name").strip())


def _downloaded(name: str) -> bool:
    """Whether the checkpoint is on this machine (a local folder, or in the Hugging Face cache)."""
    if Path(name).expanduser().is_dir():
        return True
    from photoman.embedding.checkpoint import checkpoint_key

    return checkpoint_key(name) is not None


def evaluate(lib: Library, *, source: str, models: list[str] | None = None) -> dict[str, Any]:
    """Recall@1/5/10 (and zero-shot accuracy for labelled folders) of each model on a labelled set."""
    from photoman.evaluation import evaluate as run_eval
    from photoman.evaluation import load_set
    from photoman.library import Models

    data = load_set(Path(_str(source, "source")))
    names = _paths(models, "models") or [lib.settings.model]
    results = []
    for name in names:
        m = lib if name == lib.settings.model else Models(lib.settings.with_overrides(model=name))
        results.append(run_eval(m, data))
    return {"set": source, "kind": data.kind, "results": results}


@dataclass(frozen=True)
class Op:
    """One operation and what it needs from the library."""

    fn: Callable[..., Any]
    model: bool = False  # runs model work: the daemon gives it the query thread
    writes: bool = False  # changes the catalog or the store
    library: bool = True  # False: only the encoder (no catalog, no store, no lock)
    # of a writing op, the requests that only read (a caption shown, duplicates listed): these are
    # answered where the library may only be read (a standby of a shared library)
    reads_only: Callable[[dict[str, Any]], bool] | None = None

    def changes(self, args: dict[str, Any]) -> bool:
        """Whether this request may change the library (it then needs the writer)."""
        return self.writes and not (self.reads_only is not None and self.reads_only(args))


OPS: dict[str, Op] = {
    "find": Op(find, model=True),
    "caption": Op(
        caption, model=True, writes=True, reads_only=lambda a: a.get("text") is None and not a.get("clear")
    ),
    "photo": Op(photo),
    "heatmap": Op(heatmap, model=True),
    "status": Op(status),
    "roots": Op(roots),
    "roots_remove": Op(roots_remove, writes=True),
    "roots_relocate": Op(roots_relocate, writes=True),
    "tags": Op(tags),
    "tag": Op(tag, model=True, writes=True),
    "dupes": Op(dupes, model=True, writes=True, reads_only=lambda a: not a.get("trash")),
    "classify": Op(classify, model=True, library=False),
    "locate": Op(locate, model=True, library=False),
    "embed": Op(embed, model=True, library=False),
    "index": Op(index, model=True, writes=True),
    "models": Op(models),
    "models_use": Op(models_use, model=True, writes=True),
    "models_drop": Op(models_drop, writes=True),
    "eval": Op(evaluate, model=True, library=False),
}


def run(lib: Library, op: str, args: dict[str, Any]) -> Any:
    """Call one op with JSON arguments; unknown ops and arguments are bad requests."""
    entry = OPS.get(op)
    if entry is None:
        raise BadInputError(f"unknown request {op!r}")
    if not isinstance(args, dict):
        raise BadInputError("request arguments must be an object")
    try:
        return entry.fn(lib, **args)
    except TypeError as exc:
        if "argument" in str(exc) and entry.fn.__name__ in str(exc):  # wrong or missing keyword
            raise BadInputError(f"bad arguments for {op}: {exc}") from None
        raise
