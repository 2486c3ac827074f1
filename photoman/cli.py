"""The `photoman` command: a thin Typer layer over the library functions (each callable without it)."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from photoman.config import Settings, load_settings
from photoman.errors import PhotomanError
from photoman.service.protocol import call, daemon_running

app = typer.Typer(
    name="photoman",
    help="Semantic photo manager: find photos by describing them or by showing a similar one — locally.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


class _State:
    settings: Settings | None = None
    debug: bool = False


state = _State()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line on stderr and return the exit to raise."""
    err.print(f"[bold red]photoman:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def handles_errors(fn: F) -> F:
    """User errors become one line on stderr and a non-zero exit; --debug shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PhotomanError as exc:
            if state.debug:
                raise
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail(
                "interrupted; what was committed is kept, run the command again to continue", 130
            ) from None

    return wrapper  # type: ignore[return-value]


def settings(**overrides: Any) -> Settings:
    assert state.settings is not None
    return state.settings.with_overrides(**overrides)


@app.callback()
def main_options(
    data_dir: Annotated[
        Path | None, typer.Option(help="Where catalog and vectors live [env PHOTOMAN_DATA_DIR].")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="CLIP model: Hugging Face id or local folder [env PHOTOMAN_MODEL].")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="auto, cpu, cuda, cuda:N or mps [env PHOTOMAN_DEVICE].")
    ] = None,
    qdrant_url: Annotated[
        str | None,
        typer.Option(help="Use a Qdrant server instead of the embedded store [env PHOTOMAN_QDRANT_URL]."),
    ] = None,
    catalog_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the catalog [env PHOTOMAN_CATALOG_URL].")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Config file (TOML) [env PHOTOMAN_CONFIG].")] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks for errors.")] = False,
) -> None:
    """Global options; every one also has a config-file key and a PHOTOMAN_* variable."""
    state.debug = debug
    try:
        base = load_settings(config)
        state.settings = base.with_overrides(
            data_dir=data_dir, model=model, device=device, qdrant_url=qdrant_url, catalog_url=catalog_url
        )
    except PhotomanError as exc:
        raise fail(str(exc), exc.exit_code) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal and not os.environ.get("PHOTOMAN_PROGRESS"),
    )


@app.command()
@handles_errors
def index(
    folders: Annotated[
        list[Path] | None, typer.Argument(help="Folders to add and index; none = all known roots.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Decode worker processes (default: one per core).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Photos per model batch.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
) -> None:
    """Scan folders, embed new and changed photos, forget deleted ones. Safe to re-run and to interrupt."""
    from photoman.indexing.pipeline import index as run_index
    from photoman.library import Library

    cfg = settings(workers=workers, batch_size=batch_size)
    if daemon_running(cfg.socket_path):
        for f in folders or []:
            if not f.is_dir():
                raise fail(f"no such folder: {f}" if not f.exists() else f"not a folder: {f}", 2)
        queued = call(cfg.socket_path, "index", {"folders": [str(f.resolve()) for f in folders or []]})
        if as_json:
            out.print_json(json.dumps({"daemon": True, **queued}))
        else:
            out.print(
                "the running daemon is indexing it; follow along with `photoman status`", highlight=False
            )
        return
    with Library(cfg, "photoman index") as lib, _progress() as bar:
        task = bar.add_task("indexing", total=None, rate="")

        def on_progress(done: int, total: int) -> None:
            elapsed = bar.tasks[task].elapsed or 0.0
            rate = f"{done / elapsed:.1f} photos/s" if elapsed > 0 and done else ""
            bar.update(task, completed=done, total=total, rate=rate)

        report = run_index(lib, folders or None, progress=on_progress)
    summary = {
        "scanned": report.scanned,
        "unchanged": report.unchanged,
        "embedded": report.embedded,
        "reused": report.reused,
        "removed": report.removed,
        "errors": len(report.errors),
        "requeued": report.requeued,
        "orphans_removed": report.orphans_removed,
        "seconds": round(report.seconds, 3),
        "error_files": [{"path": p, "error": e} for p, e in report.errors],
    }
    if as_json:
        out.print_json(json.dumps(summary))
        return
    rate = report.processed / report.seconds if report.seconds > 0 else 0.0
    out.print(
        f"Indexed {report.scanned} photos in {report.seconds:.1f}s: {report.embedded} embedded, "
        f"{report.reused} reused (moved/duplicate), {report.unchanged} unchanged, {report.removed} removed, "
        f"{len(report.errors)} unreadable" + (f" ({rate:.1f} photos/s)" if report.processed else ""),
        highlight=False,
    )
    for path, error in report.errors[:10]:
        err.print(f"  skipped {path}: {error}", highlight=False, markup=False)
    if len(report.errors) > 10:
        err.print(f"  … and {len(report.errors) - 10} more (see `photoman status`)")


FIND_HELP = """Search by description, by example, or both; filters run inside Qdrant.

\b
Query algebra (terms joined by + or -, optional weight N:):
  photoman find "two dogs running across a frosty field"
  photoman find beach + ./sunset.jpg - people
  photoman find "2:red car" - blurry
  cat photo.jpg | photoman find -          (an image on stdin)
\b
Modes (--mode; auto = image-image for image-only queries, else text-image):
  text-image, image-image   search the photos' image vectors
  text-caption, image-caption   search the caption vectors
  all                       both, fused by reciprocal rank
Results below a relevance cutoff adapted to the query's own scores are dropped
(--all keeps everything, --threshold X fixes it).
"""


@app.command(help=FIND_HELP)
@handles_errors
def find(
    query: Annotated[
        list[str] | None, typer.Argument(help="Query terms (see above).", show_default=False)
    ] = None,
    image: Annotated[
        list[str] | None, typer.Option("--image", "-i", help="Add an image term (path, or - for stdin).")
    ] = None,
    mode: Annotated[
        str, typer.Option(help="auto, text-image, image-image, text-caption, image-caption, all.")
    ] = "auto",
    limit: Annotated[int, typer.Option("--limit", "-n", help="Number of results.")] = 10,
    since: Annotated[
        str | None, typer.Option(help="Taken on or after (YYYY[-MM[-DD]]); else file time.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Taken on or before (YYYY[-MM[-DD]]).")] = None,
    folder: Annotated[str | None, typer.Option("--in", help="Only photos under this folder.")] = None,
    camera: Annotated[str | None, typer.Option(help="Camera make/model words, e.g. 'iphone 4s'.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only photos with this tag (repeatable).")
    ] = None,
    near: Annotated[str | None, typer.Option(help="LAT,LON: only photos taken near there.")] = None,
    radius: Annotated[float | None, typer.Option(help="Radius for --near in km (default 10).")] = None,
    fmt: Annotated[
        list[str] | None, typer.Option("--format", help="jpeg, png, heic, avif, ... (repeatable).")
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="No relevance cutoff.")] = False,
    threshold: Annotated[
        float | None, typer.Option(help="Fixed cutoff score instead of the adaptive one.")
    ] = None,
    sort: Annotated[str, typer.Option(help="score, or date (newest first, after the cutoff).")] = "score",
    explain: Annotated[bool, typer.Option(help="Show each term's contribution to each score.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON array of results on stdout.")] = False,
    ndjson: Annotated[bool, typer.Option("--ndjson", help="One JSON object per line.")] = False,
    null: Annotated[bool, typer.Option("-0", "--null", help="NUL-separated paths (for xargs -0).")] = False,
    include_offline: Annotated[
        bool, typer.Option(help="Include photos on drives that are not mounted.")
    ] = False,
) -> None:
    from photoman.search.engine import Query
    from photoman.search.filters import build_filter
    from photoman.search.query import parse_query

    words, images = list(query or []), list(image or [])
    if not words and not images:
        raise fail("nothing to search for: give a description or --image PATH", 2)
    if sum((as_json, ndjson, null)) > 1:
        raise fail("choose one of --json, --ndjson and -0", 2)
    if show_all and threshold is not None:
        raise fail("--all and --threshold contradict each other; pick one", 2)
    stdin = sys.stdin.buffer.read() if "-" in words or "-" in images else None
    if stdin is not None and not stdin:
        raise fail("no image data on standard input", 2)
    q = Query(
        terms=parse_query(words, images, stdin),
        mode=mode,
        limit=limit,
        flt=build_filter(since, until, folder, camera, tag, near, radius, fmt),
        cutoff="none" if show_all else "fixed" if threshold is not None else "auto",
        threshold=threshold,
        sort=sort,
        explain=explain,
        include_offline=include_offline,
    )
    q.resolved_mode()  # reject a bad mode before any model loads
    cfg = settings()
    if daemon_running(cfg.socket_path):
        results = call(cfg.socket_path, "find", {"query": q.to_json()})
    else:  # no daemon: open the stores here (pays the model load)
        from photoman.library import Library
        from photoman.search.engine import search

        with Library(cfg, "photoman find", write=False) as lib:
            results = [r.to_json() for r in search(lib, q)]
    print_results(results, as_json, ndjson, null, explain)


def print_results(
    results: list[dict[str, Any]], as_json: bool, ndjson: bool, null: bool, explain: bool
) -> None:
    """Table (default), JSON array, NDJSON or NUL-separated paths; the same schema on every path."""
    if as_json:
        out.print_json(json.dumps(results))
        return
    if ndjson:
        for r in results:
            sys.stdout.write(json.dumps(r) + "\n")
        sys.stdout.flush()
        return
    if null:
        sys.stdout.write("".join(r["path"] + "\0" for r in results))
        sys.stdout.flush()
        return
    if not results:
        err.print("no results above the relevance cutoff (try --all, or check `photoman status`)")
        return
    table = Table(box=None, header_style="bold")
    for name in ("rank", "score", "path", "date"):
        table.add_column(name, overflow="fold", no_wrap=name != "path")
    for r in results:
        date = (r["taken_at"] or "")[:10]
        extra = f" (+{len(r['duplicates'])} copies)" if r["duplicates"] else ""
        table.add_row(str(r["rank"]), f"{r['score']:.3f}", r["path"] + extra, date)
        if explain:
            parts = ", ".join(
                f"{e['term']} {e['contribution']:+.3f}" + (f" [{e['vector']}]") for e in r["explain"]
            )
            table.add_row("", "", f"  = {parts}", "")
    # piped: never fold or cut a path to fit an imaginary 80 columns
    (out if out.is_terminal else Console(width=100_000)).print(table)


@app.command()
@handles_errors
def caption(
    path: Annotated[Path, typer.Argument(help="A photo in the library.")],
    text: Annotated[str | None, typer.Argument(help="The new caption; omit to show the current one.")] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Drop your caption; use the file's own again.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {path, caption, source} as JSON.")] = False,
) -> None:
    """Show or set a photo's caption (searched with --mode text-caption / image-caption / all)."""
    if text is not None and clear:
        raise fail("give a caption or --clear, not both", 2)
    cfg = settings()
    target = str(path.expanduser().absolute())
    if daemon_running(cfg.socket_path):
        info = call(cfg.socket_path, "caption", {"path": target, "text": text, "clear": clear})
    else:
        from dataclasses import asdict

        from photoman.indexing.captions import get_caption, set_caption
        from photoman.library import Library

        with Library(cfg, "photoman caption", write=text is not None or clear) as lib:
            result = (
                set_caption(lib, target, text) if (text is not None or clear) else get_caption(lib, target)
            )
            info = asdict(result)
    if as_json:
        out.print_json(json.dumps(info))
    elif info["caption"]:
        out.print(f"{info['caption']}  [{info['source']}]", highlight=False, markup=False)
    else:
        out.print("(no caption)")


@app.command()
@handles_errors
def embed(
    images: Annotated[list[Path] | None, typer.Argument(help="Image files to embed.")] = None,
    text: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="Text to embed (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON with the full vectors.")] = False,
) -> None:
    """Print the normalised CLIP vectors of images and/or texts (for scripts); needs no library."""
    from photoman.library import open_encoder
    from photoman.media.decode import load_image

    images, text = images or [], text or []
    if not images and not text:
        raise fail("nothing to embed: give image files and/or --text", 2)
    cfg = settings()
    for p in images:
        if not p.is_file():
            raise fail(f"no such image file: {p}", 2)
    encoder = open_encoder(cfg)
    rows: list[dict[str, Any]] = []
    for p in images:
        vec = encoder.encode_images([load_image(p, min_side=encoder.spec.size)])[0]
        rows.append({"input": str(p), "kind": "image", "vector": vec})
    if text:
        for t, vec in zip(text, encoder.encode_texts(text), strict=True):
            rows.append({"input": t, "kind": "text", "vector": vec})
    if as_json:
        payload = [
            {
                "input": r["input"],
                "kind": r["kind"],
                "model": encoder.model_id,
                "dim": encoder.dim,
                "vector": [round(float(x), 7) for x in r["vector"]],
            }
            for r in rows
        ]
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    for r in rows:
        head = ", ".join(f"{x:+.4f}" for x in r["vector"][:4])
        out.print(f"{r['kind']:5} {r['input']}: dim {encoder.dim} [{head}, …]", highlight=False, markup=False)


@app.command()
@handles_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable status.")] = False,
) -> None:
    """Roots, photos indexed, errors, model, store sizes."""
    cfg = settings()
    if daemon_running(cfg.socket_path):
        info = call(cfg.socket_path, "status")
    else:
        from photoman.library import Library
        from photoman.status import library_status

        with Library(cfg, "photoman status", write=False, allow_busy=True) as lib:
            info = library_status(lib)
        info["daemon"] = None
    if as_json:
        out.print_json(json.dumps(info))
        return
    mb = lambda n: f"{n / 1e6:.1f} MB" if n is not None else "?"  # noqa: E731
    vec = info["vectors"]
    out.print(f"data dir  {info['data_dir']}", highlight=False)
    out.print(f"model     {info['model']}", highlight=False)
    out.print(f"catalog   {info['catalog']['url']} ({mb(info['catalog']['bytes'])})", highlight=False)
    if "error" in vec:
        out.print(f"vectors   {vec['backend']}: {vec['error']}", highlight=False)
    else:
        out.print(
            f"vectors   {vec['backend']} {vec['collection']}: "
            f"{vec['points']} points ({mb(vec['disk_bytes'])})",
            highlight=False,
        )
    p = info["photos"]
    out.print(
        f"photos    {p['indexed']} indexed ({p['unique']} unique), {p['errors']} unreadable", highlight=False
    )
    if not info["roots"]:
        out.print("roots     none yet: run `photoman index FOLDER`")
    for r in info["roots"]:
        state_ = "" if r["online"] else "  [offline]"
        out.print(f"root      {r['path']}: {r['photos']} photos{state_}", highlight=False, markup=False)
    d = info["daemon"]
    if d is None:
        out.print("daemon    not running (start it with `photoman watch --detach`)")
    else:
        out.print(
            f"daemon    pid {d['pid']}, up {d['uptime_s']:.0f}s, {d['state']}, queue {d['queue']}, "
            f"{d['rate']:.1f} photos/s, {d['indexed_since_start']} indexed and "
            f"{d['errors_since_start']} errors since start",
            highlight=False,
        )
        for root, kind in d["watching"].items():
            out.print(f"watching  {root} ({kind})", highlight=False, markup=False)
    for e in info["errors"]:
        out.print(f"error     {e['path']}: {e['error']}", highlight=False, markup=False)


@app.command()
@handles_errors
def tag(
    labels: Annotated[
        list[Path] | None,
        typer.Option("--labels", "-l", help="Extra label file (one per line, TAB threshold)."),
    ] = None,
    no_builtin: Annotated[bool, typer.Option("--no-builtin", help="Only the given label files.")] = False,
    retag: Annotated[
        bool, typer.Option("--retag", help="Tag every photo again, not just untagged ones.")
    ] = False,
    min_prob: Annotated[float, typer.Option(help="Default probability a label needs to stick.")] = 0.1,
    top_k: Annotated[int, typer.Option(help="At most this many tags per photo.")] = 5,
) -> None:
    """Zero-shot tagging: compare each photo's vector with prompt-ensembled label embeddings."""
    from photoman.library import Library
    from photoman.zeroshot.tagging import label_set, tag_library

    if no_builtin and not labels:
        raise fail("--no-builtin needs at least one --labels FILE", 2)
    label_list = label_set(labels, builtin=not no_builtin)  # validates the files here, before any work
    cfg = settings()
    if daemon_running(cfg.socket_path):
        args = {"labels": [str(f.absolute()) for f in labels or []], "no_builtin": no_builtin, "retag": retag,
                "min_prob": min_prob, "top_k": top_k}  # fmt: skip
        report = call(cfg.socket_path, "tag", args, timeout=3600)
    else:
        from dataclasses import asdict

        with Library(cfg, "photoman tag") as lib:
            report = asdict(tag_library(lib, label_list, retag=retag, min_prob=min_prob, top_k=top_k))
    tagged, considered, n = report["tagged"], report["considered"], report["labels"]
    out.print(f"tagged {tagged} of {considered} photos with {n} labels", highlight=False)


@app.command()
@handles_errors
def tags(as_json: Annotated[bool, typer.Option("--json", help="JSON object {tag: count}.")] = False) -> None:
    """Tags in the library with how many photos carry each."""
    from photoman.library import Library
    from photoman.zeroshot.tagging import tag_counts

    cfg = settings()
    if daemon_running(cfg.socket_path):
        counts = [tuple(x) for x in call(cfg.socket_path, "tags")]
    else:
        with Library(cfg, "photoman tags", write=False) as lib:
            counts = tag_counts(lib)
    if as_json:
        out.print_json(json.dumps(dict(counts)))
        return
    if not counts:
        err.print("no tags yet: run `photoman tag`")
    for label, n in counts:
        out.print(f"{n:6d}  {label}", highlight=False, markup=False)


@app.command()
@handles_errors
def classify(
    path: Annotated[Path, typer.Argument(help="Any image file.")],
    labels: Annotated[str, typer.Option("--labels", "-l", help="Comma-separated labels, e.g. cat,dog,car.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON {label: probability}.")] = False,
) -> None:
    """Zero-shot classification: softmax over the given labels with CLIP's logit scale."""
    from photoman.library import open_encoder
    from photoman.media.decode import load_image
    from photoman.zeroshot.tagging import classify as run_classify

    names = [" ".join(x.split()) for x in labels.split(",") if x.strip()]
    if len(names) < 2:
        raise fail("--labels needs at least two labels, separated by commas", 2)
    if not path.is_file():
        raise fail(f"no such image file: {path}", 2)
    cfg = settings()
    encoder = open_encoder(cfg)
    probs = run_classify(encoder, load_image(path, min_side=encoder.spec.size), names)
    if as_json:
        out.print_json(json.dumps({n: round(p, 6) for n, p in probs}))
        return
    for n, p in probs:
        out.print(f"{p:7.2%}  {n}", highlight=False, markup=False)


@app.command()
@handles_errors
def locate(
    path: Annotated[Path, typer.Argument(help="Any image file.")],
    query: Annotated[str, typer.Argument(help="What to find in it, e.g. 'a fluffy cat'.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", "-o", help="Heat map PNG (default: <photo>.heat.png).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Box, score, windows and timing as JSON.")] = False,
) -> None:
    """Zero-shot localisation: sliding windows scored against the text; heat map PNG and best box."""
    from photoman.library import open_encoder
    from photoman.media.decode import load_image
    from photoman.zeroshot.locate import locate as run_locate
    from photoman.zeroshot.locate import overlay

    if not query.strip():
        raise fail("empty query: say what to look for", 2)
    if not path.is_file():
        raise fail(f"no such image file: {path}", 2)
    cfg = settings()
    encoder = open_encoder(cfg)
    image = load_image(path, min_side=1024)  # JPEGs decode at reduced scale; boxes map back below
    full_size = _image_size(path)
    text = encoder.encode_texts([query])[0]
    result = run_locate(encoder, image, text)
    scale = full_size[0] / image.width
    box = tuple(int(round(v * scale)) for v in result.box)
    target = out_file or path.with_name(path.stem + ".heat.png")
    try:
        overlay(image, result.heat, result.box).save(target)
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc.strerror or exc}") from None
    info = {**result.to_json(), "box": list(box), "path": str(path), "query": query, "heatmap": str(target)}
    if as_json:
        out.print_json(json.dumps(info))
        return
    out.print(
        f"best box {box} (score {result.score:.3f}) from {result.windows} windows in {result.seconds:.1f}s; "
        f"heat map: {target}",
        highlight=False,
    )


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        size = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


@app.command()
@handles_errors
def dupes(
    threshold: Annotated[float, typer.Option(help="Cosine similarity for near-duplicates.")] = 0.95,
    rotations: Annotated[bool, typer.Option(help="Also catch copies turned 90/180/270°.")] = True,
    trash: Annotated[
        bool, typer.Option("--trash", help="Move all but the suggested keeper to the trash.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Groups as JSON.")] = False,
) -> None:
    """Exact duplicates (same bytes) and near-duplicates (resized, recompressed or rotated copies)."""
    from photoman.library import Library
    from photoman.zeroshot.dupes import find_duplicates, trash_duplicates

    if not 0 < threshold <= 1:
        raise fail("--threshold must be in (0, 1]", 2)
    cfg = settings()
    if daemon_running(cfg.socket_path):
        args = {"threshold": threshold, "rotations": rotations, "trash": trash}
        found = call(cfg.socket_path, "dupes", args, timeout=3600)
    else:
        with Library(cfg, "photoman dupes") as lib:
            groups = find_duplicates(lib, threshold=threshold, rotations=rotations)
            moved = trash_duplicates(lib, groups) if trash else []
        found = {"groups": [g.to_json() for g in groups], "trashed": moved}
    if as_json:
        out.print_json(json.dumps(found))
        return
    moved = found["trashed"]
    if not found["groups"]:
        out.print("no duplicates")
    for g in found["groups"]:
        out.print(f"{g['kind']} duplicates ({len(g['photos'])}):", highlight=False)
        for p in g["photos"]:
            mark = "keep " if p["path"] == g["keeper"] else ("trash" if p["path"] in moved else "     ")
            out.print(f"  {mark} {p['path']}  {p['width']}x{p['height']}", highlight=False, markup=False)
    if moved:
        out.print(f"moved {len(moved)} files to the trash", highlight=False)


@app.command()
@handles_errors
def tui(
    images: Annotated[
        str | None, typer.Option(help="Thumbnails: auto (kitty/sixel where supported), halfcell or unicode.")
    ] = None,
) -> None:
    """The terminal UI: search box, thumbnail grid, details with caption editing, more-like-this."""
    from photoman.tui.app import run_tui

    run_tui(settings(tui_images=images))


@app.command()
@handles_errors
def watch(
    detach: Annotated[
        bool, typer.Option("--detach", help="Run in the background and return once it answers.")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Reconcile and index every root once, then exit (cron).")
    ] = False,
    poll: Annotated[
        list[str] | None,
        typer.Option("--poll", help="Watch this root by polling (network shares); repeatable."),
    ] = None,
) -> None:
    """Run the daemon: index as photos appear, move or vanish, and answer queries with the model warm."""
    from photoman.service.daemon import Daemon, run_once, setup_logging

    cfg = settings()
    if poll:
        cfg = cfg.with_overrides(
            poll_roots=[*cfg.poll_roots, *(str(Path(p).expanduser().absolute()) for p in poll)]
        )
    if once:
        from photoman.library import Library

        with Library(cfg, "photoman watch --once"):
            pass  # fail fast and clearly if a daemon holds the library
        report = run_once(cfg)
        summary = f"{report.embedded} embedded, {report.reused} reused, {report.removed} removed, "
        out.print(summary + f"{len(report.errors)} unreadable, {report.unchanged} unchanged", highlight=False)
        return
    if daemon_running(cfg.socket_path):
        raise fail(f"a daemon is already running for {cfg.data_dir} (socket {cfg.socket_path})", 3)
    if detach:
        _start_detached(cfg)
        return
    setup_logging(cfg, foreground=True)
    raise typer.Exit(Daemon(cfg).run())


def _start_detached(cfg: Settings) -> None:
    import subprocess
    import time

    from photoman.service.daemon import log_tail

    env = dict(os.environ)
    for key in (
        "data_dir",
        "model",
        "device",
        "precision",
        "catalog_url",
        "qdrant_url",
        "state_dir",
        "runtime_dir",
    ):
        value = getattr(cfg, key)
        if value is not None:
            env[f"PHOTOMAN_{key.upper()}"] = str(value)
    if cfg.poll_roots:
        env["PHOTOMAN_POLL_ROOTS"] = os.pathsep.join(cfg.poll_roots)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "photoman", "watch"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if daemon_running(cfg.socket_path):
            out.print(f"photoman daemon running (pid {proc.pid}); log: {cfg.log_file}", highlight=False)
            return
        if proc.poll() is not None:
            tail = log_tail(cfg.log_file, 1)
            raise fail(
                f"the daemon exited at start (code {proc.returncode}): {tail or 'see ' + str(cfg.log_file)}"
            )
        time.sleep(0.2)
    raise fail(f"the daemon did not answer within 300 s; see {cfg.log_file}")


@app.command()
@handles_errors
def stop() -> None:
    """Stop the running daemon (it finishes or abandons the batch in flight and exits cleanly)."""
    import time

    cfg = settings()
    if not daemon_running(cfg.socket_path):
        raise fail(f"no daemon is running for {cfg.data_dir}")
    pid = call(cfg.socket_path, "status")["daemon"]["pid"]
    call(cfg.socket_path, "stop")
    from photoman.errors import StoreBusyError
    from photoman.library import DataDirLock

    lock = DataDirLock(cfg.lock_file)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:  # the daemon releases the data-dir lock as the very last thing it does
            lock.acquire("photoman stop")
            lock.release()
            out.print(f"stopped daemon (pid {pid})", highlight=False)
            return
        except StoreBusyError:
            time.sleep(0.2)
    raise fail(f"daemon pid {pid} is still shutting down; see {cfg.log_file}")


def main() -> None:
    """Console-script entry point: usage errors, like every user error, are one line on stderr."""
    from typer._click import exceptions as click_exc  # typer ships its own copy of click

    try:
        code = app(standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(2)
    except click_exc.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "photoman"
        err.print(
            f"[bold red]photoman:[/] {exc.format_message()} (see `{cmd} --help`)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
    except click_exc.ClickException as exc:
        err.print(f"[bold red]photoman:[/] {exc.format_message()}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[bold red]photoman:[/] interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
