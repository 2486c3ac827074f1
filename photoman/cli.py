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


@app.command()
@handles_errors
def find(
    query: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[Path | None, typer.Option("--image", "-i", help="Find photos like this image.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Number of results.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="JSON array of results on stdout.")] = False,
) -> None:
    """Search the library by description (text→image) or by example (--image, image→image)."""
    from photoman.library import Library
    from photoman.search.engine import find as run_find

    if query is None and image is None:
        raise fail("nothing to search for: give a description or --image PATH", 2)
    with Library(settings(), "photoman find", write=False) as lib:
        results = run_find(lib, text=query, image=image, limit=limit)
    if as_json:
        out.print_json(json.dumps([r.to_json() for r in results]))
        return
    if not results:
        err.print("no results (is the library indexed? see `photoman status`)")
        return
    table = Table("rank", "score", "path", "date", box=None, header_style="bold")
    for r in results:
        date = r.taken_at.strftime("%Y-%m-%d") if r.taken_at else ""
        extra = f" (+{len(r.duplicates)} copies)" if r.duplicates else ""
        table.add_row(str(r.rank), f"{r.score:.3f}", r.path + extra, date)
    out.print(table)


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
    from photoman.embedding.model import load_encoder
    from photoman.media.decode import load_image

    images, text = images or [], text or []
    if not images and not text:
        raise fail("nothing to embed: give image files and/or --text", 2)
    cfg = settings()
    for p in images:
        if not p.is_file():
            raise fail(f"no such image file: {p}", 2)
    encoder = load_encoder(cfg.model, cfg.device, cfg.precision)
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
    from photoman.library import Library
    from photoman.status import library_status

    with Library(settings(), "photoman status", write=False, allow_busy=True) as lib:
        info = library_status(lib)
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
    for e in info["errors"]:
        out.print(f"error     {e['path']}: {e['error']}", highlight=False, markup=False)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
