"""The `photoman` command: a thin Typer layer over the library functions (each callable without it)."""

from __future__ import annotations

import functools
import gc
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from photoman.config import Settings, load_settings
from photoman.errors import PhotomanError
from photoman.textsafe import safe_text, shown

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from photoman.client import Client
    from photoman.notices import NoticeHandler

app = typer.Typer(
    name="photoman",
    help="Semantic photo manager: find photos by describing them or by showing a similar one — locally.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help, like click's: `[env PHOTOMAN_…]` hints print as written
)
F = TypeVar("F", bound=Callable[..., Any])


class _State:
    settings: Settings | None = None
    config: Path | None = None
    options: dict[str, Any] = {}
    debug: bool = False
    daemon: bool | None = None  # --no-daemon: False
    notices: NoticeHandler | None = None  # library notices on stderr, while a command runs
    ctx: typer.Context | None = None


state = _State()


def _path(value: str) -> Path:
    """A path argument: an empty one is refused (Path("") is the current folder, which turned
    `roots relocate OLD ""` into a move of the whole library to wherever the command ran)."""
    if value == "":
        raise typer.BadParameter("an empty path")
    return Path(value)


def _nonempty(value: str) -> str:
    """A path given as text (an image term, a folder filter, a label file): not empty, as for _path."""
    if value == "":
        raise typer.BadParameter("an empty path")
    return value


@functools.cache
def _console(stderr: bool) -> Console:
    """Rich consoles, made on first use: a query answered as JSON never imports Rich.

    No emoji codes: a name holding `:dog:` prints as written (names also go through `shown`)."""
    from rich.console import Console

    return Console(stderr=True, emoji=False) if stderr else Console(soft_wrap=True, emoji=False)


def out_print(*args: Any, **kwargs: Any) -> None:
    _console(False).print(*args, **kwargs)


def err_print(*args: Any, **kwargs: Any) -> None:
    _console(True).print(*args, **kwargs)


def print_json(data: Any) -> None:
    """Indented JSON on stdout (coloured on a terminal); the same text either way.

    ASCII only: controls, non-ASCII and the surrogate escapes of non-UTF-8 names ("\\udce9") are
    JSON escapes, so the exact name travels and nothing in it reaches the terminal raw."""
    if sys.stdout.isatty():
        _console(False).print_json(json.dumps(data), ensure_ascii=True)
    else:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one error line on stderr and return the exit to raise."""
    from rich.text import Text

    # the message is shown as text, escaped: a file name in it must not restyle or drive the terminal
    err_print(Text.assemble(("photoman:", "bold red"), " ", shown(message)), highlight=False, soft_wrap=True)
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
        except Exception as exc:
            from photoman.diskspace import as_disk_full, is_disk_full
            from photoman.errors import path_error

            bad_path = path_error(exc)
            if bad_path is not None and not state.debug:
                raise fail(str(bad_path), bad_path.exit_code) from None
            if state.debug or not is_disk_full(exc):
                raise
            full = as_disk_full(exc, state.settings or Settings())
            raise fail(str(full), full.exit_code) from None

    return wrapper  # type: ignore[return-value]


def settings(**overrides: Any) -> Settings:
    assert state.settings is not None
    return state.settings.with_overrides(**overrides)


def client(**overrides: Any) -> Client:
    """The one client of the library (daemon, started on demand, or in-process with --no-daemon)."""
    from photoman.client import Client

    cfg = settings(**overrides)
    purpose = f"photoman {sys.argv[1] if len(sys.argv) > 1 else ''}".strip()
    return Client(cfg, daemon=state.daemon, purpose=purpose, before_library=_notices_on_stderr)


def model_client() -> Client:
    """The client for a command that needs only a model (embed, classify, locate): with `--model` given
    here, in this process, as a running daemon answers with its own model, not the one asked for."""
    from photoman.client import Client

    if state.options.get("model") is None:
        return client()
    purpose = f"photoman {sys.argv[1] if len(sys.argv) > 1 else ''}".strip()
    return Client(settings(), daemon=False, purpose=purpose, before_library=_notices_on_stderr)


def _notice(line: str, _level: int) -> None:
    """A notice (already escaped): through the stderr console, so it prints above a live progress bar."""
    err_print(line, highlight=False, markup=False, soft_wrap=True)


def _notices_on_stderr() -> None:
    """Library notices (model download, the daemon started, a fallback: records of the ``photoman``
    loggers) print on stderr as one escaped line each while this command runs; --debug adds DEBUG.
    Attached when the library is about to run here (a query the daemon answers imports no logging)."""
    import logging

    from photoman.notices import NoticeHandler

    if state.notices is not None:
        return
    ctx, debug = state.ctx, state.debug
    logger = logging.getLogger("photoman")
    handler = NoticeHandler(_notice, logging.DEBUG if debug else logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(handler.level)
    logger.propagate = False  # shown here, once, whatever handlers a library gave the root logger
    state.notices = handler

    def remove() -> None:  # a test runs many commands in one process: each one's handler goes with it
        _quiet_notices()
        logger.setLevel(level)
        logger.propagate = propagate

    if ctx is not None:
        ctx.call_on_close(remove)


def _quiet_notices() -> None:
    """Stop printing notices on stderr: the daemon logs them instead, the TUI shows them as toasts."""
    if state.notices is not None:
        import logging

        logging.getLogger("photoman").removeHandler(state.notices)
        state.notices = None


def _version(value: bool) -> None:
    if value:
        from photoman import __version__

        out_print(f"photoman {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            parser=_path, metavar="DIR", help="Where catalog and vectors live [env PHOTOMAN_DATA_DIR]."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="CLIP or SigLIP model: Hugging Face id or folder [env PHOTOMAN_MODEL].")
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
    config: Annotated[
        Path | None,
        typer.Option(parser=_path, metavar="FILE", help="Config file (TOML) [env PHOTOMAN_CONFIG]."),
    ] = None,
    no_daemon: Annotated[
        bool,
        typer.Option(
            "--no-daemon",
            help="Open the library in this process; never use or start the daemon [env PHOTOMAN_AUTOSTART=0 "
            "only stops starting one].",
        ),
    ] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks for errors (and debug notices).")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_version),
    ] = False,
) -> None:
    """Global options; every one also has a config-file key and a PHOTOMAN_* variable."""
    state.debug = debug
    state.daemon = False if no_daemon else None
    state.notices, state.ctx = None, ctx
    state.config = config
    state.options = {"data_dir": data_dir, "model": model, "device": device, "qdrant_url": qdrant_url,
                     "catalog_url": catalog_url}  # fmt: skip
    try:
        base = load_settings(config)
        state.settings = base.with_overrides(
            data_dir=data_dir, model=model, device=device, qdrant_url=qdrant_url, catalog_url=catalog_url
        )
    except PhotomanError as exc:
        raise fail(str(exc), exc.exit_code) from None


def _progress() -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=_console(True),
        transient=False,
        disable=not _console(True).is_terminal and not os.environ.get("PHOTOMAN_PROGRESS"),
    )


@app.command()
@handles_errors
def index(
    folders: Annotated[
        list[Path] | None,
        typer.Argument(parser=_path, help="Folders to add and index; none = all known roots."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Decode worker processes (default: one per core).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Photos per model batch.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Index even /, a system folder or the whole home folder.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
) -> None:
    """Scan folders, embed new and changed photos, forget deleted ones. Safe to re-run and to interrupt.

    With a daemon running, it takes the folders over and indexes them in the background."""
    with client(workers=workers, batch_size=batch_size) as pm:
        if pm.mode != "direct" and state.daemon is not False and pm.daemon_running():
            report = pm.index(folders, force=force)
        else:
            with _progress() as bar:
                task = bar.add_task("indexing", total=None, rate="")

                def on_progress(done: int, total: int) -> None:
                    elapsed = bar.tasks[task].elapsed or 0.0
                    rate = f"{done / elapsed:.1f} photos/s" if elapsed > 0 and done else ""
                    bar.update(task, completed=done, total=total, rate=rate)

                report = pm.index(folders, progress=on_progress, force=force)
    if as_json:
        print_json(report)
        return
    if report.get("daemon"):
        out_print("the running daemon is indexing it; follow along with `photoman status`", highlight=False)
        return
    out_print(
        f"Indexed {report['scanned']} photos in {report['seconds']:.1f}s: {report['embedded']} embedded, "
        f"{report['reused']} reused (moved/duplicate), {report['unchanged']} unchanged, "
        f"{report['removed']} removed, {report['errors']} unreadable"
        + (f" ({report['rate']:.1f} photos/s)" if report["processed"] else ""),
        highlight=False,
    )
    for e in report["error_files"][:10]:
        err_print(
            f"  skipped {shown(e['path'])}: {shown(e['error'])}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if len(report["error_files"]) > 10:
        err_print(f"  … and {len(report['error_files']) - 10} more (see `photoman status`)")


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
        list[str] | None,
        typer.Option(
            "--image",
            "-i",
            parser=_nonempty,
            metavar="PATH",
            help="Add an image term (path, or - for stdin).",
        ),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="auto, text-image, image-image, text-caption, image-caption, all.")
    ] = "auto",
    limit: Annotated[int, typer.Option("--limit", "-n", help="Number of results (1-10000).")] = 10,
    since: Annotated[
        str | None, typer.Option(help="Taken on or after (YYYY[-MM[-DD]]); else file time.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Taken on or before (YYYY[-MM[-DD]]).")] = None,
    folder: Annotated[
        str | None,
        typer.Option("--in", parser=_nonempty, metavar="FOLDER", help="Only photos under this folder."),
    ] = None,
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
    preview: Annotated[
        bool,
        typer.Option("--preview", help="Show thumbnails in the terminal (kitty/iTerm2/sixel, else blocks)."),
    ] = False,
    open_: Annotated[
        bool, typer.Option("--open", help="Open the first result with the viewer (all of them with -n N).")
    ] = False,
) -> None:
    from photoman.client import build_query
    from photoman.search.query import needs_stdin

    words, images = list(query or []), list(image or [])
    if not words and not images:
        raise fail("nothing to search for: give a description or --image PATH", 2)
    if sum((as_json, ndjson, null)) > 1:
        raise fail("choose one of --json, --ndjson and -0", 2)
    from photoman.userfiles import read_stdin_image

    stdin = read_stdin_image() if needs_stdin(words, images) else None
    if stdin is not None and not stdin:
        raise fail("no image data on standard input", 2)
    q = build_query(words, image=images, mode=mode, limit=limit, since=since, until=until, folder=folder,
                    camera=camera, tags=tag, near=near, radius=radius, formats=fmt, all=show_all,
                    threshold=threshold, sort=sort, explain=explain, include_offline=include_offline,
                    stdin=stdin)  # fmt: skip
    with client() as pm:
        results = pm.search(q)
    print_results(results, as_json, ndjson, null, explain, cut=q.cutoff != "none")
    if preview and results and not (as_json or ndjson or null):
        _preview(results)
    if open_ and results:
        explicit_n = (
            "-n" in sys.argv or "--limit" in sys.argv or any(a.startswith("--limit=") for a in sys.argv)
        )
        _open_with_viewer([r["path"] for r in (results if explicit_n else results[:1])])


def print_results(
    results: list[dict[str, Any]], as_json: bool, ndjson: bool, null: bool, explain: bool, cut: bool = True
) -> None:
    """Table (default), JSON array, NDJSON or NUL-separated paths; the same schema on every path."""
    if as_json:
        print_json(results)
        return
    if ndjson:
        for r in results:
            sys.stdout.write(json.dumps(r) + "\n")
        sys.stdout.flush()
        return
    if null:  # the exact bytes of each name, as xargs -0 hands them to the next program
        sys.stdout.flush()
        sys.stdout.buffer.write(b"".join(os.fsencode(r["path"]) + b"\0" for r in results))
        sys.stdout.buffer.flush()
        return
    if not results:
        if cut:
            err_print("no results above the relevance cutoff (try --all, or check `photoman status`)")
        else:  # --all: no cutoff to lift; the filters (or offline drives) left nothing
            err_print("no photo matches these filters (check them, or `photoman status` for offline drives)")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for name in ("rank", "score", "path", "date"):
        table.add_column(name, overflow="fold", no_wrap=name != "path")
    for r in results:
        # no EXIF date: the file's time is what --since/--sort date used, so show it, marked
        date = (r["taken_at"] or "")[:10] or (f"{r['file_time'][:10]} (file)" if r.get("file_time") else "")
        extra = f" (+{len(r['duplicates'])} copies)" if r["duplicates"] else ""
        if r.get("raw"):  # the RAW of a RAW+JPEG pair: one photo, two files
            extra += f" (+RAW {os.path.basename(r['raw'])})"
        # cells as Text, never markup: a name holding [bold] or [link=…] prints as written
        table.add_row(str(r["rank"]), f"{r['score']:.3f}", safe_text(r["path"] + extra), safe_text(date))
        if explain:
            parts = ", ".join(
                f"{e['term']} {e['contribution']:+.3f}" + (f" [{e['vector']}]") for e in r["explain"]
            )
            table.add_row("", "", safe_text(f"  = {parts}"), "")
    print_table(table)


def print_table(table: Any) -> None:
    """A Rich table on stdout; piped, never folded or cut to fit an imaginary 80 columns."""
    from rich.console import Console

    out = _console(False)
    (out if out.is_terminal else Console(width=100_000, emoji=False)).print(table)


def _preview(results: list[dict[str, Any]], size: int = 256) -> None:
    """Each result's thumbnail under its path, in the terminal's graphics protocol when it has one."""
    from textual_image.renderable import Image

    from photoman.errors import DecodeError
    from photoman.tui.thumbs import thumbnail

    cfg = settings()
    for r in results:
        out_print(f"{r['rank']}. {shown(r['path'])}", highlight=False, markup=False)
        try:
            thumb = thumbnail(cfg.thumbs_dir, r["path"], r["content_hash"], size)
        except (DecodeError, OSError) as exc:
            err_print(f"   (no preview: {shown(str(exc))})", highlight=False, markup=False)
            continue
        out_print(Image(thumb, width=32))


def _open_with_viewer(paths: list[str]) -> None:
    """The `viewer` setting, else xdg-open / open; without one, say so and print the paths to copy."""
    import shlex
    import shutil
    import subprocess

    cfg = settings()
    viewer = cfg.viewer or ("open" if sys.platform == "darwin" else "xdg-open")
    argv = shlex.split(viewer)
    if not shutil.which(argv[0]):
        raise fail(f"no viewer to open photos ({argv[0]} not found); set `viewer` in the config file, "
                   f"or copy the path: {paths[0]}")  # fmt: skip
    for p in paths:
        subprocess.Popen([*argv, p], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


@app.command()
@handles_errors
def caption(
    path: Annotated[Path, typer.Argument(parser=_path, help="A photo in the library.")],
    text: Annotated[str | None, typer.Argument(help="The new caption; omit to show the current one.")] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Drop your caption; use the file's own again.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print {path, caption, source} as JSON.")] = False,
) -> None:
    """Show or set a photo's caption (searched with --mode text-caption / image-caption / all)."""
    if text is not None and clear:
        raise fail("give a caption or --clear, not both", 2)
    with client() as pm:
        info = pm.caption(path, text, clear=clear)
    if as_json:
        print_json(info)
    elif info["caption"]:
        out_print(f"{shown(info['caption'])}  [{info['source']}]", highlight=False, markup=False)
    else:
        out_print("(no caption)")


@app.command()
@handles_errors
def embed(
    images: Annotated[list[Path] | None, typer.Argument(parser=_path, help="Image files to embed.")] = None,
    text: Annotated[
        list[str] | None, typer.Option("--text", "-t", help="Text to embed (repeatable).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON with the full vectors.")] = False,
) -> None:
    """Print the normalised CLIP vectors of images and/or texts (for scripts)."""
    if not images and not text:
        raise fail("nothing to embed: give image files and/or --text", 2)
    with model_client() as pm:
        got = pm.embed(images or [], text or [])
    if as_json:
        sys.stdout.write(json.dumps(got["vectors"]) + "\n")
        return
    for r in got["vectors"]:
        head = ", ".join(f"{x:+.4f}" for x in r["vector"][:4])
        line = f"{r['kind']:5} {shown(r['input'])}: dim {got['dim']} [{head}, …]"
        out_print(line, highlight=False, markup=False)


@app.command()
@handles_errors
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable status.")] = False,
    all_errors: Annotated[
        bool, typer.Option("--all-errors", help="List every unreadable file, not the first 20.")
    ] = False,
) -> None:
    """Roots, photos indexed, errors, model, store sizes, and the daemon's state."""
    with client() as pm:
        info = pm.status(errors_limit=10_000_000 if all_errors else 20)
    if as_json:
        print_json(info)
        return
    mb = lambda n: f"{n / 1e6:.1f} MB" if n is not None else "?"  # noqa: E731
    vec = info["vectors"]
    line = functools.partial(out_print, highlight=False, markup=False)  # every value escaped: `shown`
    line(f"data dir  {shown(info['data_dir'])}")
    line(f"model     {shown(info['model'])}")
    if info.get("runtime") is not None:
        line(f"runtime   {shown(info['runtime']['line'])}")
    line(f"catalog   {shown(info['catalog']['url'])} ({mb(info['catalog']['bytes'])})")
    lease = info["catalog"].get("lease")
    if lease is not None:  # a shared catalog: one writer, anywhere
        holder = lease["holder"]
        line(f"writer    {shown(holder)} holds the writer lease" if holder else "writer    nobody holds the "
             "writer lease now (the next daemon or `photoman index` to start takes it)")  # fmt: skip
    if info.get("switch"):
        line(f"switching {shown(_switch_line(info['switch']))}")
        if info["daemon"] is None:
            line(f"          no daemon is building it: `photoman watch --detach` does, in the background, or "
                 f"`photoman --no-daemon models use {shown(info['switch']['to'])}` here")  # fmt: skip
    if "error" in vec:
        line(f"vectors   {vec['backend']}: {shown(vec['error'])}")
    else:
        line(f"vectors   {vec['backend']} {shown(vec['collection'])}: {vec['points']} points "
             f"({mb(vec['disk_bytes'])})")  # fmt: skip
    p = info["photos"]
    out_print(
        f"photos    {p['indexed']} indexed ({p['unique']} unique), {p['errors']} unreadable", highlight=False
    )
    if not info["roots"]:
        out_print("roots     none yet: run `photoman index FOLDER`")
    for r in info["roots"]:
        state_ = "" if r["online"] else "  [offline]"
        line(f"root      {shown(r['path'])}: {r['photos']} photos{state_}")
    d = info["daemon"]
    if d is None:
        out_print(
            "daemon    not running (commands that need it start it; `photoman watch --detach` does too)"
        )
    else:
        out_print(
            f"daemon    pid {d['pid']}, up {d['uptime_s']:.0f}s, {d['state']}, queue {d['queue']}, "
            f"{d['rate']:.1f} photos/s, {d['indexed_since_start']} indexed and "
            f"{d['errors_since_start']} errors since start",
            highlight=False,
        )
        if d.get("role") == "standby":
            out_print("          standby: answers queries read-only, indexes nothing, and becomes the writer "
                      "once the lease is free", highlight=False)  # fmt: skip
        for root, kind in d["watching"].items():
            line(f"watching  {shown(root)} ({kind})")
    gone = info.get("pending_removal") or {}  # a daemon started by an older photoman does not say
    if gone.get("photos"):
        example = shown(gone["paths"][0])
        line(f"missing   {gone['photos']} photos gone since the last scan, with much of their root: hidden "
             f"from results, removed by the next scan that still misses them (e.g. {example})")  # fmt: skip
    for e in info["errors"]:
        line(f"error     {shown(e['path'])}: {shown(e['error'])}")
    if p["errors"] > len(info["errors"]):
        line(
            f"          … the first {len(info['errors'])} of {p['errors']} unreadable files (by path); "
            "`photoman status --all-errors` lists them all"
        )


@app.command()
@handles_errors
def tag(
    labels: Annotated[
        list[Path] | None,
        typer.Option(
            "--labels",
            "-l",
            parser=_path,
            metavar="FILE",
            help="Extra label file (one per line, TAB threshold).",
        ),
    ] = None,
    no_builtin: Annotated[bool, typer.Option("--no-builtin", help="Only the given label files.")] = False,
    retag: Annotated[
        bool, typer.Option("--retag", help="Tag every photo again, not just untagged ones.")
    ] = False,
    min_prob: Annotated[float, typer.Option(help="Default probability a label needs to stick.")] = 0.1,
    top_k: Annotated[int, typer.Option(help="At most this many tags per photo.")] = 5,
) -> None:
    """Zero-shot tagging: compare each photo's vector with prompt-ensembled label embeddings."""
    with client() as pm:
        report = pm.tag(labels, no_builtin=no_builtin, retag=retag, min_prob=min_prob, top_k=top_k)
    tagged, considered, n = report["tagged"], report["considered"], report["labels"]
    # tags belong to a photo's content: identical copies are one photo here, and each file in `tags`
    out_print(f"tagged {tagged} of {considered} photos with {n} labels (identical copies count once)",
              highlight=False)  # fmt: skip


@app.command()
@handles_errors
def tags(as_json: Annotated[bool, typer.Option("--json", help="JSON object {tag: count}.")] = False) -> None:
    """Tags in the library with how many photos carry each."""
    with client() as pm:
        counts = pm.tags()
    if as_json:
        print_json(counts)
        return
    if not counts:
        err_print("no tags yet: run `photoman tag`")
    for label, n in counts.items():
        out_print(f"{n:6d}  {shown(label)}", highlight=False, markup=False)


@app.command()
@handles_errors
def classify(
    path: Annotated[Path, typer.Argument(parser=_path, help="Any image file.")],
    labels: Annotated[str, typer.Option("--labels", "-l", help="Comma-separated labels, e.g. cat,dog,car.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON {label: probability}.")] = False,
) -> None:
    """Zero-shot classification: softmax over the given labels with CLIP's logit scale."""
    names = list(dict.fromkeys(" ".join(x.split()) for x in labels.split(",") if x.strip()))
    if len(names) < 2:
        raise fail("--labels needs at least two different labels, separated by commas", 2)
    with model_client() as pm:
        probs = pm.classify(path, names)
    if as_json:
        print_json(probs)
        return
    for n, p in probs.items():
        out_print(f"{p:7.2%}  {shown(n)}", highlight=False, markup=False)


@app.command()
@handles_errors
def locate(
    path: Annotated[Path, typer.Argument(parser=_path, help="Any image file.")],
    query: Annotated[str, typer.Argument(help="What to find in it, e.g. 'a fluffy cat'.")],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            parser=_path,
            metavar="FILE",
            help="Heat map PNG (default: in photoman's cache dir, never the library).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Box, score, windows and timing as JSON.")] = False,
) -> None:
    """Zero-shot localisation: sliding windows scored against the text; heat map PNG and best box."""
    if not query.strip():
        raise fail("empty query: say what to look for", 2)
    with model_client() as pm:
        info = pm.locate(path, query, out_file)
    if as_json:
        print_json(info)
        return
    out_print(
        f"best box {tuple(info['box'])} (score {info['score']:.3f}) from {info['windows']} windows in "
        f"{info['seconds']:.1f}s; heat map: {shown(info['heatmap'])}",
        highlight=False,
        markup=False,
    )


@app.command()
@handles_errors
def dupes(
    threshold: Annotated[float, typer.Option(help="Cosine similarity for near-duplicates.")] = 0.95,
    rotations: Annotated[bool, typer.Option(help="Also catch copies turned 90/180/270°.")] = True,
    trash: Annotated[
        bool, typer.Option("--trash", help="Move the copies (all but each group's keeper) to the trash.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what --trash would do; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before trashing (scripts).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Groups (and plan) as JSON.")] = False,
) -> None:
    """Exact duplicates (same bytes) and near-duplicates (resized, recompressed or rotated copies).

    --trash moves copies to the system trash, never the last physical copy of a photo: each file is
    checked again right before it moves (still there, same bytes, a different file from the one kept).
    It shows the plan and asks first (--yes to skip asking, needed when not in a terminal)."""
    if trash and dry_run:
        raise fail("--trash and --dry-run contradict each other; pick one", 2)
    if trash and not yes and not sys.stdin.isatty():
        raise fail("--trash asks before moving files: add --yes (or --dry-run to see the plan)", 2)
    with client() as pm:
        if trash and not yes:  # show the plan, ask, then trash exactly what was shown (re-checked)
            found = pm.dupes(threshold=threshold, rotations=rotations, dry_run=True)
            marked = [s["path"] for s in found["plan"] if s["action"] == "trash"]
            _print_dupes(found)
            if not marked:
                out_print("nothing to move to the trash")
                return
            if not typer.confirm(f"Move {len(marked)} files to the trash?", default=False, err=True):
                raise fail("nothing moved", 1)
            found = pm.dupes(threshold=threshold, rotations=rotations, trash=True, only=marked)
        else:
            found = pm.dupes(threshold=threshold, rotations=rotations, trash=trash, dry_run=dry_run)
    if as_json:
        print_json(found)
        return
    _print_dupes(found)
    if found["trashed"]:
        out_print(f"moved {len(found['trashed'])} files to the trash", highlight=False)


def _print_dupes(found: dict[str, Any]) -> None:
    plan = {s["path"]: s for s in found.get("plan", [])}
    moved = set(found["trashed"])
    if not found["groups"]:
        out_print("no duplicates")
    for g in found["groups"]:
        out_print(f"{g['kind']} duplicates ({len(g['photos'])}):", highlight=False)
        for p in g["photos"]:
            step = plan.get(p["path"])
            if p["path"] in moved:
                mark = "trashed"
            elif step is not None:
                mark = step["action"]
            else:
                mark = "keep" if p["path"] == g["keeper"] else ""
            why = f"  ({shown(step['reason'])})" if step is not None and step["action"] != "trash" else ""
            out_print(
                f"  {mark:7} {shown(p['path'])}  {p['width']}x{p['height']}{why}",
                highlight=False,
                markup=False,
            )


@app.command()
@handles_errors
def tui(
    images: Annotated[
        str | None, typer.Option(help="Thumbnails: auto (kitty/sixel where supported), halfcell or unicode.")
    ] = None,
) -> None:
    """The terminal UI: search box, thumbnail grid, details with caption editing, more-like-this."""
    if images is not None and images not in ("auto", "halfcell", "unicode"):
        raise fail(f"--images {images}: use auto, halfcell or unicode", 2)
    from photoman.tui.app import run_tui

    cfg = settings(tui_images=images)
    _quiet_notices()  # Textual owns the terminal: the app shows notices as toasts
    run_tui(cfg, daemon=state.daemon)


@app.command()
@handles_errors
def watch(
    folders: Annotated[
        list[Path] | None, typer.Argument(parser=_path, help="Folders to add as roots and watch (optional).")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Run in the background and return once it answers.")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Reconcile and index every root once, then exit (cron).")
    ] = False,
    poll: Annotated[
        list[str] | None,
        typer.Option(
            "--poll",
            parser=_nonempty,
            metavar="FOLDER",
            help="Watch this root by polling (network shares); repeatable.",
        ),
    ] = None,
    detached: Annotated[bool, typer.Option("--detached", hidden=True)] = False,
) -> None:
    """Run the daemon: index as photos appear, move or vanish, and answer queries with the model warm."""
    from photoman.service.protocol import daemon_running

    cfg = settings()
    _notices_on_stderr()  # --once and adopting roots run the library here; the daemon logs instead
    if folders:
        _adopt_roots(cfg, folders)
    if poll:
        missing = [p for p in poll if not Path(p).expanduser().is_dir()]
        if missing:
            raise fail(f"--poll {missing[0]}: no such folder (mount the share first)", 2)
        cfg = cfg.with_overrides(
            poll_roots=[*cfg.poll_roots, *(str(Path(p).expanduser().absolute()) for p in poll)]
        )
    if once:
        from photoman.library import Library
        from photoman.service.daemon import run_once

        with Library(cfg, "photoman watch --once"):
            pass  # fail fast and clearly if a daemon holds the library
        report = run_once(cfg)
        summary = f"{report.embedded} embedded, {report.reused} reused, {report.removed} removed, "
        out_print(summary + f"{len(report.errors)} unreadable, {report.unchanged} unchanged", highlight=False)
        return
    if daemon_running(cfg.socket_path):
        raise fail(f"a daemon is already running for {cfg.data_dir} (socket {cfg.socket_path})", 3)
    if detach:
        from photoman.service.launcher import start_daemon

        pid = start_daemon(cfg)
        if pid is None:
            raise fail(f"a daemon is already running for {cfg.data_dir} (socket {cfg.socket_path})", 3)
        out_print(f"photoman daemon running (pid {pid}); log: {shown(str(cfg.log_file))}", highlight=False,
                  markup=False)  # fmt: skip
        return
    from photoman.service.daemon import Daemon, setup_logging

    _quiet_notices()  # the daemon's log takes them (and its console handler in the foreground)
    setup_logging(cfg, foreground=not detached)  # detached, stderr already goes to the log file
    raise typer.Exit(Daemon(cfg).run())


def _adopt_roots(cfg: Settings, folders: list[Path]) -> None:
    """`photoman watch ~/Pictures`: the folders become roots first (through a running daemon, or here)."""
    from photoman.paths import check_new_root

    paths = [check_new_root(f, own=cfg.own_folders) for f in folders]
    from photoman.client import Client

    pm = Client(cfg, daemon=False if state.daemon is False else None)
    if pm.daemon_running():
        pm.index(paths)
        out_print(f"the running daemon now watches {shown(', '.join(paths))}", highlight=False, markup=False)
        raise typer.Exit(0)
    from photoman.catalog.roots import register_roots
    from photoman.library import Library

    with Library(cfg, "photoman watch") as lib:
        register_roots(lib, paths)


@app.command()
@handles_errors
def stop() -> None:
    """Stop the running daemon (it finishes or abandons the batch in flight and exits cleanly)."""
    with client() as pm:
        pid = pm.stop()
    out_print(f"stopped daemon (pid {pid})", highlight=False)


@app.command()
@handles_errors
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Findings as JSON.")] = False) -> None:
    """What works and what to fix: model, device, caches, disk, socket dir, daemon, catalog and vectors,
    roots, inotify limits. Exit status 1 when something needs fixing."""
    from photoman.doctor import diagnose

    _notices_on_stderr()  # the checks load the model here, in this process
    findings = diagnose(settings())
    bad = [f for f in findings if not f.ok]
    if as_json:
        print_json({"ok": not bad, "findings": [f.to_json() for f in findings]})
    else:
        for f in findings:
            line = f"{'ok ' if f.ok else 'FIX'}  {f.check:<13} {shown(f.detail)}"  # details quote roots
            out_print(line, highlight=False, markup=False)
            if f.fix:
                out_print(f"{'':18}-> {shown(f.fix)}", highlight=False, markup=False)
        out_print("all good" if not bad else f"{len(bad)} thing(s) to fix", highlight=False)
    if bad:
        raise typer.Exit(1)


config_app = typer.Typer(help="The effective settings and where each came from.")
app.add_typer(config_app, name="config")


@config_app.callback(invoke_without_command=True)
@handles_errors
def config_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="{setting: {value, source}} as JSON.")] = False,
) -> None:
    """Every setting's effective value and its source: default, the config file, a PHOTOMAN_*
    variable, or a command-line option."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import fields

    from photoman.config import setting_sources

    cfg = settings()
    sources = setting_sources(state.config, options=state.options)
    rows = {f.name: {"value": _plain(getattr(cfg, f.name), f.name), "source": sources[f.name]}
            for f in fields(cfg) if f.name in sources}  # fmt: skip
    if as_json:
        print_json(rows)
        return
    width = max(len(n) for n in rows)
    for name, row in rows.items():
        out_print(
            f"{name:<{width}}  {json.dumps(row['value'])}  ({row['source']})", highlight=False, markup=False
        )


def _plain(value: Any, name: str = "") -> Any:
    """JSON-able, with secrets (an API key, a password inside a URL) masked."""

    if isinstance(value, Path):
        return str(value)
    if name == "qdrant_api_key" and value:
        return "***"
    if isinstance(value, str) and "://" in value:
        from photoman.catalog.db import mask_secrets

        return mask_secrets(value)
    return value


@config_app.command("path")
@handles_errors
def config_file_path() -> None:
    """Print the config file photoman reads (a TOML file; it may not exist yet)."""
    from photoman.config import config_path

    path = config_path(state.config)
    note = "" if path.exists() else "  (does not exist yet)"
    out_print(shown(str(path)) + note, highlight=False, markup=False)


roots_app = typer.Typer(help="The library's folders: list, remove, relocate.")
app.add_typer(roots_app, name="roots")


@roots_app.callback(invoke_without_command=True)
@handles_errors
def roots(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable list.")] = False,
) -> None:
    """List the library's folders (roots): photos, online or not, how each is watched."""
    if ctx.invoked_subcommand is not None:
        return
    with client() as pm:
        found = pm.roots()
    if as_json:
        print_json(found)
        return
    if not found:
        out_print("no roots yet: run `photoman index FOLDER`")
    for r in found:
        state_ = "online" if r["online"] else "offline"
        out_print(
            f"{shown(r['path'])}  {r['photos']} photos, {state_}, watch: {r['watch']}",
            highlight=False,
            markup=False,
        )


@roots_app.command("remove")
@handles_errors
def roots_remove(
    path: Annotated[Path, typer.Argument(parser=_path, help="A root, in any spelling.")],
) -> None:
    """Forget a root: its photos leave the catalog and the vector store (the files are not touched)."""
    with client() as pm:
        done = pm.remove_root(path)
    out_print(
        f"removed {shown(done['root'])} ({done['photos_removed']} photos"
        + (f", {n} unreadable" if (n := done.get("unreadable_removed")) else "")
        + " forgotten)",
        highlight=False,
        markup=False,
    )


@roots_app.command("relocate")
@handles_errors
def roots_relocate(
    old: Annotated[Path, typer.Argument(parser=_path, help="The root as the library knows it.")],
    new: Annotated[
        Path, typer.Argument(parser=_path, help="Where it is now (e.g. the drive's new mount point).")
    ],
) -> None:
    """A root moved (a drive mounted elsewhere): every path follows, nothing is re-embedded."""
    with client() as pm:
        done = pm.relocate_root(old, new)
    out_print(
        f"{shown(done['root'])} -> {shown(done['to'])} ({done['photos_moved']} photos"
        + (f", {n} unreadable" if (n := done.get("unreadable_moved")) else "")
        + ")",
        highlight=False,
        markup=False,
    )


models_app = typer.Typer(help="The CLIP and SigLIP models photoman knows, and which this library uses.")
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
@handles_errors
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable list.")] = False,
) -> None:
    """List models: vector size, resolution, download size, languages, relative CPU cost, published
    retrieval figures (MSCOCO text→image recall@1 and @5), and for this machine and library:
    downloaded, collection present, photos embedded, current."""
    if ctx.invoked_subcommand is not None:
        return
    with client() as pm:
        info = pm.models()
    if as_json:
        print_json(info)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("", "model", "dim", "px", "MB", "languages", "cost", "COCO R@1", "R@5", "here", "photos"):
        table.add_column(col, no_wrap=col == "model")
    for m in info["models"]:
        r1, r5 = (f"{m[k]:.3f}" if m.get(k) else "—" for k in ("coco_t2i_r1", "coco_t2i_r5"))
        here = ", ".join(
            w for w, on in (("downloaded", m["downloaded"]), ("collection", m["collection"])) if on
        )
        cost = f"{m['relative_cost']:g}x" if m.get("relative_cost") else "?"
        sizes = [str(m.get(k, "?")) for k in ("dim", "resolution", "download_mb")]
        mark = "*" if m["current"] else "→" if m.get("target") else ""
        table.add_row(mark, safe_text(m["name"]), *sizes, m.get("languages", "?"),
                      cost, r1, r5, here or "—", str(m["photos"]))  # fmt: skip
    print_table(table)
    out_print(
        "* current model (→ the one a switch is building).  cost: compute per image relative to "
        "ViT-B/32.  COCO R@1, R@5: MSCOCO 5k text→image recall from OpenCLIP's retrieval table "
        "(docs/openclip_retrieval_results.csv); "
        "SigLIP 2's R@1 from its paper (arXiv:2502.14786, Table 1).",
        highlight=False,
    )


def _switch_line(sw: dict[str, Any]) -> str:
    """`switching to B: 120/500 photos (24%), 15.2 photos/s, about 25 s left`."""
    if sw.get("done") is None:
        return f"to {sw['to']}: progress unknown ({sw.get('error', '')})"
    done, total = sw["done"], sw["total"]
    pct = f" ({100 * done // total}%)" if total else ""
    rate = f", {sw['rate']:.1f} photos/s" if sw.get("rate") else ""
    eta = f", about {_duration(sw['eta_s'])} left" if sw.get("eta_s") is not None else ""
    return f"to {sw['to']}: {done}/{total} photos{pct}{rate}{eta}; searches use {sw['from']} until it is done"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h {s % 3600 // 60} min"


@models_app.command("use")
@handles_errors
def models_use(
    name: Annotated[str, typer.Argument(help="Hugging Face id or local folder of the model to switch to.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable result.")] = False,
) -> None:
    """Switch this library to another model. The daemon builds the new collection in the background
    while searches keep using the current one, and switches once every photo is in it (`photoman
    status` shows how far); with --no-daemon (or autostart off) it runs here, with a progress bar.
    Stopped half-way, it resumes where it was. The old collection stays until `photoman models drop`."""
    with client() as pm:
        background = pm.daemon_running() or bool(pm.settings.autostart)
        if pm.mode != "direct" and state.daemon is not False and background:
            got = pm.models_use(name)
        else:
            with _progress() as bar:
                task = bar.add_task(f"embedding with {safe_text(name)}", total=None, rate="")

                def on_progress(done: int, total: int) -> None:
                    elapsed = bar.tasks[task].elapsed or 0.0
                    rate = f"{done / elapsed:.1f} photos/s" if elapsed > 0 and done else ""
                    bar.update(task, completed=done, total=total, rate=rate)

                got = pm.models_use(name, progress=on_progress)
    if as_json:
        print_json(got)
        return
    line = functools.partial(out_print, highlight=False, markup=False)
    if got.get("cancelled"):
        line(f"cancelled the switch to {shown(got['cancelled'])}; searches keep using {shown(got['active'])}")
    elif got["target"] is None and not got.get("switched"):
        line(f"already using {shown(got['active'])}")
    elif got.get("background"):
        line(f"switching {_switch_line(got['switch'])}")
        line("`photoman status` shows how far it is")
    elif got.get("switched"):
        line(f"switched to {shown(got['active'])}; the {shown(got['from'])} collection stays until "
             f"`photoman models drop {shown(got['from'])}`")  # fmt: skip
    else:
        line(f"switching {_switch_line(got['switch'])}; run it again to finish")


@models_app.command("drop")
@handles_errors
def models_drop(
    name: Annotated[str, typer.Argument(help="The model whose collection to delete.")],
) -> None:
    """Delete a model's collection from this library (not the one it searches with). Dropping the
    model a switch is building cancels the switch."""
    with client() as pm:
        got = pm.models_drop(name)
    what = ", ".join(got["collections"]) or "no collection yet"
    extra = " (the switch to it is cancelled)" if got["cancelled_switch"] else ""
    out_print(f"dropped {shown(got['model'])}: {shown(what)}{extra}", highlight=False, markup=False)


@app.command(name="eval")
@handles_errors
def eval_(
    source: Annotated[
        Path, typer.Argument(parser=_path, help="Folder of labelled sub-folders, or a path<TAB>caption TSV.")
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model to evaluate (repeatable; default: current)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Figures as JSON.")] = False,
) -> None:
    """Which model finds your photos best: text→image recall@1/5/10 and zero-shot accuracy on a
    labelled set of your own photos."""
    with client() as pm:
        report = pm.evaluate(source, model)
    if as_json:
        print_json(report)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("model", "recall@1", "recall@5", "recall@10", "zero-shot acc.", "seconds"):
        table.add_column(col)
    for r in report["results"]:
        acc = f"{r['zero_shot_accuracy']:.3f}" if r["zero_shot_accuracy"] is not None else "—"
        recalls = [f"{r[f'recall@{k}']:.3f}" for k in (1, 5, 10)]
        table.add_row(safe_text(r["model"]), *recalls, acc, f"{r['seconds']:.1f}")
    first = report["results"][0]
    out_print(f"{report['kind']} set: {first['images']} photos, {first['queries']} queries", highlight=False)
    print_table(table)
    for s in first.get("skipped") or []:  # (the same files for every model)
        err_print(f"  skipped {shown(s['path'])}: {shown(s['error'])}", highlight=False, markup=False)


_VALUE_OPTIONS = {"--data-dir", "--model", "--device", "--qdrant-url", "--catalog-url", "--config"}


def _invoked_command(argv: list[str]) -> str | None:
    """The subcommand named on the command line (after the global options), if any."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--help", "-h"):
            return None
        if arg in _VALUE_OPTIONS:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def _shell_from_env_when_undetected() -> None:
    """Typer finds the shell by walking parent processes; started from a program rather than a shell
    (a script, an IDE terminal, ``bash -c`` that execs us) it finds none and refuses. ``$SHELL``
    names the user's login shell: use it then."""
    from typer import _completion_shared, completion

    detect = _completion_shared._get_shell_name

    def shell_name() -> str | None:
        return detect() or (os.path.basename(os.environ.get("SHELL", "")) or None)

    # --install-completion looks it up in the one module, --show-completion imported its own name
    _completion_shared._get_shell_name = shell_name
    completion._get_shell_name = shell_name  # type: ignore[attr-defined]


def main() -> None:
    """Console-script entry point: usage errors, like every user error, are one line on stderr."""
    from typer._click import exceptions as click_exc  # typer ships its own copy of click

    # Typer builds a click command from every registered function's signature on each run; a
    # command line that names one needs only that one (a fifth of a daemon-answered `find`)
    if "--install-completion" in sys.argv or "--show-completion" in sys.argv:
        _shell_from_env_when_undetected()
    name = _invoked_command(sys.argv[1:])
    chosen = [c for c in app.registered_commands if (c.name or c.callback.__name__) == name]  # type: ignore[union-attr]
    groups = [g for g in app.registered_groups if g.name == name]
    if chosen or groups:
        app.registered_commands, app.registered_groups = chosen, groups
    try:
        code = app(standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(2)
    except click_exc.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "photoman"
        fail(f"{exc.format_message()} (see `{cmd} --help`)")
        sys.exit(2)
    except click_exc.ClickException as exc:
        fail(exc.format_message())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted")
        sys.exit(130)
    except Exception as exc:  # the global options' own work (the config file) is outside handles_errors
        from photoman.errors import PhotomanError, path_error

        user = exc if isinstance(exc, PhotomanError) else path_error(exc)
        if user is None or state.debug:
            raise
        fail(str(user))
        sys.exit(user.exit_code)
    finally:
        # the interpreter's exit collects every object still alive: with torch loaded that is most of
        # a second of an `index` run spent after its last line; what is frozen is not walked
        gc.freeze()
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
