"""Settings from defaults, a TOML file, PHOTOMAN_* environment variables and CLI flags (in that order)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from photoman.errors import SettingValueError

APP = "photoman"
DEFAULT_MODEL = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP))


def _default_state_dir() -> Path:
    return Path(platformdirs.user_state_dir(APP))


def default_cache_dir() -> Path:
    """Rebuildable files (the compiled text encoder): PHOTOMAN_CACHE_DIR or the platform cache dir."""
    return Path(os.environ.get("PHOTOMAN_CACHE_DIR") or platformdirs.user_cache_dir(APP))


def _default_runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / APP
    import tempfile  # only without XDG_RUNTIME_DIR (kept off the common path: a query imports config)

    return Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"


def _default_config_file() -> Path:
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


PRECISIONS = ("auto", "fp32", "bf16", "fp16", "onnx", "int8")
TUI_IMAGES = ("auto", "halfcell", "unicode")


DEFAULT_EXCLUDE = [
    "node_modules/", "__pycache__/", "venv/", ".venv/", "site-packages/", "dist-packages/", ".cache/",
    "Caches/", ".Trash*/", "$RECYCLE.BIN/", "*.heat.png",
]  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Everything photoman can be told; frozen so a run sees one consistent view."""

    data_dir: Path = field(default_factory=_default_data_dir)
    model: str = DEFAULT_MODEL
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # auto: fp16 on a GPU; on CPU the image runtime measured fastest here at parity (once per machine and
    # model, cached) | fp32 | bf16 | fp16 (torch) | onnx (ONNX Runtime fp32) | int8 (opt-in, may miss parity)
    precision: str = "auto"
    text_int8: int = 1  # on CPU (fp32), run the text encoder with int8 weights: queries ~2x faster
    batch_size: int = 32
    workers: int = 0  # decode worker processes; 0 = pick from the CPU count
    catalog_url: str | None = None  # any SQLAlchemy URL; default: SQLite file in data_dir
    qdrant_url: str | None = None  # Qdrant server; default: embedded Qdrant Edge in data_dir
    qdrant_api_key: str | None = None
    state_dir: Path = field(default_factory=_default_state_dir)  # daemon log
    runtime_dir: Path = field(default_factory=_default_runtime_dir)  # daemon socket
    cache_dir: Path = field(default_factory=default_cache_dir)  # compiled text encoder (rebuildable)
    settle: float = 2.0  # seconds a file must be left alone before the watcher indexes it
    debounce: float = 0.5  # seconds to gather a burst of file events into one unit of work
    rescan_interval: float = 900.0  # seconds between full reconcile scans in the daemon
    poll_roots: list[str] = field(default_factory=list)  # roots watched by polling (network shares)
    # a shared library's stored roots → where this machine mounts them (pathmap.py)
    path_map: dict[str, str] = field(default_factory=dict)
    caption_sources: list[str] = field(default_factory=lambda: ["user", "sidecar", "embedded"])
    auto_tag: int = 0  # 1: tag new photos with the built-in vocabulary while indexing
    viewer: str | None = None  # command that opens a photo (TUI); default xdg-open / open
    tui_images: str = "auto"  # auto (kitty/sixel when supported) | halfcell | unicode
    min_free_mb: int = 200  # indexing stops (one clear line, nothing lost) while less is free for the library
    autostart: int = 1  # 1: commands that need the model start the daemon when none runs; 0: in-process
    # gitignore patterns left out of every root (replaces the defaults: caches, dependency folders, venvs)
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    config_file: Path | None = None

    def __post_init__(self) -> None:
        """Every value checked when settings are made (file, env, option, or code), so a bad one is
        one line at the start, not a daemon that reports success and dies, or a silent misuse."""
        problem = _problem(self)
        if problem:
            raise SettingValueError(problem)

    @property
    def catalog(self) -> str:
        """SQLAlchemy URL of the catalog."""
        return self.catalog_url or f"sqlite:///{self.data_dir / 'catalog.sqlite3'}"

    @property
    def vectors_dir(self) -> Path:
        return self.data_dir / "vectors"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "photoman.lock"

    @property
    def socket_path(self) -> Path:
        """The daemon's Unix socket: one per data dir, in the (private) runtime dir."""
        try:  # the bare SHA-1 module: hashlib loads OpenSSL first (~4 ms of every query's start)
            from _sha1 import sha1
        except ImportError:
            from hashlib import sha1
        digest = sha1(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return self.runtime_dir / f"photoman-{digest}.sock"

    @property
    def own_folders(self) -> list[Path]:
        """Where photoman itself writes (its stores, log, socket, caches): never a library root."""
        return [self.data_dir, self.state_dir, self.runtime_dir, self.cache_dir]

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "photoman.log"

    @property
    def decode_workers(self) -> int:
        """Worker processes for decoding: one per core, at most 8, unless set."""
        if self.workers > 0:
            return self.workers
        return max(1, min(8, os.cpu_count() or 1))

    def with_overrides(self, **values: Any) -> Settings:
        """Copy with the given non-None values applied (CLI flags)."""
        return replace(self, **{k: _coerce(k, v) for k, v in values.items() if v is not None})


_FIELD_TYPES = {f.name: f.type for f in fields(Settings)}


def _problem(s: Settings) -> str | None:
    """What is wrong with these settings, in one line, or None."""
    import math
    import re

    if not isinstance(s.model, str) or not s.model.strip():
        return "model: give a Hugging Face id or a model folder (it is empty)"
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(s.device)):
        return f"device: unknown device {s.device or ''!r}; use auto, cpu, cuda, cuda:N or mps"
    if s.precision not in PRECISIONS:
        return f"precision: unknown precision {s.precision!r}; use {', '.join(PRECISIONS)}"
    if s.tui_images not in TUI_IMAGES:
        return f"tui_images: {s.tui_images!r}; use {', '.join(TUI_IMAGES)}"
    for name in ("text_int8", "auto_tag", "autostart"):
        if getattr(s, name) not in (0, 1):
            return f"{name}: 0 or 1, not {getattr(s, name)!r}"
    if s.batch_size < 1:
        return f"batch_size: at least 1, not {s.batch_size}"
    if s.workers < 0:
        return f"workers: 0 (one per core) or more, not {s.workers}"
    if s.min_free_mb < 0:
        return f"min_free_mb: 0 or more, not {s.min_free_mb}"
    for name in ("settle", "debounce"):
        value = getattr(s, name)
        if not (math.isfinite(value) and value >= 0):
            return f"{name}: seconds, 0 or more, not {value}"
    if not (math.isfinite(s.rescan_interval) and s.rescan_interval > 0):
        return f"rescan_interval: seconds, more than 0, not {s.rescan_interval}"
    if not isinstance(s.poll_roots, list) or not all(isinstance(r, str) and r for r in s.poll_roots):
        return "poll_roots: a list of folder paths"
    if not isinstance(s.exclude, list) or not all(isinstance(p, str) for p in s.exclude):
        return "exclude: a list of gitignore patterns"
    if s.exclude != DEFAULT_EXCLUDE:  # (the defaults are known good: no pathspec import per command)
        from photoman.indexing.ignore import bad_pattern

        if (bad := bad_pattern(s.exclude)) is not None:
            return f"exclude: not a gitignore pattern: {bad}"
    url = s.qdrant_url
    if url is not None and url != "" and not re.match(r"https?://", url) and not os.path.isabs(url):
        hint = f"; did you mean http://{url}?" if re.fullmatch(r"[\w.-]+:\d+", url) else ""
        return f"qdrant_url: an http(s):// address of a Qdrant server, not {url!r}{hint}"
    if s.catalog_url is not None and _in_memory(s.catalog_url):
        return ("catalog_url: a catalog in memory would be gone at exit (and the daemon's threads each "
                "see their own); give a database file or server")
    return None


def _in_memory(url: str) -> bool:
    """An SQLite URL with no file (sqlite://, sqlite:///:memory:, mode=memory)."""
    low = url.strip().lower()
    if not low.startswith("sqlite"):
        return False
    rest = low.split("://", 1)[1] if "://" in low else ""
    return rest in ("", "/") or rest.startswith("/:memory:") or "mode=memory" in rest


def _unknown(name: str, where: str = "") -> SettingValueError:
    import difflib

    close = difflib.get_close_matches(name, list(_FIELD_TYPES), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(_FIELD_TYPES))}"
    return SettingValueError(f"unknown setting {name!r}{where}{hint}")


_FLAGS = {"text_int8", "auto_tag", "autostart"}
_WORDS = {"0": 0, "1": 1, "false": 0, "true": 1, "off": 0, "on": 1, "no": 0, "yes": 1}


def _coerce(name: str, value: Any) -> Any:
    if name not in _FIELD_TYPES:
        raise _unknown(name)
    kind = _FIELD_TYPES[name]
    try:
        if "Path" in kind:
            if not isinstance(value, str | os.PathLike) or not os.fspath(value):
                raise ValueError  # (an empty one would be the current folder, wherever a command runs)
            return Path(os.path.expanduser(os.fspath(value))).absolute()
        if name in _FLAGS:  # 0/1, and what people write for them: true/false, on/off, yes/no
            if isinstance(value, str) and value.strip().lower() in _WORDS:
                return _WORDS[value.strip().lower()]
            if isinstance(value, bool):
                return int(value)
        if isinstance(value, bool) or (isinstance(value, float) and kind == "int" and not value.is_integer()):
            raise ValueError  # batch_size = true or 1.5 is a mistake, not 1
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if kind.startswith("dict"):  # path_map: a TOML table, or STORED=LOCAL[:STORED=LOCAL...] from the env
            from photoman.pathmap import parse_path_map

            return parse_path_map(value)
        if kind.startswith("list"):
            if isinstance(value, str):
                return [v for v in value.split(os.pathsep) if v]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TypeError
            return list(value)
        if not isinstance(value, str):
            raise TypeError  # model = 5 is a mistake, not "5"
        return value if value != "" else None
    except (TypeError, ValueError, OverflowError):
        raise SettingValueError(f"setting {name!r} must be {kind}, got {value!r}") from None


def _file_values(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            raise SettingValueError(f"config file {path} does not exist")
        return {}
    from photoman.userfiles import read_text

    text = read_text(path, "config file", limit_mb=1, error=SettingValueError)
    if not text.strip():
        return {}  # an empty file: nothing to parse (tomllib's import is ~4 ms of a query's start)
    import tomllib

    try:
        values = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        what = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise SettingValueError(f"cannot read config file {path}: {what}") from None
    for name, value in values.items():
        if name == "config_file":
            raise SettingValueError(f"config_file in {path}: a config file cannot name another; use "
                                    "--config or PHOTOMAN_CONFIG")  # fmt: skip
        if name not in _FIELD_TYPES:
            raise _unknown(name, f" in {path}")
        relative = isinstance(value, str) and value and not value.startswith(("/", "~"))
        if "Path" in _FIELD_TYPES[name] and relative:
            # a relative folder in the file is the file's neighbour, wherever a command runs from
            values[name] = str(path.absolute().parent / value)
    return values


def _env_values(env: dict[str, str]) -> dict[str, Any]:
    return {
        name: env[f"PHOTOMAN_{name.upper()}"] for name in _FIELD_TYPES if env.get(f"PHOTOMAN_{name.upper()}")
    }


def config_path(config_file: Path | None = None, env: dict[str, str] | None = None) -> Path:
    """The config file photoman reads (it may not exist yet)."""
    env = dict(os.environ if env is None else env)
    return config_file or (
        Path(env["PHOTOMAN_CONFIG"]) if env.get("PHOTOMAN_CONFIG") else _default_config_file()
    )


def setting_sources(
    config_file: Path | None = None, env: dict[str, str] | None = None, options: dict[str, Any] | None = None
) -> dict[str, str]:
    """Where each effective setting came from: default, file, env (its variable) or option."""
    env = dict(os.environ if env is None else env)
    path = config_path(config_file, env)
    from_file = _file_values(path, explicit=False) if path.exists() else {}
    from_env = _env_values(env)
    out = {}
    for name in _FIELD_TYPES:
        if name == "config_file":
            continue
        if options and options.get(name) is not None:
            out[name] = "option"
        elif name in from_env:
            out[name] = f"env PHOTOMAN_{name.upper()}"
        elif name in from_file:
            out[name] = f"file {path}"
        else:
            out[name] = "default"
    return out


def load_settings(config_file: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Defaults, then the TOML file (PHOTOMAN_CONFIG or the platform config dir), then PHOTOMAN_* env."""
    env = dict(os.environ if env is None else env)
    path = config_file or (Path(env["PHOTOMAN_CONFIG"]) if env.get("PHOTOMAN_CONFIG") else None)
    explicit = path is not None
    path = path or _default_config_file()
    values = {**_file_values(path, explicit), **_env_values(env)}
    values.pop("config_file", None)
    settings = Settings().with_overrides(**values, config_file=path)
    unknown = set(settings.caption_sources) - {"user", "sidecar", "embedded"}
    if unknown:
        raise SettingValueError(
            f"caption_sources: unknown source(s) {sorted(unknown)}; use user, sidecar, embedded"
        )
    return settings
